"""Two scenes on one grid.

The overlap window of the reference and the target resampled onto it (exactly sliced
when the pixel grids coincide).

Conventions: see :mod:`napari_coreg.geo.georef`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ..transforms import apply_matrix
from .georef import Georef
from .raster import GeoRaster, read_georef, read_raster, require_rasterio
from .windows import overlap_grid, valid_pixels

__all__ = ['Overlap', 'RasterInput', 'as_source', 'auto_nodata', 'overlap_of']

#: A raster given as a file path, a GeoRaster, or ``(array, Georef)``.
RasterInput = str | os.PathLike | GeoRaster | tuple


def as_source(value: RasterInput, name: str) -> GeoRaster | str:
    """A path (read lazily later) or an in-memory :class:`GeoRaster`."""
    if isinstance(value, GeoRaster):
        return value
    if isinstance(value, (str, os.PathLike)):
        return os.fspath(value)
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], Georef):
        data = np.asarray(value[0])
        if data.shape[-2:] != value[1].shape:
            raise ValueError(
                f'{name} array has shape {data.shape} but its Georef says '
                f'{value[1].shape}: pass the matching Georef'
            )
        return GeoRaster(data=data, georef=value[1])
    raise ValueError(
        f'{name} must be a raster file path, a GeoRaster or (array, Georef), '
        f'got {type(value).__name__}'
    )


def georef_of(source: GeoRaster | str) -> Georef:
    """The georeferencing of a source without reading pixels."""
    return source.georef if isinstance(source, GeoRaster) else read_georef(source)


def auto_nodata(source: GeoRaster | str, georef: Georef) -> float | None:
    """The file's nodata, else 0 when a corner pixel is 0, else None.

    Satellite scenes often carry no nodata tag but fill the area outside the
    swath with 0 (as the Sentinel-2 test pair does).
    """
    if georef.nodata is not None:
        return georef.nodata
    rows, cols = georef.shape
    corners = [(0, 0), (0, cols - 1), (rows - 1, 0), (rows - 1, cols - 1)]
    values = []
    for r, c in corners:
        if isinstance(source, GeoRaster):
            band = source.data if source.data.ndim == 2 else source.data[0]
            values.append(band[r, c])
        else:
            window = (slice(r, r + 1), slice(c, c + 1))
            values.append(read_raster(source, bands=1, window=window).data[0, 0])
    return 0.0 if any(v == 0 for v in values) else None


@dataclass(frozen=True, eq=False)
class Overlap:
    """The reference and target on the reference grid, where both have data.

    Attributes
    ----------
    reference, target : ndarray, shape (rows, cols), float32
        Reference window and target resampled (or sliced) onto it.
    valid : ndarray of bool
        Pixels with data in both.
    georef : Georef
        Georeferencing of the window (reference CRS and pixel size).
    exact : bool
        Whether the target was sliced without resampling (same grid).
    """

    reference: NDArray[np.float32]
    target: NDArray[np.float32]
    valid: NDArray[np.bool_]
    georef: Georef
    exact: bool


def _band(data: NDArray, band: int) -> NDArray:
    return data if data.ndim == 2 else data[band - 1]


def _read_band(source, band: int, window=None) -> GeoRaster:
    if isinstance(source, GeoRaster):
        data = _band(source.data, band)
        georef = source.georef
        if window is not None:
            data = data[window]
            m = georef.world_from_px.copy()
            m[:2, 2] = apply_matrix(
                georef.world_from_px, [[window[0].start, window[1].start]]
            )[0]
            georef = georef.with_matrix(m, data.shape)
        return GeoRaster(data=data, georef=georef)
    return read_raster(source, bands=band, window=window)


def overlap_of(
    reference: GeoRaster | str,
    target: GeoRaster | str,
    *,
    band: int = 1,
    ref_nodata: float | None = None,
    tgt_nodata: float | None = None,
    target_georef: Georef | None = None,
) -> Overlap:
    """Cut the common area of two scenes (same CRS) on the reference grid.

    ``target_georef`` overrides the target's georeferencing (e.g. moved by a
    coarse first estimate).

    Raises
    ------
    ValueError
        When the scenes do not overlap.
    """
    ref_geo = georef_of(reference)
    tgt_geo = target_georef or georef_of(target)
    grid = overlap_grid(ref_geo, tgt_geo)
    ref = _read_band(reference, band, grid.window)
    win_geo = ref.georef
    exact, offset = grid.exact, grid.offset
    shape = win_geo.shape
    if exact:
        off = offset
        t_lo = np.maximum(off, 0)
        t_hi = np.minimum(off + np.array(shape), tgt_geo.shape)
        tgt = np.zeros(shape, np.float32)
        valid_t = np.zeros(shape, bool)
        if np.all(t_hi > t_lo):
            t_win = (slice(t_lo[0], t_hi[0]), slice(t_lo[1], t_hi[1]))
            part = _read_band(target, band, t_win).data
            o_win = (
                slice(t_lo[0] - off[0], t_hi[0] - off[0]),
                slice(t_lo[1] - off[1], t_hi[1] - off[1]),
            )
            tgt[o_win] = part
            valid_t[o_win] = valid_pixels(part, tgt_nodata)
    else:
        tgt, valid_t = _warp_onto(target, band, tgt_geo, win_geo, tgt_nodata)
    ref_data = ref.data.astype(np.float32)
    valid = valid_pixels(ref.data, ref_nodata) & valid_t
    return Overlap(
        reference=ref_data, target=tgt, valid=valid, georef=win_geo, exact=bool(exact)
    )


def _warp_onto(
    source, band: int, src_geo: Georef, dst_geo: Georef, nodata: float | None
) -> tuple[NDArray[np.float32], NDArray[np.bool_]]:
    """Bilinear resampling of one band onto another grid (rasterio.warp)."""
    require_rasterio()
    from affine import Affine
    from rasterio.crs import CRS
    from rasterio.warp import Resampling, reproject

    data = _read_band(source, band).data.astype(np.float32)
    if nodata is not None:
        data = np.where(data == nodata, np.nan, data)
    out = np.full(dst_geo.shape, np.nan, np.float32)
    # rasters without a CRS share a placeholder one (a pure affine resampling)
    crs = CRS.from_wkt(src_geo.crs_wkt) if src_geo.crs_wkt else CRS.from_epsg(3857)
    dst_crs = CRS.from_wkt(dst_geo.crs_wkt) if dst_geo.crs_wkt else crs
    reproject(
        data,
        out,
        src_transform=Affine.from_gdal(*src_geo.geotransform),
        src_crs=crs,
        src_nodata=np.nan,
        dst_transform=Affine.from_gdal(*dst_geo.geotransform),
        dst_crs=dst_crs,
        dst_nodata=np.nan,
        resampling=Resampling.bilinear,
    )
    valid = np.isfinite(out)
    return np.where(valid, out, 0).astype(np.float32), valid
