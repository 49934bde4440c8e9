"""Georeferenced rasters in napari: an npe2 reader through rasterio.

GeoTIFF/COG, JPEG 2000, VRT and the other GDAL rasters open as Image layers
placed at their map coordinates (world = the file's CRS, numpy order
``(y, x)``):

- north-up: ``scale = (e, a)`` (negative row spacing when north is up) and
  ``translate`` = the map position of pixel ``(0, 0)``'s centre; rotated or
  sheared geotransforms go into ``affine``;
- ``metadata['geo']``: CRS (WKT and EPSG), GDAL geotransform, nodata, band
  names, path and shape (:meth:`napari_coreg.geo.Georef.to_metadata`);
- several bands open as channels (one layer per band, named by band);
- rasters above :data:`MAX_IN_MEMORY` pixels open lazily as multiscale
  layers from their overviews (or GDAL's on-the-fly averaged reads), so only
  the tiles on screen are read.

A TIFF without georeferencing is left to napari's own reader (the reader
returns ``None``). As world axis 0 is the northing, the reader points the
current viewer's vertical axis up (``camera.orientation2d``) so that north is
up on screen. nodata pixels are excluded from the contrast limits; the
value is in the metadata for registration masks
(:func:`nodata_mask`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ['METADATA_KEY', 'SUFFIXES', 'get_reader', 'nodata_mask', 'read_geo']

#: Layer metadata entry holding the georeferencing.
METADATA_KEY = 'geo'
SUFFIXES = ('.tif', '.tiff', '.jp2', '.j2k', '.vrt', '.img', '.ntf', '.hdr', '.dem')
#: Rasters with more pixels (per band) than this open lazily, multiscale.
MAX_IN_MEMORY = 4096 * 4096


def get_reader(path: str | list[str]) -> Callable | None:
    """npe2 reader: ours for georeferenced rasters, None for anything else."""
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    if not paths:
        return None
    try:
        from napari_coreg.geo import is_georeferenced
    except ImportError:  # pragma: no cover - rasterio missing
        return None
    for item in map(os.fspath, paths):
        if not item.lower().endswith(SUFFIXES) or not is_georeferenced(item):
            return None
    return read_geo


def _contrast(level, nodata) -> tuple[float, float] | None:
    sample = np.asarray(level)
    sample = sample if sample.ndim == 2 else sample[0]
    values = sample[np.isfinite(sample)] if sample.dtype.kind == 'f' else sample
    if nodata is not None:
        values = values[values != nodata]
    if values.size == 0:
        return None
    low, high = np.percentile(values, [0.5, 99.5])
    return (float(low), float(high)) if high > low else None


def _layer(path: str) -> tuple:
    from napari_coreg.geo import open_levels

    levels, _, georef = open_levels(path)
    pixels = georef.shape[0] * georef.shape[1]
    lazy = pixels > MAX_IN_MEMORY and len(levels) > 1
    data: Any = levels if lazy else np.asarray(levels[0])
    kwargs: dict[str, Any] = {
        'name': Path(path).stem,
        'metadata': {METADATA_KEY: georef.to_metadata()},
        **georef.napari_geometry(),
    }
    if lazy:
        kwargs['multiscale'] = True
    limits = _contrast(levels[-1] if lazy else data, georef.nodata)
    bands = levels[0].shape[0] if levels[0].ndim == 3 else 1
    if bands > 1:
        kwargs['channel_axis'] = 0
        kwargs['name'] = [f'{Path(path).stem} {n}' for n in georef.band_names]
        kwargs['blending'] = 'additive'
    elif limits is not None:
        kwargs['contrast_limits'] = limits
    return data, kwargs, 'image'


def read_geo(path: str | list[str]) -> list[tuple]:
    """Read georeferenced rasters into image layers at their map coordinates.

    Parameters
    ----------
    path : str or list of str
        Raster files GDAL opens, with georeferencing.

    Returns
    -------
    list of LayerDataTuple
        ``(data, {'scale', 'translate' | 'affine', 'metadata', 'name', ...},
        'image')`` as described in this module's notes.
    """
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    layers = [_layer(os.fspath(item)) for item in paths]
    if any(np.ravel(kw.get('scale', (1.0,)))[0] < 0 for _, kw, _ in layers):
        _north_up()
    return layers


def _north_up() -> None:
    """Point the viewer's vertical axis up, so north is up on screen.

    World axis 0 is the northing, which grows northwards; napari draws it
    growing downwards unless told otherwise.
    """
    try:
        import napari

        viewer = napari.current_viewer()
        if viewer is not None:
            viewer.camera.orientation2d = ('up', 'right')
    except Exception:  # noqa: BLE001 - display nicety only
        return


def nodata_mask(layer) -> np.ndarray | None:
    """Pixels with data of a layer opened by this reader (None if unknown).

    The registered level of a multiscale layer is its finest in-memory
    level; this returns the mask of ``layer.data`` (level 0 for a plain
    layer).
    """
    meta = layer.metadata.get(METADATA_KEY) if layer.metadata else None
    if not meta or meta.get('nodata') is None:
        return None
    data = layer.data[0] if getattr(layer, 'multiscale', False) else layer.data
    return np.asarray(data) != meta['nodata']
