"""Run our engine and every peer on the same cases; write docs/benchmarks.md.

    python benchmarks/run_all.py                      # full run (~20 min, 2 cores)
    python benchmarks/run_all.py --quick              # smoke run
    python benchmarks/run_all.py --only peers --sizes 256 512
    python benchmarks/run_all.py --only ours          # reuses stored peer results

Raw per-case results are kept in ``benchmarks/results/records.json``; a run
replaces the entries it recomputes and keeps the others, so ``--only ours``
after a peers run reports both on the same cases.
"""

from __future__ import annotations

import os

for _var in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS', 'OPENBLAS_NUM_THREADS'):
    os.environ.setdefault(_var, '2')
# OpenMP threads that sleep instead of spinning while they wait: on a shared
# 2-core machine spinning makes torch 5-20x slower with 2 threads (see the
# "Thread sensitivity" section). Must be set before torch is imported.
if 'BENCH_KEEP_OMP' not in os.environ:
    os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')

import argparse  # noqa: E402
import contextlib  # noqa: E402
import datetime  # noqa: E402
import functools  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import cases as C  # noqa: E402
import peers as PR  # noqa: E402
from peers import MONO, MULTI, Config  # noqa: E402

ROOT = HERE.parent
RESULTS = HERE / 'results' / 'records.json'
GRAF = Path('/work/shared/data/oxford_affine/graf')
OURS = 'ours'
OK_STRICT, OK_LOOSE = 0.5, 1.0

# --------------------------------------------------------------------------
# our engine


def ours_available() -> str | None:
    """None when ``napari_coreg.register`` imports, else the reason."""
    try:
        from napari_coreg import register  # noqa: F401
    except Exception as exc:  # noqa: BLE001
        return f'{type(exc).__name__}: {exc}'
    return None


LAST_INFO: dict = {}  # details of our engine's last run, for the records


def ours_register(fixed, moving, **kwargs):
    """Our engine; returns moving_from_fixed (row, col). Raises on failure."""
    from napari_coreg import register

    LAST_INFO.clear()
    res = register(fixed, moving, backend='torch', **kwargs)
    LAST_INFO['stop_reason'] = str(getattr(res, 'stop_reason', ''))
    LAST_INFO['engine_elapsed'] = getattr(res, 'elapsed', None)
    return np.asarray(res.moving_from_fixed, dtype=np.float64)


def ours_configs() -> list[Config]:
    """Our engine on each family: the matching model, several metrics."""
    plan = {
        ('translation', MONO): ('translation', ('ncc',)),
        ('rigid', MONO): ('rigid', ('ncc', 'mse', 'l1', 'mi')),
        ('rigid', MULTI): ('rigid', ('mi',)),
        ('affine', MONO): ('affine', ('ncc', 'mse', 'mi')),
        ('affine', MULTI): ('affine', ('mi',)),
        ('homography', MONO): ('homography', ('ncc', 'l1', 'mi', None)),
        ('homography', MULTI): ('homography', ('mi',)),
        ('capture', MONO): ('rigid', ('ncc', 'mi')),
    }
    out = []
    for fam, (model, metrics) in plan.items():
        for metric in metrics:
            kw = {'model': model} | ({'metric': metric} if metric else {})
            label = f'{model} ({metric or "defaults"})'
            out.append(
                Config(OURS, label, functools.partial(ours_register, **kw), (fam,))
            )
    return _merge_families(out)


def _merge_families(configs: list[Config]) -> list[Config]:
    """One Config per (who, method) with the union of its families."""
    merged: dict[tuple, Config] = {}
    for c in configs:
        key = (c.who, c.method)
        if key in merged:
            old = merged[key]
            c = Config(c.who, c.method, old.fn, old.families + c.families, old.max_size)
        merged[key] = c
    return list(merged.values())


# --------------------------------------------------------------------------
# running


def warm_up(config: Config, case: C.Case, done: set) -> None:
    """One untimed call on a small crop (imports, allocator, caches)."""
    key = (config.who, config.method)
    if key in done:
        return
    done.add(key)
    with contextlib.suppress(Exception):  # the timed run reports failures
        config.run(case.fixed[:128, :128].copy(), case.moving[:128, :128].copy())


def run_one(config: Config, case: C.Case) -> dict:
    """Time one registration (case generation excluded) and score it."""
    error = None
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        est = config.run(case.fixed, case.moving)
    except Exception as exc:  # noqa: BLE001
        est, error = None, f'{type(exc).__name__}: {exc}'[:300]
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    info = dict(LAST_INFO) if config.who == OURS else {}
    if est is None and error is None:
        error = 'peer raised'
    return {
        'who': config.who,
        'method': config.method,
        'family': case.family,
        'modality': case.modality,
        'size': case.size,
        'index': case.index,
        'image': case.image,
        'case': case.name,
        'time': seconds,
        'cpu': cpu,
        'err': C.corner_error(est, case.truth, case.fixed.shape),
        'error': error,
        'params': {k: np.round(v, 4).tolist() for k, v in case.params.items()},
        'matrix': None if est is None else np.asarray(est).tolist(),
        'info': info,
        'threads': PR.THREADS,
    }


def cases_per_size(args, size: int) -> int:
    return args.cases if size < 1024 else min(args.cases, args.cases_large)


def planned_names(configs: list[Config], args) -> list[str]:
    """Names of every case this run's tables are about."""
    families = {f for c in configs for f in c.families}
    return [
        C.case_name(f, m, s, i)
        for s in args.sizes
        for f, m in sorted(families)
        for i in C.case_indices(cases_per_size(args, s))
    ]


