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

Drag and drop: napari's own reader claims ``.tif``/``.tiff``/``.jp2`` too,
so napari asks which reader to use unless the user has a preference
(``settings.plugins.extension2reader``: the dialog's "remember" box, the
geo widget's *open dropped rasters here* box, or
:func:`prefer_for_drops`). Choosing napari-coreg for these extensions never
breaks other files: a TIFF or JPEG 2000 without georeferencing is handed to
napari's own reader (same layers as before), and only georeferenced files
open at map coordinates. As world axis 0 is the northing, the reader points the
current viewer's vertical axis up (``camera.orientation2d``) so that north is
up on screen. nodata pixels are excluded from the contrast limits; the
value is in the metadata for registration masks
(:func:`nodata_mask`). The contrast limits stretch the 0.5th percentile to
the 99.5th, capped at the median plus three times its distance to the 2nd
percentile, so that bright clouds do not leave the land dark.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    'DROP_PATTERNS',
    'METADATA_KEY',
    'SUFFIXES',
    'get_reader',
    'nodata_mask',
    'prefer_for_drops',
    'preferred_for_drops',
    'read_geo',
]

#: Layer metadata entry holding the georeferencing.
METADATA_KEY = 'geo'
SUFFIXES = ('.tif', '.tiff', '.jp2', '.j2k', '.vrt', '.img', '.ntf', '.hdr', '.dem')
#: Rasters with more pixels (per band) than this open lazily, multiscale.
MAX_IN_MEMORY = 4096 * 4096
#: Suffixes napari's own reader claims as well; non-georeferenced files with
#: these go to it (see the module notes).
SHARED_SUFFIXES = ('.tif', '.tiff', '.jp2', '.j2k')
#: File-name patterns :func:`prefer_for_drops` associates with this reader.
DROP_PATTERNS = tuple(f'*{suffix}' for suffix in SHARED_SUFFIXES)
PLUGIN = 'napari-coreg'


def get_reader(path: str | list[str]) -> Callable | None:
    """npe2 reader: ours for georeferenced rasters, napari's for plain TIFF/JP2.

    Returns None for anything else (and for a mix of georeferenced and plain
    files).
    """
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    if not paths:
        return None
    try:
        from napari_coreg.geo import is_georeferenced
    except ImportError:  # pragma: no cover - rasterio missing
        return None
    paths = [os.fspath(item) for item in paths]
    if not all(item.lower().endswith(SUFFIXES) for item in paths):
        return None
    georeferenced = [is_georeferenced(item) for item in paths]
    if all(georeferenced):
        return read_geo
    if not any(georeferenced) and all(
        item.lower().endswith(SHARED_SUFFIXES) for item in paths
    ):
        return _napari_reader(path)
    return None


def _napari_reader(path) -> Callable | None:
    """The reader of napari itself, for a file we do not georeference."""
    try:
        from napari_builtins.io import napari_get_reader
    except ImportError:  # pragma: no cover - napari without its builtins
        return None
    return napari_get_reader(path)


def preferred_for_drops() -> bool:
    """Whether dropped ``.tif``/``.jp2`` files open with this reader."""
    from napari.settings import get_settings

    prefs = get_settings().plugins.extension2reader
    return all(prefs.get(pattern) == PLUGIN for pattern in DROP_PATTERNS)


def prefer_for_drops(enable: bool = True) -> list[str]:
    """Open dropped GeoTIFF / JPEG 2000 files with this reader (or stop).

    Sets napari's reader preference (``settings.plugins.extension2reader``,
    saved with napari's settings and shown under Preferences > Plugins) for
    :data:`DROP_PATTERNS`. A pattern the user has associated with another
    plugin is left alone. Files without georeferencing still open through
    napari's own reader.

    Parameters
    ----------
    enable : bool
        True to associate the patterns with napari-coreg, False to remove
        napari-coreg's associations.

    Returns
    -------
    list of str
        The patterns now associated with napari-coreg.
    """
    from napari.settings import get_settings

    settings = get_settings().plugins
    prefs = dict(settings.extension2reader)
    for pattern in DROP_PATTERNS:
        if enable:
            prefs.setdefault(pattern, PLUGIN)
        elif prefs.get(pattern) == PLUGIN:
            del prefs[pattern]
    settings.extension2reader = prefs
    return [p for p in DROP_PATTERNS if prefs.get(p) == PLUGIN]


def _contrast(level, nodata) -> tuple[float, float] | None:
    sample = np.asarray(level)
    sample = sample if sample.ndim == 2 else sample[0]
    values = sample[np.isfinite(sample)] if sample.dtype.kind == 'f' else sample
    if nodata is not None:
        values = values[values != nodata]
    if values.size == 0:
        return None
    low, dark, median, high = np.percentile(values, [0.5, 2, 50, 99.5])
    # clouds, snow or glint can fill the bright end: a stretch that mirrors
    # the dark side around the median keeps the land visible under them
    high = min(high, median + 3 * (median - dark))
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
            getattr(viewer, 'scene', viewer).camera.orientation2d = ('up', 'right')
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
