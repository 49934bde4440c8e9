"""A coarse first estimate: whole-pixel offset on reduced-resolution scenes.

The tie-point windows measure shifts of up to about a quarter window; a
scene whose georeferencing is further off is first aligned at low
resolution (overviews, or GDAL's averaged reads) by the same tie-point
machinery on coarse windows (windows with nodata are skipped, so swath edges
do not count; the median resists clouds), and the fine windows then start
from there.

Conventions: offsets are target -> reference, in reference pixels of the
overlap grid (see :mod:`napari_coreg.geo.tiepoints`).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from .georef import Georef
from .raster import GeoRaster
from .tiepoints import measure_tie_points
from .windows import ArrayWindows, OverlapGrid, valid_pixels

__all__ = ['coarse_offset']

#: Longest side of the reduced overlap.
COARSE_SIZE = 512
#: Window of the coarse tie points (reduced pixels).
COARSE_WINDOW = 64
#: Least reduction: coarse windows then span four fine windows' worth of shift.
MIN_FACTOR = 4
#: Fewest valid coarse tie points for a coarse estimate.
MIN_POINTS = 3


def _decimated(source, band: int, window: tuple[slice, slice], factor: int):
    """A window of one band averaged ``factor`` times, and a sample of it.

    The sample (nearest pixel, or the block minimum in memory) tells nodata.
    """
    (r0, r1), (c0, c1) = (
        (window[0].start, window[0].stop),
        (window[1].start, window[1].stop),
    )
    shape = (max(1, (r1 - r0) // factor), max(1, (c1 - c0) // factor))
    if isinstance(source, GeoRaster):
        data = source.data if source.data.ndim == 2 else source.data[band - 1]
        part = np.zeros((shape[0] * factor, shape[1] * factor), data.dtype)
        lo = np.maximum([r0, c0], 0)
        hi = np.minimum([r0 + part.shape[0], c0 + part.shape[1]], data.shape)
        if np.all(hi > lo):
            part[lo[0] - r0 : hi[0] - r0, lo[1] - c0 : hi[1] - c0] = data[
                lo[0] : hi[0], lo[1] : hi[1]
            ]
        blocks = part.reshape(shape[0], factor, shape[1], factor).astype(np.float32)
        return blocks.mean(axis=(1, 3)), blocks.min(axis=(1, 3))
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.windows import Window

    with rasterio.open(source) as ds:
        win = Window(c0, r0, shape[1] * factor, shape[0] * factor)
        mean = ds.read(
            band, window=win, out_shape=shape, resampling=Resampling.average,
            boundless=True, fill_value=0,
        )  # fmt: skip
        low = ds.read(
            band, window=win, out_shape=shape, resampling=Resampling.nearest,
            boundless=True, fill_value=0,
        )  # fmt: skip
    return mean.astype(np.float32), low


def coarse_offset(
    reference: GeoRaster | str,
    target: GeoRaster | str,
    grid: OverlapGrid,
    target_georef: Georef,
    *,
    band: int = 1,
    ref_nodata: float | None = None,
    tgt_nodata: float | None = None,
    similarity: str = 'intensity',
) -> NDArray[np.float64] | None:
    """Whole-pixel offset (reference pixels) of the target, or None if unsure.

    Only for pixel-aligned scenes (``grid.exact``); the target's window is
    read where ``target_georef`` puts it.
    """
    if not grid.exact:
        return None
    rows, cols = grid.shape
    factor = max(MIN_FACTOR, math.ceil(max(rows, cols) / COARSE_SIZE))
    if min(rows, cols) // factor < 32:
        return None
    ref_mean, ref_low = _decimated(reference, band, grid.window, factor)
    off = grid.offset
    tgt_window = (
        slice(int(off[0]), int(off[0]) + rows),
        slice(int(off[1]), int(off[1]) + cols),
    )
    tgt_mean, tgt_low = _decimated(target, band, tgt_window, factor)
    from scipy import ndimage

    valid = valid_pixels(ref_low, ref_nodata) & valid_pixels(tgt_low, tgt_nodata)
    valid = ndimage.binary_erosion(valid, border_value=1)  # blended edge pixels
    size = min(COARSE_WINDOW, *valid.shape)
    if size < 32:
        return None
    windows = ArrayWindows(ref_mean, tgt_mean, valid, grid.georef)
    tie = measure_tie_points(
        windows, spacing=max(size // 2, 1), window=size, similarity=similarity
    )
    if tie.n_valid < MIN_POINTS:
        return None
    return tie.median_shift_px() * factor
