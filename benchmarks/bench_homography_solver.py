"""Throughput of the closed-form four-point homography solver versus kornia's.

    python benchmarks/bench_homography_solver.py           # batches 1 to 65536
    python benchmarks/bench_homography_solver.py --quick   # smoke: batches 1, 64

Times homographies per second of :func:`napari_coreg.homography.
homography_from_four_points` and :func:`kornia.geometry.transform.
get_perspective_transform` on CPU with two threads, in float32, for the forward
pass alone and for forward plus backward, in a child process
(:func:`harness.run_case`). Records go to
``benchmarks/results/homography_solver.json``; the markdown table is written
from them by :func:`report_suites.solver_section` (printed, and saved to
``benchmarks/results/homography_solver.md``).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import harness
import torch
from kornia.geometry.transform import get_perspective_transform

from napari_coreg.homography import homography_from_four_points

Solver = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

BATCH_SIZES = (1, 64, 4096, 65536)
SOLVERS: dict[str, Solver] = {
    'napari-coreg': homography_from_four_points,
    'kornia': get_perspective_transform,
}
STORE = harness.RESULTS / 'homography_solver.json'
REPEATS = 7
MIN_RUN_SECONDS = 0.05


def _quads(batch: int, seed: int) -> torch.Tensor:
    """Return ``(batch, 4, 2)`` float32 squares of side 512, corners jittered ±30%."""
    generator = torch.Generator().manual_seed(seed)
    square = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    noise = torch.rand(batch, 4, 2, generator=generator) - 0.5
    return 512.0 * (square + 0.6 * noise)


def _step(
    solver: Solver, src: torch.Tensor, dst: torch.Tensor, backward: bool
) -> Callable[[], None]:
    """Return a closure running the solver once (and its backward pass)."""
    if not backward:

        def forward() -> None:
            with torch.no_grad():
                solver(src, dst)

        return forward
    src, dst = src.clone().requires_grad_(), dst.clone().requires_grad_()

    def forward_backward() -> None:
        solver(src, dst).sum().backward()
        src.grad = dst.grad = None

    return forward_backward


def _seconds_per_call(step: Callable[[], None], calls: int) -> float:
    """Return the mean wall time of ``calls`` consecutive calls of ``step``."""
    start = time.perf_counter()
    for _ in range(calls):
        step()
    return (time.perf_counter() - start) / calls


def _calls_per_run(step: Callable[[], None]) -> int:
    """Return how many calls of ``step`` take at least ``MIN_RUN_SECONDS``."""
    calls = 1
    while _seconds_per_call(step, calls) * calls < MIN_RUN_SECONDS:
        calls *= 2
    return calls


def _throughputs(batch: int, backward: bool) -> list[float]:
    """Return homographies per second of each solver, in ``SOLVERS`` order.

    The solvers' timed runs are interleaved so that a change in machine load
    affects them alike; each figure is the batch size over the median run.
    """
    src, dst = _quads(batch, seed=0), _quads(batch, seed=1)
    steps = [_step(solver, src, dst, backward) for solver in SOLVERS.values()]
    calls = [_calls_per_run(step) for step in steps]
    runs: list[list[float]] = [[] for _ in steps]
    for _ in range(REPEATS):
        for step, count, times in zip(steps, calls, runs, strict=True):
            times.append(_seconds_per_call(step, count))
    return [batch / statistics.median(times) for times in runs]


def measure(batch_sizes: list[int]) -> dict[str, list[dict[str, float]]]:
    """Homographies per second of each solver per batch size (in a child).

    Returns
    -------
    dict
        ``rows``: per batch size, ``fwd`` and ``fwd_bwd`` throughputs (H/s)
        of each solver in ``SOLVERS`` order.
    """
    torch.set_num_threads(harness.threads())
    rows = []
    for batch in batch_sizes:
        row: dict[str, float] = {'batch': batch}
        for key, backward in (('fwd', False), ('fwd_bwd', True)):
            for name, value in zip(SOLVERS, _throughputs(batch, backward), strict=True):
                row[f'{name} {key}'] = value
        rows.append(row)
    return {'rows': rows, 'solvers': list(SOLVERS), 'repeats': REPEATS}


def main(argv: list[str] | None = None) -> None:
    """Measure in a child process, store the records, print the table."""
    import argparse
    import os
    import sys
    import time

    import report_suites

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--quick', action='store_true', help='batches 1 and 64 only')
    parser.add_argument('--threads', type=int, default=harness.DEFAULT_THREADS)
    args = parser.parse_args(argv)
    harness.pin_threads(args.threads)
    started, load_start = time.perf_counter(), os.getloadavg()[0]
    sizes = list(BATCH_SIZES[:2] if args.quick else BATCH_SIZES)
    rec = harness.run_case(
        'solver',
        'four-point solvers',
        'bench_homography_solver',
        'measure',
        {'batch_sizes': sizes},
    )
    if rec['status'] != 'ok':
        raise SystemExit(f'failed: {rec["error"]}')
    command = ' '.join(
        ['bench_homography_solver.py', *(sys.argv[1:] if argv is None else argv)]
    )
    store = {'run': harness.run_header(command, started, load_start), **rec['result']}
    text = report_suites.solver_section(store)
    if not args.quick:
        harness.save(STORE, store)
        STORE.with_suffix('.md').write_text(text)
    print(text)


if __name__ == '__main__':
    main()
