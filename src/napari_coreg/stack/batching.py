"""Batches: how many frames per engine run, and the work of one batch.

A batch is one engine run over several frames (the torch engine optimises
them together). :func:`iter_batch` runs here or, through :func:`solve`, in a
dask worker; :class:`LocalRunner` runs a list of batches here.
"""

from __future__ import annotations

import os
import time
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..inputs import match_histogram
from ..method import Method
from ..options import MODEL_SPECS, Model
from ..problem import Problem
from ..pyramid import Level
from ..result import LevelReport, Progress
from ..transforms import Grid
from .frames import Frames, gray
from .heap import release_freed

__all__ = [
    'BatchOut',
    'Job',
    'LocalRunner',
    'Reader',
    'Spec',
    'auto_batch_size',
    'available_memory',
    'iter_batch',
    'make_jobs',
    'solve',
]

#: Working memory of one frame in the torch engine, bytes per pixel: a base
#: (sampled values, gradients, weights, residuals) plus the Jacobian's
#: columns; measured about 170 B/px for 2D rigid (3 parameters) at 512^2.
BYTES_PER_PIXEL = 120
BYTES_PER_PIXEL_PER_PARAMETER = 16
#: Fraction of the available memory the batches may use ...
MEMORY_FRACTION = 0.25
#: ... and at most this much per batch on a CPU, where bigger batches no
#: longer speed up and would crowd out everything else.
MAX_BATCH_BYTES_CPU = 512 << 20
#: Largest automatic batch.
MAX_BATCH = {'cpu': 16, 'other': 64}


# --------------------------------------------------------------------------
# batch size


def available_memory() -> int:
    """Bytes of memory available to this process (psutil when installed)."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:  # pragma: no cover - psutil is a dev extra
        try:
            return int(os.sysconf('SC_AVPHYS_PAGES') * os.sysconf('SC_PAGE_SIZE'))
        except (ValueError, OSError, AttributeError):
            return 2 << 30


def auto_batch_size(
    spatial: Sequence[int],
    device: str | None = None,
    memory: int | None = None,
    model: str = 'rigid',
) -> int:
    """Frames per engine run that fit the memory budget.

    The budget is a quarter of the available memory, and at most 512 MiB on
    a CPU (larger batches no longer run faster there).

    Parameters
    ----------
    spatial : sequence of int
        Shape of one frame.
    device : str, optional
        torch device; on CUDA the device's free memory counts.
    memory : int, optional
        Bytes available (default: what is available now).
    model : str
        Transform model (its parameter count sizes the Jacobian).

    Returns
    -------
    int
        At least 1, at most 16 on a CPU and 64 on other devices.
    """
    pixels = int(np.prod(spatial))
    params = MODEL_SPECS[Model.parse(model, 'model')].n_params(len(spatial))
    per_frame = pixels * (BYTES_PER_PIXEL + BYTES_PER_PIXEL_PER_PARAMETER * params)
    cpu = device is None or str(device) == 'cpu'
    if memory is None:
        memory = available_memory()
        if device is not None and str(device).startswith('cuda'):
            import torch

            memory = int(torch.cuda.mem_get_info(torch.device(device))[0])
    budget = MEMORY_FRACTION * memory
    if cpu:
        budget = min(budget, MAX_BATCH_BYTES_CPU)
    fits = int(budget // max(per_frame, 1))
    return max(1, min(fits, MAX_BATCH['cpu' if cpu else 'other']))


# --------------------------------------------------------------------------
# one batch


@dataclass(frozen=True)
class Spec:
    """Everything a batch needs besides its pixels (small, picklable)."""

    method: Method
    schedule: tuple[Level, ...]
    grid: Grid


@dataclass(frozen=True)
class Job:
    """One batch: which frames, against what, from where.

    ``kind``: ``'pairs'`` registers each frame to the frame ``gap`` before
    it, ``'fixed'`` to one fixed image, ``'sum'`` only averages frames
    (resampled through ``initial`` when given). ``start:stop`` are the frames
    to read. ``initial`` holds a start per frame (a warm start: the levels
    before ``first_level`` of the schedule are skipped).
    """

    index: int
    kind: str
    frames: tuple[int, ...]
    start: int
    stop: int
    round: int = 0
    initial: NDArray | None = None
    accumulate: bool = False
    first_level: int = 0
    gap: int = 1


@dataclass(frozen=True, eq=False)
class BatchOut:
    """What one batch gives back (matrices are ``None`` for ``'sum'`` jobs)."""

    job: Job
    matrices: NDArray | None
    before: NDArray | None
    after: NDArray | None
    levels: tuple[LevelReport, ...]
    seconds: float
    total: NDArray | None = None  # sum of (aligned) normalised frames
    count: NDArray | None = None  # frames that covered each pixel


def make_jobs(
    moving: Sequence[int],
    size: int,
    kind: str,
    round_: int = 0,
    initial: NDArray | None = None,
    accumulate: bool = False,
) -> list[Job]:
    """Cut the ``moving`` frames into jobs of at most ``size`` frames.

    Parameters
    ----------
    moving : sequence of int
        Stack indices of the frames to register (or average), ascending.
    size : int
        Batch size.
    kind : {'pairs', 'fixed', 'sum'}
        See :class:`Job`.
    round_ : int
        Round of the ``'mean'`` reference.
    initial : ndarray, optional
        ``(n, D + 1, D + 1)`` starting matrices of every stack frame.
    accumulate : bool
        Also sum the aligned frames (for the next mean image).

    Returns
    -------
    list of Job
    """
    jobs = []
    for index, start in enumerate(range(0, len(moving), size)):
        frames = tuple(moving[start : start + size])
        jobs.append(
            Job(
                index=index,
                kind=kind,
                frames=frames,
                start=frames[0] - (1 if kind == 'pairs' else 0),
                stop=frames[-1] + 1,
                round=round_,
                initial=None if initial is None else initial[list(frames)],
                accumulate=accumulate,
            )
        )
    return jobs


def _accumulate(gray_: NDArray, matrices: NDArray | None, grid: Grid):
    """Sum and coverage count of frames (resampled when matrices are given)."""
    if matrices is None:
        return gray_.sum(axis=0, dtype=np.float64), np.full(gray_.shape[1:], len(gray_))
    from ..warp import resample

    total = np.zeros(gray_.shape[1:], np.float64)
    count = np.zeros(gray_.shape[1:], np.int64)
    for image, matrix in zip(gray_, matrices, strict=True):
        moved = resample(image, matrix, grid, grid, fill=np.nan)
        valid = np.isfinite(moved)
        total += np.where(valid, moved, 0)
        count += valid
    return total, count


def _matched(spec: Spec, moving: NDArray, fixed: NDArray) -> NDArray:
    """Match ``moving`` frames' histograms to their fixed frames (l1/mse)."""
    method = spec.method
    if not (method.settings.match_histograms and method.metric_spec.difference):
        return moving
    return np.stack(
        [
            match_histogram(image, fixed[k if len(fixed) > 1 else 0])
            for k, image in enumerate(moving)
        ]
    )


