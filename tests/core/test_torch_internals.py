"""The torch engine's fast paths against plain oracles (internal API).

The compositional Gauss-Newton system (a Gram matrix of basis rows instead
of per-point steepest-descent images) against the explicit Jacobian and
against finite differences of the loss; the bracketed top-k against
``torch.topk``; the one-buffer central differences against
``torch.gradient``; the level-image cache; the subsampled percentiles of the
intensity normalisation against all pixels.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

torch = pytest.importorskip('torch')

from _cases import about_centre, rotation, source_image  # noqa: E402

from napari_coreg import Grid, apply_matrix  # noqa: E402
from napari_coreg.engines.torch import levels  # noqa: E402
from napari_coreg.engines.torch.compositional import (  # noqa: E402
    CompositionalObjective,
    _steepest_descent,
)
from napari_coreg.engines.torch.images import LevelImages, gaussian_blur  # noqa: E402
from napari_coreg.engines.torch.levels import (  # noqa: E402
    _axis_gradients,
    _strongest,
    build_level,
    normalised_frame,
    sample,
)
from napari_coreg.engines.torch.models import param_model  # noqa: E402
from napari_coreg.inputs import normalise_intensities  # noqa: E402
from napari_coreg.options import Metric, Model  # noqa: E402
from napari_coreg.pyramid import Level  # noqa: E402
from napari_coreg.transforms import grid_points  # noqa: E402

SHAPE = (48, 64)


def _level(inverse: bool, margin: int = 0):
    """A small level; ``margin`` keeps the points that far from the edges."""
    scene = ndimage.gaussian_filter(source_image('camera'), 3.0)
    fixed = scene[100 : 100 + SHAPE[0], 120 : 120 + SHAPE[1]].astype(np.float32)
    truth = about_centre(rotation(2.0), (np.array(SHAPE) - 1) / 2, (0.8, -0.5))
    moving = ndimage.affine_transform(
        scene, np.linalg.inv(truth), offset=0, order=3, mode='nearest'
    )
    moving = (moving[100 : 100 + SHAPE[0], 120 : 120 + SHAPE[1]] ** 1.2).astype(
        np.float32
    )
    grid = Grid(SHAPE, spacing=(1.5, 0.8))  # anisotropic: axis mix-ups show
    norm = normalised_frame(grid)
    inner = np.zeros(SHAPE, bool)
    inner[margin : SHAPE[0] - margin, margin : SHAPE[1] - margin] = True
    data = build_level(
        fixed[None],
        moving[None],
        grid,
        grid,
        inner if margin else None,
        None,
        Level(1, 0.0, 1),
        norm,
        torch.device('cpu'),
        max_points=10**6,
        moving_gradient=not inverse,
        fixed_gradient=inverse,
    )
    return data, grid, norm


def _model(model: str, grid: Grid, norm: np.ndarray):
    corners = None
    if model == 'homography':
        phys = apply_matrix(grid.phys_from_px, grid_points(SHAPE)[:-1])
        corners = torch.as_tensor(apply_matrix(norm, phys))
    return param_model(Model(model), 2, corners)


def _reference(objective, matrices, metric):
    """The system from explicit per-point steepest-descent images."""
    data = objective.data
    s = sample(data, matrices, None, geometry=True)
    w = s.weights[0].double()
    fixed = data.fixed_values[0].double()
    dmatrix = objective.dmatrix.to(torch.float32)
    projective = objective.projective
    if objective.inverse:
        sd = objective.steepest[0].double()
        varying, other = fixed, s.values[0].double()
    else:
        mapped = s.mapped.transpose(1, 2)
        points = torch.cat([mapped, torch.ones_like(mapped[:, :1])], dim=1)
        sd = _steepest_descent(s.gradient.transpose(1, 2), points, dmatrix, projective)
        sd = sd[0].double()
        varying, other = s.values[0].double(), fixed
    sd = sd * w
    n = w.sum()
    if metric is Metric.NCC:
        vc = (varying - (varying * w).sum() / n) * w
        oc = (other - (other * w).sum() / n) * w
        zv, zo = vc / vc.norm(), oc / oc.norm()
        sdc = sd - (sd.sum(1, keepdim=True) / n) * w
        jac = (sdc - (sdc @ zv)[:, None] * zv) / vc.norm()
        residual = zv - zo
        return jac @ jac.T, jac @ residual
    residual = (varying - other) * w
    weights = w / n
    if metric is Metric.L1:
        weights = weights / residual.abs().clamp_min(1e-2)
    return (sd * weights) @ sd.T, sd @ (residual * weights)


@pytest.mark.parametrize('inverse', [False, True], ids=['forward', 'inverse'])
@pytest.mark.parametrize('metric', ['ncc', 'mse', 'l1'])
@pytest.mark.parametrize('model', ['rigid', 'affine', 'homography'])
def test_gram_system_matches_the_explicit_jacobian(model, metric, inverse) -> None:
    data, grid, norm = _level(inverse)
    params = _model(model, grid, norm)
    objective = CompositionalObjective.build(
        data, params, Metric(metric), torch.zeros(1, dtype=torch.long), inverse
    )
    step = np.random.default_rng(3).normal(0, 0.01, (1, params.n_params))
    matrices = params.matrix(torch.as_tensor(step))
    _, hessian, gradient = objective.system(matrices, torch.tensor([0]))
    expected_h, expected_g = _reference(objective, matrices, Metric(metric))
    np.testing.assert_allclose(hessian[0], expected_h.numpy(), rtol=2e-3, atol=1e-6)
    np.testing.assert_allclose(gradient[0], expected_g.numpy(), rtol=2e-3, atol=1e-6)


@pytest.mark.parametrize('model', ['affine', 'homography'])
def test_forward_ncc_gradient_is_the_derivative_of_the_loss(model) -> None:
    # points well inside: no point enters or leaves the overlap in the
    # differences (that would make the loss jump)
    data, grid, norm = _level(inverse=False, margin=8)
    params = _model(model, grid, norm)
    objective = CompositionalObjective.build(
        data, params, Metric.NCC, torch.zeros(1, dtype=torch.long), False
    )
    base = params.matrix(torch.full((1, params.n_params), 0.004, dtype=torch.float64))
    rows = torch.tensor([0])
    _, _, gradient = objective.system(base, rows)
    h = 1e-4
    numeric = []
    for k in range(params.n_params):
        step = torch.zeros(1, params.n_params, dtype=torch.float64)
        step[0, k] = h
        up = objective.system(objective.apply(base, step), rows)[0][0]
        down = objective.system(objective.apply(base, -step), rows)[0][0]
        numeric.append((up - down) / (2 * h))
    # the engine's image gradient (central differences, interpolated) against
    # the loss through the bilinear interpolant: measured 6-8 % apart here
    relative = np.linalg.norm(gradient[0] - numeric) / np.linalg.norm(numeric)
    assert relative < 0.1, (gradient[0], numeric)


@pytest.mark.parametrize('chunk', [None, 1000])
def test_strongest_is_the_top_k_set(chunk, monkeypatch) -> None:
    if chunk is not None:  # rank large levels in chunks, whenever ranked
        monkeypatch.setattr(levels, 'TOPK_CHUNK', chunk)
        monkeypatch.setattr(levels, 'BAND_LIMIT', 0)
    rng = np.random.default_rng(0)
    image = ndimage.gaussian_filter(rng.random((300, 256)), 2).astype(np.float32)
    strengths = [
        torch.as_tensor(image).reshape(-1),
        torch.as_tensor(np.round(image * 20).reshape(-1)),  # many ties
        torch.zeros(5000),
        torch.arange(4096.0),  # the sample stride could match a row
    ]
    for strength in strengths:
        for limit in (1, 100, strength.numel() // 4, strength.numel() - 1):
            found = _strongest(strength, limit)
            assert found.numel() == limit
            assert torch.all(found[1:] > found[:-1])  # in order, distinct
            expected = torch.topk(strength, limit).values.sort().values
            assert torch.equal(strength[found].sort().values, expected)


def test_blur_matches_scipy_with_mirrored_edges() -> None:
    rng = np.random.default_rng(3)
    for shape in ((37, 41), (9, 12, 20)):
        image = rng.random(shape).astype(np.float32)
        for sigma in (0.5, 1.0):  # kernel radius 2 and 3, as scipy's here
            found = gaussian_blur(torch.as_tensor(image)[None, None], sigma)[0, 0]
            expected = ndimage.gaussian_filter(
                image, sigma, mode='mirror', truncate=3.0
            )
            np.testing.assert_allclose(found.numpy(), expected, atol=1e-5)


def test_level_keeps_one_copy_of_the_moving_image() -> None:
    rng = np.random.default_rng(4)
    fixed, moving = (rng.random((1, 32, 40)).astype(np.float32) for _ in range(2))
    grid = Grid((32, 40))
    images = LevelImages(
        fixed, moving, grid, grid, (Level(1, 0.5, 5),), torch.device('cpu')
    )
    blurred = images(0)[1].clone()
    data = build_level(
        fixed,
        moving,
        grid,
        grid,
        None,
        None,
        Level(1, 0.5, 5),
        normalised_frame(grid),
        torch.device('cpu'),
        max_points=10**6,
        images=images(0),
    )
    assert data.moving_stack.shape[1] == 3  # image and its gradient
    kept = images(0)[1]
    assert kept.data_ptr() == data.moving_stack.data_ptr()  # a view, not a copy
    torch.testing.assert_close(kept, blurred)


def test_axis_gradients_match_torch_gradient() -> None:
    image = torch.rand(2, 7, 9, 5)
    for axis, found in zip(range(1, 4), _axis_gradients(image), strict=True):
        torch.testing.assert_close(found, torch.gradient(image, dim=axis)[0])
    single = torch.rand(1, 1, 6)
    assert torch.equal(next(_axis_gradients(single)), torch.zeros_like(single))


def test_level_images_are_built_once_per_level() -> None:
    rng = np.random.default_rng(1)
    fixed, moving = (rng.random((1, 64, 80)).astype(np.float32) for _ in range(2))
    grid = Grid((64, 80))
    schedule = (Level(4, 1.0, 5), Level(2, 1.0, 5), Level(1, 0.5, 5))
    images = LevelImages(fixed, moving, grid, grid, schedule, torch.device('cpu'))
    coarse = images(0)
    assert images(0)[0] is coarse[0]  # kept while asked for again
    assert coarse[0].shape == (1, 16, 20) and coarse[1].shape == (1, 1, 16, 20)
    fine = images(2)
    assert fine[0].shape == (1, 64, 80)
    assert images(0)[0] is not coarse[0]  # rebuilt: only the last level is kept
    torch.testing.assert_close(images(0)[0], coarse[0])


def test_normalisation_percentiles_from_a_subsample_match_all_pixels() -> None:
    rng = np.random.default_rng(2)
    gray = (rng.gamma(2.0, 100.0, (700, 600)) + 50).astype(np.float32)
    low, high = np.percentile(gray.astype(np.float64), [0.5, 99.5])
    expected = np.clip((gray - low) / (high - low), -0.5, 1.5)
    out = normalise_intensities(gray)
    assert out.dtype == np.float32
    # a long tail: the 99.5 % point from 70k samples is about 1 % off
    np.testing.assert_allclose(out, expected, atol=0.03)
    assert abs(float(np.mean(out - expected))) < 0.01
