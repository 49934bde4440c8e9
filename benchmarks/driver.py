"""Run benchmark suites, store their records, write the document from them.

Shared by ``run_all.py`` (every suite of ``docs/benchmarks.md``) and by each
suite run alone (``python benchmarks/bench_pairs.py``). A suite is a module
with ``SUITE`` (its name), ``add_arguments(parser)``, ``quick(args)`` (smoke
settings) and ``run(args, store, log) -> set`` (measure through
:mod:`harness`, merge its records into ``store``, return the groups that ran,
``'ours'`` and/or ``'peers'``).
"""

from __future__ import annotations

import argparse
import copy
import importlib
import os
import sys
import time
from pathlib import Path
from types import ModuleType

import harness
import report

#: Suites of docs/benchmarks.md, in run order: name -> module.
SUITES = {
    'pairs': 'bench_pairs',
    'graf': 'bench_graf',
    'memory': 'bench_memory',
    'threads': 'bench_threads',
    'speed': 'bench_targets',
}
EMPTY = {'records': [], 'graf': [], 'memory': [], 'thread_check': [], 'runs': {}}
QUICK_OUT = harness.RESULTS / 'quick.md'


def parse_args(
    names: list[str], argv: list[str] | None, doc: str | None
) -> argparse.Namespace:
    """Common options and those of the suites ``names``."""
    ap = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        '--suites', nargs='+', choices=names, default=names, help='run only these'
    )
    ap.add_argument(
        '--quick',
        action='store_true',
        help='smoke run: tiny settings; writes benchmarks/results/quick.md from '
        'its own records only and keeps the stored results',
    )
    ap.add_argument('--only', choices=['ours', 'peers'])
    ap.add_argument(
        '--threads',
        type=int,
        default=harness.DEFAULT_THREADS,
        help='threads per library (torch, OpenCV, SimpleITK); default 2',
    )
    ap.add_argument(
        '--data',
        help='folder of the shared test data (default: $NAPARI_COREG_DATA, else '
        '../shared/data beside the repository)',
    )
    ap.add_argument('--store', type=Path, default=report.STORE)
    ap.add_argument(
        '--out', type=Path, help='default docs/benchmarks.md (--quick: quick.md)'
    )
    ap.add_argument(
        '--report',
        action='store_true',
        help='run nothing: rewrite the document from the stored results',
    )
    for module in _modules(names):
        module.add_arguments(ap)
    return ap.parse_args(argv)


def _modules(names: list[str]) -> list[ModuleType]:
    return [importlib.import_module(SUITES[name]) for name in names]


def main(names: list[str], argv: list[str] | None = None, doc: str | None = None):
    """Run the suites ``names`` (or those of ``--suites``) and write the document."""
    args = parse_args(names, argv, doc)
    harness.pin_threads(args.threads)
    modules = _modules(args.suites)
    if args.quick:
        for module in modules:
            module.quick(args)
    store = copy.deepcopy(EMPTY) if args.quick else harness.load(args.store, EMPTY)
    log = harness.logger()
    command = ' '.join(
        [Path(sys.argv[0]).name, *(sys.argv[1:] if argv is None else argv)]
    )
    started, load_start = time.perf_counter(), os.getloadavg()[0]
    if not args.report:
        groups: set[str] = set()
        for module in modules:
            groups |= module.run(args, store, log)
        header = harness.run_header(command, started, load_start)
        store.setdefault('runs', {}).update(dict.fromkeys(groups, header))
        if not args.quick:
            harness.save(args.store, store)
            log(f'stored {args.store}')
    out = args.out or (QUICK_OUT if args.quick else report.DOCUMENT)
    out.parent.mkdir(parents=True, exist_ok=True)
    text = report.write_markdown(
        store,
        command=f'python benchmarks/{command}',
        names=getattr(args, 'report_names', None),
    )
    out.write_text(text)
    log(f'wrote {out}')