def iter_batch(
    spec: Spec, job: Job, slab: NDArray, fixed: NDArray | None
) -> Generator[Progress, None, BatchOut]:
    """Register one batch, yielding the engine's progress.

    Parameters
    ----------
    spec : Spec
        Model, metric, backend, schedule, settings, frame grid.
    job : Job
        The batch.
    slab : ndarray
        ``(n, *spatial, C)`` frames ``job.start:job.stop``.
    fixed : ndarray, optional
        The fixed image of ``'fixed'`` jobs (normalised).

    Returns
    -------
    BatchOut
        The generator's return value.
    """
    started = time.perf_counter()
    needed = sorted(
        set(job.frames)
        | ({f - job.gap for f in job.frames} if job.kind == 'pairs' else set())
    )
    gray_all = gray(slab, job.start, needed)
    where = {f: k for k, f in enumerate(needed)}
    moving = gray_all[[where[f] for f in job.frames]]
    if job.kind == 'sum':
        total, count = _accumulate(moving, job.initial, spec.grid)
        return BatchOut(
            job, None, None, None, (), time.perf_counter() - started, total, count
        )
    if job.kind == 'pairs':
        fixed_batch = gray_all[[where[f - job.gap] for f in job.frames]]
    else:
        fixed_batch = np.asarray(fixed, dtype=np.float32)[None]
    engine = spec.method.engine()
    problem = Problem(
        fixed=fixed_batch,
        moving=_matched(spec, moving, fixed_batch),
        fixed_grid=spec.grid,
        moving_grid=spec.grid,
        fixed_mask=None,
        moving_mask=None,
        method=spec.method,
        schedule=spec.schedule[job.first_level :],
        initial=job.initial,
    )
    outcome = yield from engine.run(problem)
    total = count = None
    if job.accumulate:
        total, count = _accumulate(moving, outcome.moving_from_fixed, spec.grid)
    return BatchOut(
        job,
        outcome.moving_from_fixed,
        outcome.metric_before,
        outcome.metric_after,
        outcome.levels,
        time.perf_counter() - started,
        total,
        count,
    )


@dataclass(frozen=True, eq=False)
class Reader:
    """Reads a slab where it runs (a worker reading a zarr store itself)."""

    frames: Frames
    start: int
    stop: int
    channel: int | None

    def __call__(self) -> NDArray:
        """Read the slab now."""
        return self.frames.slab(self.start, self.stop, self.channel)


def solve(spec: Spec, job: Job, slab: Any, fixed: NDArray | None) -> BatchOut:
    """Run one batch to the end (a dask task); ``slab`` may be a :class:`Reader`."""
    if isinstance(slab, Reader):
        slab = slab()
    steps = iter_batch(spec, job, slab, fixed)
    while True:
        try:
            next(steps)
        except StopIteration as done:
            del slab, steps
            release_freed()
            return done.value


class LocalRunner:
    """Runs jobs here, one after another, forwarding the engine's progress.

    Parameters
    ----------
    frames : Frames
        The stack.
    spec : Spec
        What every batch needs.
    channel : int or None
        The channel registered on (``None``: all, combined).
    """

    def __init__(self, frames: Frames, spec: Spec, channel: int | None) -> None:
        self.frames, self.spec, self.channel = frames, spec, channel

    def run(
        self, jobs: list[Job], fixed: NDArray | None
    ) -> Iterator[tuple[Progress | None, BatchOut | None]]:
        """Yield ``(progress, None)`` per engine step, ``(None, out)`` per job."""
        for job in jobs:
            slab = self.frames.slab(job.start, job.stop, self.channel)
            steps = iter_batch(self.spec, job, slab, fixed)
            try:
                while True:
                    try:
                        progress = next(steps)
                    except StopIteration as done:
                        result = done.value
                        break
                    yield progress, None
            finally:
                steps.close()
            del slab, steps
            release_freed()  # batches vary in size: see .heap
            yield None, result

    def close(self) -> None:
        """Nothing to release."""
