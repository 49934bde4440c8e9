"""Save a georeferenced layer where it is shown now, as a new GeoTIFF.

A registration in napari moves a layer without touching its pixels (its
``affine``). :func:`write_layer_geotiff` writes that result: the layer's
pixels, byte for byte, under the geotransform of its current place in the
world (world = the map coordinates of its CRS, as the georeferenced reader
opens it). A translation moves the geotransform's origin; a rotation, scale
or shear goes into its rotation terms (a valid GeoTIFF; GIS software shows
it in place). Output names are never an input or an existing file:
:func:`free_path` picks the next free name.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np

from ._geo_io import METADATA_KEY
from ._geometry import data2world

__all__ = [
    'free_path',
    'layer_moved',
    'placed_georef',
    'suggested_path',
    'why_renamed',
    'write_layer_geotiff',
]


def free_path(path: str | os.PathLike) -> Path:
    """``path`` as a ``.tif`` name, or ``<stem>_2.tif``, ... if it exists."""
    path = Path(path)
    if path.suffix.lower() not in ('.tif', '.tiff'):
        path = path.with_name(path.name + '.tif')
    candidate, n = path, 1
    while candidate.exists():
        n += 1
        candidate = path.with_name(f'{path.stem}_{n}{path.suffix}')
    return candidate


def why_renamed(chosen: Path) -> str:
    """Why :func:`free_path` did not keep ``chosen`` (for the status line)."""
    if chosen.suffix.lower() not in ('.tif', '.tiff'):
        return 'not a GeoTIFF name'
    return 'it exists; inputs and existing files are never overwritten'


def suggested_path(layer) -> Path:
    """A free ``<layer>_coreg.tif`` beside the layer's file (else here)."""
    meta = layer.metadata[METADATA_KEY]
    folder = Path(meta['path']).parent if meta.get('path') else Path.cwd()
    if not os.access(folder, os.W_OK):
        folder = Path.cwd()
    return free_path(folder / f'{layer.name}_coreg.tif')


def _georef(layer):
    from napari_coreg.geo import Georef

    meta = (layer.metadata or {}).get(METADATA_KEY)
    if not meta:
        raise ValueError(
            f'layer {layer.name!r} has no georeferencing: open GeoTIFF or '
            'JPEG 2000 files with the napari-coreg reader'
        )
    return Georef.from_metadata(meta)


def placed_georef(layer):
    """The layer's georeferencing where it is shown now (level-0 pixels)."""
    georef = _georef(layer)
    if layer.ndim != 2:
        raise ValueError(
            f'layer {layer.name!r} has {layer.ndim} dimensions: a GeoTIFF is '
            'written from a 2D layer (one band)'
        )
    return georef.with_matrix(data2world(layer), georef.shape)


def layer_moved(layer) -> bool:
    """Whether the layer is shown away from where its file puts it."""
    georef = _georef(layer)
    return not np.allclose(
        placed_georef(layer).world_from_px,
        georef.world_from_px,
        rtol=0.0,
        atol=1e-6 * max(georef.pixel_size),
    )


def write_layer_geotiff(layer, path: str | os.PathLike) -> Path:
    """Write a georeferenced layer's pixels where it is shown now.

    Parameters
    ----------
    layer : napari.layers.Image
        A 2D layer opened by the georeferenced reader (``metadata['geo']``),
        possibly moved by a registration (its ``affine``).
    path : str or path-like
        A new ``.tif`` file: never the layer's file, never an existing file.

    Returns
    -------
    Path
        The file written.

    Raises
    ------
    ValueError
        For a layer without georeferencing, one that is not 2D, or a path
        that is an input or exists.
    """
    from napari_coreg.geo import write_geotiff

    georef = placed_georef(layer)
    if len(georef.band_names) > 1:  # one band of several, opened as channels
        georef = replace(georef, band_names=())
    data = layer.data[0] if getattr(layer, 'multiscale', False) else layer.data
    return write_geotiff(path, np.asarray(data), georef)