def run_cases(configs: list[Config], args, log) -> list[dict]:
    """Run every config on its families' cases."""
    families = sorted({f for c in configs for f in c.families})
    records, warmed = [], set()
    for size in args.sizes:
        for family, modality in families:
            todo = [c for c in configs if c.applies(family, modality, size)]
            if not todo:
                continue
            t0 = time.perf_counter()
            batch = C.make_cases(family, modality, size, cases_per_size(args, size))
            log(
                f'[{size}] {family}/{modality}: {len(batch)} cases '
                f'({time.perf_counter() - t0:.1f}s to generate)'
            )
            for config in todo:
                warm_up(config, batch[0], warmed)
                recs = [run_one(config, case) for case in batch]
                records += recs
                log(f'    {config.who:24s} {config.method:44s} ' + summary_line(recs))
    return records


def summary_line(recs: list[dict]) -> str:
    s = stats(recs)
    return (
        f'ok<0.5 {s["ok05"]}/{s["n"]}  ok<1 {s["ok1"]}/{s["n"]}  '
        f'med err {fmt_err(s["err"])} px  med time {s["time"]:.3f} s'
    )


# --------------------------------------------------------------------------
# statistics and markdown


def stats(recs: list[dict]) -> dict:
    errs = np.array([r['err'] for r in recs], float)
    times = np.array([r['time'] for r in recs], float)
    cpu = np.array([r.get('cpu', np.nan) for r in recs], float)
    return {
        'cpu': float(np.median(cpu)) if len(cpu) else float('nan'),
        'n': len(recs),
        'ok05': int((errs < OK_STRICT).sum()),
        'ok1': int((errs < OK_LOOSE).sum()),
        'err': float(np.median(errs)) if len(errs) else float('nan'),
        'time': float(np.median(times)) if len(times) else float('nan'),
    }


def fmt_err(x: float) -> str:
    if not np.isfinite(x):
        return 'fail'
    return f'{x:.3f}' if x < 10 else f'{x:.0f}'


def fmt_time(x: float) -> str:
    if not np.isfinite(x):
        return '-'
    return f'{x:.3f}' if x < 10 else f'{x:.1f}'


def fmt_ratio(x: float) -> str:
    return '-' if not np.isfinite(x) else (f'{x:.2f}' if x < 10 else f'{x:.0f}')


def md_table(headers: list[str], rows: list[list]) -> str:
    """A GitHub markdown table."""
    lines = ['| ' + ' | '.join(map(str, headers)) + ' |', '|' + '---|' * len(headers)]
    lines += ['| ' + ' | '.join(map(str, r)) + ' |' for r in rows]
    return '\n'.join(lines) + '\n'


def select(records, **kw) -> list[dict]:
    return [r for r in records if all(r[k] == v for k, v in kw.items())]


def methods_of(records, family, modality) -> list[tuple[str, str]]:
    """(who, method) pairs present, ours first, in first-seen order."""
    seen = dict.fromkeys(
        (r['who'], r['method'])
        for r in select(records, family=family, modality=modality)
    )
    return sorted(seen, key=lambda k: k[0] != OURS)


def family_table(records, family, modality, sizes) -> str:
    rows = []
    for size in sizes:
        for who, method in methods_of(records, family, modality):
            recs = select(
                records,
                family=family,
                modality=modality,
                size=size,
                who=who,
                method=method,
            )
            if not recs:
                continue
            s = stats(recs)
            rows.append(
                [
                    size,
                    f'**{who}**' if who == OURS else who,
                    method,
                    s['n'],
                    s['ok05'],
                    s['ok1'],
                    fmt_err(s['err']),
                    fmt_time(s['time']),
                    fmt_time(s['cpu']),
                ]
            )
    return md_table(
        [
            'size',
            'who',
            'model (metric)',
            'n',
            'ok < 0.5 px',
            'ok < 1 px',
            'median err (px)',
            'median time (s)',
            'median CPU time (s)',
        ],
        rows,
    )


def median_of(records, field='time', **kw) -> float:
    recs = select(records, **kw)
    return stats(recs)[field] if recs else float('nan')


def ratio_table(records, family, modality, sizes) -> str:
    """Our median time / each peer's median time, one cell per size.

    Cells: wall-clock ratio, and in brackets the CPU-time ratio.
    """
    pairs = methods_of(records, family, modality)
    ours = [m for w, m in pairs if w == OURS]
    theirs = [(w, m) for w, m in pairs if w != OURS]
    if not ours or not theirs:
        return ''
    rows = []
    for who, method in theirs:
        row = [f'{who}: {method}']
        for mine in ours:
            cells = []
            for size in sizes:
                kw = {'family': family, 'modality': modality, 'size': size}
                r = [
                    median_of(records, f, who=OURS, method=mine, **kw)
                    / median_of(records, f, who=who, method=method, **kw)
                    for f in ('time', 'cpu')
                ]
                cells.append(f'{fmt_ratio(r[0])} ({fmt_ratio(r[1])})')
            row.append(' / '.join(cells))
        rows.append(row)
    head = ['peer \\ ours, per size ' + ' / '.join(map(str, sizes))] + ours
    return md_table(head, rows)


# --------------------------------------------------------------------------
# PEERS.md reference figures: successes (< 1 px) of 8, median err, median time


