"""Homogeneous matrices, pixel grids and points, in numpy axis order.

Conventions
-----------
- Axis order is numpy's: ``(row, col)`` in 2D, ``(plane, row, col)`` in 3D.
- Matrices are ``(D + 1, D + 1)`` float64, named ``a_from_b`` and composed right
  to left: ``a_from_c = a_from_b @ b_from_c``.
- ``moving_from_fixed`` maps a fixed *physical* point to the moving physical
  point that shows the same structure (ITK's direction, the pull-back used to
  resample moving onto the fixed grid).
- Physical coordinates are pixel indices (pixel centres at integers) unless a
  :class:`Grid` gives spacing, origin and direction.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    'Grid',
    'apply_matrix',
    'corner_error',
    'grid_points',
    'homogeneous',
    'reverse_axes',
]


def homogeneous(linear: ArrayLike, offset: ArrayLike) -> NDArray[np.float64]:
    """Build a ``(D + 1, D + 1)`` matrix from a ``(D, D)`` part and an offset."""
    linear = np.asarray(linear, dtype=np.float64)
    ndim = linear.shape[0]
    matrix = np.eye(ndim + 1)
    matrix[:ndim, :ndim] = linear
    matrix[:ndim, ndim] = np.asarray(offset, dtype=np.float64)
    return matrix


def reverse_axes(matrix: ArrayLike) -> NDArray[np.float64]:
    """Convert a homogeneous matrix between ``(row, col)`` and ``(x, y)`` order.

    The same function converts both ways (it is its own inverse).
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    ndim = matrix.shape[-1] - 1
    order = [*range(ndim - 1, -1, -1), ndim]
    return matrix[..., order, :][..., :, order]


def apply_matrix(matrix: ArrayLike, points: ArrayLike) -> NDArray[np.float64]:
    """Map ``(n, D)`` points through a homogeneous matrix (projective divide)."""
    matrix = np.asarray(matrix, dtype=np.float64)
    points = np.atleast_2d(np.asarray(points, dtype=np.float64))
    mapped = points @ matrix[:-1, :-1].T + matrix[:-1, -1]
    weight = points @ matrix[-1, :-1] + matrix[-1, -1]
    return mapped / weight[:, None]


def grid_points(shape: tuple[int, ...]) -> NDArray[np.float64]:
    """The corners and the centre of an image of ``shape``, in pixels."""
    corners = np.array(list(product(*[(0, n - 1) for n in shape])), np.float64)
    centre = (np.array(shape, np.float64) - 1) / 2
    return np.vstack([corners, centre])


def corner_error(
    estimate: ArrayLike, truth: ArrayLike, shape: tuple[int, ...]
) -> float:
    """Mean distance between corners and centre mapped by two transforms.

    Parameters
    ----------
    estimate, truth : array_like, shape (D + 1, D + 1)
        Two ``moving_from_fixed`` matrices in the same units.
    shape : tuple of int
        Shape of the fixed image whose corners and centre are mapped.

    Returns
    -------
    float
        Mean Euclidean distance, in the units of the matrices (pixels when
        no spacing was given).
    """
    points = grid_points(shape)
    diff = apply_matrix(estimate, points) - apply_matrix(truth, points)
    return float(np.linalg.norm(diff, axis=1).mean())


@dataclass(frozen=True, eq=False)
class Grid:
    """Where an image's pixels lie in physical space.

    Parameters
    ----------
    shape : tuple of int
        Image shape, numpy order.
    spacing : tuple of float, optional
        Distance between pixel centres along each axis (default 1).
    origin : tuple of float, optional
        Physical position of pixel ``(0, ..., 0)`` (default 0).
    direction : array_like, shape (D, D), optional
        Orthonormal matrix whose columns are the physical directions of the
        array axes, in numpy axis order (default identity).

    Notes
    -----
    ``phys_from_px = [direction @ diag(spacing) | origin]``, napari's
    ``data2physical`` for a layer with ``scale=spacing`` and
    ``translate=origin``.
    """

    shape: tuple[int, ...]
    spacing: tuple[float, ...] = ()
    origin: tuple[float, ...] = ()
    direction: NDArray[np.float64] | None = None

    def __post_init__(self) -> None:
        ndim = len(self.shape)
        spacing = tuple(float(s) for s in self.spacing) or (1.0,) * ndim
        origin = tuple(float(o) for o in self.origin) or (0.0,) * ndim
        direction = (  # a private copy: the caller's array stays writeable
            np.eye(ndim)
            if self.direction is None
            else np.array(self.direction, dtype=np.float64)
        )
        if len(spacing) != ndim or len(origin) != ndim:
            raise ValueError(
                f'spacing {spacing} and origin {origin} need one value per '
                f'image axis ({ndim} for shape {self.shape})'
            )
        if not all(np.isfinite(spacing)) or min(spacing) <= 0:
            raise ValueError(f'spacing must be positive and finite, got {spacing}')
        if not np.all(np.isfinite(origin)):
            raise ValueError(f'origin must be finite, got {origin}')
        if direction.shape != (ndim, ndim) or not np.allclose(
            direction @ direction.T, np.eye(ndim), atol=1e-6
        ):
            raise ValueError(f'direction must be an orthonormal {ndim}x{ndim} matrix')
        direction.setflags(write=False)
        object.__setattr__(self, 'shape', tuple(int(n) for n in self.shape))
        object.__setattr__(self, 'spacing', spacing)
        object.__setattr__(self, 'origin', origin)
        object.__setattr__(self, 'direction', direction)

    @property
    def ndim(self) -> int:
        """Number of spatial axes."""
        return len(self.shape)

    @property
    def phys_from_px(self) -> NDArray[np.float64]:
        """Homogeneous matrix from pixel indices to physical coordinates."""
        return homogeneous(self.direction * np.array(self.spacing), self.origin)

    @property
    def px_from_phys(self) -> NDArray[np.float64]:
        """Homogeneous matrix from physical coordinates to pixel indices."""
        return np.linalg.inv(self.phys_from_px)

    @property
    def center(self) -> NDArray[np.float64]:
        """Physical position of the image centre."""
        centre_px = (np.array(self.shape, np.float64) - 1) / 2
        return apply_matrix(self.phys_from_px, centre_px)[0]

    @property
    def extent(self) -> float:
        """Half the physical diagonal of the image (a length scale)."""
        sizes = (np.array(self.shape) - 1) * np.array(self.spacing)
        return max(float(np.linalg.norm(sizes)) / 2, 1e-12)

    @classmethod
    def from_dict(cls, data: dict) -> Grid:
        """The grid described by :meth:`to_dict` (direction included)."""
        return cls(
            tuple(data['shape']),
            tuple(data.get('spacing', ())),
            tuple(data.get('origin', ())),
            data.get('direction'),
        )

    def to_dict(self) -> dict:
        """JSON-able description (numpy axis order)."""
        return {
            'shape': list(self.shape),
            'spacing': list(self.spacing),
            'origin': list(self.origin),
            'direction': self.direction.tolist(),
        }
