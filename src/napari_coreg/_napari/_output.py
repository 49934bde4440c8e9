"""The one writer of layers the plugin makes: ``"<layer> registered"``.

A rerun updates the same layer in place (found by the ``'output_of'`` id in
its metadata), so the user's contrast, colormap and position in the layer
list survive; the layer the result was made from is never touched.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from ._geometry import LayerFrame, physical2world
from ._records import METADATA_KEY, find_output

__all__ = ['fixed_placement', 'layer_look', 'write_output']

#: Opacity of a resampled layer shown over its fixed image (translucent).
OVERLAY_OPACITY = 0.6


def fixed_placement(
    fixed_world_from_px: NDArray, fixed_layer, fixed_frame: LayerFrame | None
) -> dict[str, Any]:
    """Layer keyword arguments that put a fixed-grid array where fixed is."""
    if (
        fixed_layer is not None
        and fixed_frame is not None
        and fixed_layer.ndim == fixed_frame.grid.ndim
        and fixed_frame.level in (None, 0)
    ):
        return same_placement(fixed_layer)
    ndim = fixed_world_from_px.shape[0] - 1
    return {
        'scale': np.ones(ndim),
        'translate': np.zeros(ndim),
        'rotate': np.eye(ndim),
        'shear': np.zeros(ndim * (ndim - 1) // 2),
        'affine': fixed_world_from_px,
    }


def same_placement(layer) -> dict[str, Any]:
    """Layer keyword arguments that place an array exactly as ``layer``."""
    return {
        'scale': np.asarray(layer.scale),
        'translate': np.asarray(layer.translate),
        'rotate': np.asarray(layer.rotate),
        'shear': np.asarray(layer.shear),
        'affine': physical2world(layer),
    }


def layer_look(source, *, labels: bool = False, overlay: bool = False) -> dict:
    """Colormap, contrast, RGB flag and blending copied from ``source``.

    With ``overlay`` (a resampled image shown over its fixed image) an
    opaque or translucent source gives a translucent layer, so the fixed
    image still shows through; additive blending is kept as it is.
    """
    if labels:
        return {}
    rgb = bool(getattr(source, 'rgb', False))
    look: dict[str, Any] = {'rgb': rgb, 'blending': source.blending}
    if not rgb:
        look['colormap'] = source.colormap.name
        look['contrast_limits'] = source.contrast_limits
    if overlay and source.blending in ('opaque', 'translucent', 'translucent_no_depth'):
        look['blending'] = 'translucent'
        look['opacity'] = min(float(source.opacity), OVERLAY_OPACITY)
    return look


def write_output(
    layers,
    source,
    data: NDArray,
    *,
    output: str,
    record: dict,
    record_key: str,
    placement: dict[str, Any],
    labels: bool = False,
    overlay: bool = False,
    name: str | None = None,
    look: dict[str, Any] | None = None,
):
    """Add the layer ``"<source> registered"``, or update it in place.

    Parameters
    ----------
    layers : napari LayerList
        Where the layer is (or goes).
    source : napari layer
        The layer the data was made from (name, colormap, contrast).
    data : array
        The layer's new data.
    output : str
        Id of the output (see :func:`._records.output_id`).
    record : dict
        Stored under ``metadata[METADATA_KEY][record_key]``.
    record_key : str
        ``'registration'`` or ``'stack'``.
    placement : dict
        ``scale``, ``translate``, ``rotate``, ``shear``, ``affine``.
    labels : bool
        Write a Labels layer (else an Image).
    overlay : bool
        Shown over the fixed image: translucent (see :func:`layer_look`).
    name : str, optional
        Name of a new layer; default ``"<source> registered"``.
    look : dict, optional
        Colormap, contrast limits, blending of a new image layer; default
        copied from ``source``.

    Returns
    -------
    napari layer
        The written layer.
    """
    from napari.layers import Image, Labels

    meta = {METADATA_KEY: {'output_of': output, record_key: record}}
    existing = find_output(layers, source.name, output)
    if (
        existing is not None
        and type(existing).__name__ == ('Labels' if labels else 'Image')
        and getattr(existing, 'rgb', False) == getattr(source, 'rgb', False)
    ):
        existing.data = data
        for key, value in placement.items():
            setattr(existing, key, value)
        existing.metadata = {**existing.metadata, **meta}
        if look is not None and 'contrast_limits' in look:
            existing.contrast_limits = look['contrast_limits']
        elif not labels and not getattr(source, 'rgb', False):
            existing.contrast_limits = source.contrast_limits
        return existing
    if existing is not None:
        layers.remove(existing)
    name = name or f'{source.name} registered'
    kwargs = {'name': name, 'metadata': meta, **placement}
    if labels:
        layer = Labels(data, **kwargs)
    else:
        look = layer_look(source, overlay=overlay) if look is None else look
        layer = Image(data, **kwargs, **look)
    layers.append(layer)
    return layer