PEERS_REF = {
    ('SimpleITK', 'Euler2D (MeanSquares)', 'rigid', MONO): {
        256: (8, 0.07, 0.12),
        512: (8, 0.08, 0.44),
        1024: (7, 0.17, 2.5),
    },
    ('SimpleITK', 'Euler2D (Correlation)', 'rigid', MONO): {
        256: (8, 0.02, 0.16),
        512: (8, 0.02, 0.66),
        1024: (8, 0.02, 4.0),
    },
    ('SimpleITK', 'Euler2D (Mattes MI)', 'rigid', MULTI): {
        256: (7, 0.03, 0.15),
        512: (8, 0.02, 0.61),
        1024: (8, 0.01, 3.8),
    },
    ('SimpleITK', 'Affine (Correlation)', 'affine', MONO): {
        256: (7, 0.04, 0.23),
        512: (7, 0.05, 0.94),
        1024: (7, 0.05, 5.9),
    },
    ('SimpleITK', 'Affine (Mattes MI)', 'affine', MONO): {
        256: (8, 0.04, 0.19),
        512: (8, 0.02, 0.67),
        1024: (6, 0.02, 4.5),
    },
    ('SimpleITK', 'Affine (Mattes MI)', 'affine', MULTI): {
        256: (8, 0.04, 0.17),
        512: (7, 0.03, 0.66),
        1024: (7, 0.03, 6.3),
    },
    ('OpenCV ECC', 'Euclidean', 'rigid', MONO): {
        256: (7, 0.04, 0.011),
        512: (8, 0.02, 0.044),
        1024: (8, 0.01, 0.17),
    },
    ('OpenCV ECC', 'Affine', 'affine', MONO): {
        256: (7, 0.06, 0.013),
        512: (8, 0.04, 0.073),
        1024: (8, 0.04, 0.20),
    },
    ('OpenCV ECC', 'Homography', 'homography', MONO): {
        256: (8, 0.07, 0.046),
        512: (8, 0.05, 0.12),
        1024: (8, 0.04, 0.33),
    },
    ('OpenCV ECC', 'Euclidean', 'rigid', MULTI): {256: (3,), 512: (4,), 1024: (5,)},
    ('OpenCV ECC', 'Affine', 'affine', MULTI): {256: (3,), 512: (2,), 1024: (2,)},
    ('OpenCV ECC', 'Homography', 'homography', MULTI): {
        256: (1,),
        512: (3,),
        1024: (1,),
    },
    ('kornia ImageRegistrator', 'similarity, defaults', 'rigid', MONO): {
        256: (0, 22, 0.51),
        512: (0, 56, 0.64),
        1024: (0, 56, 1.8),
    },
    ('kornia ImageRegistrator', 'homography, defaults', 'homography', MONO): {
        256: (5, 0.68, 0.47),
        512: (5, 0.68, 0.89),
        1024: (2, 1.2, 1.5),
    },
    ('kornia ImageRegistrator', 'homography, tuned', 'homography', MONO): {
        256: (5, 0.41, 0.87),
        512: (6, 0.71, 1.5),
        1024: (5, 0.57, 3.0),
    },
    ('pystackreg', 'RIGID_BODY', 'rigid', MONO): {
        256: (7, 0.04, 0.09),
        512: (7, 0.05, 0.21),
        1024: (8, 0.10, 0.84),
    },
    ('pystackreg', 'AFFINE', 'affine', MONO): {
        256: (4, 5.7, 0.08),
        512: (7, 0.09, 0.29),
        1024: (5, 0.22, 0.96),
    },
}


def peers_vs_reference(records, sizes) -> str:
    rows = []
    for (who, method, family, modality), ref in PEERS_REF.items():
        row = [who, method, f'{family} {modality}']
        for size in sizes:
            recs = select(
                records,
                who=who,
                method=method,
                family=family,
                modality=modality,
                size=size,
            )
            got = '-'
            if recs:
                s = stats(recs)
                got = f'{s["ok1"]}/{s["n"]}, {fmt_err(s["err"])}, {fmt_time(s["time"])}'
            want = ', '.join(f'{v:g}' for v in ref.get(size, ()))
            row.append(f'{got} ({want})')
        rows.append(row)
    return md_table(
        ['peer', 'model (metric)', 'case']
        + [f'{s}²: measured (PEERS.md)' for s in sizes],
        rows,
    )


# --------------------------------------------------------------------------
# speed targets


SPEED_TARGETS = [
    # (title, family, modality, our method, peer, peer method, target ratio)
    (
        'affine + NCC vs OpenCV ECC affine, 3 levels (target <= 3x)',
        'affine',
        MONO,
        'affine (ncc)',
        'OpenCV ECC',
        'Affine, 3 levels',
        3.0,
    ),
    (
        'rigid + MI vs SimpleITK Euler2D Mattes, full sampling, 3 levels',
        'rigid',
        MULTI,
        'rigid (mi)',
        'SimpleITK',
        'Euler2D (Mattes MI, full sampling, 3 levels)',
        None,
    ),
    (
        'affine + MI vs SimpleITK Affine Mattes, full sampling, 3 levels',
        'affine',
        MULTI,
        'affine (mi)',
        'SimpleITK',
        'Affine (Mattes MI, full sampling, 3 levels)',
        None,
    ),
    (
        'homography (our defaults) vs kornia ImageRegistrator defaults',
        'homography',
        MONO,
        'homography (defaults)',
        'kornia ImageRegistrator',
        'homography, defaults',
        None,
    ),
    (
        'homography + NCC vs kornia ImageRegistrator defaults',
        'homography',
        MONO,
        'homography (ncc)',
        'kornia ImageRegistrator',
        'homography, defaults',
        None,
    ),
]


