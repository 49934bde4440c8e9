"""One function per reference mode: a frame, the previous frame, the mean.

Each is a generator that yields :class:`StackProgress` and returns
``(moving_from_fixed, rounds)``: ``(n, D + 1, D + 1)`` matrices from the
reference coordinates to every frame, and the rounds run.
"""

from __future__ import annotations

from collections.abc import Generator

import numpy as np
from numpy.typing import NDArray

from ..inputs import normalise_intensities
from ..transforms import corner_error
from .batching import BatchOut, make_jobs
from .frames import gray
from .plan import Plan
from .result import StackProgress
from .tracker import Runner, Tracker

__all__ = [
    'MEAN_TOLERANCE',
    'compose_previous',
    'mean_image',
    'register_frames',
    'register_to_frame',
    'register_to_mean',
    'register_to_previous',
]

#: ``'mean'`` stops early when no frame's transform moved its corners by
#: more than this (physical units) between two rounds.
MEAN_TOLERANCE = 0.01

Steps = Generator[StackProgress, None, tuple[NDArray, int]]


def compose_previous(pairs: NDArray, n: int, ndim: int) -> NDArray:
    """Chain neighbour transforms so every frame maps from frame 0.

    Parameters
    ----------
    pairs : ndarray, shape (n - 1, D + 1, D + 1)
        ``pairs[i - 1]`` is ``frame_i_from_frame_(i-1)``.
    n, ndim : int
        Frames and spatial dimensions.

    Returns
    -------
    ndarray, shape (n, D + 1, D + 1)
        ``[i]`` is ``frame_i_from_frame_0 = pairs[i-1] @ ... @ pairs[0]``.
    """
    out = np.empty((n, ndim + 1, ndim + 1))
    out[0] = np.eye(ndim + 1)
    for i in range(1, n):
        out[i] = pairs[i - 1] @ out[i - 1]
    return out


def mean_image(outs: list[BatchOut]) -> NDArray[np.float32]:
    """Average the (aligned) frames summed by ``outs``, normalised.

    Raises
    ------
    ValueError
        If the mean is constant (the aligned frames do not overlap).
    """
    total = sum(o.total for o in outs)
    count = sum(o.count for o in outs)
    mean = np.where(count > 0, total / np.maximum(count, 1), 0.0).astype(np.float32)
    if mean.min() == mean.max():
        raise ValueError(
            'the mean of the aligned frames is constant: the frames do not '
            "overlap; use reference='previous' or a frame index"
        )
    return normalise_intensities(mean)


def register_to_frame(plan: Plan, tracker: Tracker, runner: Runner) -> Steps:
    """Register every other frame to one frame (``'first'`` or an index)."""
    frames = plan.frames
    ref = 0 if plan.reference == 'first' else int(plan.reference)
    fixed = gray(frames.slab(ref, ref + 1, plan.register_channel), ref, [ref])[0]
    moving = [i for i in range(frames.n) if i != ref]
    jobs = make_jobs(moving, plan.batch_size, 'fixed')
    outs = yield from tracker.run_jobs(runner, jobs, fixed, 'register', 0)
    tracker.record(outs, 0)
    ndim = plan.spec.grid.ndim
    matrices = np.repeat(np.eye(ndim + 1)[None], frames.n, axis=0)
    for out in outs:
        matrices[list(out.job.frames)] = out.matrices
    return matrices, 1


def register_to_previous(plan: Plan, tracker: Tracker, runner: Runner) -> Steps:
    """Register each frame to the one before it and chain the transforms."""
    n = plan.frames.n
    jobs = make_jobs(range(1, n), plan.batch_size, 'pairs')
    outs = yield from tracker.run_jobs(runner, jobs, None, 'register', 0)
    tracker.record(outs, 0)
    pairs = np.concatenate([out.matrices for out in outs])
    return compose_previous(pairs, n, plan.spec.grid.ndim), 1


def register_to_mean(plan: Plan, tracker: Tracker, runner: Runner) -> Steps:
    """Register to the mean of the frames, recompute the mean, repeat.

    Stops after ``plan.rounds`` rounds, or earlier when no transform moved
    by more than :data:`MEAN_TOLERANCE` between two rounds.
    """
    every = range(plan.frames.n)
    size, shape = plan.batch_size, plan.spec.grid.shape
    sums = yield from tracker.run_jobs(
        runner, make_jobs(every, size, 'sum'), None, 'mean', 0
    )
    fixed = mean_image(sums)
    current = None
    rounds = 0
    for round_ in range(plan.rounds):
        last = round_ == plan.rounds - 1
        jobs = make_jobs(every, size, 'fixed', round_, current, accumulate=not last)
        outs = yield from tracker.run_jobs(runner, jobs, fixed, 'register', round_)
        tracker.record(outs, round_)
        new = np.concatenate([out.matrices for out in outs])
        rounds = round_ + 1
        moved = (
            np.inf
            if current is None
            else max(
                corner_error(a, b, shape) for a, b in zip(new, current, strict=True)
            )
        )
        current = new
        if last or moved < MEAN_TOLERANCE:
            break
        fixed = mean_image(outs)
    return current, rounds


def register_frames(plan: Plan, tracker: Tracker, runner: Runner) -> Steps:
    """Run the reference mode of ``plan``."""
    if plan.reference == 'previous':
        return register_to_previous(plan, tracker, runner)
    if plan.reference == 'mean':
        return register_to_mean(plan, tracker, runner)
    return register_to_frame(plan, tracker, runner)
