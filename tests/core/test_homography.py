"""Tests for the closed-form four-point homography solver."""

from __future__ import annotations

import pytest
import torch

from napari_coreg.homography import corner_homography, homography_from_four_points

SQUARE = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])


def random_quads(
    batch: int, seed: int, side: float = 1.0, dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    """Squares of the given side with corners perturbed by up to 30% of it."""
    generator = torch.Generator().manual_seed(seed)
    noise = torch.rand(batch, 4, 2, generator=generator, dtype=torch.float64)
    return (side * (SQUARE.double() + 0.6 * (noise - 0.5))).to(dtype)


def project(homography: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Apply ``(..., 3, 3)`` homographies to ``(..., N, 2)`` points."""
    ones = torch.ones_like(points[..., :1])
    mapped = torch.cat([points, ones], dim=-1) @ homography.mT
    return mapped[..., :2] / mapped[..., 2:]


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> torch.Tensor:
    """Frobenius-norm relative error per matrix."""
    difference = torch.linalg.matrix_norm(actual - expected)
    return difference / torch.linalg.matrix_norm(expected)


def test_agrees_with_kornia() -> None:
    src, dst = random_quads(1000, seed=0), random_quads(1000, seed=1)
    ours = homography_from_four_points(src, dst)
    kornia_transform = pytest.importorskip('kornia.geometry.transform')
    theirs = kornia_transform.get_perspective_transform(src, dst)
    assert relative_error(ours, theirs / theirs[:, 2:, 2:]).max() < 1e-5


def test_maps_source_points_onto_destination_points() -> None:
    src, dst = random_quads(1000, seed=2, side=512.0), random_quads(1000, seed=3)
    homography = homography_from_four_points(src, dst)
    torch.testing.assert_close(project(homography, src), dst, rtol=0, atol=1e-6)
    torch.testing.assert_close(
        homography[:, 2, 2], torch.ones(1000, dtype=torch.float64)
    )


@pytest.mark.parametrize('batch', [1, 257])
@pytest.mark.parametrize(
    ('dtype', 'tolerance'), [(torch.float32, 1e-3), (torch.float64, 1e-10)]
)
def test_batch_sizes_and_dtypes(
    batch: int, dtype: torch.dtype, tolerance: float
) -> None:
    src, dst = random_quads(batch, seed=4), random_quads(batch, seed=5)
    homography = homography_from_four_points(src.to(dtype), dst.to(dtype))
    assert homography.shape == (batch, 3, 3)
    assert homography.dtype == dtype
    reference = homography_from_four_points(src, dst)
    assert relative_error(homography.double(), reference).max() < tolerance


def test_gradcheck() -> None:
    src = random_quads(3, seed=6).requires_grad_()
    dst = random_quads(3, seed=7).requires_grad_()
    assert torch.autograd.gradcheck(homography_from_four_points, (src, dst))


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_zero_displacement_is_exactly_identity(dtype: torch.dtype) -> None:
    corners = random_quads(5, seed=13, side=512.0, dtype=dtype) + 1000.0
    displacements = torch.zeros(5, 4, 2, dtype=dtype, requires_grad=True)
    homography = corner_homography(displacements, corners)
    assert torch.equal(homography, torch.eye(3, dtype=dtype).expand(5, 3, 3))
    homography.sum().backward()
    assert displacements.grad is not None
    assert displacements.grad.abs().sum() > 0


def test_shared_corners_broadcast_over_batch() -> None:
    corners = 512.0 * SQUARE
    displacements = 20.0 * random_quads(3, seed=14, dtype=torch.float32)
    homography = corner_homography(displacements, corners)
    assert homography.shape == (3, 3, 3)
    assert homography.is_contiguous()
    torch.testing.assert_close(
        project(homography, corners.expand(3, 4, 2)), corners + displacements
    )


def test_corner_homography_accepts_batched_corners() -> None:
    corners = random_quads(4, seed=8)
    displacements = 0.05 * random_quads(4, seed=9)
    homography = corner_homography(displacements, corners)
    torch.testing.assert_close(project(homography, corners), corners + displacements)


def test_translation_gives_translation_matrix() -> None:
    corners = random_quads(1, seed=10)
    shift = torch.tensor([3.5, -2.0], dtype=torch.float64)
    homography = corner_homography(shift.expand(1, 4, 2), corners)
    expected = torch.eye(3, dtype=torch.float64)
    expected[:2, 2] = shift
    torch.testing.assert_close(homography[0], expected)


def test_affine_quad_gives_affine_matrix() -> None:
    affine = torch.tensor(
        [[1.2, -0.3, 4.0], [0.5, 0.9, -7.0], [0.0, 0.0, 1.0]], dtype=torch.float64
    )
    src = random_quads(1, seed=11)
    homography = homography_from_four_points(src, project(affine, src))
    torch.testing.assert_close(homography[0], affine)


@pytest.mark.parametrize('collinear', [(0, 1, 2), (1, 2, 3), (0, 2, 3), (0, 1, 3)])
@pytest.mark.parametrize('side', ['src', 'dst'])
def test_collinear_points_give_nan(collinear: tuple[int, int, int], side: str) -> None:
    good = random_quads(2, seed=12)
    degenerate = good.clone()
    # Dyadic coordinates keep the signed-area arithmetic exact.
    start = torch.tensor([0.25, 0.5], dtype=torch.float64)
    end = torch.tensor([1.0, 1.25], dtype=torch.float64)
    degenerate[0, list(collinear)] = torch.stack([start, (start + end) / 2, end])
    quads = (degenerate, good) if side == 'src' else (good, degenerate)
    homography = homography_from_four_points(*quads)
    assert torch.isnan(homography[0]).all()
    assert torch.isfinite(homography[1]).all()


@pytest.mark.parametrize('shape', [(4, 3), (3, 2), (2,)])
def test_rejects_wrong_shape(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match='shape'):
        homography_from_four_points(torch.zeros(shape), torch.zeros(shape))
