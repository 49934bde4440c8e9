"""Write the corrected target as a new GeoTIFF.

A translation only moves the geotransform (AROSICS-style): every pixel value
is copied unchanged. Other models and local corrections resample the target
onto the reference grid, block by block. Files are never overwritten unless
asked, and never over the input.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from ..transforms import apply_matrix
from .georef import Georef
from .raster import GeoRaster, require_rasterio

if TYPE_CHECKING:  # pragma: no cover
    from .align import GeoRegistration
    from .local import ShiftModel

__all__ = ['write_corrected', 'write_geotiff']

#: Rows copied per block (translation).
BLOCK_ROWS = 512
#: Tile size (pixels) of the resampled output, computed one at a time.
BLOCK = 512
#: Step (pixels) at which a displacement field is evaluated before linear
#: interpolation.
FIELD_STEP = 16


def _check_out(path: str | os.PathLike, inputs: list[str | None], overwrite: bool):
    path = Path(path)
    for item in inputs:
        if item is not None and path.resolve() == Path(item).resolve():
            raise ValueError(
                f'{path} is an input file: write the corrected scene to a new file'
            )
    if path.exists() and not overwrite:
        raise ValueError(
            f'{path} exists: choose a new file name (or pass overwrite=True)'
        )
    if path.suffix.lower() not in ('.tif', '.tiff'):
        raise ValueError(f'{path} is not a GeoTIFF name: use a .tif suffix')
    return path


def _profile(georef: Georef, count: int, dtype, compress: str) -> dict:
    from affine import Affine
    from rasterio.crs import CRS

    rows, cols = georef.shape
    profile = {
        'driver': 'GTiff',
        'height': rows,
        'width': cols,
        'count': count,
        'dtype': np.dtype(dtype).name,
        'transform': Affine.from_gdal(*georef.geotransform),
        'crs': CRS.from_wkt(georef.crs_wkt) if georef.crs_wkt else None,
        'nodata': georef.nodata,
        'compress': compress,
        'BIGTIFF': 'IF_SAFER',
    }
    if rows >= 256 and cols >= 256:
        profile.update(tiled=True, blockxsize=256, blockysize=256)
    return profile


def _finish(ds, georef: Georef, overviews: bool) -> None:
    from rasterio.enums import Resampling

    for i, name in enumerate(georef.band_names[: ds.count]):
        ds.set_band_description(i + 1, name)
    if overviews:
        factors = [f for f in (2, 4, 8, 16, 32) if min(ds.height, ds.width) // f >= 128]
        if factors:
            ds.build_overviews(factors, Resampling.average)
            ds.update_tags(ns='rio_overview', resampling='average')


def write_geotiff(
    path: str | os.PathLike,
    data: NDArray,
    georef: Georef,
    *,
    overwrite: bool = False,
    compress: str = 'deflate',
    overviews: bool = True,
) -> Path:
    """Write an array with its georeferencing as a new GeoTIFF.

    Parameters
    ----------
    path : str or path-like
        New ``.tif`` file (refused if it exists, unless ``overwrite``).
    data : ndarray, shape (rows, cols) or (bands, rows, cols)
        Pixels, written in their dtype.
    georef : Georef
        CRS, geotransform, nodata and band names.
    compress : str
        GDAL compression (``'deflate'``, ``'lzw'``, ``'none'``).
    overviews : bool
        Build internal overviews (average) for fast display.
    """
    rasterio = require_rasterio()
    path = _check_out(path, [georef.path], overwrite)
    data = np.asarray(data)
    bands = data if data.ndim == 3 else data[None]
    if bands.shape[-2:] != georef.shape:
        raise ValueError(
            f'data of shape {data.shape} does not match the georef shape '
            f'{georef.shape}: pass the Georef of these pixels'
        )
    profile = _profile(georef, bands.shape[0], bands.dtype, compress)
    with rasterio.open(path, 'w', **profile) as ds:
        ds.write(bands)
        _finish(ds, georef, overviews)
    return path


def _copy_moved(
    source: GeoRaster | str, georef: Georef, path: Path, compress: str, overviews: bool
) -> Path:
    """Copy every pixel unchanged under a new geotransform, block by block."""
    rasterio = require_rasterio()
    if isinstance(source, GeoRaster):
        return write_geotiff(
            path,
            source.data,
            georef,
            overwrite=True,
            compress=compress,
            overviews=overviews,
        )
    from rasterio.windows import Window

    with rasterio.open(source) as src:
        profile = _profile(georef, src.count, src.dtypes[0], compress)
        with rasterio.open(path, 'w', **profile) as dst:
            for row in range(0, src.height, BLOCK_ROWS):
                window = Window(0, row, src.width, min(BLOCK_ROWS, src.height - row))
                dst.write(src.read(window=window), window=window)
            _finish(dst, georef, overviews)
    return path


def _cast(values: NDArray, dtype) -> NDArray:
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        values = np.clip(np.rint(values), info.min, info.max)
    return values.astype(dtype)


def write_corrected(
    registration: GeoRegistration,
    path: str | os.PathLike,
    *,
    local: ShiftModel | None = None,
    overwrite: bool = False,
    compress: str = 'deflate',
    overviews: bool = True,
    order: int = 3,
    grid: str = 'reference',
) -> Path:
    """Write the corrected target scene as a new GeoTIFF.

    Parameters
    ----------
    registration : GeoRegistration
        The result of :func:`~napari_coreg.geo.register_rasters`.
    path : str or path-like
        New ``.tif`` file; never the input, and refused if it exists unless
        ``overwrite``.
    local : ShiftModel, optional
        A local correction (:func:`~napari_coreg.geo.fit_shift_model` on the
        registration's tie points) applied instead of the global model.
    compress : str
        GDAL compression.
    overviews : bool
        Build internal overviews.
    order : int
        Spline order of the resampling (1 linear, 3 cubic).
    grid : {'reference', 'target'}
        Output grid of a resampled correction: the reference's, or the
        target's own (same shape and geotransform, content moved).

    Returns
    -------
    Path
        The file written.

    Notes
    -----
    For a translation without ``local``, the pixels are copied byte for byte
    and only the geotransform moves (the target keeps its own grid). Else
    the target is resampled onto the reference grid (or its own, ``grid``),
    with the reference's CRS and the target's dtype and nodata.
    """
    require_rasterio()
    target_path = (
        registration.target_source
        if isinstance(registration.target_source, str)
        else None
    )
    path = _check_out(path, [target_path, registration.reference.path], overwrite)
    if registration.model == 'translation' and local is None:
        return _copy_moved(
            registration.target_source,
            registration.corrected_georef,
            path,
            compress,
            overviews,
        )
    if grid not in ('reference', 'target'):
        raise ValueError(f"grid must be 'reference' or 'target', got {grid!r}")
    return _resample_corrected(
        registration, path, local, compress, overviews, order, grid
    )


class _TargetReader:
    """Windows of the target's bands (from its file, or in memory)."""

    def __init__(self, source: GeoRaster | str):
        self.source = source
        self._ds = None
        if isinstance(source, GeoRaster):
            data = source.data
            self.bands = data if data.ndim == 3 else data[None]
            self.shape = self.bands.shape[-2:]
            self.dtype = self.bands.dtype
            self.count = self.bands.shape[0]
        else:
            import rasterio

            self._ds = rasterio.open(source)
            self.shape = (self._ds.height, self._ds.width)
            self.dtype = np.dtype(self._ds.dtypes[0])
            self.count = self._ds.count

    def read(self, r0: int, r1: int, c0: int, c1: int) -> NDArray:
        if self._ds is None:
            return self.bands[:, r0:r1, c0:c1]
        from rasterio.windows import Window

        return self._ds.read(window=Window(c0, r0, c1 - c0, r1 - r0))

    def close(self) -> None:
        if self._ds is not None:
            self._ds.close()


def _sample(
    reader: _TargetReader,
    src_px: NDArray,
    georef: Georef,
    order: int,
    nodata: float,
) -> NDArray:
    """Values of the target's bands at ``src_px`` ``(2, n)``, nodata outside."""
    from scipy import ndimage

    margin = order + 2
    lo = np.floor(src_px.min(axis=1)).astype(int) - margin
    hi = np.ceil(src_px.max(axis=1)).astype(int) + margin + 1
    lo = np.maximum(lo, 0)
    hi = np.minimum(hi, reader.shape)
    out = np.full((reader.count, src_px.shape[1]), nodata, dtype=reader.dtype)
    if np.any(hi - lo < 2):
        return out
    window = reader.read(lo[0], hi[0], lo[1], hi[1])
    local = src_px - lo[:, None]
    valid = georef.valid_mask(window).astype(np.float32)
    inside = ndimage.map_coordinates(valid, local, order=1, cval=0.0) > 0.999
    for b, band in enumerate(window):
        values = ndimage.map_coordinates(
            band.astype(np.float32), local, order=order, cval=0.0, mode='nearest'
        )
        out[b] = np.where(inside, _cast(values, reader.dtype), nodata)
    return out


def _resample_corrected(
    registration: GeoRegistration,
    path: Path,
    local: ShiftModel | None,
    compress: str,
    overviews: bool,
    order: int,
    grid: str,
) -> Path:
    """Resample the target onto an output grid, one tile at a time."""
    from scipy import ndimage

    rasterio = require_rasterio()
    from rasterio.windows import Window

    reader = _TargetReader(registration.target_source)
    tgt_geo = registration.target
    nodata = tgt_geo.nodata if tgt_geo.nodata is not None else 0
    on = registration.reference if grid == 'reference' else tgt_geo
    out_geo = Georef(
        shape=on.shape,
        geotransform=on.geotransform,
        crs_wkt=registration.reference.crs_wkt,
        epsg=registration.reference.epsg,
        nodata=nodata,
        band_names=tgt_geo.band_names,
    )
    ref_w = out_geo.world_from_px
    tgt_px_from_world = np.linalg.inv(tgt_geo.world_from_px)
    if local is not None:
        # tie points were measured where the coarse start put the target
        measured = registration.extra.get('measured_target_georef', tgt_geo)
        tgt_px_from_world = np.linalg.inv(measured.world_from_px)
    overlap_w = registration.extra['overlap_georef'].world_from_px
    ov_from_ref = np.linalg.inv(overlap_w) @ ref_w
    rows, cols = out_geo.shape
    profile = _profile(out_geo, reader.count, reader.dtype, compress)
    coarse = None
    if local is not None:
        coarse = local.coarse(registration.extra['overlap_georef'].shape, FIELD_STEP)
    try:
        with rasterio.open(path, 'w', **profile) as dst:
            for row in range(0, rows, BLOCK):
                for col in range(0, cols, BLOCK):
                    n, m = min(BLOCK, rows - row), min(BLOCK, cols - col)
                    rr, cc = np.meshgrid(
                        np.arange(row, row + n, dtype=np.float64),
                        np.arange(col, col + m, dtype=np.float64),
                        indexing='ij',
                    )
                    px = np.stack([rr.ravel(), cc.ravel()], axis=1)
                    if coarse is not None:
                        ov = apply_matrix(ov_from_ref, px)
                        shift = np.stack(
                            [
                                ndimage.map_coordinates(
                                    f, ov.T / FIELD_STEP, order=1, mode='nearest'
                                )
                                for f in coarse
                            ],
                            axis=1,
                        )
                        world = apply_matrix(overlap_w, ov - shift)
                    else:
                        world = apply_matrix(
                            registration.moving_from_fixed, apply_matrix(ref_w, px)
                        )
                    src_px = apply_matrix(tgt_px_from_world, world).T
                    block = _sample(reader, src_px, tgt_geo, order, nodata)
                    dst.write(
                        block.reshape(reader.count, n, m), window=Window(col, row, m, n)
                    )
            _finish(dst, out_geo, overviews)
    finally:
        reader.close()
    return path
