"""Run our engine and every peer on the same cases; write docs/benchmarks.md.

    python benchmarks/run_all.py                      # full run (~35 min, 2 cores)
    python benchmarks/run_all.py --quick              # smoke run
    python benchmarks/run_all.py --only peers --sizes 256 512
    python benchmarks/run_all.py --suites pairs graf  # some suites only
    python benchmarks/run_all.py --suites speed       # issue 11's targets (~15 min)
    python benchmarks/run_all.py --report             # rewrite from stored records
    python benchmarks/run_all.py --with 3d stack solver   # also the other suites

The suites of docs/benchmarks.md (one file each, each runnable alone):
``bench_pairs.py`` (2D pairs vs the peers), ``bench_graf.py`` (kornia's
homography tutorial pair; needs the shared data), ``bench_memory.py`` (peak
memory of a large pair), ``bench_threads.py`` (thread sensitivity) and
``bench_targets.py`` (suite ``speed``: every row of issue 11's speed and
memory targets against its peer, in one run). Every
case runs in a child process through ``harness.py``; records are kept in
``benchmarks/results/records.json`` (a run replaces the entries it recomputes
and keeps the others) and ``report.py`` writes the document from them.

``--with`` also runs the suites that have their own sections in
``benchmarks/results``: ``bench_3d.py`` (3d), ``bench_stack.py`` (stack) and
``bench_homography_solver.py`` (solver), each with ``--quick`` when given.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import driver  # noqa: E402

#: Suites with their own results section: name -> module (with a ``main``).
EXTRAS = {'3d': 'bench_3d', 'stack': 'bench_stack', 'solver': 'bench_homography_solver'}


def main(argv: list[str] | None = None) -> None:
    """Run the suites of docs/benchmarks.md and write it, then any ``--with``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument('--with', dest='extras', nargs='+', choices=EXTRAS, default=[])
    known, rest = pre.parse_known_args(argv)
    driver.main(list(driver.SUITES), rest, doc=__doc__)
    for name in known.extras:
        importlib.import_module(EXTRAS[name]).main(
            ['--quick'] if '--quick' in rest else []
        )


if __name__ == '__main__':
    main()
