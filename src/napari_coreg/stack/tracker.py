"""Bookkeeping of a stack run: progress events and per-frame figures.

:meth:`Tracker.progress` is the one place a :class:`StackProgress` is made.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from ..result import Progress
from .batching import BatchOut, Job
from .plan import Plan
from .result import BatchReport, StackProgress

__all__ = ['Runner', 'Tracker']


class Runner(Protocol):
    """Runs jobs (here or on a dask cluster); see ``LocalRunner``."""

    def run(
        self, jobs: list[Job], fixed: NDArray | None
    ) -> Iterator[tuple[Progress | None, BatchOut | None]]:
        """Yield ``(progress, None)`` per engine step, ``(None, out)`` per job."""

    def close(self) -> None:
        """Release what the runner holds."""


class Tracker:
    """Counts frame operations and collects per-frame and per-batch figures.

    Parameters
    ----------
    plan : Plan
        The checked run: frames, rounds, reference, ``out``.
    """

    def __init__(self, plan: Plan) -> None:
        n = plan.frames.n
        mean = plan.reference == 'mean'
        self.plan = plan
        self.n_levels = len(plan.spec.schedule)
        self.step = 0
        # registrations in every round, the mean's averaging, writing out
        self.total = (
            (n - (0 if mean else 1)) * plan.rounds
            + (n if mean else 0)
            + (n if plan.out is not None else 0)
        )
        self.before = np.full(n, np.nan)
        self.after = np.full(n, np.nan)
        self.seconds = np.zeros(n)
        self.batch_of_frame = np.full((n, plan.rounds), -1, dtype=np.int64)
        self.reports: list[BatchReport] = []
        # frames started from their neighbours (warm), registered again
        # because their warm start failed, and key frames refined
        self.warm = self.redone = self.keys = 0

    def progress(
        self,
        phase: str,
        frames_done: int,
        n_frames: int,
        batch: int,
        n_batches: int,
        round_: int = 0,
        n_rounds: int = 1,
        engine: Progress | None = None,
    ) -> StackProgress:
        """Make the progress event now (``engine``: the engine step, if any)."""
        return StackProgress(
            step=self.step,
            total=self.total,
            level=self.n_levels - 1 if engine is None else engine.level,
            n_levels=self.n_levels if engine is None else engine.n_levels,
            iteration=0 if engine is None else engine.iteration,
            loss=float('nan') if engine is None else engine.loss,
            matrix=None,
            phase=phase,
            frames_done=frames_done,
            n_frames=n_frames,
            batch=batch,
            n_batches=n_batches,
            round=round_,
            n_rounds=n_rounds,
        )

    def run_jobs(
        self,
        runner: Runner,
        jobs: list[Job],
        fixed: NDArray | None,
        phase: str,
        round_: int,
        done: tuple[int, int] = (0, 0),
        of: tuple[int, int] | None = None,
    ) -> Generator[StackProgress, None, list[BatchOut]]:
        """Run ``jobs``, yielding progress; return their outputs in job order.

        ``done`` counts the frames and batches of the phase run before these
        jobs, ``of`` the frames and batches of the whole phase (default:
        these jobs are the phase).
        """
        outs: list[BatchOut | None] = [None] * len(jobs)
        done_frames, done_batches = done
        n_frames, n_batches = of or (sum(len(job.frames) for job in jobs), len(jobs))
        for engine, result in runner.run(jobs, fixed):
            if result is not None:
                outs[result.job.index] = result
                done_frames += len(result.job.frames)
                self.step += len(result.job.frames)
            finished = done_batches + sum(out is not None for out in outs)
            yield self.progress(
                phase,
                done_frames,
                n_frames,
                batch=min(finished, n_batches - 1),
                n_batches=n_batches,
                round_=round_,
                n_rounds=self.plan.rounds,
                engine=engine,
            )
        return outs

    def record(self, outs: list[BatchOut], round_: int) -> None:
        """Keep the figures of registered batches of round ``round_``."""
        for out in outs:
            if out.matrices is None:
                continue
            self.reports.append(
                BatchReport(
                    frames=out.job.frames,
                    round=round_,
                    seconds=out.seconds,
                    levels=out.levels,
                )
            )
            idx = list(out.job.frames)
            self.before[idx], self.after[idx] = out.before, out.after
            self.seconds[idx] += out.seconds / len(idx)
            self.batch_of_frame[idx, round_] = len(self.reports) - 1
