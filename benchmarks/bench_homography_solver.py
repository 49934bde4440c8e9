"""Throughput of the closed-form four-point homography solver versus kornia's.

Times homographies per second of :func:`napari_coreg.homography.
homography_from_four_points` and :func:`kornia.geometry.transform.
get_perspective_transform` on CPU with two threads, in float32, for the forward
pass alone and for forward plus backward. Run as a script to print the markdown
table, or call :func:`run` to get it as a string.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
from kornia.geometry.transform import get_perspective_transform

from napari_coreg.homography import homography_from_four_points

Solver = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

BATCH_SIZES = (1, 64, 4096, 65536)
SOLVERS: dict[str, Solver] = {
    "napari-coreg": homography_from_four_points,
    "kornia": get_perspective_transform,
}
THREADS = 2
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


def _row(batch: int) -> str:
    """Return one markdown table row: throughputs and speed-ups for a batch size."""
    cells = [f"{batch}"]
    for backward in (False, True):
        ours, theirs = _throughputs(batch, backward)
        cells += [f"{ours:,.0f}", f"{theirs:,.0f}", f"{ours / theirs:.2f}x"]
    return "| " + " | ".join(cells) + " |"


def run() -> str:
    """Time both solvers and return the results as a markdown table.

    Uses ``torch.set_num_threads(2)`` for the measurement and restores the
    previous thread count afterwards.

    Returns
    -------
    str
        Markdown table of homographies per second (median of repeated runs)
        per batch size, forward only and forward plus backward, with the
        speed-up of napari-coreg over kornia.
    """
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    try:
        rows = [_row(batch) for batch in BATCH_SIZES]
    finally:
        torch.set_num_threads(previous_threads)
    header = [
        "batch",
        "napari-coreg fwd (H/s)",
        "kornia fwd (H/s)",
        "fwd speed-up",
        "napari-coreg fwd+bwd (H/s)",
        "kornia fwd+bwd (H/s)",
        "fwd+bwd speed-up",
    ]
    lines = [
        f"Four-point homography solvers, CPU, {THREADS} threads, float32, "
        f"torch {torch.__version__}; median of {REPEATS} runs.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---:|" * len(header),
        *rows,
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(run())
