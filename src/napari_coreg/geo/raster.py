"""Read georeferenced rasters through rasterio (GeoTIFF/COG, JPEG 2000, VRT, ...).

rasterio is imported inside the functions (optional extra ``[geo]``), so
``import napari_coreg.geo`` stays light.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .georef import Georef

__all__ = [
    'GeoRaster',
    'RasterLevel',
    'is_georeferenced',
    'open_levels',
    'read_georef',
    'read_raster',
    'require_rasterio',
]


def require_rasterio():
    """Import rasterio, or say how to install it."""
    try:
        import rasterio
    except ImportError as error:  # pragma: no cover - depends on the install
        raise ImportError(
            'georeferenced rasters need rasterio: pip install "napari-coreg[geo]"'
        ) from error
    return rasterio


@dataclass(frozen=True, eq=False)
class GeoRaster:
    """Pixels and their georeferencing.

    Attributes
    ----------
    data : ndarray
        ``(rows, cols)`` for one band, ``(bands, rows, cols)`` otherwise.
    georef : Georef
        CRS, geotransform, nodata, band names, path.
    """

    data: NDArray
    georef: Georef

    @property
    def mask(self) -> NDArray[np.bool_]:
        """Pixels with data (``True``)."""
        return self.georef.valid_mask(self.data)


def _georef_from_dataset(ds, path: str | None) -> Georef:
    crs = ds.crs
    names = tuple(
        desc if desc else f'band {i + 1}' for i, desc in enumerate(ds.descriptions)
    )
    return Georef(
        shape=(ds.height, ds.width),
        geotransform=tuple(ds.transform.to_gdal()),
        crs_wkt=crs.to_wkt() if crs else '',
        epsg=crs.to_epsg() if crs else None,
        nodata=ds.nodata,
        band_names=names,
        path=path,
        extra={'driver': ds.driver, 'dtype': ds.dtypes[0], 'count': ds.count},
    )


def _check_path(path: str | os.PathLike) -> str:
    path = os.fspath(path)
    if not Path(path).exists() and '://' not in path and not path.startswith('/vsi'):
        raise ValueError(f'raster {path!r} does not exist: check the path')
    return path


def is_georeferenced(path: str | os.PathLike) -> bool:
    """Whether GDAL opens ``path`` and finds a CRS or a real geotransform."""
    try:
        rasterio = require_rasterio()
    except ImportError:
        return False
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')  # NotGeoreferencedWarning
            with rasterio.open(os.fspath(path)) as ds:
                return ds.crs is not None or not ds.transform.is_identity
    except Exception:  # noqa: BLE001 - any GDAL failure means "not ours"
        return False


def read_georef(path: str | os.PathLike) -> Georef:
    """The georeferencing of a raster file without reading its pixels."""
    rasterio = require_rasterio()
    path = _check_path(path)
    with rasterio.open(path) as ds:
        return _georef_from_dataset(ds, path)


def read_raster(
    path: str | os.PathLike,
    *,
    bands: int | list[int] | None = None,
    window: tuple[slice, slice] | None = None,
    overview: int | None = None,
) -> GeoRaster:
    """Read a raster file (or a window of it) with its georeferencing.

    Parameters
    ----------
    path : str or path-like
        Any raster GDAL opens.
    bands : int or list of int, optional
        1-based band index (gives a 2D array) or indices (3D); default all
        bands (2D when there is one).
    window : tuple of slice, optional
        ``(rows, cols)`` slices in pixels of the full-resolution raster.
    overview : int, optional
        Read overview level ``overview`` (0 = the first, coarsest-but-one
        reduction, as GDAL's ``OVERVIEW_LEVEL``) instead of full resolution.

    Returns
    -------
    GeoRaster
        The pixels and a :class:`Georef` for exactly those pixels (the
        geotransform follows the window and the overview).

    Raises
    ------
    ValueError
        When the file is missing, a band does not exist or the window is
        outside the raster.
    """
    rasterio = require_rasterio()
    from rasterio.windows import Window

    path = _check_path(path)
    kwargs = {} if overview is None else {'overview_level': int(overview)}
    with rasterio.open(path, **kwargs) as ds:
        georef = _georef_from_dataset(ds, path)
        indexes = list(range(1, ds.count + 1)) if bands is None else bands
        listed = [indexes] if isinstance(indexes, int) else list(indexes)
        bad = [b for b in listed if not 1 <= b <= ds.count]
        if bad:
            raise ValueError(
                f'{path} has {ds.count} band(s): band index {bad} does not exist '
                '(bands are 1-based)'
            )
        win = None
        if window is not None:
            rows = range(ds.height)[window[0]]
            cols = range(ds.width)[window[1]]
            if not len(rows) or not len(cols):
                raise ValueError(
                    f'window {window} is outside the raster of shape '
                    f'{(ds.height, ds.width)}: pass slices inside it'
                )
            win = Window(cols.start, rows.start, len(cols), len(rows))
        if isinstance(indexes, list) and len(indexes) == 1 and bands is None:
            indexes = 1
        data = ds.read(indexes, window=win)
        names = tuple(georef.band_names[i - 1] for i in listed)
        if win is not None:
            transform = ds.window_transform(win)
            georef = replace(
                georef,
                shape=data.shape[-2:],
                geotransform=tuple(transform.to_gdal()),
                band_names=names,
            )
        elif bands is not None:
            georef = replace(georef, band_names=names)
    return GeoRaster(data=data, georef=georef)


def _average():
    from rasterio.enums import Resampling

    return Resampling.average


def _nearest():
    from rasterio.enums import Resampling

    return Resampling.nearest


class RasterLevel:
    """A lazy array over one resolution level of a raster file.

    Indexing reads only the requested window (rasterio, one open per read,
    so it is safe from napari's worker threads). Shape is ``(rows, cols)``
    for one band, ``(bands, rows, cols)`` otherwise.
    """

    def __init__(
        self, path: str, overview: int | None, bands: list[int], factor: int = 1
    ):
        rasterio = require_rasterio()
        self.path = path
        self.overview = overview
        self.bands = list(bands)
        self.factor = int(factor)
        with rasterio.open(path, **self._open_kwargs()) as ds:
            rows, cols = -(-ds.height // self.factor), -(-ds.width // self.factor)
            self.dtype = np.dtype(ds.dtypes[0])
        self.shape = (rows, cols) if len(bands) == 1 else (len(bands), rows, cols)
        self.ndim = len(self.shape)
        self.size = int(np.prod(self.shape))

    def _open_kwargs(self) -> dict[str, Any]:
        return {} if self.overview is None else {'overview_level': self.overview}

    def __len__(self) -> int:
        return self.shape[0]

    def __array__(self, dtype=None, copy=None) -> NDArray:
        array = self[(slice(None),) * self.ndim]
        return array if dtype is None else array.astype(dtype)

    def __getitem__(self, key) -> NDArray:
        from rasterio.windows import Window

        rasterio = require_rasterio()
        key = key if isinstance(key, tuple) else (key,)
        if any(k is Ellipsis for k in key):
            i = next(j for j, k in enumerate(key) if k is Ellipsis)
            fill = (slice(None),) * (self.ndim - len(key) + 1)
            key = key[:i] + fill + key[i + 1 :]
        key = key + (slice(None),) * (self.ndim - len(key))
        band_key = key[0] if self.ndim == 3 else 0
        spatial = key[-2:]
        ranges = []
        post = []
        for k, n in zip(spatial, self.shape[-2:], strict=True):
            if isinstance(k, slice):
                r = range(n)[k]
                lo, hi = (min(r), max(r) + 1) if len(r) else (0, 0)
                ranges.append((lo, hi))
                post.append(slice(None, None, r.step) if len(r) else slice(0, 0))
            else:
                i = int(np.arange(n)[k])
                ranges.append((i, i + 1))
                post.append(0)
        bands = np.asarray(self.bands)[band_key]
        (r0, r1), (c0, c1) = ranges
        if r1 <= r0 or c1 <= c0:
            out = np.zeros(
                (np.size(bands), max(r1 - r0, 0), max(c1 - c0, 0)), self.dtype
            )
        else:
            f = self.factor
            with rasterio.open(self.path, **self._open_kwargs()) as ds:
                # a decimated level: GDAL averages f x f blocks on the fly
                window = Window(c0 * f, r0 * f, (c1 - c0) * f, (r1 - r0) * f)
                window = window.intersection(Window(0, 0, ds.width, ds.height))
                out = ds.read(
                    [int(b) for b in np.atleast_1d(bands)],
                    window=window,
                    out_shape=(np.size(bands), r1 - r0, c1 - c0),
                    resampling=_average() if f > 1 else _nearest(),
                )
        # steps relative to the window start
        post = [slice(None, None, p.step) if isinstance(p, slice) else p for p in post]
        out = out[(slice(None), *post)]
        return out if np.ndim(bands) else out[0]


def open_levels(
    path: str | os.PathLike, *, min_size: int = 256
) -> tuple[list[RasterLevel], list[float], Georef]:
    """Lazy resolution levels of a raster: full resolution, then its overviews.

    Without overviews in the file, levels read with GDAL's on-the-fly
    averaging (factors 2, 4, ...) stand in; nothing is written.

    Parameters
    ----------
    path : str or path-like
        A raster file.
    min_size : int
        Overviews whose smaller side is below this are left out.

    Returns
    -------
    levels : list of RasterLevel
        Full resolution first.
    factors : list of float
        Downsampling factor of each level relative to full resolution.
    georef : Georef
        Georeferencing of the full-resolution level.
    """
    rasterio = require_rasterio()
    path = _check_path(path)
    with rasterio.open(path) as ds:
        georef = _georef_from_dataset(ds, path)
        overviews = ds.overviews(1)
        bands = list(range(1, ds.count + 1))
        full = (ds.height, ds.width)
    levels = [RasterLevel(path, None, bands)]
    factors = [1.0]
    for i, _ in enumerate(overviews):
        level = RasterLevel(path, i, bands)
        if min(level.shape[-2:]) < min_size:
            break
        levels.append(level)
        factors.append(full[0] / level.shape[-2])
    if not overviews:  # decimated reads stand in for missing overviews
        factor = 2
        while min(full) // factor >= min_size:
            levels.append(RasterLevel(path, None, bands, factor))
            factors.append(float(factor))
            factor *= 2
    return levels, factors, georef
