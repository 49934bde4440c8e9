"""Homogeneous matrices, axis order, grids and the corner error (numpy only)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_coreg import Grid, apply_matrix, corner_error, reverse_axes
from napari_coreg.transforms import grid_points, homogeneous


def _random_matrix(
    rng: np.random.Generator, ndim: int, projective: bool = False
) -> np.ndarray:
    matrix = np.eye(ndim + 1)
    matrix[:ndim, :] = rng.normal(size=(ndim, ndim + 1))
    if projective:
        matrix[ndim, :ndim] = rng.normal(scale=1e-3, size=ndim)
    return matrix


@pytest.mark.parametrize('ndim', [2, 3])
def test_reverse_axes_round_trips(rng, ndim) -> None:
    matrix = _random_matrix(rng, ndim, projective=True)
    once = reverse_axes(matrix)
    assert not np.allclose(once, matrix)
    np.testing.assert_array_equal(reverse_axes(once), matrix)


@pytest.mark.parametrize('ndim', [2, 3])
def test_reverse_axes_maps_the_same_point_in_reversed_order(rng, ndim) -> None:
    """A (row, col) matrix and its (x, y) twin move the same physical point."""
    matrix = _random_matrix(rng, ndim, projective=(ndim == 2))
    points = rng.uniform(0, 50, size=(7, ndim))  # numpy order
    mapped = apply_matrix(matrix, points)
    mapped_xy = apply_matrix(reverse_axes(matrix), points[:, ::-1])
    np.testing.assert_allclose(mapped_xy, mapped[:, ::-1], rtol=1e-12, atol=1e-9)


def test_reverse_axes_of_a_row_shift_is_a_y_shift() -> None:
    """Shift by (+13 rows, +17 cols) is (x=+17, y=+13) in (x, y) order."""
    rc = homogeneous(np.eye(2), (13.0, 17.0))
    xy = reverse_axes(rc)
    np.testing.assert_array_equal(xy[:2, 2], [17.0, 13.0])
    np.testing.assert_array_equal(apply_matrix(rc, [[1.0, 2.0]])[0], [14.0, 19.0])


def test_apply_matrix_divides_by_the_projective_weight() -> None:
    matrix = np.array([[2.0, 0.0, 1.0], [0.0, 3.0, -1.0], [0.1, 0.2, 1.0]])
    points = np.array([[1.0, 2.0], [0.0, 0.0], [-3.0, 4.0]])
    expected = []
    for r, c in points:
        w = 0.1 * r + 0.2 * c + 1.0
        expected.append([(2 * r + 1) / w, (3 * c - 1) / w])
    np.testing.assert_allclose(apply_matrix(matrix, points), expected, rtol=1e-14)


def test_apply_matrix_accepts_one_point() -> None:
    out = apply_matrix(homogeneous(np.eye(2), (1, 2)), [3.0, 4.0])
    assert out.shape == (1, 2)
    np.testing.assert_array_equal(out[0], [4.0, 6.0])


def test_grid_phys_from_px_with_spacing_origin_direction() -> None:
    a = np.deg2rad(30)
    direction = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    grid = Grid((37, 53), spacing=(2.0, 0.5), origin=(10.0, -3.0), direction=direction)
    px = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [36.0, 52.0]])
    phys = apply_matrix(grid.phys_from_px, px)
    expected = px * [2.0, 0.5] @ direction.T + [10.0, -3.0]
    np.testing.assert_allclose(phys, expected, atol=1e-12)
    np.testing.assert_allclose(apply_matrix(grid.px_from_phys, phys), px, atol=1e-10)
    np.testing.assert_allclose(
        grid.center, apply_matrix(grid.phys_from_px, [[18.0, 26.0]])[0]
    )


def test_grid_defaults_are_pixels() -> None:
    grid = Grid((37, 53))
    np.testing.assert_array_equal(grid.phys_from_px, np.eye(3))
    assert grid.spacing == (1.0, 1.0) and grid.origin == (0.0, 0.0)
    np.testing.assert_array_equal(grid.center, [18.0, 26.0])


@pytest.mark.parametrize(
    'kwargs',
    [
        {'spacing': (0.0, 1.0)},
        {'spacing': (-1.0, 1.0)},
        {'spacing': (np.nan, 1.0)},
        {'spacing': (1.0, np.inf)},
        {'spacing': (1.0, 1.0, 1.0)},
        {'origin': (0.0,)},
        {'origin': (np.nan, 0.0)},
        {'direction': [[1.0, 0.2], [0.0, 1.0]]},  # not orthonormal
        {'direction': [[2.0, 0.0], [0.0, 2.0]]},  # scaled
        {'direction': np.eye(3)},  # wrong size
    ],
)
def test_grid_rejects_invalid_geometry(kwargs) -> None:
    with pytest.raises(ValueError):
        Grid((37, 53), **kwargs)


def test_grid_points_are_corners_and_centre() -> None:
    points = grid_points((37, 53))
    assert points.shape == (5, 2)
    np.testing.assert_array_equal(points[-1], [18.0, 26.0])
    assert {tuple(p) for p in points[:-1]} == {(0, 0), (0, 52), (36, 0), (36, 52)}
    assert grid_points((4, 5, 6)).shape == (9, 3)


@pytest.mark.parametrize('shape', [(37, 53), (9, 37, 53)])
def test_corner_error_of_identical_matrices_is_zero(rng, shape) -> None:
    ndim = len(shape)
    matrix = (
        np.eye(ndim + 1)
        + 0.01 * _random_matrix(rng, ndim) * (np.arange(ndim + 1) < ndim)[:, None]
    )
    assert corner_error(matrix, matrix.copy(), shape) == 0.0


@pytest.mark.parametrize('shape', [(37, 53), (9, 37, 53)])
@pytest.mark.parametrize('axis', [0, -1])
def test_corner_error_of_a_one_pixel_shift_is_one(shape, axis) -> None:
    ndim = len(shape)
    offset = np.zeros(ndim)
    offset[axis] = 1.0
    shifted = homogeneous(np.eye(ndim), offset)
    assert corner_error(shifted, np.eye(ndim + 1), shape) == pytest.approx(
        1.0, abs=1e-12
    )


def test_corner_error_of_a_rotation_is_the_mean_corner_displacement() -> None:
    shape = (37, 53)
    centre = (np.array(shape) - 1) / 2
    a = np.deg2rad(1.0)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    matrix = homogeneous(rot, centre - rot @ centre)
    radius = np.linalg.norm(centre)  # every corner is this far from the centre
    expected = 4 * (2 * radius * np.sin(a / 2)) / 5  # the centre does not move
    assert corner_error(matrix, np.eye(3), shape) == pytest.approx(expected, rel=1e-9)
