"""Thread sensitivity: one case, 1 vs 2 threads, OpenMP wait policy default vs PASSIVE.

    python benchmarks/bench_threads.py

Each (policy, threads) column runs in a fresh child process
(:func:`harness.run_case` with :func:`harness.thread_env`), which times 3
runs of each method on one 256² affine case after a warm-up. Records go to
``records.json`` (``thread_check``).

This module imports nothing heavy at the top: in the child torch must load
before ``napari_coreg`` (whose import sets ``OMP_WAIT_POLICY=PASSIVE`` by
default), or the "default" column would not be the OpenMP default.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import harness

SUITE = 'threads'
POLICIES = ('default', 'PASSIVE')
CASE = ('affine', 'mono', 256, 1)
#: This process's policy, read before napari_coreg can set it.
POLICY = os.environ.get('OMP_WAIT_POLICY', 'default')


def _methods() -> list[tuple[str, str, Any]]:
    """(who, method, fn(fixed, moving)); imports torch first."""
    import functools

    import peers as PR
    import torch  # noqa: F401 - before napari_coreg, see the module docstring
    from bench_pairs import ours_register

    return [
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


def thread_child(reps: int = 3) -> dict[str, list[dict]]:
    """Time every method on the case (in a child process)."""
    import statistics

    methods = _methods()
    import peers as PR

    from napari_coreg.cases import benchmark_case

    n = harness.threads()
    PR.limit_threads(n)
    case = benchmark_case(*CASE)
    out = []
    for who, method, fn in methods:
        fn(case.fixed[:128, :128].copy(), case.moving[:128, :128].copy())
        runs = []
        for _ in range(reps):
            with harness.timed() as t:
                fn(case.fixed, case.moving)
            runs.append(t)
        out.append(
            {
                'who': who,
                'method': method,
                'case': case.name,
                'threads': n,
                'policy': POLICY,
                'time': statistics.median(r['seconds'] for r in runs),
                'cpu': statistics.median(r['cpu_seconds'] for r in runs),
                'load': os.getloadavg()[0],
            }
        )
    return {'records': out}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """This suite's options (none)."""


def quick(args: argparse.Namespace) -> None:
    """Smoke settings: the check is left out (its point is timing)."""
    args.skip_threads = True


def run(args: argparse.Namespace, store: dict, log) -> set[str]:
    """Run every column, replace ``store['thread_check']``; return groups run."""
    if args.only or getattr(args, 'skip_threads', False):
        return set()
    base = {k: v for k, v in os.environ.items() if k != 'OMP_WAIT_POLICY'}
    out = []
    for policy in POLICIES:
        for n in (1, 2):
            env = harness.thread_env(
                n, policy=None if policy == 'default' else policy, base=base
            )
            name = f'OMP_WAIT_POLICY={policy}, {n} thread(s)'
            rec = harness.run_case(
                SUITE, name, 'bench_threads', 'thread_child', {}, env=env
            )
            if rec['status'] != 'ok':
                log(f'threads check {name}: {rec["status"]} {rec["error"]}')
                continue
            for r in rec['result']['records']:
                log(
                    f'threads check: {name}: {r["who"]} {r["method"]}: '
                    f'{r["time"]:.3f} s wall, {r["cpu"]:.3f} s CPU'
                )
            out += rec['result']['records']
    store['thread_check'] = out
    return {'ours', 'peers'} if out else set()


if __name__ == '__main__':
    import driver

    driver.main([SUITE], doc=__doc__)
