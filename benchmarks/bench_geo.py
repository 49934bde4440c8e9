"""Georeferenced co-registration, ours next to AROSICS: S2 pair and a 10980² pair.

    python benchmarks/bench_geo.py                 # both pairs, AROSICS if found
    python benchmarks/bench_geo.py --no-large      # the Sentinel-2 pair only
    python benchmarks/bench_geo.py --no-s2         # the 10980² pair only
    python benchmarks/bench_geo.py --repeat 3      # median times of 3 rounds
    python benchmarks/bench_geo.py --arosics-python PATH/bin/python
    make bench-geo-peers                           # builds that venv, then runs

Sentinel-2 pair (../shared/data/arosics_s2_inter1): global mode (ours: the
default grid; AROSICS ``COREG``: one 256² window at its default position)
and local mode (a 200 px grid of 256² windows, both tools), shift against
the data README's reference (d_row +1.75, d_col -0.55 px, +- about 0.1).
Synthetic pair: 10980 x 10980 uint16 (a Sentinel-2 10 m tile's size) tiled
from real S2 pixels (mirrored), the target's content moved by a known
(+1.30, -0.60) px (cubic), both tiled deflate GeoTIFFs with overviews;
global mode and a 1000 px grid of 256² windows (a 200 px grid would be
about 3000 windows per tool). Ours also writes the corrected GeoTIFF
(``write s``; the displacement field in local mode); AROSICS only measures.

AROSICS needs GDAL's Python bindings, so it runs from its own interpreter
(``--arosics-python`` or ``AROSICS_PYTHON``; ``make bench-geo-peers`` builds
``.venv-arosics`` in the repository); without one its rows are skipped
with a note.
Every case runs in its own process (:func:`harness.run_case`); peak memory
is that process's ``VmHWM`` (AROSICS' worker processes, ``CPUs`` = the
pinned thread count, are not included). The verdict column is ours
(:mod:`napari_coreg.geo.trust`). Results: ``benchmarks/results/geo.json``
(records merged by pair, mode and tool: a partial run replaces only its
rows) and ``geo.md``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import harness

HERE = Path(__file__).resolve().parent
REF_NAME = 'ref_S2A_20160608T153121_T33UUU_sub.jp2'
TGT_NAME = 'tgt_S2A_20160529T153631_T33UUU_sub.jp2'
S2_REFERENCE = (1.75, -0.55)
LARGE = 10980
LARGE_SHIFT = (1.30, -0.60)
WINDOW = 256
DEFAULT_AROSICS = HERE.parent / '.venv-arosics' / 'bin' / 'python'


def ours(
    ref: str,
    tgt: str,
    spacing: int | None,
    window: int,
    local: bool,
    truth: list[float],
    out: str,
) -> dict:
    """Our registration (and write) of one case, in the child process."""
    import numpy as np

    from napari_coreg import geo

    harness.baseline()
    t0 = time.perf_counter()
    reg = geo.register_rasters(ref, tgt, spacing=spacing, window=window)
    t1 = time.perf_counter()
    model = geo.fit_shift_model(reg.tie_points, 'field') if local else None
    if model is not None:
        reg = reg.assess_local(model)
    reg.write(out, local=model, order=1, overwrite=True)  # the same each round
    t2 = time.perf_counter()
    tie = reg.tie_points
    shift = (
        np.median(tie.shift_px[tie.valid], axis=0) if local else reg.shift_px
    )  # local: the tie points' median, as AROSICS' table
    return {
        'tool': 'ours',
        'shift_px': shift.round(3).tolist(),
        'error_px': (shift - truth).round(3).tolist(),
        'valid': tie.n_valid,
        'points': len(tie),
        'register_s': round(t1 - t0, 2),
        'write_s': round(t2 - t1, 2),
        'verdict': reg.verdict,
    }


def make_large_pair(folder: Path, source: Path) -> tuple[Path, Path]:
    """The synthetic 10980² pair (see the module notes)."""
    import numpy as np
    import rasterio
    from affine import Affine
    from rasterio.enums import Resampling
    from rasterio.windows import Window
    from scipy import ndimage

    src = rasterio.open(source).read(1)[400:2800, 300:2300].astype(np.float32)
    src[src == 0] = np.median(src[src > 0])

    def fold(i, n):
        i = np.mod(i, 2 * n)
        return np.where(i < n, i, 2 * n - 1 - i)

    def tile(r0, r1, c0, c1):
        return src[
            np.ix_(
                fold(np.arange(r0, r1), src.shape[0]),
                fold(np.arange(c0, c1), src.shape[1]),
            )
        ]

    profile = {
        'driver': 'GTiff', 'height': LARGE, 'width': LARGE, 'count': 1,
        'dtype': 'uint16', 'crs': 'EPSG:32633', 'nodata': 0,
        'compress': 'deflate', 'tiled': True, 'blockxsize': 512,
        'blockysize': 512, 'BIGTIFF': 'IF_SAFER',
        'transform': Affine(10, 0, 300000, 0, -10, 5900000),
    }  # fmt: skip
    ref, tgt = folder / 'ref.tif', folder / 'tgt.tif'
    block, pad = 1024, 8
    with (
        rasterio.open(ref, 'w', **profile) as a,
        rasterio.open(tgt, 'w', **profile) as b,
    ):
        for r in range(0, LARGE, block):
            for c in range(0, LARGE, block):
                n, m = min(block, LARGE - r), min(block, LARGE - c)
                window = Window(c, r, m, n)
                a.write(
                    np.clip(tile(r, r + n, c, c + m), 1, 65535).astype('uint16')[None],
                    window=window,
                )
                # target pixel q shows the reference content at q + shift
                big = tile(r - pad, r + n + pad, c - pad, c + m + pad)
                rr, cc = np.meshgrid(
                    np.arange(n) + pad + LARGE_SHIFT[0],
                    np.arange(m) + pad + LARGE_SHIFT[1],
                    indexing='ij',
                )
                moved = ndimage.map_coordinates(big, [rr, cc], order=3)
                b.write(
                    np.clip(np.rint(moved), 1, 65535).astype('uint16')[None],
                    window=window,
                )
    for path in (ref, tgt):
        with rasterio.open(path, 'r+') as ds:
            ds.build_overviews([2, 4, 8, 16, 32], Resampling.average)
    return ref, tgt


def _arosics_python(flag: str | None) -> tuple[str | None, str | None]:
    """The AROSICS interpreter and version, or None (with the reason printed)."""
    path = flag or os.environ.get('AROSICS_PYTHON') or str(DEFAULT_AROSICS)
    if not (shutil.which(path) or Path(path).is_file()):
        print(
            f'AROSICS skipped: no interpreter at {path} (make bench-geo-peers '
            'builds one; or pass --arosics-python)'
        )
        return None, None
    import subprocess

    probe = subprocess.run(
        [path, '-c', 'import arosics, osgeo; print(arosics.__version__)'],
        capture_output=True,
        text=True,
    )
    if probe.returncode:
        tail = (probe.stderr.strip().splitlines() or ['?'])[-1]
        print(f'AROSICS skipped: {path} cannot import arosics ({tail})')
        return None, None
    return path, probe.stdout.strip()


def _cases(ref, tgt, truth, grid, tmp, label, arosics) -> list[tuple]:
    """(pair, mode, tool, run_case arguments) of one pair, ours then AROSICS."""
    common = {'ref': str(ref), 'tgt': str(tgt), 'truth': list(truth)}
    cases = []
    modes = (('global', None, False), (f'local {grid}', grid, True))
    for mode, spacing, local in modes:
        out = str(tmp / f'{label}_{mode.replace(" ", "_")}.tif')
        kwargs = dict(common, spacing=spacing, window=WINDOW, local=local, out=out)
        cases.append((label, mode, 'ours', ('bench_geo', 'ours', kwargs, None)))
        if arosics is None:
            continue
        if local:
            kwargs = dict(common, grid=grid, window=WINDOW)
            peer = ('geo_arosics', 'coreg_local', kwargs)
        else:
            peer = ('geo_arosics', 'coreg', dict(common, window=WINDOW))
        cases.append((label, mode, 'AROSICS', (*peer, arosics)))
    return cases


def _cell(value) -> str:
    if value is None:
        return '-'
    if isinstance(value, list):
        return '(' + ', '.join(f'{v:+.2f}' for v in value) + ')'
    return str(value)


def _key(rec: dict) -> tuple:
    return rec['pair'], rec['mode'], rec['tool']


def summarise(records: list[dict]) -> list[dict]:
    """One row per (pair, mode, tool): the median time of its runs.

    Shift, error and counts are those of the first successful run (they do
    not change between runs); peak memory is the largest.
    """
    import statistics

    rows: dict[tuple, dict] = {}
    for rec in records:
        rows.setdefault(_key(rec), []).append(rec)
    out = []
    for key, runs in rows.items():
        ok = [r for r in runs if r['status'] == 'ok']
        first = dict((ok or runs)[0].get('result') or {})
        for what in ('register_s', 'write_s'):
            times = [r['result'][what] for r in ok if what in r['result']]
            first[what] = round(statistics.median(times), 2) if times else None
        peaks = [r['memory'].get('peak_rss_mib') or 0 for r in ok]
        loads = [r.get('load', float('nan')) for r in runs]
        out.append(
            {
                'pair': key[0],
                'mode': key[1],
                'tool': first.get('tool', key[2]),
                'peer': key[2],
                'result': first,
                'peak_mib': round(max(peaks)) if peaks else None,
                'runs': f'{len(ok)}/{len(runs)}',
                'load': f'{min(loads):.0f}-{max(loads):.0f}',
                'error': None if ok else runs[0]['error'],
            }
        )
    for row in out:  # ours' time over AROSICS' for the same pair and mode
        peer = [
            o for o in out
            if o['peer'] == 'AROSICS' and o['pair'] == row['pair']
            and o['mode'] == row['mode']
        ]  # fmt: skip
        mine, theirs = row['result'].get('register_s'), None
        if peer and row['peer'] == 'ours':
            theirs = peer[0]['result'].get('register_s')
        row['ratio'] = round(mine / theirs, 2) if mine and theirs else None
    return out


def table(rows: list[dict]) -> str:
    """The Markdown table of :func:`summarise`'s rows."""
    lines = [
        '| pair | mode | tool | shift (d_row, d_col) px | error px | valid / points '
        '| register s (median) | vs AROSICS | write s | peak MiB | verdict '
        '| runs | load |',
        '|---|---|---|---|---|---|---|---|---|---|---|---|---|',
    ]
    for row in rows:
        r = row['result']
        lines.append(
            f'| {row["pair"]} | {row["mode"]} | {row["tool"]} '
            f'| {_cell(r.get("shift_px"))} | {_cell(r.get("error_px"))} '
            f'| {r.get("valid", "-")} / {r.get("points", "-")} '
            f'| {_cell(r.get("register_s"))} | {_cell(row["ratio"])} '
            f'| {_cell(r.get("write_s"))} | {_cell(row["peak_mib"])} '
            f'| {r.get("verdict", "-")} | {row["runs"]} | {row["load"]} |'
            + (f' {row["error"]}' if row['error'] else '')
        )
    return '\n'.join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--no-large', action='store_true')
    parser.add_argument('--no-s2', action='store_true', help='the 10980² pair only')
    parser.add_argument('--arosics-python', help='interpreter with arosics + GDAL')
    parser.add_argument('--data', help='shared data folder')
    parser.add_argument('--timeout', type=float, default=1800.0)
    parser.add_argument(
        '--repeat', type=int, default=1, help='rounds, ours and AROSICS interleaved'
    )
    args = parser.parse_args()
    harness.pin_threads()
    log = harness.logger()
    started, load = time.perf_counter(), os.getloadavg()[0]
    arosics, version = _arosics_python(args.arosics_python)
    records = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cases = []
        s2 = harness.find_data('arosics_s2_inter1', args.data, log)
        if s2 is not None and not args.no_s2:
            cases += _cases(
                s2 / REF_NAME, s2 / TGT_NAME, S2_REFERENCE, 200, tmp, 'S2 pair', arosics
            )
        if not args.no_large and s2 is not None:  # tiled from S2 pixels
            ref, tgt = make_large_pair(tmp, s2 / REF_NAME)
            cases += _cases(ref, tgt, LARGE_SHIFT, 1000, tmp, '10980²', arosics)
        for round_ in range(args.repeat):
            for pair, mode, tool, (module, function, kwargs, python) in cases:
                log(f'{pair} {mode}: {tool} (round {round_ + 1})')
                rec_load = os.getloadavg()[0]
                rec = harness.run_case(
                    'geo', f'{pair} {mode} {tool}', module, function, kwargs,
                    timeout=args.timeout, python=python,
                )  # fmt: skip
                rec.update(pair=pair, mode=mode, tool=tool, load=rec_load)
                rec['when'] = time.strftime('%Y-%m-%d %H:%M')
                records.append(rec)
    header = harness.run_header('python benchmarks/bench_geo.py', started, load)
    header['arosics'] = version
    store = harness.load(harness.RESULTS / 'geo.json', {'records': []})
    store['run'] = header  # the latest run; each record keeps its time and load
    store['records'] = harness.merge(store['records'], records, _key)
    harness.save(harness.RESULTS / 'geo.json', store)
    text = table(summarise(store['records']))
    print(text)
    (harness.RESULTS / 'geo.md').write_text(_document(text, version))


