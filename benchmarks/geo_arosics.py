"""AROSICS cases for ``bench_geo.py``, run by the AROSICS interpreter.

This module imports only the standard library and ``arosics`` (with GDAL's
Python bindings), so that it runs in a separate virtual environment
(``make bench-geo-peers`` builds it in ``/work/.venv-arosics``) through
:func:`harness.run_case` with ``python=``. Shifts are returned in numpy
order ``(d_row, d_col)`` = AROSICS' ``(y, x)`` pixel shift (target ->
reference, as ours).
"""

from __future__ import annotations

import statistics
import time

from harness import baseline, threads

#: AROSICS' fill value of a tie point that was not measured.
FILL = -9999


def coreg(ref: str, tgt: str, window: int, truth: list[float]) -> dict:
    """``COREG``: one ``window``² window at AROSICS' default position."""
    from arosics import COREG

    baseline()
    started = time.perf_counter()
    cr = COREG(
        ref,
        tgt,
        ws=(window, window),
        nodata=(0, 0),
        max_iter=5,
        q=True,
        CPUs=threads(),
        ignore_errors=True,
    )
    cr.calculate_spatial_shifts()
    seconds = time.perf_counter() - started
    ok = bool(cr.success)
    shift = [float(cr.y_shift_px), float(cr.x_shift_px)] if ok else None
    return {
        'tool': 'AROSICS COREG',
        'shift_px': shift,
        'error_px': _error(shift, truth),
        'valid': int(ok),
        'points': 1,
        'register_s': round(seconds, 2),
    }


def coreg_local(ref: str, tgt: str, grid: int, window: int, truth: list[float]) -> dict:
    """``COREG_LOCAL``: a tie-point grid every ``grid`` pixels, median shift."""
    from arosics import COREG_LOCAL

    baseline()
    started = time.perf_counter()
    crl = COREG_LOCAL(
        ref,
        tgt,
        grid_res=grid,
        window_size=(window, window),
        nodata=(0, 0),
        max_iter=5,
        q=True,
        CPUs=threads(),
        ignore_errors=True,
    )
    table = crl.CoRegPoints_table
    seconds = time.perf_counter() - started
    measured = table['X_SHIFT_PX'] != FILL
    outlier = table['OUTLIER'].astype(str).isin(['True', '1', '1.0'])
    valid = table[measured & ~outlier]
    shift = None
    if len(valid):
        shift = [
            float(statistics.median(valid['Y_SHIFT_PX'])),
            float(statistics.median(valid['X_SHIFT_PX'])),
        ]
    return {
        'tool': 'AROSICS COREG_LOCAL',
        'shift_px': shift,
        'error_px': _error(shift, truth),
        'valid': len(valid),
        'points': len(table),
        'register_s': round(seconds, 2),
    }


def _error(shift: list[float] | None, truth: list[float]) -> list[float] | None:
    if shift is None:
        return None
    return [round(s - t, 3) for s, t in zip(shift, truth, strict=True)]
