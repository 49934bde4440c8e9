"""Views that show how well a result fits: checkerboard and difference layers.

Pure functions on a layer list (no Qt). Both views are computed on the fixed
grid, from the fixed image and the moving image resampled with the result,
each scaled to [0, 1] by its 1st and 99th percentiles, and are placed where
the fixed layer is: a checkerboard alternates tiles of the two images (edges
that continue across tiles mean a good fit); the difference is
``|moving - fixed|`` (dark where they agree).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from ._output import fixed_placement, write_output
from ._records import PAIR_KEY, find_output, output_id
from ._request import Request, gray_image, resample_like

__all__ = ['VIEWS', 'checkerboard', 'difference', 'hide_view', 'show_view']

#: The views, by the name their layer ends with.
VIEWS = ('checkerboard', 'difference')


def _unit(image: NDArray) -> NDArray[np.float32]:
    image = np.asarray(image, dtype=np.float32)
    finite = image[np.isfinite(image)]
    if finite.size == 0:
        return np.zeros_like(image)
    low, high = np.percentile(finite, [1, 99])
    scaled = (image - low) / max(float(high - low), 1e-12)
    return np.clip(np.nan_to_num(scaled), 0, 1).astype(np.float32)


def checkerboard(fixed: NDArray, aligned: NDArray, tiles: int = 8) -> NDArray:
    """Alternate square tiles of ``fixed`` and ``aligned`` (same shape).

    Parameters
    ----------
    fixed, aligned : ndarray
        Grey images on the same grid.
    tiles : int
        Tiles along the longest axis.

    Returns
    -------
    ndarray of float32
        Values in [0, 1].
    """
    fixed, aligned = _unit(fixed), _unit(aligned)
    size = max(1, max(fixed.shape) // tiles)
    parity = sum(np.indices(fixed.shape) // size) % 2
    return np.where(parity == 0, fixed, aligned)


def difference(fixed: NDArray, aligned: NDArray) -> NDArray:
    """``|aligned - fixed|`` of the two images scaled to [0, 1]."""
    return np.abs(_unit(aligned) - _unit(fixed))


def _view_data(request: Request, moving_from_fixed: NDArray, kind: str) -> NDArray:
    fixed = gray_image(request.fixed, request.fixed_data)
    moving = gray_image(request.moving, request.moving_data)
    aligned = resample_like(
        moving, moving_from_fixed, request.fixed.grid, request.moving.grid
    )
    if kind == 'checkerboard':
        return checkerboard(fixed, aligned)
    return difference(fixed, aligned)


def show_view(layers, request: Request, result, kind: str):
    """Add (or update) the layer ``"<moving> <kind>"`` for a result.

    Parameters
    ----------
    layers : napari LayerList
        The viewer's layers; the fixed and moving layers are found by name.
    request : Request
        The registration.
    result : RegistrationResult
        Its result.
    kind : {'checkerboard', 'difference'}
        Which view.

    Returns
    -------
    napari.layers.Image
        The view's layer.

    Raises
    ------
    ValueError
        An unknown ``kind``, or a moving layer no longer in the viewer.
    """
    if kind not in VIEWS:
        raise ValueError(f'kind must be one of {VIEWS}, got {kind!r}')
    by_name = {layer.name: layer for layer in layers}
    moving = by_name.get(request.moving_name)
    if moving is None:
        raise ValueError(
            f'the moving layer {request.moving_name!r} is no longer in the viewer'
        )
    data = _view_data(request, result.moving_from_fixed, kind)
    look = {
        'colormap': 'gray' if kind == 'checkerboard' else 'inferno',
        'contrast_limits': (0.0, 1.0),
        'blending': 'translucent',
    }
    return write_output(
        layers,
        moving,
        data,
        output=output_id(moving.name, kind),
        record={'view': kind, 'moving_layer': moving.name},
        record_key=PAIR_KEY,
        placement=fixed_placement(
            request.fixed.world_from_px, by_name.get(request.fixed_name), request.fixed
        ),
        name=f'{moving.name} {kind}',
        look=look,
    )


def hide_view(layers, moving_name: str, kind: str) -> None:
    """Remove the layer of a view, if it is there."""
    layer = find_output(layers, moving_name, output_id(moving_name, kind))
    if layer is not None:
        layers.remove(layer)
