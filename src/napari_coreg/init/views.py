"""Isotropic working copies of the images that the initialisers look at.

Every initialiser works in the pixels of a *view*: the image resampled onto
a grid with the same spacing along every axis (and the same spacing for
fixed and moving), aligned with the image's own axes. In a view, a rotation
or a scale in pixels is the same rotation or scale in physical units, and a
matrix found between two views converts to a physical ``moving_from_fixed``
with the views' ``phys_from_px``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from ..transforms import Grid, apply_matrix, homogeneous

__all__ = ['View', 'overlap_fraction', 'physical', 'view_pair', 'view_pixels']


@dataclass(frozen=True, eq=False)
class View:
    """An image resampled onto an isotropic grid.

    Attributes
    ----------
    image : ndarray, float32
    phys_from_px : ndarray, shape (D + 1, D + 1)
        Physical position of the view's pixels.
    """

    image: NDArray[np.float32]
    phys_from_px: NDArray[np.float64]

    @property
    def center(self) -> NDArray[np.float64]:
        """Centre of the view, in its pixels."""
        return (np.array(self.image.shape, np.float64) - 1) / 2


def _block_mean(image: NDArray, factors: NDArray) -> NDArray[np.float32]:
    """Mean over ``factors``-sized blocks (the trailing partial block dropped)."""
    crop = tuple(
        slice(0, (n // k) * k) for n, k in zip(image.shape, factors, strict=True)
    )
    image = image[crop]
    shape = []
    for n, k in zip(image.shape, factors, strict=True):
        shape += [n // k, k]
    axes = tuple(range(1, 2 * image.ndim, 2))
    return image.reshape(shape).mean(axis=axes, dtype=np.float32)


def _view(image: NDArray, grid: Grid, pixel: float) -> View:
    """``image`` (on ``grid``) resampled to square pixels of size ``pixel``."""
    image = np.asarray(image, np.float32)
    step = pixel / np.array(grid.spacing)  # image pixels per view pixel
    ndim = grid.ndim
    # block means first (cheap on large images), then a residual resampling
    blocks = np.maximum(1, np.floor(step).astype(int))
    blocks = np.minimum(blocks, np.maximum(1, np.array(image.shape) // 4))
    px_from_block = homogeneous(np.diag(blocks.astype(float)), (blocks - 1) / 2)
    if np.any(blocks > 1):
        image = _block_mean(image, blocks)
    residual = step / blocks
    shape = tuple(
        max(4, int(np.floor((n - 1) / r)) + 1)
        for n, r in zip(image.shape, residual, strict=True)
    )
    sigma = np.maximum(0.0, (residual - 1) / 2)
    if np.any(sigma > 0):
        image = ndimage.gaussian_filter(image, sigma, mode='nearest')
    if not np.allclose(residual, 1):
        image = ndimage.affine_transform(
            image, residual, output_shape=shape, order=1, mode='nearest'
        )
    block_from_view = homogeneous(np.diag(residual), np.zeros(ndim))
    phys_from_px = grid.phys_from_px @ px_from_block @ block_from_view
    return View(np.ascontiguousarray(image, np.float32), phys_from_px)


def view_pixels(fixed_grid: Grid, moving_grid: Grid, max_size: int) -> float:
    """Common pixel size of the two working views.

    Common pixel size such that neither view exceeds ``max_size`` pixels
    along any axis, and no view is finer than its image.
    """
    extents = [
        (np.array(g.shape) - 1) * np.array(g.spacing) for g in (fixed_grid, moving_grid)
    ]
    longest = max(float(e.max()) for e in extents)
    finest = min(min(g.spacing) for g in (fixed_grid, moving_grid))
    return max(longest / max(max_size - 1, 1), finest)


def view_pair(
    fixed: NDArray,
    moving: NDArray,
    fixed_grid: Grid,
    moving_grid: Grid,
    max_size: int,
) -> tuple[View, View]:
    """Views of both images with one common, isotropic pixel size."""
    pixel = view_pixels(fixed_grid, moving_grid, max_size)
    return _view(fixed, fixed_grid, pixel), _view(moving, moving_grid, pixel)


def physical(
    moving_px_from_fixed_px: NDArray, fixed: View, moving: View
) -> NDArray[np.float64]:
    """A matrix between view pixels as a physical ``moving_from_fixed``."""
    return (
        moving.phys_from_px
        @ np.asarray(moving_px_from_fixed_px, np.float64)
        @ np.linalg.inv(fixed.phys_from_px)
    )


def in_pixels(
    moving_from_fixed: NDArray, fixed: View, moving: View
) -> NDArray[np.float64]:
    """A physical ``moving_from_fixed`` as a matrix between view pixels."""
    return (
        np.linalg.inv(moving.phys_from_px)
        @ np.asarray(moving_from_fixed, np.float64)
        @ fixed.phys_from_px
    )


def overlap_fraction(
    moving_from_fixed: NDArray, fixed_grid: Grid, moving_grid: Grid, n: int = 16
) -> float:
    """Fraction of fixed points that the matrix maps inside moving.

    Fraction of a lattice of fixed points (``n`` per axis) that the matrix
    maps inside the moving image: a backend-neutral overlap estimate.
    """
    axes = [np.linspace(0, size - 1, n) for size in fixed_grid.shape]
    lattice = np.stack(np.meshgrid(*axes, indexing='ij'), -1).reshape(
        -1, fixed_grid.ndim
    )
    phys = apply_matrix(fixed_grid.phys_from_px, lattice)
    with np.errstate(divide='ignore', invalid='ignore'):
        moved = apply_matrix(
            moving_grid.px_from_phys @ np.asarray(moving_from_fixed, np.float64), phys
        )
    upper = np.array(moving_grid.shape) - 1
    inside = np.all((moved >= -0.5) & (moved <= upper + 0.5), axis=1)
    return float(inside.mean())
