"""Mutual information's solver parts (torch): jittered points, information matrix."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip('torch')

from napari_coreg.cases import gray_photo  # noqa: E402
from napari_coreg.engines.torch import engine  # noqa: E402
from napari_coreg.engines.torch.jitter import jitter, values_at  # noqa: E402
from napari_coreg.engines.torch.models import param_model  # noqa: E402
from napari_coreg.engines.torch.optim import Objective, _damped_inverse  # noqa: E402
from napari_coreg.method import resolve  # noqa: E402
from napari_coreg.options import Model  # noqa: E402
from napari_coreg.problem import Problem  # noqa: E402


def _grid(shape: tuple[int, ...]) -> list[torch.Tensor]:
    index = np.indices(shape).reshape(len(shape), -1)
    return [torch.as_tensor(i, dtype=torch.float64) for i in index]


@pytest.mark.parametrize('shape', [(6, 9), (4, 5, 7)])
def test_jitter_moves_points_within_their_pixel_and_repeats(shape) -> None:
    coords = _grid(shape)
    moved = jitter(coords, shape, seed=3)
    for before, after, n in zip(coords, moved, shape, strict=True):
        assert (after - before).abs().max() <= 0.5
        assert after.min() >= 0 and after.max() <= n - 1
        interior = (before > 0) & (before < n - 1)
        assert (after[interior] != before[interior]).all()
    again = jitter(coords, shape, seed=3)
    assert all(torch.equal(a, b) for a, b in zip(moved, again, strict=True))
    other = jitter(coords, shape, seed=4)
    assert not torch.equal(moved[0], other[0])


@pytest.mark.parametrize('shape', [(6, 9), (4, 5, 7)])
def test_values_at_interpolates_a_linear_image_exactly(shape) -> None:
    slopes = [0.5, -1.25, 2.0][: len(shape)]
    image = sum(
        s * torch.as_tensor(c, dtype=torch.float32).reshape(shape)
        for s, c in zip(slopes, np.indices(shape), strict=True)
    )
    moved = jitter(_grid(shape), shape, seed=1)
    found = values_at(torch.stack([image, 2 * image]), moved)
    expected = sum(s * c for s, c in zip(slopes, moved, strict=True)).float()
    assert found.shape == (2, expected.numel())
    torch.testing.assert_close(found[0], expected, atol=1e-4, rtol=0)
    torch.testing.assert_close(found[1], 2 * expected, atol=2e-4, rtol=0)


def test_information_matrix_step_points_at_the_shift() -> None:
    """On a smooth level the damped Newton step of the information matrix
    points at a known shift, and the loss falls along it."""
    from scipy import ndimage
    from skimage.transform import resize

    fixed = resize(gray_photo('camera'), (64, 64), order=1, anti_aliasing=True)
    shift = np.array([1.2, -0.8])  # moving(x + shift) = fixed(x)
    moving = ndimage.shift(fixed, shift, order=3, mode='nearest')
    moving = np.cos(2.5 * moving)  # a non-monotonic remap only MI survives
    problem, _, _ = Problem.from_images(
        fixed.astype(np.float32),
        moving.astype(np.float32),
        resolve('translation', 'mi', levels=1, smoothing_sigmas=1.0),
    )
    data = engine._level(problem, 0, torch.device('cpu'))
    norm = engine.normalised_frame(problem.fixed_grid)
    objective = Objective(
        data,
        param_model(Model.TRANSLATION, 2),
        torch.eye(3, dtype=torch.float64)[None],
        problem.metric,
        problem.settings.mi_bins,
        torch.zeros(1, dtype=torch.long),
    )
    params = torch.zeros(1, 2, dtype=torch.float64)
    value, grad, matrix = objective.gradient_and_curvature(params, torch.arange(1))
    assert matrix is not None and matrix.shape == (1, 2, 2)
    assert torch.linalg.eigvalsh(matrix).min() > 0, matrix
    step = -(_damped_inverse(matrix, matrix) @ grad[..., None])[0, :, 0]
    step_px = step.numpy() / norm[0, 0]
    cosine = step_px @ shift / np.linalg.norm(step_px) / np.linalg.norm(shift)
    assert cosine > 0.95, step_px
    after, _ = objective.gradient(step[None], torch.arange(1))
    assert after < value