def speed_targets(records, size=512) -> str:
    rows = []
    for title, fam, mod, mine, peer, theirs, target in SPEED_TARGETS:
        a = select(records, who=OURS, method=mine, family=fam, modality=mod, size=size)
        b = select(
            records, who=peer, method=theirs, family=fam, modality=mod, size=size
        )
        if not a or not b:
            rows.append([title, '-', '-', '-', 'not run'])
            continue
        sa, sb = stats(a), stats(b)
        ratio, cpu_ratio = sa['time'] / sb['time'], sa['cpu'] / sb['cpu']
        verdict = (
            ''
            if target is None
            else (
                f'wall {"PASS" if ratio <= target else "FAIL"}, '
                f'CPU {"PASS" if cpu_ratio <= target else "FAIL"}'
            )
        )
        rows.append(
            [
                title,
                _time_cell(sa),
                _time_cell(sb),
                f'{fmt_ratio(ratio)} ({fmt_ratio(cpu_ratio)})',
                verdict,
            ]
        )
    return md_table(
        [
            f'comparison at {size}² (same cases)',
            'ours: median wall (CPU) s, ok < 0.5 px',
            'peer: median wall (CPU) s, ok < 0.5 px',
            'ours / peer: wall (CPU)',
            'target',
        ],
        rows,
    )


def _time_cell(s: dict) -> str:
    return f'{fmt_time(s["time"])} ({fmt_time(s["cpu"])}), {s["ok05"]}/{s["n"]}'


# --------------------------------------------------------------------------
# failures of our engine, per case


def ours_failures(records) -> str:
    bad = [r for r in records if r['who'] == OURS and not r['err'] < OK_STRICT]
    if not bad:
        return 'No case above 0.5 px.\n'
    rows = [
        [
            r['method'],
            r['case'],
            fmt_err(r['err']),
            fmt_time(r['time']),
            r.get('info', {}).get('stop_reason', ''),
            (r['error'] or '').replace('|', '/')[:120],
        ]
        for r in bad
    ]
    return md_table(
        ['ours', 'case', 'err (px)', 'time (s)', 'stop reason', 'exception'], rows
    )


def capture_cases(records, size) -> str:
    recs = select(records, family='capture', size=size)
    methods = sorted(
        dict.fromkeys((r['who'], r['method']) for r in recs), key=lambda k: k[0] != OURS
    )
    names = list(dict.fromkeys(r['case'] for r in recs))
    rows = []
    for name in names:
        one = select(recs, case=name)
        p = one[0]['params']
        row = [name, f'{p["angle"]:.1f}', f'{np.hypot(*p["shift"]):.0f}']
        for who, method in methods:
            got = select(one, who=who, method=method)
            row.append(fmt_err(got[0]['err']) if got else '-')
        rows.append(row)
    return md_table(
        ['case', 'rotation (deg)', '|shift| (px)'] + [f'{w}: {m}' for w, m in methods],
        rows,
    )


# --------------------------------------------------------------------------
# Oxford graf (kornia homography tutorial)


def load_graf():
    import cv2

    def rgb(name):
        img = cv2.imread(str(GRAF / name), cv2.IMREAD_COLOR)
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0

    img1, img2 = rgb('img1.ppm'), rgb('img2.ppm')
    h_xy = np.loadtxt(GRAF / 'H1to2p')
    return img1, img2, C.swap_axes(h_xy / h_xy[2, 2])


def gray(img):
    return (img @ np.array([0.299, 0.587, 0.114], np.float32)).astype(np.float32)


def warp_l1(img1, est_rc, truth_rc) -> float:
    """Mean |img1 warped by est - img1 warped by truth| into img2's frame."""
    import cv2

    if est_rc is None or not np.all(np.isfinite(est_rc)):
        return float('nan')
    h, w = img1.shape[:2]

    def warp(m):
        return cv2.warpPerspective(img1, C.swap_axes(m), (w, h), flags=cv2.INTER_LINEAR)

    return float(np.abs(warp(est_rc) - warp(truth_rc)).mean())


def graf_runners(args, with_ours: bool, with_peers: bool):
    """(who, label, fn(img1, img2) -> H1to2 (row, col) estimate)."""
    out = []
    if with_peers:

        def kornia_tutorial(i1, i2):  # the tutorial's order: src=img1, dst=img2
            est = PR.kornia_register(i2, i1, model='homography', **PR.KORNIA_TUTORIAL)
            return None if est is None else np.linalg.inv(est)

        if not args.quick:
            out.append(
                (
                    PR.KORNIA,
                    'homography, tutorial settings (RGB, L1, 6 levels, '
                    'Adam 1e-3, 100 it/level)',
                    kornia_tutorial,
                )
            )
        for levels in (6, None):
            label = f'Homography, {levels or "auto (coarsest >= 64 px)"} levels (gray)'
            out.append(
                (
                    PR.ECC,
                    label,
                    functools.partial(
                        _gray_run,
                        functools.partial(
                            PR.ecc_register, motion='homography', levels=levels
                        ),
                    ),
                )
            )
    if with_ours:
        for metric in (None, 'l1', 'ncc', 'mi'):
            kw = {'model': 'homography'} | ({'metric': metric} if metric else {})
            out.append(
                (
                    OURS,
                    f'homography ({metric or "defaults"}, gray)',
                    functools.partial(
                        _gray_run, functools.partial(ours_register, **kw)
                    ),
                )
            )
    return out


def _gray_run(fn, img1, img2):
    return fn(gray(img1), gray(img2))