def _document(text: str, version: str | None) -> str:
    peer = f'AROSICS {version}' if version else 'AROSICS (skipped: no interpreter)'
    return (
        f'## Georeferenced rasters: ours and {peer}\n\n'
        '`python benchmarks/bench_geo.py` (issue 10; `make bench-geo-peers`), on '
        'the 2-core machine shared with other jobs (load average per row: the '
        'range over its runs): times are noisy, errors and counts are not; '
        '"vs AROSICS" is the ratio of median register times, ours over AROSICS, '
        'runs interleaved. Global mode: ours is a grid of 256² windows (median '
        "shift after outlier rejection), AROSICS' COREG one 256² window at its "
        'default position; local mode: the same grid for both (shift = median of '
        "the valid tie points). Error: against the data README's reference for "
        'the S2 pair (+- about 0.1 px), against the known shift for the '
        'synthetic 10980² pair. Register time: in the child, from the call to '
        "the result, reading included. Write: ours' corrected GeoTIFF "
        '(geotransform moved in global mode; resampled through the displacement '
        'field in local mode); AROSICS measured only. Peak memory: VmHWM of the '
        "process (AROSICS' worker processes not included). Verdict: ours "
        '(`napari_coreg.geo.trust`).\n\n' + text + '\n'
    )


if __name__ == '__main__':
    main()
