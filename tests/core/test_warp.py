"""Resampling: ``warp.resample`` against scipy, and the torch pull-back sampler
against ``warp.resample`` (a cross-implementation oracle), on asymmetric
non-square shapes so that axis swaps fail."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from napari_coreg import Grid, apply_matrix
from napari_coreg.transforms import homogeneous
from napari_coreg.warp import pixel_matrix, resample

MOVING_SHAPE = (37, 53)
FIXED_SHAPE = (41, 29)

# offsets chosen so that no fixed pixel maps exactly onto the moving border
# (where float rounding decides inside/outside)
AFFINE = np.array([[0.9, 0.15, 3.03], [-0.2, 1.1, 5.53], [0.0, 0.0, 1.0]])
HOMOGRAPHY = np.array([[0.95, 0.1, 2.0], [-0.12, 1.05, 4.0], [0.004, -0.003, 1.0]])


@pytest.fixture
def image(rng) -> np.ndarray:
    return ndimage.gaussian_filter(rng.random(MOVING_SHAPE), 1.5).astype(np.float32)


def _coordinates(matrix: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    grid = np.indices(shape, dtype=np.float64).reshape(len(shape), -1).T
    return apply_matrix(matrix, grid).T


@pytest.mark.parametrize('matrix', [AFFINE, HOMOGRAPHY], ids=['affine', 'homography'])
def test_resample_matches_map_coordinates(image, matrix) -> None:
    out = resample(image, matrix, Grid(FIXED_SHAPE))
    expected = ndimage.map_coordinates(
        image, _coordinates(matrix, FIXED_SHAPE), order=1, mode='constant', cval=0.0
    ).reshape(FIXED_SHAPE)
    assert out.shape == FIXED_SHAPE and out.dtype == np.float32
    np.testing.assert_allclose(out, expected, atol=1e-5)
    assert np.abs(out).max() > 0.1  # the case is not all outside


def test_resample_of_a_pure_shift_moves_content_the_right_way(image) -> None:
    """moving_from_fixed = +(2 rows, 3 cols): out[r, c] = moving[r + 2, c + 3]."""
    out = resample(image, homogeneous(np.eye(2), (2.0, 3.0)), Grid(MOVING_SHAPE))
    np.testing.assert_allclose(out[:-2, :-3], image[2:, 3:], atol=1e-6)


def test_resample_honours_spacing_and_origin(image) -> None:
    fixed_grid = Grid(FIXED_SHAPE, spacing=(1.5, 0.7), origin=(2.0, -1.0))
    moving_grid = Grid(MOVING_SHAPE, spacing=(0.8, 1.2), origin=(-3.0, 4.0))
    physical = np.array([[0.98, -0.17, 1.0], [0.17, 0.98, 2.0], [0.0, 0.0, 1.0]])
    px = np.linalg.inv(moving_grid.phys_from_px) @ physical @ fixed_grid.phys_from_px
    np.testing.assert_allclose(pixel_matrix(physical, fixed_grid, moving_grid), px)
    out = resample(image, physical, fixed_grid, moving_grid)
    expected = ndimage.map_coordinates(
        image, _coordinates(px, FIXED_SHAPE), order=1, mode='constant', cval=0.0
    ).reshape(FIXED_SHAPE)
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_resample_keeps_channels(image) -> None:
    rgb = np.stack([image, 1 - image, image**2], axis=-1)
    out = resample(rgb, AFFINE, Grid(FIXED_SHAPE))
    assert out.shape == (*FIXED_SHAPE, 3)
    for c in range(3):
        np.testing.assert_allclose(
            out[..., c], resample(rgb[..., c], AFFINE, Grid(FIXED_SHAPE)), atol=1e-6
        )


@pytest.mark.parametrize('matrix', [AFFINE, HOMOGRAPHY], ids=['affine', 'homography'])
@pytest.mark.parametrize('dtype', [np.int32, np.uint16])
def test_order_zero_keeps_label_dtype_and_values(rng, matrix, dtype) -> None:
    labels = rng.integers(0, 7, MOVING_SHAPE).astype(dtype) * 100
    out = resample(labels, matrix, Grid(FIXED_SHAPE), order=0)
    assert out.dtype == dtype
    assert set(np.unique(out)) <= set(np.unique(labels)) | {0}
    expected = ndimage.map_coordinates(
        labels, _coordinates(matrix, FIXED_SHAPE), order=0, mode='constant', cval=0
    ).reshape(FIXED_SHAPE)
    np.testing.assert_array_equal(out, expected)


def test_resample_3d_matches_affine_transform(rng) -> None:
    volume = ndimage.gaussian_filter(rng.random((9, 17, 23)), 1).astype(np.float32)
    matrix = np.eye(4)
    matrix[:3, :3] += rng.normal(scale=0.03, size=(3, 3))
    matrix[:3, 3] = (0.5, -1.0, 2.0)
    out = resample(volume, matrix, Grid((8, 19, 21)))
    expected = ndimage.map_coordinates(
        volume, _coordinates(matrix, (8, 19, 21)), order=1, mode='constant', cval=0.0
    ).reshape((8, 19, 21))
    np.testing.assert_allclose(out, expected, atol=1e-5)


# --------------------------------------------------------------------------
# the torch pull-back sampler against warp.resample


def _level_data(image: np.ndarray, fixed_grid: Grid, moving_grid: Grid):
    torch = pytest.importorskip('torch')
    from napari_coreg.engines.torch.levels import build_level, normalised_frame
    from napari_coreg.pyramid import Level

    fixed = np.zeros((1, *fixed_grid.shape), np.float32)
    norm = normalised_frame(fixed_grid)
    data = build_level(
        fixed,
        image[None],
        fixed_grid,
        moving_grid,
        None,
        None,
        Level(1, 0.0, 1),
        norm,
        torch.device('cpu'),
        max_points=int(np.prod(fixed_grid.shape)),  # every pixel, in order
    )
    return data, norm


@pytest.mark.parametrize('matrix', [AFFINE, HOMOGRAPHY], ids=['affine', 'homography'])
@pytest.mark.parametrize('geometry', ['pixels', 'spacing'])
def test_torch_sampler_matches_resample_inside(image, matrix, geometry) -> None:
    torch = pytest.importorskip('torch')
    from napari_coreg.engines.torch.levels import sample

    if geometry == 'pixels':
        fixed_grid, moving_grid = Grid(FIXED_SHAPE), Grid(MOVING_SHAPE)
        physical = matrix
    else:
        fixed_grid = Grid(FIXED_SHAPE, spacing=(1.5, 0.7), origin=(2.0, -1.0))
        moving_grid = Grid(MOVING_SHAPE, spacing=(0.8, 1.2), origin=(-3.0, 4.0))
        physical = moving_grid.phys_from_px @ matrix @ fixed_grid.px_from_phys
    data, norm = _level_data(image, fixed_grid, moving_grid)
    normalised = torch.as_tensor(norm @ physical @ np.linalg.inv(norm))[None]
    s = sample(data, normalised)
    values = s.values[0].reshape(FIXED_SHAPE).numpy()
    weights = s.weights[0].reshape(FIXED_SHAPE).numpy()

    expected = resample(image, physical, fixed_grid, moving_grid)
    coords = _coordinates(pixel_matrix(physical, fixed_grid, moving_grid), FIXED_SHAPE)
    last = np.array(MOVING_SHAPE)[:, None] - 1
    inside = np.all((coords >= 0) & (coords <= last), axis=0).reshape(FIXED_SHAPE)
    # float32 may decide points within rounding of the border either way
    clear = np.all((np.abs(coords) > 1e-3) & (np.abs(coords - last) > 1e-3), axis=0)
    clear = clear.reshape(FIXED_SHAPE)
    assert inside.mean() > 0.3
    np.testing.assert_array_equal((weights > 0.5)[clear], inside[clear])
    np.testing.assert_allclose(values[inside], expected[inside], atol=2e-5)


def test_torch_sampler_gradient_is_the_image_gradient(image) -> None:
    """The sampled gradient channel, mapped back to pixels, is d(image)/d(pixel)."""
    torch = pytest.importorskip('torch')
    from napari_coreg.engines.torch.levels import sample

    grid = Grid(MOVING_SHAPE)
    data, norm = _level_data(image, grid, grid)
    s = sample(data, torch.eye(3, dtype=torch.float64)[None])
    # d value / d normalised = d value / d px @ px_from_norm (linear part)
    grad_norm = s.gradient[0].numpy().reshape(*MOVING_SHAPE, 2)
    grad_px = grad_norm @ np.linalg.inv(data.px_linear.numpy()).T
    expected = np.stack(np.gradient(image.astype(np.float64)), axis=-1)
    np.testing.assert_allclose(grad_px[2:-2, 2:-2], expected[2:-2, 2:-2], atol=1e-5)


def test_grid_sample_frame_matches_kornia_normalize_homography() -> None:
    """Our pixel -> grid_sample mapping is kornia's normalisation (align_corners)."""
    torch = pytest.importorskip('torch')
    kornia = pytest.importorskip('kornia')
    from napari_coreg import reverse_axes
    from napari_coreg.engines.torch.levels import _grid_sample_from_px

    ours = (
        _grid_sample_from_px(MOVING_SHAPE)
        @ HOMOGRAPHY
        @ np.linalg.inv(_grid_sample_from_px(FIXED_SHAPE))
    )
    theirs = kornia.geometry.conversions.normalize_homography(
        torch.as_tensor(reverse_axes(HOMOGRAPHY))[None], FIXED_SHAPE, MOVING_SHAPE
    )[0].numpy()
    np.testing.assert_allclose(
        ours / ours[2, 2], theirs / theirs[2, 2], rtol=1e-6, atol=1e-9
    )