def run_graf(args, with_ours, with_peers, log) -> list[dict]:
    img1, img2, truth = load_graf()
    out = []
    for who, label, fn in graf_runners(args, with_ours, with_peers):
        error, t0 = None, time.perf_counter()
        try:
            est = fn(img1, img2)
        except Exception as exc:  # noqa: BLE001
            est, error = None, f'{type(exc).__name__}: {exc}'[:300]
        seconds = time.perf_counter() - t0
        rec = {
            'who': who,
            'method': label,
            'time': seconds,
            'error': error,
            'err': C.corner_error(est, truth, img1.shape),
            'l1': warp_l1(img1, est, truth),
        }
        log(
            f'graf: {who:24s} {label:60s} err {fmt_err(rec["err"])} px '
            f'L1 {rec["l1"]:.4f} {seconds:.2f} s'
        )
        out.append(rec)
    return out


def graf_table(recs) -> str:
    rows = [
        [
            r['who'],
            r['method'],
            fmt_err(r['err']),
            '-' if not np.isfinite(r['l1']) else f'{r["l1"]:.4f}',
            fmt_time(r['time']),
        ]
        for r in sorted(recs, key=lambda r: r['who'] != OURS)
    ]
    return md_table(
        ['who', 'settings', 'corner err (px)', 'mean L1 of warps', 'time (s)'], rows
    )


# --------------------------------------------------------------------------
# memory (peak RSS of a subprocess registering a large pair)


MEMORY_CHILD = r"""
import json, sys, time
import numpy as np
import torch
torch.set_num_threads(int(sys.argv[3]))
from napari_coreg import register


def status():
    # VmHWM (peak RSS) is per process image, unlike ru_maxrss which a child
    # inherits from its parent across fork + exec
    with open("/proc/self/status") as f:
        d = dict(line.split(":", 1) for line in f if ":" in line)
    return {k: int(d[k].split()[0]) / 1024 for k in ("VmRSS", "VmHWM")}


data = np.load(sys.argv[1])
fixed, moving = data["fixed"], data["moving"]
kw = json.loads(sys.argv[2])
base = status()
t0 = time.perf_counter()
res = register(fixed, moving, backend="torch", **kw)
dt = time.perf_counter() - t0
peak = status()
print(json.dumps({"base_mb": base["VmRSS"], "peak_mb": peak["VmHWM"], "time": dt,
                  "inputs_mb": (fixed.nbytes + moving.nbytes) / 2**20,
                  "matrix": np.asarray(res.moving_from_fixed).tolist()}))
"""


def memory_pair(size: int):
    """A rigidly moved pair of the camera image rescaled to size x size."""
    from scipy import ndimage
    from skimage.transform import resize

    fixed = resize(C._raw_image('camera'), (size, size), order=1).astype(np.float32)
    centre = np.full(2, (size - 1) / 2.0)
    truth = C._about(centre, C._rotation(4.0), np.array([0.02, -0.03]) * size)
    moving = ndimage.affine_transform(
        fixed, np.linalg.inv(truth), order=1, mode='reflect'
    )
    return fixed, moving.astype(np.float32), truth


def run_memory(size: int, log) -> list[dict]:
    fixed, moving, truth = memory_pair(size)
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / 'pair.npz'
        np.savez(path, fixed=fixed, moving=moving)
        del fixed, moving
        for kw in (
            {'model': 'affine', 'metric': 'ncc'},
            {'model': 'affine', 'metric': 'mi'},
        ):
            rec = {'size': size, 'kw': kw}
            proc = subprocess.run(
                [
                    sys.executable,
                    '-c',
                    MEMORY_CHILD,
                    str(path),
                    json.dumps(kw),
                    str(PR.THREADS),
                ],
                capture_output=True,
                text=True,
                timeout=1800,
            )
            if proc.returncode == 0:
                rec |= json.loads(proc.stdout.strip().splitlines()[-1])
                est = np.array(rec.pop('matrix'))
                rec['err'] = C.corner_error(est, truth, (size, size))
            else:
                rec['error'] = (
                    proc.stderr.strip().splitlines()[-1][:300]
                    if proc.stderr
                    else 'failed'
                )
            log(f'memory {size}²: {kw} -> {rec}')
            out.append(rec)
    return out


def memory_table(recs) -> str:
    rows = []
    for r in recs:
        kw = ', '.join(f'{k}={v}' for k, v in r['kw'].items())
        if 'error' in r:
            rows.append([f'{r["size"]}²', kw, '-', '-', '-', '-', r['error']])
            continue
        gb = r['peak_mb'] * 2**20 / 1e9
        verdict = 'PASS' if gb < 2.0 else 'FAIL'
        rows.append(
            [
                f'{r["size"]}²',
                kw,
                f'{r["peak_mb"]:.0f} MiB ({gb:.2f} GB)',
                f'{r["base_mb"]:.0f}',
                f'{r["peak_mb"] - r["base_mb"]:.0f}',
                fmt_time(r['time']),
                fmt_err(r['err']),
                verdict,
            ]
        )
    return md_table(
        [
            'pair',
            'register(...)',
            'peak RSS',
            'RSS before register, inputs loaded (MiB)',
            'growth during register (MiB)',
            'time (s)',
            'err (px)',
            'target < 2 GB (10^9 bytes)',
        ],
        rows,
    )


# --------------------------------------------------------------------------
# thread sensitivity (one case, 1 vs 2 threads, same process)


THREAD_CHECK = [
    (
        'ours',
        'affine (ncc)',
        functools.partial(ours_register, model='affine', metric='ncc'),
    ),
    (
        'ours',
        'rigid (ncc)',
        functools.partial(ours_register, model='rigid', metric='ncc'),
    ),
    (PR.ECC, 'Affine', functools.partial(PR.ecc_register, motion='affine')),
    (
        PR.KORNIA,
        'homography, defaults',
        functools.partial(PR.kornia_register, model='homography'),
    ),
]


