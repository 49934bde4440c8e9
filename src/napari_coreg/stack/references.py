"""One function per reference mode: a frame, the previous frame, the mean.

Each is a generator that yields :class:`StackProgress` and returns
``(moving_from_fixed, rounds)``: ``(n, D + 1, D + 1)`` matrices from the
reference coordinates to every frame, and the rounds run.

A frame and the previous frame register along chains of warm starts
(:mod:`.warm`). The previous frame's chain of neighbour transforms carries
the small errors of every link into every later frame; with
:data:`KEY_MIN_FRAMES` frames or more, every ``sqrt(n)``-th frame (a key
frame) is also registered to the key frame before it, starting from the
chain's estimate on the finest level only, so that a frame's error sums
about ``2 sqrt(n)`` links instead of ``n`` (a refinement that moves the chain's
estimate by more than :data:`KEY_ACCEPT_PX` pixels is not kept: key frames
that far apart may no longer look alike).
"""

from __future__ import annotations

from collections.abc import Generator

import numpy as np
from numpy.typing import NDArray

from ..inputs import normalise_intensities
from ..transforms import corner_error
from .batching import BatchOut, Job, make_jobs
from .frames import gray
from .plan import Plan
from .result import StackProgress
from .tracker import Runner, Tracker
from .warm import CHAIN_FRAMES, Chain, distance, run_chains

__all__ = [
    'KEY_ACCEPT_PX',
    'KEY_MIN_FRAMES',
    'MEAN_TOLERANCE',
    'compose_previous',
    'key_gap',
    'mean_image',
    'register_frames',
    'register_to_frame',
    'register_to_mean',
    'register_to_previous',
]

#: ``'mean'`` stops early when no frame's transform moved its corners by
#: more than this (physical units) between two rounds.
MEAN_TOLERANCE = 0.01
#: ``'previous'`` refines key frames against each other from this many frames.
KEY_MIN_FRAMES = 16
#: A key frame's refinement is kept when it moves the chain's estimate by
#: at most this many pixels (mean corner displacement).
KEY_ACCEPT_PX = 0.5
#: A job of key frames reads at most this many batches' worth of frames.
KEY_SLAB = 4

Steps = Generator[StackProgress, None, tuple[NDArray, int]]


def compose_previous(
    pairs: NDArray,
    n: int,
    ndim: int,
    keys: dict[int, tuple[int, NDArray]] | None = None,
) -> NDArray:
    """Chain neighbour transforms so every frame maps from frame 0.

    Parameters
    ----------
    pairs : ndarray, shape (n - 1, D + 1, D + 1)
        ``pairs[i - 1]`` is ``frame_i_from_frame_(i-1)``.
    n, ndim : int
        Frames and spatial dimensions.
    keys : dict, optional
        ``{i: (gap, frame_i_from_frame_(i-gap))}``: key frames chained to an
        earlier frame instead of their neighbour.

    Returns
    -------
    ndarray, shape (n, D + 1, D + 1)
        ``[i]`` is ``frame_i_from_frame_0 = pairs[i-1] @ ... @ pairs[0]``
        (through the key links where given).
    """
    keys = keys or {}
    out = np.empty((n, ndim + 1, ndim + 1))
    out[0] = np.eye(ndim + 1)
    for i in range(1, n):
        gap, link = keys.get(i, (1, pairs[i - 1]))
        out[i] = link @ out[i - gap]
    return out


def key_gap(n: int) -> int:
    """Frames between key frames of a ``'previous'`` chain (0: none)."""
    return int(round(np.sqrt(n))) if n >= KEY_MIN_FRAMES else 0


def _chains(frames: list[int], kind: str, base: NDArray | None) -> list[Chain]:
    """``frames`` cut into chains; the first starts from ``base``."""
    return [
        Chain(kind, frames[k : k + CHAIN_FRAMES], base=None if k else base)
        for k in range(0, len(frames), CHAIN_FRAMES)
    ]


def _warm(plan: Plan) -> bool:
    """Whether batches start from their neighbours (backends that batch)."""
    return plan.spec.method.capabilities.batching


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
    eye = np.eye(plan.spec.grid.ndim + 1)
    chains = _chains(list(range(ref + 1, frames.n)), 'fixed', eye)
    chains += _chains(list(range(ref - 1, -1, -1)), 'fixed', eye)
    outs = yield from run_chains(chains, fixed, tracker, runner, _warm(plan))
    tracker.record(outs, 0)
    matrices = np.repeat(eye[None], frames.n, axis=0)
    for out in outs:  # in the order run: a redone frame's last
        matrices[list(out.job.frames)] = out.matrices
    return matrices, 1


def refine_keys(
    plan: Plan, tracker: Tracker, runner: Runner, pairs: NDArray
) -> Generator[StackProgress, None, dict[int, tuple[int, NDArray]]]:
    """Register every key frame to the key before it; return the kept links."""
    n, grid = plan.frames.n, plan.spec.grid
    gap = key_gap(n)
    if not gap or not _warm(plan):
        return {}
    chained = compose_previous(pairs, n, grid.ndim)
    last = len(plan.spec.schedule) - 1
    keys = list(range(gap, n, gap))
    # a job reads the frames from its first key's partner to its last key
    per_job = max(1, min(plan.batch_size, KEY_SLAB * plan.batch_size // gap))
    jobs = [
        Job(
            index=k,
            kind='pairs',
            frames=tuple(group),
            start=group[0] - gap,
            stop=group[-1] + 1,
            initial=np.stack(
                [chained[f] @ np.linalg.inv(chained[f - gap]) for f in group]
            ),
            first_level=last,
            gap=gap,
        )
        for k, group in enumerate(
            keys[i : i + per_job] for i in range(0, len(keys), per_job)
        )
    ]
    tracker.total += len(keys)
    outs = yield from tracker.run_jobs(runner, jobs, None, 'register', 0)
    kept = {}
    for out in outs:
        for frame, start, found in zip(
            out.job.frames, out.job.initial, out.matrices, strict=True
        ):
            if distance(grid, start, found) <= KEY_ACCEPT_PX:
                kept[frame] = (gap, found)
    tracker.keys = len(kept)
    return kept


def register_to_previous(plan: Plan, tracker: Tracker, runner: Runner) -> Steps:
    """Register each frame to the one before it and chain the transforms."""
    n, ndim = plan.frames.n, plan.spec.grid.ndim
    chains = _chains(list(range(1, n)), 'pairs', None)
    outs = yield from run_chains(chains, None, tracker, runner, _warm(plan))
    tracker.record(outs, 0)
    pairs = np.empty((n - 1, ndim + 1, ndim + 1))
    for out in outs:  # in the order run: a redone frame's last
        pairs[np.asarray(out.job.frames) - 1] = out.matrices
    keys = yield from refine_keys(plan, tracker, runner, pairs)
    return compose_previous(pairs, n, ndim, keys), 1


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
