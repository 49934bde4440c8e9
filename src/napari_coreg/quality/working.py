"""A small copy of a registered pair on which the verdict's evidence is computed.

The evidence (null distribution, curvature, a Gauss-Newton re-registration)
needs many resamplings; on a block-averaged copy of about ``TARGET_SIZE``
pixels per side they cost milliseconds whatever the input size.

Conventions: numpy axis order; ``matrix`` is ``moving_px_from_fixed_px`` of
the working copies (pixel centres at integers); a working pixel ``i`` covers
full pixels ``s i ... s i + s - 1``, its centre is ``s i + (s - 1) / 2``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage

from ..inputs import luminance, normalise_intensities
from ..transforms import Grid
from ..warp import pixel_matrix

__all__ = ['WorkingPair', 'block_mean', 'working_pair', 'warp_valid']

#: Longest side of the working copies (2D, 3D).
TARGET_SIZE = {2: 128, 3: 48}


def block_mean(image: NDArray, factor: int) -> NDArray[np.float32]:
    """Average non-overlapping blocks of ``factor`` pixels per axis.

    Trailing pixels that do not fill a block are dropped.
    """
    image = np.asarray(image, dtype=np.float32)
    if factor == 1:
        return image
    shape = [n // factor for n in image.shape]
    cropped = image[tuple(slice(0, n * factor) for n in shape)]
    split = [v for n in shape for v in (n, factor)]
    axes = tuple(range(1, 2 * len(shape), 2))
    return cropped.reshape(split).mean(axis=axes, dtype=np.float32)


def scale_matrix(factor: int, ndim: int) -> NDArray[np.float64]:
    """``full_px_from_working_px`` for a block factor."""
    matrix = np.eye(ndim + 1)
    matrix[:ndim, :ndim] *= factor
    matrix[:ndim, ndim] = (factor - 1) / 2
    return matrix


def warp_valid(
    image: NDArray, matrix: ArrayLike, shape: tuple[int, ...]
) -> NDArray[np.float32]:
    """Pull ``image`` back through ``matrix`` (linear); NaN outside ``image``."""
    matrix = np.asarray(matrix, dtype=np.float64)
    ndim = len(shape)
    if np.allclose(matrix[-1], np.eye(ndim + 1)[-1]):
        return ndimage.affine_transform(
            image, matrix, output_shape=shape, order=1, cval=np.nan
        )
    grid = np.indices(shape, dtype=np.float64).reshape(ndim, -1)
    homog = matrix @ np.vstack([grid, np.ones(grid.shape[1])])
    with np.errstate(divide='ignore', invalid='ignore'):
        coords = homog[:ndim] / homog[ndim]
    coords[~np.isfinite(coords)] = -1e9
    values = ndimage.map_coordinates(image, coords, order=1, cval=np.nan)
    return values.reshape(shape)


@dataclass(frozen=True, eq=False)
class WorkingPair:
    """Block-averaged, intensity-normalised copies of a registered pair.

    Attributes
    ----------
    fixed, moving : ndarray, float32
        Working copies, intensities scaled to about [0, 1].
    matrix : ndarray, shape (D + 1, D + 1)
        The result as ``moving_px_from_fixed_px`` of the working copies.
    fixed_factor, moving_factor : int
        Block sizes (full pixels per working pixel).
    full_shape : tuple of int
        Shape of the full-resolution fixed image.
    fixed_mask, moving_mask : ndarray of bool or None
        Working pixels that count (more than half of their block counted).
    """

    fixed: NDArray[np.float32]
    moving: NDArray[np.float32]
    matrix: NDArray[np.float64]
    fixed_factor: int
    moving_factor: int
    full_shape: tuple[int, ...]
    fixed_mask: NDArray[np.bool_] | None = None
    moving_mask: NDArray[np.bool_] | None = None

    @property
    def fixed_area(self) -> int:
        """Working pixels of the fixed image that count."""
        if self.fixed_mask is None:
            return self.fixed.size
        return int(self.fixed_mask.sum())

    @property
    def ndim(self) -> int:
        """Number of spatial dimensions."""
        return self.fixed.ndim

    def to_working(self, full_matrix_px: ArrayLike) -> NDArray[np.float64]:
        """A full-resolution ``moving_px_from_fixed_px`` in working pixels."""
        ndim = self.ndim
        return (
            np.linalg.inv(scale_matrix(self.moving_factor, ndim))
            @ np.asarray(full_matrix_px, dtype=np.float64)
            @ scale_matrix(self.fixed_factor, ndim)
        )

    def fixed_points(self, full_points: ArrayLike) -> NDArray[np.float64]:
        """Full-resolution fixed pixel positions in working pixels."""
        s = self.fixed_factor
        return (np.asarray(full_points, dtype=np.float64) - (s - 1) / 2) / s

    def warped(self, matrix: ArrayLike | None = None) -> NDArray[np.float32]:
        """Moving pulled onto the fixed working grid.

        Moving pulled onto the fixed working grid (NaN outside, or where
        a mask excludes the pixel).
        """
        matrix = self.matrix if matrix is None else matrix
        out = warp_valid(self.moving, matrix, self.fixed.shape)
        if self.moving_mask is not None:
            mask = self.moving_mask.astype(np.float32)
            out[~(warp_valid(mask, matrix, self.fixed.shape) > 0.5)] = np.nan
        if self.fixed_mask is not None:
            out[~self.fixed_mask] = np.nan
        return out


def _factor(shape: tuple[int, ...]) -> int:
    target = TARGET_SIZE.get(len(shape), 64)
    return max(1, int(round(max(shape) / target)))


def _mask(mask: NDArray | None, factor: int) -> NDArray[np.bool_] | None:
    if mask is None:
        return None
    return block_mean(np.asarray(mask, dtype=np.float32), factor) > 0.5


def working_pair(
    fixed: NDArray,
    moving: NDArray,
    moving_from_fixed: ArrayLike,
    fixed_grid: Grid,
    moving_grid: Grid,
    fixed_mask: NDArray | None = None,
    moving_mask: NDArray | None = None,
) -> WorkingPair:
    """Working copies of a registered pair (any dtype, channels last allowed).

    Masks (spatial shape, bool) keep the working pixels more than half of
    whose block counts.
    """
    ndim = fixed_grid.ndim
    fixed_factor = _factor(fixed_grid.shape)
    moving_factor = _factor(moving_grid.shape)
    fixed_gray = block_mean(luminance(np.asarray(fixed), ndim), fixed_factor)
    moving_gray = block_mean(luminance(np.asarray(moving), ndim), moving_factor)
    pair = WorkingPair(
        fixed=normalise_intensities(fixed_gray),
        moving=normalise_intensities(moving_gray),
        matrix=np.eye(ndim + 1),
        fixed_factor=fixed_factor,
        moving_factor=moving_factor,
        full_shape=tuple(fixed_grid.shape),
        fixed_mask=_mask(fixed_mask, fixed_factor),
        moving_mask=_mask(moving_mask, moving_factor),
    )
    full = pixel_matrix(moving_from_fixed, fixed_grid, moving_grid)
    return replace(pair, matrix=pair.to_working(full))