POLICIES = ('default', 'PASSIVE')


def thread_child(threads: int, reps: int = 3) -> list[dict]:
    """Time THREAD_CHECK in this process (run in a subprocess)."""
    PR.limit_threads(threads)
    case = C.make_case('affine', MONO, 256, 1)
    out = []
    for who, method, fn in THREAD_CHECK:
        fn(case.fixed[:128, :128].copy(), case.moving[:128, :128].copy())
        wall, cpu = [], []
        for _ in range(reps):
            t0, c0 = time.perf_counter(), time.process_time()
            fn(case.fixed, case.moving)
            wall.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        out.append(
            {
                'who': who,
                'method': method,
                'threads': threads,
                'policy': os.environ.get('OMP_WAIT_POLICY', 'default'),
                'time': float(np.median(wall)),
                'cpu': float(np.median(cpu)),
                'load': os.getloadavg()[0],
            }
        )
    return out


def run_thread_check(log) -> list[dict]:
    """THREAD_CHECK with 1 and 2 threads, OMP_WAIT_POLICY unset and PASSIVE."""
    out = []
    for policy in POLICIES:
        env = dict(os.environ, BENCH_KEEP_OMP='1')
        env.pop('OMP_WAIT_POLICY', None)
        if policy != 'default':
            env['OMP_WAIT_POLICY'] = policy
        for n in (1, 2):
            code = (
                f'import sys, json; sys.path.insert(0, {str(HERE)!r}); '
                f'import run_all; print(json.dumps(run_all.thread_child({n})))'
            )
            proc = subprocess.run(
                [sys.executable, '-c', code],
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            if proc.returncode:
                log(f'threads check failed: {proc.stderr.strip()[-300:]}')
                continue
            recs = json.loads(proc.stdout.strip().splitlines()[-1])
            for r in recs:
                log(
                    f'threads check: OMP_WAIT_POLICY={policy}, {n} thread(s): '
                    f'{r["who"]} {r["method"]}: {r["time"]:.3f} s wall, '
                    f'{r["cpu"]:.3f} s CPU'
                )
            out += recs
    return out


def thread_section(store) -> list[str]:
    recs = store.get('thread_check')
    if not recs or 'policy' not in recs[0]:
        return []
    keys = [(p, n) for p in POLICIES for n in (1, 2)]
    rows = []
    for who, method, _ in THREAD_CHECK:
        row = [who, method]
        for policy, n in keys:
            got = [
                r
                for r in recs
                if (r['who'], r['method'], r['policy'], r['threads'])
                == (who, method, policy, n)
            ]
            row.append(
                f'{fmt_time(got[0]["time"])} ({fmt_time(got[0]["cpu"])})'
                if got
                else '-'
            )
        rows.append(row)
    load = np.mean([r['load'] for r in recs])
    heads = [f'OMP_WAIT_POLICY {p}, {n} thread(s)' for p, n in keys]
    return [
        '## Thread sensitivity\n',
        f'One 256² affine case ({C.case_name("affine", MONO, 256, 1)}): median '
        'wall (CPU) time in s of 3 runs in a fresh process per column, load '
        f'average about {load:.1f} on 2 cores. With the OpenMP default (threads '
        'spin while they wait) and other processes busy on the cores, torch with '
        '2 threads waits for a descheduled thread at every parallel operation; '
        'with `OMP_WAIT_POLICY=PASSIVE` it does not. The benchmark runs with '
        '`OMP_WAIT_POLICY=PASSIVE` unless it is set otherwise.\n',
        md_table(['who', 'method', *heads], rows),
        '',
    ]


# --------------------------------------------------------------------------
# storage


def load_store() -> dict:
    if RESULTS.exists():
        return json.loads(RESULTS.read_text())
    return {'records': [], 'graf': [], 'memory': [], 'runs': {}}


def merge(old: list[dict], new: list[dict], key) -> list[dict]:
    fresh = {key(r) for r in new}
    return [r for r in old if key(r) not in fresh] + new


def rec_key(r):
    return (r['who'], r['method'], r['case'])


def graf_key(r):
    return (r['who'], r['method'])


def save_store(store: dict) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(store, indent=1, default=float))


# --------------------------------------------------------------------------
# the document


def versions() -> str:
    import cv2
    import kornia
    import pystackreg
    import SimpleITK as sitk
    import skimage
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path('/proc/cpuinfo').read_text().splitlines():
            if line.startswith('model name'):
                cpu = line.split(':', 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f'Python {platform.python_version()}, numpy {np.__version__}, torch '
        f'{torch.__version__}, kornia {kornia.__version__}, SimpleITK '
        f'{sitk.Version_VersionString()}, OpenCV {cv2.__version__}, pystackreg '
        f'{getattr(pystackreg, "__version__", "?")}, '
        f'scikit-image {skimage.__version__}; '
        f'CPU: {cpu}, {os.cpu_count()} cores.'
    )


