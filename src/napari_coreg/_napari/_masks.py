"""Masks for a registration, from Labels or Shapes layers, on an image's grid.

A mask layer is matched to an image through world coordinates, so it may have
its own scale, translate or affine (or another multiscale level). Labels:
non-zero pixels count, mapped by nearest neighbour. Shapes (2D): the inside
of polygons, rectangles and ellipses counts; lines and paths are ignored.

The functions work on :class:`MaskSource` snapshots taken on the GUI thread,
so the rasterisation itself can run in a worker thread.

A layer's own nodata value (``metadata['geo']['nodata']``, set by the
georeferenced reader) masks its pixels automatically (:func:`nodata_value`,
:func:`with_nodata`), so a swath edge or a fill border never pulls the result.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..transforms import Grid, apply_matrix
from ..warp import resample
from ._geometry import LayerFrame, data2world, layer_frame, spatial_block

__all__ = ['MaskSource', 'mask_source', 'nodata_value', 'rasterise', 'with_nodata']

_AREA_SHAPES = {'polygon', 'rectangle', 'ellipse'}


@dataclass(frozen=True, eq=False)
class MaskSource:
    """What is needed to draw a mask layer onto an image grid."""

    name: str
    kind: str  # 'labels' | 'shapes'
    data: Any  # labels array (level data) or list of vertex arrays
    frame: LayerFrame | None  # labels only
    shape_types: tuple[str, ...] = ()
    world_from_data: NDArray[np.float64] | None = None  # shapes only


def mask_source(layer, ndim: int, world_point=None) -> MaskSource:
    """Snapshot a Labels or Shapes layer for :func:`rasterise`."""
    kind = type(layer).__name__.lower()
    if kind == 'labels':
        return MaskSource(
            name=layer.name,
            kind='labels',
            data=layer.data,
            frame=layer_frame(layer, ndim, world_point),
        )
    if kind == 'shapes':
        if ndim != 2:
            raise ValueError(
                f'shapes layer {layer.name!r} can mask 2D registrations only: '
                'for a 3D mask, use a Labels layer'
            )
        return MaskSource(
            name=layer.name,
            kind='shapes',
            data=[np.asarray(v, dtype=np.float64)[:, -2:] for v in layer.data],
            frame=None,
            shape_types=tuple(layer.shape_type),
            world_from_data=spatial_block(
                data2world(layer), 2, f'layer {layer.name!r}'
            ),
        )
    raise ValueError(
        f'layer {layer.name!r} is a {type(layer).__name__} layer: masks come '
        'from Labels or Shapes layers'
    )


def rasterise(source: MaskSource, image: LayerFrame) -> NDArray[np.bool_]:
    """Draw a mask onto the registered grid of ``image`` (True = counts)."""
    shape = image.grid.shape
    if source.kind == 'labels':
        labels = source.frame.array(source.data) != 0
        mask_px_from_image_px = (
            np.linalg.inv(source.frame.world_from_px) @ image.world_from_px
        )
        if labels.shape == shape and np.allclose(
            mask_px_from_image_px, np.eye(len(shape) + 1), atol=1e-6
        ):
            mask = labels
        else:
            mask = resample(
                labels.astype(np.uint8),
                mask_px_from_image_px,
                Grid(shape),
                Grid(labels.shape),
                order=0,
            ).astype(bool)
    else:
        image_px_from_shape = (
            np.linalg.inv(image.world_from_px) @ source.world_from_data
        )
        mask = np.zeros(shape, dtype=bool)
        rows, cols = np.indices(shape, dtype=np.float64)
        for vertices, kind in zip(source.data, source.shape_types, strict=True):
            if kind not in _AREA_SHAPES:
                continue
            mapped = apply_matrix(image_px_from_shape, vertices)
            if kind == 'ellipse':
                mask |= _ellipse(mapped, rows, cols)
            else:
                mask |= _polygon(mapped, shape)
    if not mask.any():
        raise ValueError(
            f'mask layer {source.name!r} does not cover the image: draw the '
            'mask over it (or choose no mask)'
        )
    return mask


def nodata_value(layer) -> float | None:
    """The nodata value in a layer's georeferencing metadata, if any."""
    from ._geo_io import METADATA_KEY

    meta = (layer.metadata or {}).get(METADATA_KEY) or {}
    value = meta.get('nodata')
    return None if value is None else float(value)


def with_nodata(
    mask: NDArray[np.bool_] | None,
    array: NDArray,
    nodata: float | None,
    spatial_ndim: int,
) -> NDArray[np.bool_] | None:
    """``mask`` (or every pixel) less the pixels of ``array`` equal to ``nodata``.

    A pixel with channels is nodata when all its channels are; NaN nodata
    matches NaN pixels.
    """
    if nodata is None:
        return mask
    array = np.asarray(array)
    has_data = ~np.isnan(array) if np.isnan(nodata) else array != nodata
    if has_data.ndim > spatial_ndim:
        has_data = has_data.any(axis=tuple(range(spatial_ndim, has_data.ndim)))
    if has_data.all():
        return mask
    return has_data if mask is None else mask & has_data


def _polygon(vertices: NDArray, shape: tuple[int, int]) -> NDArray[np.bool_]:
    from skimage.draw import polygon2mask

    return polygon2mask(shape, vertices)


def _ellipse(corners: NDArray, rows: NDArray, cols: NDArray) -> NDArray[np.bool_]:
    """Inside of the ellipse inscribed in a (mapped) bounding box of 4 corners."""
    centre = corners.mean(axis=0)
    half_u = (corners[1] - corners[0]) / 2
    half_v = (corners[3] - corners[0]) / 2
    basis = np.stack([half_u, half_v], axis=1)
    if abs(np.linalg.det(basis)) < 1e-12:
        return np.zeros(rows.shape, dtype=bool)
    offsets = np.stack([rows - centre[0], cols - centre[1]], axis=-1)
    st = offsets @ np.linalg.inv(basis).T
    return (st**2).sum(axis=-1) <= 1.0
