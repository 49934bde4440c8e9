"""Window pairs of two scenes on the reference grid, for tie points.

:class:`ArrayWindows` cuts them from an in-memory overlap; :class:`FileWindows`
reads each pair from the files (datasets kept open, so GDAL's block cache
decodes every tile once), so a scene of any size is measured with memory
bounded by the windows of one batch.

Conventions: windows are addressed by their top-left pixel ``(row, col)`` on
the overlap grid (the reference's pixels, cut to the common area).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ..transforms import apply_matrix
from .georef import Georef

__all__ = ['ArrayWindows', 'FileWindows', 'OverlapGrid', 'overlap_grid', 'valid_pixels']


@dataclass(frozen=True)
class OverlapGrid:
    """Where two scenes overlap on the reference grid.

    Attributes
    ----------
    window : tuple of slice
        The overlap in reference pixels.
    georef : Georef
        Georeferencing of the overlap window.
    exact : bool
        Whether target pixels sit exactly on reference pixels (same size and
        orientation, whole-pixel offset): windows are then sliced, never
        resampled.
    offset : ndarray of int, shape (2,)
        Target pixel of overlap pixel ``(0, 0)`` (when ``exact``).
    """

    window: tuple[slice, slice]
    georef: Georef
    exact: bool
    offset: NDArray[np.int64]

    @property
    def shape(self) -> tuple[int, int]:
        """Shape of the overlap."""
        return self.georef.shape


def overlap_grid(ref_geo: Georef, tgt_geo: Georef) -> OverlapGrid:
    """The common area of two scenes (same CRS) in reference pixels.

    Raises
    ------
    ValueError
        When the scenes do not overlap (by at least 32 pixels).
    """
    ref_px_from_world = np.linalg.inv(ref_geo.world_from_px)
    ymin, xmin, ymax, xmax = tgt_geo.bounds()
    corners = apply_matrix(
        ref_px_from_world, [[ymin, xmin], [ymin, xmax], [ymax, xmin], [ymax, xmax]]
    )
    lo = np.maximum(np.floor(corners.min(axis=0) + 0.5), 0).astype(int)
    hi = np.minimum(np.ceil(corners.max(axis=0) - 0.5) + 1, ref_geo.shape).astype(int)
    if np.any(hi - lo < 32):
        raise ValueError(
            'the reference and target scenes do not overlap (or by less than '
            '32 pixels): check that both are georeferenced in the same place'
        )
    window = (slice(lo[0], hi[0]), slice(lo[1], hi[1]))
    m = ref_geo.world_from_px.copy()
    m[:2, 2] = apply_matrix(ref_geo.world_from_px, [lo])[0]
    georef = ref_geo.with_matrix(m, tuple(int(n) for n in hi - lo))
    tgt_from_win = np.linalg.inv(tgt_geo.world_from_px) @ m
    offset = tgt_from_win[:2, 2]
    exact = bool(
        np.allclose(tgt_from_win[:2, :2], np.eye(2), atol=1e-9)
        and np.allclose(offset, np.round(offset), atol=1e-6)
    )
    return OverlapGrid(window, georef, exact, np.round(offset).astype(np.int64))


def valid_pixels(data: NDArray, nodata: float | None) -> NDArray[np.bool_]:
    """Pixels that are finite and not ``nodata``."""
    valid = np.ones(data.shape, bool)
    if np.issubdtype(data.dtype, np.floating):
        valid &= np.isfinite(data)
    if nodata is not None:
        valid &= data != nodata
    return valid


class ArrayWindows:
    """Window pairs cut from an in-memory overlap (arrays on one grid)."""

    def __init__(self, reference: NDArray, target: NDArray, valid: NDArray, georef):
        self.reference, self.target, self.valid = reference, target, valid
        self.georef = georef
        self.shape = tuple(reference.shape)

    def pair(self, row: int, col: int, size: int):
        """``(reference, target, valid)`` windows at ``(row, col)``."""
        win = (slice(row, row + size), slice(col, col + size))
        return self.reference[win], self.target[win], self.valid[win]

    def __enter__(self):
        return self

    def __exit__(self, *_) -> None:
        return None


class FileWindows:
    """Window pairs read from two raster files on pixel-aligned grids.

    Parameters
    ----------
    reference, target : str
        Raster files whose grids coincide up to a whole-pixel offset
        (:attr:`OverlapGrid.exact`).
    grid : OverlapGrid
        Their overlap.
    band : int
        1-based band read from both.
    ref_nodata, tgt_nodata : float, optional
        Values without data.
    """

    def __init__(
        self,
        reference: str,
        target: str,
        grid: OverlapGrid,
        *,
        band: int = 1,
        ref_nodata: float | None = None,
        tgt_nodata: float | None = None,
    ):
        if not grid.exact:
            raise ValueError(
                'FileWindows needs pixel-aligned scenes: resample the target '
                'onto the reference grid first'
            )
        self.paths = (reference, target)
        self.grid = grid
        self.georef = grid.georef
        self.shape = grid.shape
        self.band = band
        self.nodata = (ref_nodata, tgt_nodata)
        self._datasets = None

    def __enter__(self):
        import rasterio

        self._datasets = [rasterio.open(p) for p in self.paths]
        return self

    def __exit__(self, *_) -> None:
        for ds in self._datasets or ():
            ds.close()
        self._datasets = None

    def _read(self, which: int, row: int, col: int, size: int):
        from rasterio.windows import Window

        ds = self._datasets[which]
        data = ds.read(
            self.band, window=Window(col, row, size, size), boundless=True, fill_value=0
        )
        valid = valid_pixels(data, self.nodata[which])
        inside = np.zeros_like(valid)
        r0, c0 = max(-row, 0), max(-col, 0)
        r1, c1 = min(ds.height - row, size), min(ds.width - col, size)
        if r1 > r0 and c1 > c0:
            inside[r0:r1, c0:c1] = True
        return data.astype(np.float32), valid & inside

    def pair(self, row: int, col: int, size: int):
        """``(reference, target, valid)`` windows at overlap pixel ``(row, col)``."""
        r0, c0 = self.grid.window[0].start, self.grid.window[1].start
        ref, ref_ok = self._read(0, row + r0, col + c0, size)
        off = self.grid.offset
        tgt, tgt_ok = self._read(1, row + int(off[0]), col + int(off[1]), size)
        return ref, tgt, ref_ok & tgt_ok
