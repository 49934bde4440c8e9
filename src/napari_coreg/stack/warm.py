"""Warm starts along a stack: each batch starts from its solved neighbours.

Neighbouring frames of a time-lapse or z-stack differ by small motions, so
once a few frames are solved the next ones need neither the starting-point
search nor the coarse levels. Frames are registered in order away from
where the motion is known, along *chains* (at most :data:`CHAIN_FRAMES`
frames each; the chains of a stack run side by side, as parallel dask tasks
with a client). A chain's first batch of :data:`FIRST_BATCH` frames runs the
whole schedule from the configured start (``init``). Later batches start
from a prediction made of the solved *links* (``frame_i_from_frame_(i-1)``):
the identity (the frames hold still) or the last link (constant drift),
whichever predicted the recent links better. How far off a start may be is
:data:`SAFETY` times the median recent prediction error; a batch skips the
coarse levels that such an offset does not need (a level of shrink factor
``f`` is trusted to pull in :data:`CAPTURE_PX` ``* f`` pixels) and keeps at
least two levels. When every frame is registered to one frame, the offset
grows with the distance from the last solved frame: the batch takes the
level and length that run the most frames per level.

Every warm frame is checked after its batch: a frame whose solution moved
further from its start than its first level could pull in (to a loss above
the chain's recent median), whose metric did not improve on the identity,
or whose loss is :data:`LOSS_RATIO` times the chain's recent median, is
registered again along the whole schedule from the configured start and
keeps the better of its two results by the metric. A failed warm start is
thus never kept silently; what the full run gives is judged by the frame
verdicts, as without warm starts.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field, replace

import numpy as np
from numpy.typing import NDArray

from ..options import MetricSpec
from ..transforms import Grid, corner_error
from .batching import BatchOut, Job
from .result import StackProgress
from .tracker import Runner, Tracker

__all__ = [
    'CAPTURE_PX',
    'CHAIN_FRAMES',
    'Chain',
    'LOSS_RATIO',
    'SAFETY',
    'distance',
    'plan_batch',
    'run_chains',
]

#: A level of shrink factor ``f`` pulls in a start this many times ``f``
#: pixels off (three pixels of the level, where the images are smoothed).
CAPTURE_PX = 3.0
#: The start of a warm frame is assumed off by up to this many times the
#: median recent error of the prediction (a median, so that one jump of the
#: stage does not keep the frames after it from starting warm).
SAFETY = 3.0
#: Solved links the prediction error is estimated from.
HISTORY = 8
#: A warm frame whose loss exceeds this many times the chain's recent median
#: is registered again from scratch.
LOSS_RATIO = 3.0
#: Frames of a chain's first batch, which runs the whole schedule from the
#: configured start (the later ones start warm when the motion allows).
FIRST_BATCH = 2
#: Most frames of one chain (a chain's frames are registered one batch after
#: another; chains run side by side).
CHAIN_FRAMES = 128


@dataclass
class Chain:
    """Frames registered one batch after another, each from its neighbours.

    ``kind`` is ``'fixed'`` (every frame to one frame; ``base`` is the
    solved matrix of the frame before the next one, the reference's identity
    at first) or ``'pairs'`` (frame ``i`` to frame ``i - 1``: the solved
    matrices are the links themselves).
    """

    kind: str
    frames: list[int]
    base: NDArray | None = None
    links: list[NDArray] = field(default_factory=list)
    errors: dict[str, list[float]] = field(
        default_factory=lambda: {'still': [], 'drift': []}
    )
    losses: list[float] = field(default_factory=list)
    done: int = 0

    def predictor(self) -> tuple[str, float]:
        """The better predictor of the next link and its recent median error."""
        recent = {k: v[-HISTORY:] for k, v in self.errors.items() if len(v) > 1}
        if not recent:
            return 'still', np.inf
        name = min(recent, key=lambda k: np.median(recent[k]))
        return name, float(np.median(recent[name]))

    def predict(self, steps: int) -> NDArray:
        """Starting matrices of the next ``steps`` frames."""
        name, _ = self.predictor()
        size = self.links[-1].shape[0]
        link = self.links[-1] if name == 'drift' else np.eye(size)
        if self.kind == 'pairs':
            return np.repeat(link[None], steps, axis=0)
        out, current = [], self.base
        for _ in range(steps):
            current = link @ current
            out.append(current)
        return np.stack(out)


def _px(grid: Grid, matrix: NDArray) -> NDArray:
    return grid.px_from_phys @ matrix @ grid.phys_from_px


def distance(grid: Grid, a: NDArray, b: NDArray) -> float:
    """Mean corner displacement between two matrices, in pixels."""
    return corner_error(_px(grid, a), _px(grid, b), grid.shape)


def plan_batch(
    chain: Chain, factors: list[int], batch_size: int
) -> tuple[int, int | None]:
    """How many frames the chain's next batch takes, and its first level.

    Returns ``(frames, first_level)``; ``first_level`` is ``None`` for a
    batch that runs the whole schedule from the configured start (no
    history yet, or an offset no level can pull in).
    """
    left = len(chain.frames) - chain.done
    _, error = chain.predictor()
    if not chain.links or not np.isfinite(error):
        first = FIRST_BATCH if chain.done == 0 else batch_size
        return min(batch_size, left, first), None
    offset = SAFETY * error
    last = max(0, len(factors) - 2)  # at least two levels
    if chain.kind == 'pairs':  # every link is predicted as well
        for level in range(last, -1, -1):
            if offset <= CAPTURE_PX * factors[level]:
                return min(batch_size, left), level
        return min(batch_size, left), None
    # one frame: the offset grows with the distance from the last solved
    # frame; the most frames per level run (per engine call overhead)
    best = (0.0, 0, None)
    for level in range(last, -1, -1):
        steps = CAPTURE_PX * factors[level] // offset if offset > 0 else batch_size
        steps = int(min(batch_size, left, steps))
        if steps and steps / (len(factors) - level) > best[0]:
            best = (steps / (len(factors) - level), steps, level)
    if best[2] is None:
        return min(batch_size, left), None
    return best[1], best[2]


def _job(chain: Chain, index: int, frames: list[int], starts, level) -> Job:
    return Job(
        index=index,
        kind=chain.kind,
        frames=tuple(frames),
        start=min(frames) - (chain.kind == 'pairs'),
        stop=max(frames) + 1,
        initial=starts,
        first_level=0 if level is None else level,
    )


def _suspects(
    chain: Chain, out: BatchOut, grid: Grid, reach: float, metric: MetricSpec
) -> list[int]:
    """Positions of the warm frames of ``out`` to register again."""
    typical = np.median(chain.losses[-HISTORY:]) if chain.losses else np.inf
    slack = 1e-6 if metric.higher_is_better else -1e-6
    bad = []
    for k, (start, found) in enumerate(zip(out.job.initial, out.matrices, strict=True)):
        before, after = float(out.before[k]), float(out.after[k])
        loss = metric.loss(after)
        if (
            (distance(grid, start, found) > reach and loss > typical)
            or not metric.improved(before, after + slack)
            or loss > LOSS_RATIO * typical + 1e-9
        ):
            bad.append(k)
    return bad


def _better(warm: BatchOut, full: BatchOut, bad: list[int], metric) -> BatchOut:
    """``full``: frames ``bad`` of ``warm`` registered again.

    Each frame keeps the better of its two results by the metric.
    """
    matrices, before, after = (
        full.matrices.copy(),
        full.before.copy(),
        full.after.copy(),
    )
    for row, k in enumerate(bad):
        if not metric.improved(float(warm.after[k]), float(full.after[row])):
            matrices[row], before[row] = warm.matrices[k], warm.before[k]
            after[row] = warm.after[k]
    return replace(full, matrices=matrices, before=before, after=after)


def _take(chain: Chain, frames: tuple[int, ...], matrices: NDArray, losses, grid):
    """Fold a batch's solved frames into the chain's links and errors."""
    for matrix, value in zip(matrices, losses, strict=True):
        if chain.kind == 'pairs':
            link = matrix
        elif chain.base is not None:
            link = matrix @ np.linalg.inv(chain.base)
        else:
            link = None
        if link is not None:
            size = link.shape[0]
            chain.errors['still'].append(distance(grid, link, np.eye(size)))
            if chain.links:
                chain.errors['drift'].append(distance(grid, link, chain.links[-1]))
            chain.links.append(link)
        chain.losses.append(value)
        chain.base = matrix
    chain.done += len(frames)


def _left(chains: list[Chain], batch_size: int) -> int:
    """Batches still to run, at most (warm batches may be shorter)."""
    return sum(-(-(len(c.frames) - c.done) // batch_size) for c in chains)


def run_chains(
    chains: list[Chain],
    fixed: NDArray | None,
    tracker: Tracker,
    runner: Runner,
    warm: bool = True,
) -> Generator[StackProgress, None, list[BatchOut]]:
    """Register every chain's frames, batch after batch, warm where possible.

    ``warm=False`` runs every batch along the whole schedule (a backend
    that registers frame by frame gains nothing from the skipped levels).
    Returns every batch's output in the order run (a redone batch after the
    one it corrects); the tracker records them and counts warm and redone
    frames.
    """
    spec, batch_size = tracker.plan.spec, tracker.plan.batch_size
    grid = spec.grid
    factors = [level.factor for level in spec.schedule]
    metric = spec.method.metric_spec
    n_frames = sum(len(c.frames) for c in chains)
    done, batches, outs = 0, 0, []
    while any(c.done < len(c.frames) for c in chains):
        jobs, plans = [], []
        for chain in chains:
            if chain.done == len(chain.frames):
                continue
            size, level = plan_batch(chain, factors, batch_size)
            level = level if warm else None
            frames = chain.frames[chain.done : chain.done + size]
            starts = None if level is None else chain.predict(size)
            jobs.append(_job(chain, len(jobs), frames, starts, level))
            plans.append((chain, level))
        of = (n_frames, batches + _left(chains, batch_size))
        wave = yield from tracker.run_jobs(
            runner, jobs, fixed, 'register', 0, done=(done, batches), of=of
        )
        done += sum(len(j.frames) for j in jobs)
        batches += len(jobs)
        redo, owners = [], []
        for out, (chain, level) in zip(wave, plans, strict=True):
            bad = []
            if level is not None:
                reach = CAPTURE_PX * factors[level]
                bad = _suspects(chain, out, grid, reach, metric)
            if bad:
                frames = [out.job.frames[k] for k in bad]
                redo.append(_job(chain, len(redo), frames, None, None))
            owners.append(bad)
        again_iter = iter(())
        if redo:
            extra = sum(len(j.frames) for j in redo)
            tracker.total += extra
            tracker.redone += extra
            n_frames += extra
            later = max(0, _left(chains, batch_size) - len(jobs))
            of = (n_frames, batches + len(redo) + later)
            again = yield from tracker.run_jobs(
                runner, redo, fixed, 'register', 0, done=(done, batches), of=of
            )
            done += extra
            batches += len(redo)
            again_iter = iter(again)
        for out, (chain, level), bad in zip(wave, plans, owners, strict=True):
            matrices = out.matrices.copy()
            after = out.after.copy()
            outs.append(out)
            if bad:
                outs.append(_better(out, next(again_iter), bad, metric))
                matrices[bad], after[bad] = outs[-1].matrices, outs[-1].after
            if level is not None:
                tracker.warm += len(out.job.frames) - len(bad)
            losses = [metric.loss(float(a)) for a in after]
            _take(chain, out.job.frames, matrices, losses, grid)
    return outs
