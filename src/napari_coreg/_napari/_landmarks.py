"""Landmark residuals: how far paired points end up from each other.

The user clicks the same structures in two Points layers, one on the fixed
image and one on the moving image (in the same order). After a registration,
each moving landmark is carried along with the moving image; its distance to
its fixed landmark, in world units, is the residual. Pure functions (no Qt).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from ..transforms import apply_matrix
from ._geometry import data2world, spatial_block
from ._request import Request, world_from_moving_physical

__all__ = [
    'landmark_reason',
    'landmark_reasons',
    'landmark_residuals',
    'landmarks_world',
]


def landmarks_world(
    fixed_points, moving_points, ndim: int
) -> tuple[NDArray, NDArray] | None:
    """World coordinates (last ``ndim`` axes) of two paired Points layers.

    Parameters
    ----------
    fixed_points, moving_points : napari.layers.Points or None
        The same structures clicked in the same order on each image; both
        ``None``: no landmarks.
    ndim : int
        Spatial dimensions registered.

    Returns
    -------
    tuple of ndarray, shape (n, ndim), or None
        Fixed and moving landmarks.

    Raises
    ------
    ValueError
        If only one layer is given, or they hold different numbers of
        points, or none.
    """
    if fixed_points is None and moving_points is None:
        return None
    if fixed_points is None or moving_points is None:
        raise ValueError(
            'landmarks: choose a Points layer for both the fixed and the moving '
            'image (or none for either)'
        )
    world = []
    for layer in (fixed_points, moving_points):
        if layer.ndim < ndim:
            raise ValueError(
                f'landmarks: {layer.name!r} is {layer.ndim}D but the images are '
                f'registered in {ndim}D: add the points in a {ndim}D Points layer'
            )
        data = np.asarray(layer.data, dtype=np.float64).reshape(-1, layer.ndim)
        points = apply_matrix(data2world(layer), data)
        world.append(points[:, -ndim:])
    fixed, moving = world
    if len(fixed) != len(moving) or len(fixed) == 0:
        raise ValueError(
            f'landmarks: {fixed_points.name!r} has {len(fixed)} points and '
            f'{moving_points.name!r} has {len(moving)}; click the same '
            'structures, in the same order, in both layers'
        )
    return fixed, moving


def landmark_residuals(
    request: Request, moving_from_fixed: NDArray, fixed: NDArray, moving: NDArray
) -> NDArray[np.float64]:
    """Distance from each fixed landmark to where its moving landmark is shown.

    Parameters
    ----------
    request : Request
        The registration (where the layers were shown before it).
    moving_from_fixed : ndarray
        Its result.
    fixed, moving : ndarray, shape (n, ndim)
        Landmarks in world coordinates, as clicked before the registration.

    Returns
    -------
    ndarray, shape (n,)
        Residuals in world units.
    """
    ndim = request.ndim
    world_before = spatial_block(request.moving_affine_before, ndim)
    world_after = world_from_moving_physical(
        request.fixed.world_from_reg,
        moving_from_fixed,
        request.moving.reg_from_physical,
    )
    shown = apply_matrix(world_after @ np.linalg.inv(world_before), moving)
    return np.linalg.norm(shown - fixed, axis=1)


def landmark_reasons(request, result, landmarks) -> tuple[str, ...]:
    """The verdict line on landmarks of a result, or ``()`` without landmarks."""
    if result is None or request is None or landmarks is None:
        return ()
    residuals = landmark_residuals(request, result.moving_from_fixed, *landmarks)
    return (landmark_reason(residuals),)


def landmark_reason(residuals: NDArray) -> str:
    """One line for the verdict: mean and largest residual."""
    return (
        f'landmarks: mean residual {np.mean(residuals):.3g}, largest '
        f'{np.max(residuals):.3g} (world units, {len(residuals)} pairs)'
    )
