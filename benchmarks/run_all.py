"""Run our engine and every peer on the same cases; write docs/benchmarks.md.

    python benchmarks/run_all.py                      # full run (~20 min, 2 cores)
    python benchmarks/run_all.py --quick              # smoke run
    python benchmarks/run_all.py --only peers --sizes 256 512
    python benchmarks/run_all.py --suites pairs graf  # some suites only
    python benchmarks/run_all.py --report             # rewrite from stored records

The suites (one file each, each runnable alone): ``bench_pairs.py`` (2D pairs
vs the peers), ``bench_graf.py`` (kornia's homography tutorial pair, needs the
shared data), ``bench_memory.py`` (peak memory of a large pair) and
``bench_threads.py`` (thread sensitivity). Every case runs in a child process
through ``harness.py``; records are kept in ``benchmarks/results/records.json``
(a run replaces the entries it recomputes and keeps the others) and
``report.py`` writes the document from them. The 3D, stack and homography
solver benchmarks have their own documents: ``bench_3d.py``,
``bench_stack.py``, ``bench_homography_solver.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import driver  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    """Run the suites of docs/benchmarks.md and write it."""
    driver.main(list(driver.SUITES), argv, doc=__doc__)


if __name__ == '__main__':
    main()
