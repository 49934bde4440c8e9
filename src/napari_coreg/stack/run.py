"""Run a checked :class:`Plan`: register, write ``out``, build the result."""

from __future__ import annotations

import time
from collections.abc import Generator
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .batching import LocalRunner
from .distributed import DistributedRunner
from .output import open_out
from .plan import Plan
from .references import register_frames
from .result import StackProgress, StackResult
from .tracker import Runner, Tracker

__all__ = ['run']


def _runner(plan: Plan) -> Runner:
    if plan.client is None:
        return LocalRunner(plan.frames, plan.spec, plan.register_channel)
    return DistributedRunner(plan.frames, plan.spec, plan.register_channel, plan.client)


def _write(
    plan: Plan, matrices: NDArray, tracker: Tracker
) -> Generator[StackProgress, None, Any]:
    """Resample the stack into ``out`` batch by batch; return the array."""
    frames, grid = plan.frames, plan.spec.grid
    target = open_out(plan.out, frames, plan.overwrite)
    dtype = np.dtype(target.dtype)
    n, size = frames.n, plan.batch_size
    n_batches = -(-n // size)
    for batch, begin in enumerate(range(0, n, size)):
        end = min(n, begin + size)
        moved = frames.resampled(
            frames.slab(begin, end), matrices[begin:end], grid, dtype
        )
        frames.write(target, begin, end, moved)
        del moved
        tracker.step += end - begin
        yield tracker.progress('write', end, n, batch, n_batches)
    if hasattr(target, 'flush'):
        target.flush()
    return target


def _settings(plan: Plan, tracker: Tracker) -> dict[str, Any]:
    settings = plan.spec.method.settings.to_dict()
    settings['schedule'] = [
        {'factor': lv.factor, 'sigma': lv.sigma, 'iterations': lv.iterations}
        for lv in plan.spec.schedule
    ]
    settings['batch_size'] = plan.batch_size
    settings['distributed'] = plan.client is not None
    # frames started from their neighbours, warm starts that failed and were
    # registered again from the configured start, key frames refined
    settings['warm_starts'] = {
        'frames': tracker.warm,
        'redone': tracker.redone,
        'keys': tracker.keys,
    }
    return settings


def run(plan: Plan) -> Generator[StackProgress, None, StackResult]:
    """Register the stack of ``plan``, yielding progress; return the result.

    Closing the generator cancels the run (dask tasks are cancelled and a
    LocalCluster made for it is closed).
    """
    started = time.perf_counter()
    tracker = Tracker(plan)
    runner = _runner(plan)
    target = None
    try:
        matrices, rounds = yield from register_frames(plan, tracker, runner)
        if plan.out is not None:
            target = yield from _write(plan, matrices, tracker)
    finally:
        runner.close()
    spec = plan.spec
    return StackResult(
        moving_from_fixed=matrices,
        reference=plan.reference,
        model=spec.method.model.value,
        metric=spec.method.metric.value,
        backend=spec.method.backend.value,
        metric_before=tracker.before,
        metric_after=tracker.after,
        frame_seconds=tracker.seconds,
        batch_of_frame=tracker.batch_of_frame[:, :rounds],
        batches=tuple(tracker.reports),
        elapsed=time.perf_counter() - started,
        grid=spec.grid,
        axis=plan.frames.axis,
        channel_axis=plan.frames.channel_axis,
        register_channel=plan.register_channel,
        rounds=rounds,
        settings=_settings(plan, tracker),
        _frames=plan.frames,
        _out=target,
    )