def git_head() -> str:
    try:
        out = subprocess.run(
            ['git', '-C', str(ROOT), 'rev-parse', '--short', 'HEAD'],
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout.strip()
    except (subprocess.CalledProcessError, OSError):
        return 'no commit'


CASES_DOC = """\
Cases (`benchmarks/cases.py`, deterministic, seeded per case): scikit-image's
camera, astronaut, coins, moon, cell, retina, immunohistochemistry and coffee
(colour -> gray), case *i* uses image *i* mod 8; with fewer than 8 cases the
indices are spread over the 8 images. The fixed image is the central S x S crop
of the source (rescaled up, cubic, when its short side is below 2 S); the moving
image is the same scene under a random true transform about the crop centre,
rendered from the source (cubic spline), so its borders hold real content:
rotation U(-15, 15) deg and shift U(-8 %, 8 %) of S per axis (translation: shift
only); affine adds per-axis scale U(0.9, 1.1) and shear U(-0.1, 0.1); homography
moves the four corners by U(-6 %, 6 %) of S on top of the rigid part; *capture*
is rigid with rotation U(-30, 30) deg and shift U(-20 %, 20 %). Moving intensities
get a gamma U(0.7, 1.4); "multi" cases then remap them non-monotonically with
the fold x -> 0.5 - 0.5 cos(2 pi x) (0 at 0, 1 at 1/2, 0 at 1: dark and bright both
turn dark; global correlation with the fixed image about +0.3; see `cases.py` for
why not 0.5 + 0.5 cos(1.5 pi x), which is mostly an inversion); both images get
Gaussian noise sigma 0.02, clipped to [0, 1], float32.

Error = mean distance (px) between the 4 image corners and the centre mapped by
the estimated and by the true `moving_from_fixed` (projective divide); a failed
run (exception) counts as an infinite error ("fail"). Success: error < 0.5 px
(also shown: < 1 px, PEERS.md's criterion). Time: wall clock of the registration
call only (case generation excluded), median over the cases, after one untimed
warm-up call per method on a 128 px crop (imports, first-call costs).
Peer settings are those of `/work/shared/PEERS.md` (see `benchmarks/peers.py`).
Our engine: `napari_coreg.register(fixed, moving, model=..., metric=...,
backend="torch")` with its defaults otherwise.
"""


def write_markdown(store, names, args, notes) -> str:
    names = set(names)
    records = [r for r in store['records'] if r['case'] in names]
    sizes = [s for s in args.sizes if select(records, size=s)]
    out = [
        '# Benchmarks: napari-coreg vs SimpleITK, OpenCV ECC, kornia, pystackreg\n',
        f'Written by `{" ".join(["python benchmarks/run_all.py", *sys.argv[1:]])}` '
        f'on {datetime.datetime.now():%Y-%m-%d %H:%M} (repository HEAD '
        f'{git_head()}); the notes below say which runs produced the results. '
        'Raw per-case results: `benchmarks/results/records.json`.\n',
        versions() + '\n',
        'Cases per size: '
        + ', '.join(f'{s}²: {cases_per_size(args, s)}' for s in sizes)
        + (
            ' (1024² uses fewer cases to keep the run under 20 minutes)'
            if 1024 in sizes and cases_per_size(args, 1024) < args.cases
            else ''
        )
        + '.\n',
    ]
    out += [f'> {n}\n' for n in notes + [threads_note(records)]]
    out += [
        '## Speed targets\n',
        speed_targets(records),
        '',
        '## Peers: measured vs PEERS.md\n',
        'Cells: successes (< 1 px) / n, median error (px), median time (s); '
        "in brackets PEERS.md's figures (successes of 8, error, time).\n",
        peers_vs_reference(records, sizes),
        '',
    ]
    out += ['## Results per case family\n']
    for family, modality in sorted({(r['family'], r['modality']) for r in records}):
        out += [
            f'### {family} / {modality}\n',
            family_table(records, family, modality, sizes),
        ]
        ratios = ratio_table(records, family, modality, sizes)
        if ratios:
            out += [
                "Our median time / the peer's median time, per size: wall clock "
                '(CPU time in brackets):\n',
                ratios,
            ]
    out += capture_section(records, sizes)
    out += graf_section(store)
    out += memory_section(store)
    out += thread_section(store)
    out += [
        '## Our engine: cases above 0.5 px\n',
        ours_failures(records),
        '',
        '## How the cases are made\n',
        CASES_DOC,
    ]
    return '\n'.join(out)


def threads_note(records) -> str:
    """Which thread limit each group of results ran with."""
    groups = {}
    for r in records:
        key = 'ours' if r['who'] == OURS else 'peers'
        groups.setdefault(key, set()).add(r.get('threads', 2))
    parts = [
        f'{k}: {", ".join(map(str, sorted(v)))}' for k, v in sorted(groups.items())
    ]
    return 'Threads per library in these results: ' + '; '.join(parts) + '.'


def capture_section(records, sizes) -> list[str]:
    if not select(records, family='capture'):
        return []
    size = 512 if 512 in sizes else sizes[0]
    return [
        '## Capture range\n',
        'Rigid cases with rotation up to 30 deg and shift up to 20 % of S '
        '(the capture family above); per case at '
        f'{size}² (corner error in px):\n',
        capture_cases(records, size),
    ]


def graf_section(store) -> list[str]:
    if not store.get('graf'):
        return []
    return [
        '## kornia homography tutorial: Oxford graf img1 -> img2\n',
        '800x640 pair, ground truth `H1to2p` (img1 (x, y) -> img2 (x, y)); ours is '
        "`register(fixed=img1, moving=img2, model='homography')` on gray images, "
        'whose `moving_from_fixed` is H1to2 in (row, col). kornia follows the '
        'tutorial: '
        '`register(src=img1, dst=img2)` on RGB returns img1_from_img2 (normalised), '
        "inverted here. Corner error over img1's corners + centre; mean L1 = mean "
        'absolute difference (RGB, [0, 1], whole 800x640 frame, zeros outside) between '
        "img1 warped into img2's frame by the estimate and by the truth (the tutorial "
        'printed 0.0053; PEERS.md measured 0.0063 for kornia in 25.8 s and ECC 6 '
        'levels 0.93 px in 0.59 s).\n',
        graf_table(store['graf']),
        '',
    ]


def memory_section(store) -> list[str]:
    if not store.get('memory'):
        return []
    return [
        '## Memory\n',
        'Peak RSS (`VmHWM` of `/proc/self/status`) of a fresh Python '
        'process that imports torch and napari_coreg, loads a rigidly moved pair '
        'of the camera image resized to the given size (float32, 64 MiB each at '
        '4096²) and registers it once with our engine (CPU; default settings). '
        'Target: < 2 GB.\n',
        memory_table(store['memory']),
        '',
    ]


# --------------------------------------------------------------------------
# main


def parse_args(argv=None):
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument('--sizes', type=int, nargs='+', default=list(C.SIZES))
    ap.add_argument('--cases', type=int, default=8, help='cases per family and size')
    ap.add_argument(
        '--cases-large',
        type=int,
        default=4,
        help='at most this many cases at 1024² and above',
    )
    ap.add_argument(
        '--quick',
        action='store_true',
        help='smoke run: 256² only, 2 cases, 1024² memory check, no kornia '
        'tutorial, no thread check; writes benchmarks/results/quick.md and '
        'keeps the stored results',
    )
    ap.add_argument('--only', choices=['ours', 'peers'])
    ap.add_argument(
        '--out',
        type=Path,
        default=None,
        help='default docs/benchmarks.md (--quick: benchmarks/results/quick.md)',
    )
    ap.add_argument(
        '--families',
        nargs='+',
        metavar='FAMILY/MODALITY',
        help='run only these, e.g. rigid/multi affine/mono (default: all; '
        "'none' runs no case, e.g. for the memory check alone)",
    )
    ap.add_argument(
        '--threads',
        type=int,
        default=PR.THREADS,
        help='threads per library (torch, OpenCV, SimpleITK); default 2',
    )
    ap.add_argument('--memory-size', type=int, default=4096)
    ap.add_argument(
        '--report',
        action='store_true',
        help='run nothing: rewrite the document from the stored results',
    )
    ap.add_argument('--skip-graf', action='store_true')
    ap.add_argument('--skip-memory', action='store_true')
    ap.add_argument('--skip-thread-check', action='store_true')
    args = ap.parse_args(argv)
    if args.quick:
        args.sizes, args.cases, args.memory_size = [256], 2, 1024
        args.skip_thread_check = True
    if args.out is None:
        args.out = (
            (HERE / 'results' / 'quick.md')
            if args.quick
            else ROOT / 'docs' / 'benchmarks.md'
        )
    return args


def run_note(group: str, info: dict) -> str:
    return (
        f'Latest run of {group}: {info["when"]}, `run_all.py {info["command"]}`, '
        f'{info["threads"]} thread(s) per library, load average '
        f'{info["load"][0]:.1f} at the start and {info["load"][1]:.1f} at the end '
        f'(2 cores: other processes on the machine inflate wall times), '
        f'{info["seconds"]} s.'
    )


def restrict(configs: list[Config], keep: set) -> list[Config]:
    """Configs limited to the (family, modality) pairs in ``keep``."""
    out = []
    for c in configs:
        fams = tuple(f for f in c.families if f in keep)
        if fams:
            out.append(Config(c.who, c.method, c.fn, fams, c.max_size))
    return out


def main(argv=None) -> None:
    args = parse_args(argv)
    PR.limit_threads(args.threads)
    t_start = time.perf_counter()

    def log(msg):
        print(f'[{time.perf_counter() - t_start:7.1f}s] {msg}', flush=True)

    notes = []
    load_start = os.getloadavg()[0]
    with_peers = args.only != 'ours' and not args.report
    with_ours = args.only != 'peers' and not args.report
    if with_ours and (why := ours_available()):
        notes.append(
            'Our engine was skipped: `from napari_coreg import register` '
            f'failed ({why}).'
        )
        log(notes[-1])
        with_ours = False
    configs = (PR.peer_configs() if with_peers else []) + (
        ours_configs() if with_ours else []
    )
    if args.families:
        configs = restrict(configs, {tuple(f.split('/')) for f in args.families})
    store = load_store()
    records = run_cases(configs, args, log)
    names = planned_names(PR.peer_configs() + ours_configs(), args)
    store['records'] = merge(store['records'], records, rec_key)
    if not args.skip_graf and (with_ours or with_peers):
        store['graf'] = merge(
            store.get('graf', []), run_graf(args, with_ours, with_peers, log), graf_key
        )
    if with_ours and not args.skip_memory:
        store['memory'] = run_memory(args.memory_size, log)
    if with_ours and with_peers and not args.skip_thread_check:
        store['thread_check'] = run_thread_check(log)
    info = {
        'when': f'{datetime.datetime.now():%Y-%m-%d %H:%M}',
        'command': ' '.join(sys.argv[1:]),
        'threads': PR.THREADS,
        'load': [round(load_start, 2), round(os.getloadavg()[0], 2)],
        'seconds': round(time.perf_counter() - t_start),
    }
    runs = {k: v for k, v in store.get('runs', {}).items() if isinstance(v, dict)}
    for group in ('peers', 'ours'):
        if any((r['who'] == OURS) == (group == 'ours') for r in records):
            runs[group] = info
    store['runs'] = runs
    notes += [run_note(group, runs[group]) for group in sorted(runs)]
    if not args.quick:  # a smoke run does not overwrite stored results
        save_store(store)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(write_markdown(store, names, args, notes))
    log(f'wrote {args.out}' + ('' if args.quick else f' and {RESULTS}'))


if __name__ == '__main__':
    main()
