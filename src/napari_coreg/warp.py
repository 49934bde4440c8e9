"""Resample an image through a transform onto another grid (numpy/scipy)."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage

from .transforms import Grid

__all__ = ['resample', 'pixel_matrix']


def pixel_matrix(
    moving_from_fixed: ArrayLike, fixed_grid: Grid, moving_grid: Grid
) -> NDArray[np.float64]:
    """``moving_px_from_fixed_px``: the physical transform between pixel grids."""
    return (
        moving_grid.px_from_phys
        @ np.asarray(moving_from_fixed)
        @ fixed_grid.phys_from_px
    )


def resample(
    moving: ArrayLike,
    moving_from_fixed: ArrayLike,
    fixed_grid: Grid,
    moving_grid: Grid | None = None,
    *,
    order: int = 1,
    fill: float = 0.0,
) -> NDArray:
    """Pull ``moving`` back onto ``fixed_grid`` through ``moving_from_fixed``.

    Parameters
    ----------
    moving : array_like, shape moving_grid.shape (+ channels)
        Image to resample; trailing axes beyond the grid are channels and
        are resampled one by one.
    moving_from_fixed : array_like, shape (D + 1, D + 1)
        Physical transform from fixed to moving points (projective allowed).
    fixed_grid : Grid
        Output grid.
    moving_grid : Grid, optional
        Geometry of ``moving`` (default: pixels).
    order : int
        Spline order: 0 nearest (labels), 1 linear.
    fill : float
        Value outside ``moving``.

    Returns
    -------
    ndarray
        ``fixed_grid.shape`` plus the channel axes, in ``moving``'s dtype
        for ``order=0`` and float32 otherwise.
    """
    moving = np.asarray(moving)
    ndim = fixed_grid.ndim
    moving_grid = moving_grid or Grid(moving.shape[:ndim])
    matrix = pixel_matrix(moving_from_fixed, fixed_grid, moving_grid)
    dtype = moving.dtype if order == 0 else np.float32
    channels = moving.shape[ndim:]
    flat = moving.reshape(*moving.shape[:ndim], -1)
    out = np.empty((*fixed_grid.shape, flat.shape[-1]), dtype=dtype)
    affine = np.allclose(matrix[-1], np.eye(ndim + 1)[-1])
    coords = None if affine else _projective_coordinates(matrix, fixed_grid.shape)
    for c in range(flat.shape[-1]):
        image = flat[..., c] if order == 0 else flat[..., c].astype(np.float32)
        if affine:
            out[..., c] = ndimage.affine_transform(
                image,
                matrix,
                output_shape=fixed_grid.shape,
                order=order,
                mode='constant',
                cval=fill,
            )
        else:
            out[..., c] = ndimage.map_coordinates(
                image, coords, order=order, mode='constant', cval=fill
            ).reshape(fixed_grid.shape)
    return out.reshape(*fixed_grid.shape, *channels)


def _projective_coordinates(matrix: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    ndim = len(shape)
    grid = np.indices(shape, dtype=np.float64).reshape(ndim, -1)
    homog = matrix @ np.vstack([grid, np.ones(grid.shape[1])])
    return homog[:ndim] / homog[ndim]
