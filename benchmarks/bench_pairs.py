"""2D pairs: our engine and every peer on the same benchmark cases.

    python benchmarks/bench_pairs.py --quick          # smoke run
    python benchmarks/bench_pairs.py --sizes 256 512 --only peers
    python benchmarks/bench_pairs.py --families rigid/multi affine/mono

Cases come from :func:`napari_coreg.cases.benchmark_case` (families of
PEERS.md: translation, rigid, affine, homography, capture; mono and multi).
Each method runs on each (family, modality, size) in a fresh child process
(:func:`harness.run_case`): one untimed warm-up call on a 128 px crop, then
the cases, each timed alone (case generation excluded). Records go to
``benchmarks/results/records.json`` (``records``), one per method and case.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
from typing import Any

import harness
import numpy as np
import peers as PR
from peers import MONO, MULTI, Config
from report_tables import OURS, stats, summary_line
from scoring import error_px

from napari_coreg.cases import (
    FAMILIES,
    IMAGES,
    benchmark_cases,
    case_indices,
    case_name,
)

SUITE = 'pairs'
SIZES = (256, 512, 1024)
LAST_INFO: dict[str, Any] = {}  # details of our engine's last run, for the records


# --------------------------------------------------------------------------
# our engine


def ours_register(fixed: np.ndarray, moving: np.ndarray, **kwargs) -> np.ndarray:
    """Our engine; returns ``moving_from_fixed`` (row, col). Raises on failure."""
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
    merged: dict[tuple[str, str], Config] = {}
    for fam, (model, metrics) in plan.items():
        for metric in metrics:
            kw = {'model': model} | ({'metric': metric} if metric else {})
            label = f'{model} ({metric or "defaults"})'
            old = merged.get((OURS, label))
            families = (old.families if old else ()) + (fam,)
            fn = old.fn if old else functools.partial(ours_register, **kw)
            merged[OURS, label] = Config(OURS, label, fn, families)
    return list(merged.values())


def all_configs(with_peers: bool = True, with_ours: bool = True) -> list[Config]:
    """The peers' configurations, then ours."""
    return (PR.peer_configs() if with_peers else []) + (
        ours_configs() if with_ours else []
    )


def restrict(configs: list[Config], keep: set[tuple[str, str]]) -> list[Config]:
    """Configs limited to the (family, modality) pairs in ``keep``."""
    out = []
    for c in configs:
        fams = tuple(f for f in c.families if f in keep)
        if fams:
            out.append(Config(c.who, c.method, c.fn, fams, c.max_size))
    return out


# --------------------------------------------------------------------------
# in the child: one method on one batch of cases


def run_one(config: Config, case) -> dict[str, Any]:
    """Time one registration (case generation excluded) and score it."""
    error = None
    with harness.timed() as t:
        try:
            est = config.run(case.fixed, case.moving)
        except Exception as exc:  # noqa: BLE001 - a failure is a result
            est, error = None, f'{type(exc).__name__}: {exc}'[:300]
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
        'time': t['seconds'],
        'cpu': t['cpu_seconds'],
        'err': error_px(est, case.truth, case.fixed.shape),
        'error': error,
        'params': {k: np.round(v, 4).tolist() for k, v in case.params.items()},
        'matrix': None if est is None else np.asarray(est).tolist(),
        'info': info,
        'threads': PR.THREADS,
    }


def run_batch(
    who: str, method: str, family: str, modality: str, size: int, n: int
) -> dict[str, list[dict]]:
    """Warm up, then register ``n`` cases with one method (in a child process)."""
    PR.limit_threads()
    config = next(c for c in all_configs() if (c.who, c.method) == (who, method))
    batch = benchmark_cases(family, modality, size, n)
    with contextlib.suppress(Exception):  # untimed: imports, allocator, caches
        config.run(
            batch[0].fixed[:128, :128].copy(), batch[0].moving[:128, :128].copy()
        )
    harness.baseline()
    return {'records': [run_one(config, case) for case in batch]}


# --------------------------------------------------------------------------
# in the parent


