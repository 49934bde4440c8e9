"""Tie-point grids: windowed shifts between two scenes on one pixel grid.

Conventions: points are reference pixel centres ``(row, col)``; a shift
``(d_row, d_col)`` says that target content found at reference pixel ``p``
by its georeferencing truly lies at ``p + shift`` (target -> reference, as
:mod:`napari_coreg.geo.shifts`). Map shifts are the same in map units
``(dy, dx)``: true position = georeferenced position + shift.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .georef import Georef
from .shifts import measure_windows
from .windows import ArrayWindows, FileWindows

__all__ = ['TiePoints', 'measure_tie_points', 'reject_outliers']

#: Phase-correlation peak (standard deviations) below which a window has no
#: usable match (noise gives about 4-7).
MIN_PEAK = 10.0
#: Reliability below which a tie point is dropped.
MIN_RELIABILITY = 0.1


@dataclass(frozen=True, eq=False)
class TiePoints:
    """A grid of tie points with shifts, reliability and validity.

    Attributes
    ----------
    points : ndarray, shape (n, 2)
        Reference pixel ``(row, col)`` of each window centre.
    shift_px : ndarray, shape (n, 2)
        ``(d_row, d_col)`` target -> reference, reference pixels (NaN where
        nothing was measured).
    phase_px : ndarray, shape (n, 2)
        The phase-correlation estimate alone.
    ncc, ncc_before, peak, reliability : ndarray, shape (n,)
        See :class:`~napari_coreg.geo.shifts.WindowShift`.
    valid : ndarray of bool, shape (n,)
        Points kept after outlier rejection.
    reason : tuple of str
        Why a point was dropped (``''`` for valid points).
    georef : Georef
        Reference grid the points live on.
    window : int
        Window size in pixels.
    seconds : float
        Time spent measuring.
    """

    points: NDArray[np.float64]
    shift_px: NDArray[np.float64]
    phase_px: NDArray[np.float64]
    ncc: NDArray[np.float64]
    ncc_before: NDArray[np.float64]
    peak: NDArray[np.float64]
    reliability: NDArray[np.float64]
    valid: NDArray[np.bool_]
    reason: tuple[str, ...]
    georef: Georef
    window: int
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.points)

    @property
    def n_valid(self) -> int:
        """Number of valid tie points."""
        return int(self.valid.sum())

    @property
    def map_points(self) -> NDArray[np.float64]:
        """Map coordinates ``(y, x)`` of the points (reference CRS)."""
        from ..transforms import apply_matrix

        return apply_matrix(self.georef.world_from_px, self.points)

    @property
    def shift_map(self) -> NDArray[np.float64]:
        """Shifts in map units ``(dy, dx)``."""
        return self.shift_px @ self.georef.world_from_px[:2, :2].T

    def median_shift_px(self) -> NDArray[np.float64]:
        """Median shift of the valid points (reference pixels)."""
        if not self.n_valid:
            raise ValueError(
                'no valid tie point: the scenes share too little clear overlap; '
                'try a larger window, a coarser spacing or another pair'
            )
        return np.median(self.shift_px[self.valid], axis=0)

    def with_validity(self, valid: NDArray, reason: list[str]) -> TiePoints:
        """A copy with new validity flags."""
        from dataclasses import replace

        return replace(self, valid=np.asarray(valid, bool), reason=tuple(reason))

    # -- export --------------------------------------------------------------
    def _rows(self) -> list[dict]:
        map_pts = self.map_points
        shift_map = self.shift_map
        rows = []
        for i in range(len(self)):
            rows.append(
                {
                    'id': i,
                    'row': float(self.points[i, 0]),
                    'col': float(self.points[i, 1]),
                    'y': float(map_pts[i, 0]),
                    'x': float(map_pts[i, 1]),
                    'd_row': float(self.shift_px[i, 0]),
                    'd_col': float(self.shift_px[i, 1]),
                    'dy': float(shift_map[i, 0]),
                    'dx': float(shift_map[i, 1]),
                    'ncc': float(self.ncc[i]),
                    'peak': float(self.peak[i]),
                    'reliability': float(self.reliability[i]),
                    'valid': bool(self.valid[i]),
                    'reason': self.reason[i],
                }
            )
        return rows

    def to_csv(self, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write the tie points as CSV (one row per point, map and pixel units)."""
        path = _new_path(path, overwrite)
        rows = self._rows()
        with open(path, 'w', newline='') as handle:
            writer = csv.DictWriter(
                handle, fieldnames=list(rows[0]) if rows else ['id']
            )
            writer.writeheader()
            writer.writerows(rows)
        return path

    def to_geojson(self, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write the tie points as a GeoJSON FeatureCollection of points.

        Coordinates are ``(x, y)`` in the reference CRS (named in ``crs``, as
        GeoJSON 2008; RFC 7946 readers assume WGS 84, so reproject for web
        maps).
        """
        path = _new_path(path, overwrite)
        features = []
        for row in self._rows():
            features.append(
                {
                    'type': 'Feature',
                    'geometry': {'type': 'Point', 'coordinates': [row['x'], row['y']]},
                    'properties': row,
                }
            )
        collection = {'type': 'FeatureCollection', 'features': features}
        if self.georef.epsg is not None:
            collection['crs'] = {
                'type': 'name',
                'properties': {'name': f'urn:ogc:def:crs:EPSG::{self.georef.epsg}'},
            }
        path.write_text(json.dumps(collection, indent=1))
        return path

    def write(self, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write CSV or GeoJSON, chosen by the suffix (``.csv``, ``.geojson``)."""
        suffix = Path(path).suffix.lower()
        if suffix == '.csv':
            return self.to_csv(path, overwrite=overwrite)
        if suffix in ('.geojson', '.json'):
            return self.to_geojson(path, overwrite=overwrite)
        raise ValueError(
            f'tie points cannot be written as {suffix!r}: use .csv or .geojson'
        )


def _new_path(path: str | os.PathLike, overwrite: bool) -> Path:
    path = Path(path)
    if path.exists() and not overwrite:
        raise ValueError(
            f'{path} exists: choose a new file name (or pass overwrite=True)'
        )
    return path


def grid_points(
    shape: tuple[int, int], spacing: int, window: int
) -> NDArray[np.float64]:
    """Window centres on a regular grid, windows inside ``shape``."""
    half = window // 2
    rows = np.arange(half, shape[0] - (window - half) + 1, spacing)
    cols = np.arange(half, shape[1] - (window - half) + 1, spacing)
    if not len(rows) or not len(cols):
        return np.zeros((0, 2))
    rr, cc = np.meshgrid(rows, cols, indexing='ij')
    return np.stack([rr.ravel(), cc.ravel()], axis=1).astype(np.float64)


def measure_tie_points(
    windows: ArrayWindows | FileWindows,
    *,
    spacing: int = 200,
    window: int = 256,
    refine: bool = False,
    metric: str = 'ncc',
    points: NDArray | None = None,
    progress: Callable[[int, int], None] | None = None,
    batch: int = 64,
    similarity: str = 'intensity',
    workers: int | None = None,
    client: Any = None,
) -> TiePoints:
    """Measure a tie-point grid between two scenes on the reference grid.

    Parameters
    ----------
    windows : ArrayWindows or FileWindows
        Window pairs of the overlap (:mod:`napari_coreg.geo.windows`), with
        ``shape``, ``georef`` and ``pair(row, col, size)``.
    spacing : int
        Grid spacing in reference pixels.
    window : int
        Window size in pixels (at least 32).
    refine : bool
        Refine each correlation shift with the engine (``metric``).
    metric : str
        Engine metric of the refinement.
    points : ndarray, shape (n, 2), optional
        Window centres to use instead of a regular grid.
    progress : callable, optional
        Called as ``progress(done, total)`` while windows are measured.
    batch : int
        Windows held in memory at once.
    similarity : {'intensity', 'gradient'}
        Window similarity (see :func:`~napari_coreg.geo.shifts.measure_windows`).
    workers : int, optional
        Threads measuring the windows of a batch (default: the CPU count, at
        most 8; the FFTs release the GIL: 2 threads measured 1.9x faster on
        2 cores). Windows are read in the calling thread.
    client : dask.distributed.Client or 'local', optional
        Measure each batch as dask.distributed tasks on this client (one
        task per worker, the windows sent with it) instead of threads, as
        stacks do; ``'local'`` makes a LocalCluster for the call.

    Returns
    -------
    TiePoints
        Points, shifts, reliability, with outliers already rejected.
    """
    shape = tuple(windows.shape)
    if window < 32 or spacing < 1:
        raise ValueError(
            f'window {window} and spacing {spacing}: the window needs at least '
            '32 pixels and the spacing at least 1'
        )
    if min(shape) < window:
        raise ValueError(
            f'the overlap {shape} is smaller than the window {window}: '
            'pass a smaller window'
        )
    from ..stack.distributed import check_client

    check_client(client)
    started = time.perf_counter()
    if points is None:
        points = grid_points(shape, spacing, window)
    points = np.asarray(points, dtype=np.float64)
    n = len(points)
    half = window // 2
    reason = ['nodata'] * n
    shifts = np.full((n, 2), np.nan)
    phases = np.full((n, 2), np.nan)
    ncc = np.full(n, np.nan)
    ncc_before = np.full(n, np.nan)
    peak = np.zeros(n)
    reliability = np.zeros(n)

    with windows, _dask_client(client) as client:
        for start in range(0, n, batch):
            usable, refs, tgts = [], [], []
            for i in range(start, min(start + batch, n)):
                r, c = (int(v) - half for v in points[i])
                if r < 0 or c < 0 or r + window > shape[0] or c + window > shape[1]:
                    continue
                ref, tgt, valid = windows.pair(r, c, window)
                if not valid.all():
                    continue
                if ref.std() == 0 or tgt.std() == 0:
                    reason[i] = 'no structure'
                    continue
                usable.append(i)
                refs.append(ref)
                tgts.append(tgt)
                reason[i] = ''
            if not usable:
                continue
            measured = _measure_parallel(
                refs,
                tgts,
                workers,
                client,
                refine=refine,
                metric=metric,
                similarity=similarity,
            )
            if progress is not None:
                progress(min(start + batch, n), n)
            for i, m in zip(usable, measured, strict=True):
                shifts[i], phases[i] = m.shift, m.phase
                ncc[i], ncc_before[i] = m.ncc, m.ncc_before
                peak[i], reliability[i] = m.peak, m.reliability
    tie = TiePoints(
        points=points,
        shift_px=shifts,
        phase_px=phases,
        ncc=ncc,
        ncc_before=ncc_before,
        peak=peak,
        reliability=reliability,
        valid=np.array([not r for r in reason]),
        reason=tuple(reason),
        georef=windows.georef,
        window=window,
    )
    tie = reject_outliers(tie, spacing=spacing)
    from dataclasses import replace

    return replace(tie, seconds=time.perf_counter() - started)


@contextlib.contextmanager
def _dask_client(client: Any) -> Iterator[Any]:
    """The client to use: ``client``, or a LocalCluster's for ``'local'``."""
    if not isinstance(client, str):
        yield client
        return
    from distributed import Client, LocalCluster

    from ..stack.distributed import LOCAL_WORKERS

    with (
        LocalCluster(
            n_workers=max(1, min(LOCAL_WORKERS, os.cpu_count() or 2)),
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
        ) as cluster,
        Client(cluster) as own,
    ):
        yield own


def _measure_parallel(
    refs: list[NDArray],
    tgts: list[NDArray],
    workers: int | None,
    client: Any = None,
    **kwargs,
) -> list:
    """measure_windows over chunks of a batch (threads or dask tasks), in order."""
    from concurrent.futures import ThreadPoolExecutor

    if client is not None:
        workers = max(1, len(client.scheduler_info()['workers']))
    workers = workers or min(os.cpu_count() or 1, 8)
    refs, tgts = np.asarray(refs), np.asarray(tgts)
    bounds = np.linspace(0, len(refs), min(workers, len(refs)) + 1).astype(int)
    chunks = [(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]
    if client is not None:
        futures = [
            client.submit(measure_windows, refs[a:b], tgts[a:b], pure=False, **kwargs)
            for a, b in chunks
        ]
        return [m for part in client.gather(futures) for m in part]
    if workers <= 1 or len(refs) < 2:
        return measure_windows(refs, tgts, **kwargs)
    with ThreadPoolExecutor(len(chunks)) as pool:
        parts = pool.map(
            lambda ab: measure_windows(
                refs[ab[0] : ab[1]], tgts[ab[0] : ab[1]], **kwargs
            ),
            chunks,
        )
        return [m for part in parts for m in part]


def _affine_fit(points: NDArray, shifts: NDArray) -> NDArray[np.float64]:
    design = np.column_stack([points, np.ones(len(points))])
    coef, *_ = np.linalg.lstsq(design, shifts, rcond=None)
    return coef


def _ransac_affine(
    points: NDArray, shifts: NDArray, threshold: float, seed: int = 0
) -> NDArray[np.bool_]:
    """Inliers of an affine shift model fitted by RANSAC (3-point samples)."""
    n = len(points)
    if n < 4:
        return np.ones(n, bool)
    rng = np.random.default_rng(seed)
    centre = points.mean(axis=0)
    scale = max(float(np.abs(points - centre).max()), 1.0)
    pts = (points - centre) / scale
    design = np.column_stack([pts, np.ones(n)])
    best = np.ones(n, bool)
    best_count = -1
    for _ in range(200):
        sample = rng.choice(n, 3, replace=False)
        if abs(np.linalg.det(design[sample])) < 1e-6:
            continue
        coef = np.linalg.solve(design[sample], shifts[sample])
        residual = np.linalg.norm(design @ coef - shifts, axis=1)
        inliers = residual < threshold
        if inliers.sum() > best_count:
            best, best_count = inliers, int(inliers.sum())
    if best.sum() >= 3:
        coef = _affine_fit(pts[best], shifts[best])
        best = np.linalg.norm(design @ coef - shifts, axis=1) < threshold
    return best


def reject_outliers(
    tie: TiePoints,
    *,
    spacing: float | None = None,
    min_peak: float = MIN_PEAK,
    min_reliability: float = MIN_RELIABILITY,
    neighbour_tolerance: float = 0.5,
    ransac_threshold: float = 1.0,
) -> TiePoints:
    """Flag unreliable tie points and outliers.

    In order: no clear phase-correlation peak (``min_peak``), low reliability
    (``min_reliability``), a shift that lowers the window's NCC, disagreement
    with the median of the neighbours within 1.5 grid steps by more than
    ``max(neighbour_tolerance, 3 MAD)`` pixels, and distance above
    ``ransac_threshold`` pixels from a global affine shift model fitted by
    RANSAC.
    """
    valid = tie.valid.copy()
    reason = list(tie.reason)
    for i in np.nonzero(valid)[0]:
        if tie.peak[i] < min_peak:
            valid[i], reason[i] = False, 'no clear peak'
        elif tie.reliability[i] < min_reliability:
            valid[i], reason[i] = False, 'unreliable'
        elif tie.ncc[i] < tie.ncc_before[i] - 0.01:
            valid[i], reason[i] = False, 'shift lowers NCC'
    shifts = tie.shift_px
    idx = np.nonzero(valid)[0]
    if spacing is None and len(tie.points) > 1:
        d = np.linalg.norm(tie.points[:, None] - tie.points[None], axis=-1)
        d[d == 0] = np.inf
        spacing = float(np.median(d.min(axis=1)))
    radius = 1.5 * (spacing or 1.0) * np.sqrt(2) + 1e-6
    flags = []
    for i in idx:
        dist = np.linalg.norm(tie.points[idx] - tie.points[i], axis=1)
        neigh = idx[(dist > 0) & (dist <= radius)]
        if len(neigh) < 2:
            continue
        median = np.median(shifts[neigh], axis=0)
        mad = np.median(np.abs(shifts[neigh] - median), axis=0)
        tol = np.maximum(neighbour_tolerance, 3 * 1.4826 * mad)
        if np.any(np.abs(shifts[i] - median) > tol):
            flags.append(i)
    for i in flags:
        valid[i], reason[i] = False, 'neighbours disagree'
    idx = np.nonzero(valid)[0]
    if len(idx) >= 4:
        inliers = _ransac_affine(tie.points[idx], shifts[idx], ransac_threshold)
        for i in idx[~inliers]:
            valid[i], reason[i] = False, 'off the global model'
    return tie.with_validity(valid, reason)
