"""Centres of mass, principal axes and a coarse rotation search (2D and 3D).

All in view pixels (isotropic, see :mod:`.views`); the builders return
``moving_px_from_fixed_px`` matrices that :func:`.views.physical` converts.
"""

from __future__ import annotations

from itertools import permutations, product

import numpy as np
from numpy.typing import NDArray

from ..transforms import homogeneous

__all__ = [
    'axis_rotations',
    'centre_of_mass',
    'principal_axes',
    'principal_axes_starts',
    'rotations_about',
]


def _weights(image: NDArray) -> NDArray[np.float64]:
    """Intensities above the background (the 5th percentile), as mass."""
    image = np.asarray(image, np.float64)
    return np.clip(image - np.percentile(image, 5), 0, None)


def centre_of_mass(image: NDArray) -> NDArray[np.float64]:
    """Intensity-weighted centre, pixels; the geometric centre for no mass."""
    mass = _weights(image)
    total = mass.sum()
    if not total > 0:
        return (np.array(image.shape, np.float64) - 1) / 2
    axes = np.indices(image.shape, dtype=np.float64).reshape(image.ndim, -1)
    return axes @ mass.ravel() / total


def principal_axes(image: NDArray) -> tuple[NDArray, NDArray, NDArray]:
    """Centre of mass, axes (columns, by decreasing spread) and spreads.

    Returns
    -------
    centre : ndarray, shape (D,)
    axes : ndarray, shape (D, D)
        Orthonormal, right-handed (determinant +1).
    spreads : ndarray, shape (D,)
        Standard deviations of the mass along the axes.
    """
    mass = _weights(image).ravel()
    centre = centre_of_mass(image)
    coords = np.indices(image.shape, dtype=np.float64).reshape(image.ndim, -1)
    offsets = coords - centre[:, None]
    total = max(mass.sum(), 1e-12)
    covariance = (offsets * mass) @ offsets.T / total
    values, vectors = np.linalg.eigh(covariance)
    order = np.argsort(values)[::-1]
    vectors = vectors[:, order]
    if np.linalg.det(vectors) < 0:
        vectors[:, -1] *= -1
    return centre, vectors, np.sqrt(np.clip(values[order], 0, None))


def _proper_sign_flips(ndim: int) -> list[NDArray]:
    """Diagonal sign matrices with determinant +1 (2 in 2D, 4 in 3D)."""
    flips = [np.diag(s) for s in product((1.0, -1.0), repeat=ndim)]
    return [f for f in flips if np.linalg.det(f) > 0]


def principal_axes_starts(
    fixed: NDArray, moving: NDArray, with_scale: bool
) -> list[NDArray[np.float64]]:
    """``moving_px_from_fixed_px`` that map fixed principal axes onto moving's.

    One matrix per proper sign choice of the axes (the sign of an axis is
    not defined by the moments), each about the centres of mass. With
    ``with_scale``, the mean ratio of spreads scales the map.
    """
    c_f, a_f, s_f = principal_axes(fixed)
    c_m, a_m, s_m = principal_axes(moving)
    scale = 1.0
    if with_scale and np.all(s_f > 0):
        scale = float(np.exp(np.mean(np.log(np.maximum(s_m, 1e-12) / s_f))))
    starts = []
    for flip in _proper_sign_flips(fixed.ndim):
        linear = scale * a_m @ flip @ a_f.T
        starts.append(homogeneous(linear, c_m - linear @ c_f))
    return starts


def rotations_about(
    rotations: list[NDArray], fixed_centre: NDArray, moving_centre: NDArray
) -> list[NDArray[np.float64]]:
    """Matrices rotating about ``fixed_centre`` onto ``moving_centre``."""
    return [homogeneous(r, moving_centre - r @ fixed_centre) for r in rotations]


def axis_rotations(ndim: int, proper: bool = True) -> list[NDArray[np.float64]]:
    """Every matrix that permutes and flips the axes.

    The proper rotations (4 in 2D, 24 in 3D; the coarse rotation search of volumes,
    identity first) or, with ``proper=False``, the mirrors (determinant -1).
    """
    found = []
    for order in permutations(range(ndim)):
        base = np.eye(ndim)[:, list(order)]
        for flip in product((1.0, -1.0), repeat=ndim):
            matrix = base * np.array(flip)
            if (np.linalg.det(matrix) > 0) == proper:
                found.append(matrix)
    found.sort(key=lambda r: -np.trace(r))
    return found