def cases_per_size(args: argparse.Namespace, size: int) -> int:
    """Cases per family at ``size`` (fewer at 1024² and above)."""
    return args.cases if size < 1024 else min(args.cases, args.cases_large)


def planned_names(configs: list[Config], args: argparse.Namespace) -> set[str]:
    """Names of every case this run's tables are about."""
    families = {f for c in configs for f in c.families}
    return {
        case_name(f, m, s, i)
        for s in args.sizes
        for f, m in families
        for i in case_indices(cases_per_size(args, s))
    }


def _failed(batch: dict, config: Config, family, modality, size, n) -> list[dict]:
    """One failure record per case of a batch whose child did not finish."""
    return [
        {
            'who': config.who,
            'method': config.method,
            'family': family,
            'modality': modality,
            'size': size,
            'index': i,
            'image': IMAGES[i % len(IMAGES)],
            'case': case_name(family, modality, size, i),
            'time': float('nan'),
            'cpu': float('nan'),
            'err': float('inf'),
            'error': f'{batch["status"]}: {batch["error"]}',
            'params': {},
            'matrix': None,
            'info': {},
            'threads': batch['threads'],
        }
        for i in case_indices(n)
    ]


def measure(configs: list[Config], args: argparse.Namespace, log) -> list[dict]:
    """Run every config on its families' cases, one child per batch."""
    families = sorted({f for c in configs for f in c.families})
    records = []
    for size in args.sizes:
        n = cases_per_size(args, size)
        for family, modality in families:
            for config in [c for c in configs if c.applies(family, modality, size)]:
                kwargs = {
                    'who': config.who,
                    'method': config.method,
                    'family': family,
                    'modality': modality,
                    'size': size,
                    'n': n,
                }
                name = f'{config.who}: {config.method} / {family}-{modality}-{size}'
                batch = harness.run_case(
                    SUITE,
                    name,
                    'bench_pairs',
                    'run_batch',
                    kwargs,
                    timeout=args.timeout,
                )
                recs = (
                    batch['result']['records']
                    if batch['status'] == 'ok'
                    else _failed(batch, config, family, modality, size, n)
                )
                for r in recs:
                    r['batch_peak_rss_mib'] = batch['memory'].get('peak_rss_mib')
                records += recs
                log(f'[{size}] {family}/{modality} {name:60s} {summary_line(recs)}')
    return records


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """This suite's options."""
    group = parser.add_argument_group('2D pairs')
    group.add_argument('--sizes', type=int, nargs='+', default=list(SIZES))
    group.add_argument('--cases', type=int, default=8, help='cases per family, size')
    group.add_argument(
        '--cases-large', type=int, default=4, help='at most this many at 1024² and up'
    )
    group.add_argument(
        '--families',
        nargs='+',
        metavar='FAMILY/MODALITY',
        help=f'run only these, e.g. rigid/multi affine/mono (of {", ".join(FAMILIES)})',
    )
    group.add_argument(
        '--timeout', type=float, default=1800.0, help='seconds per batch of cases'
    )


def quick(args: argparse.Namespace) -> None:
    """Smoke settings: 256² only, 2 cases."""
    args.sizes, args.cases = [256], 2


def run(args: argparse.Namespace, store: dict, log) -> set[str]:
    """Measure, merge into ``store['records']``; return the groups that ran."""
    configs = all_configs(args.only != 'ours', args.only != 'peers')
    if args.families:
        configs = restrict(configs, {tuple(f.split('/')) for f in args.families})
    records = measure(configs, args, log)
    store['records'] = harness.merge(
        store.get('records', []), records, lambda r: (r['who'], r['method'], r['case'])
    )
    args.report_names = planned_names(all_configs(), args)
    if records:
        log(f'{SUITE}: {len(records)} records, {stats(records)["ok05"]} below 0.5 px')
    return {OURS if r['who'] == OURS else 'peers' for r in records}


if __name__ == '__main__':
    import driver

    driver.main([SUITE], doc=__doc__)
