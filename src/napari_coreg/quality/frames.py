"""A verdict per frame of a stack registration.

Each registered frame is judged as a pair: against the previous frame
(``reference='previous'``, through the transform between the two), against
the reference frame (``'first'`` or an index), or, for ``'mean'``, against a
neighbouring frame through the composed transforms (the mean image contains
the frame itself, so it would vouch for any frame): the frame before, and
the frame after when that one disagrees; the better verdict counts, so a
bad frame does not condemn its neighbours. Frames that were not registered
(the reference frame, the first frame with ``'previous'``) are ``None``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .evidence import gather
from .verdict import VERDICTS, Assessment, judge

if TYPE_CHECKING:
    from ..stack import StackResult

__all__ = ['assess_frames']


def _frame(result: StackResult, index: int) -> np.ndarray:
    """Frame ``index`` as ``(*spatial, C)`` (the registered channel only)."""
    return result._frames.slab(index, index + 1, result.register_channel)[0]


def _stop_reason(result: StackResult, index: int) -> str:
    batch = int(result.batch_of_frame[index, -1])
    if batch < 0:
        return 'converged'
    return result.batches[batch].levels[-1].stop_reason


def _judge(result: StackResult, index: int, other: int, relative: bool) -> Assessment:
    """Frame ``index`` judged against frame ``other``."""
    matrices = result.moving_from_fixed
    matrix = matrices[index]
    if relative:
        matrix = matrix @ np.linalg.inv(matrices[other])
    evidence = gather(
        _frame(result, other),
        _frame(result, index),
        matrix,
        result.grid,
        result.grid,
        model=result.model,
        metric=result.metric,
        metric_before=float(result.metric_before[index]),
        metric_after=float(result.metric_after[index]),
        stop_reason=_stop_reason(result, index),
    )
    return judge(evidence)


def _assess(result: StackResult, index: int) -> Assessment | None:
    if result.reference == 'previous':
        return _judge(result, index, index - 1, relative=True)
    if result.reference != 'mean':
        reference = 0 if result.reference == 'first' else int(result.reference)
        return _judge(result, index, reference, relative=False)
    n = result.n_frames
    neighbours = [j for j in (index - 1, index + 1) if 0 <= j < n]
    best = None
    for other in neighbours:
        assessment = _judge(result, index, other, relative=True)
        if best is None or VERDICTS.index(assessment.verdict) < VERDICTS.index(
            best.verdict
        ):
            best = assessment
        if best.verdict == 'ok':
            break
    return best


def assess_frames(result: StackResult) -> tuple[Assessment | None, ...]:
    """The verdict on every frame (``None`` for frames not registered).

    Costs a few tens of milliseconds per frame; reads two frames at a time.
    """
    return tuple(
        _assess(result, i) if np.isfinite(result.metric_after[i]) else None
        for i in range(result.n_frames)
    )
