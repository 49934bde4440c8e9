"""The SimpleITK backend: ``ImageRegistrationMethod``, one ``Execute`` per level.

What it does, level by level (coarse to fine):

1. Builds the level's images itself, exactly like the torch backend: a
   block average by :func:`napari_coreg.pyramid.shrink_per_axis` (per-axis
   factors, which ``SetShrinkFactorsPerLevel`` cannot express) with
   ``BinShrink``, then a Gaussian of ``level.sigma`` level pixels, converted
   to physical units per axis. ``Execute`` then runs with shrink 1, sigma 0.
2. Runs ``Execute`` in a helper thread and streams its iteration events
   (loss per iteration) through the generator while it runs.
3. Keeps the optimised transform in place, so the next level continues
   from it.

Cancelling: closing the generator (or a napari worker's ``quit()``, which
stops iterating it) sets a flag that the iteration callback reads. The
ITKv4-native optimisers (regular-step and plain gradient descent, the
line-search ones, one-plus-one evolutionary) then stop at their next
iteration through ``StopRegistration()``. The vnl-based ones (L-BFGS-B,
L-BFGS2, Amoeba) ignore ``StopRegistration()`` and ``Abort()``; for them the
callback raises, which makes ``Execute`` return at once with an error that
is discarded. ``ProcessObject.Abort()`` is not honoured by
``ImageRegistrationMethod`` (checked in ``tests/core/test_sitk_engine.py``).

Batches (``B > 1``) run frame after frame.
"""

from __future__ import annotations

import queue
import sys
import threading
import time
from collections.abc import Generator
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from ..._sitk import (
    empty_transform,
    image_from_array,
    matrix_from_transform,
    set_transform_matrix,
)
from ...init import starts_for_frame
from ...options import Metric
from ...problem import Outcome, Problem
from ...result import LevelReport, Progress
from ...transforms import apply_matrix
from .. import PREVIEW_SECONDS, TOLERANCE_PX
from .levels import Pair, level_pair, mask_image
from .metrics import affine_transform, metric_method, natural, overlap
from .metrics import loss as metric_loss
from .optimizers import (
    CANCEL_WITHIN_LEVEL,
    MAX_STEP_FRACTION,
    OPTIMIZERS,
    STEP_PX,
    itk_seed,
    level_sampling,
)

__all__ = ['CANCEL_WITHIN_LEVEL', 'OPTIMIZERS', 'run']


# --------------------------------------------------------------------------
# initialisation


def _scorer(problem: Problem, coarse: Pair, masks):
    """``score(matrices) -> (K,)`` on the coarse level.

    NCC, or MI over the fixed image's entropy when the metric is MI (see
    ``napari_coreg.init``).
    """
    ranking = Metric.MI if problem.method.metric_spec.multimodal else Metric.NCC
    scale = 1.0
    if ranking is Metric.MI:
        entropy = natural(
            problem,
            ranking,
            Pair(
                coarse.fixed, coarse.fixed, coarse.shape, coarse.pixel, coarse.corners
            ),
            np.eye(problem.ndim + 1),
            (masks[0], masks[0]),
        )
        scale = 1 / max(float(entropy), 1e-6) if np.isfinite(entropy) else 1.0

    def score(matrices: np.ndarray) -> np.ndarray:
        values = [natural(problem, ranking, coarse, m, masks) for m in matrices]
        return np.array([v * scale if np.isfinite(v) else -np.inf for v in values])

    return score


def _initial(problem: Problem, frame: int, coarse: Pair, masks):
    """The start of one frame and the initialisation report.

    Starting ``moving_from_fixed`` (physical, numpy order) of one frame,
    and the initialisation report (``None`` with ``initial``).
    """
    if problem.initial is not None:
        return problem.initial[min(frame, problem.initial.shape[0] - 1)].copy(), None
    report = starts_for_frame(problem, frame, _scorer(problem, coarse, masks), 1)
    return report.starts[0].moving_from_fixed, report


def _model_transform(problem: Problem, start: np.ndarray):
    """The optimised transform and any fixed moving-side start.

    The optimised transform (centred on the fixed image) and, when
    ``start`` is outside the model, a fixed moving-side initial transform.
    """
    ndim = problem.ndim
    transform = empty_transform(problem.model.value, ndim)
    centre = problem.fixed_grid.center
    if problem.method.model_spec.fits(start):
        set_transform_matrix(transform, start, center=centre)
        return transform, None
    set_transform_matrix(transform, np.eye(ndim + 1), center=centre)
    return transform, start


# --------------------------------------------------------------------------
# running one level in a helper thread


class _Cancelled(Exception):
    """Raised inside SimpleITK's callback to end a level that cannot stop."""


def _quiet_hook(previous):
    """``sys.excepthook`` that hides our own cancel exception.

    SimpleITK prints exceptions raised in a callback through the hook
    before it aborts ``Execute``; this hook is installed only while a
    cancelled level ends.
    """

    def hook(kind, value, traceback):
        if not isinstance(value, _Cancelled):
            previous(kind, value, traceback)

    hook.napari_coreg_quiet = True
    return hook


def _reason(description: str) -> str:
    text = description.lower()
    if 'maximum number of iterations' in text:
        return 'max_iterations'
    done = ('step too small', 'convergence', 'tolerance', 'converged')
    if any(k in text for k in done):
        return 'converged'
    return f'sitk: {description.strip()}'


@dataclass
class _LevelRun:
    losses: list
    iterations: list
    reason: str = ''


class _Watch:
    """Corner test of convergence.

    The largest move of the fixed level's corners between two iterations, in physical
    units (as torch's).
    """

    def __init__(self, transform, moving_initial, corners, threshold):
        self.probe = type(transform)(transform)
        self.before = moving_initial
        self.corners = corners
        self.threshold = threshold
        self.last = self._mapped(transform.GetParameters())

    def _mapped(self, position) -> np.ndarray:
        self.probe.SetParameters(position)
        matrix = matrix_from_transform(self.probe)
        if self.before is not None:
            matrix = self.before @ matrix
        return apply_matrix(matrix, self.corners)

    def converged(self, position) -> bool:
        mapped = self._mapped(position)
        moved = float(np.linalg.norm(mapped - self.last, axis=1).max())
        self.last = mapped
        return moved < self.threshold


def _execute(
    method, pair: Pair, metric: Metric, stoppable: bool, watch: _Watch | None
) -> Generator[tuple[int, float, tuple], None, _LevelRun]:
    """Run ``method.Execute`` in a thread, yielding iteration, loss, position."""
    events: queue.Queue = queue.Queue()
    cancel = threading.Event()
    converged = threading.Event()
    record = _LevelRun(losses=[], iterations=[])

    def on_iteration() -> None:
        if cancel.is_set():
            if stoppable:
                method.StopRegistration()
                return
            sys.excepthook = _quiet_hook(sys.excepthook)
            raise _Cancelled('registration cancelled')
        iteration = method.GetOptimizerIteration()
        position = method.GetOptimizerPosition()
        events.put(('iteration', iteration, (method.GetMetricValue(), position)))
        if watch is not None and watch.converged(method.GetOptimizerPosition()):
            converged.set()
            method.StopRegistration()

    def work() -> None:
        try:
            method.Execute(pair.fixed, pair.moving)
            events.put(('done', method.GetOptimizerStopConditionDescription(), None))
        except BaseException as exc:  # noqa: BLE001 - handed to the generator
            events.put(('error', exc, None))

    method.AddCommand(sitk.sitkIterationEvent, on_iteration)
    original_hook = sys.excepthook
    thread = threading.Thread(target=work, name='napari-coreg-sitk', daemon=True)
    thread.start()
    try:
        while True:
            kind, a, b = events.get()
            if kind == 'iteration':
                value, position = b
                loss = metric_loss(metric, value)
                if record.iterations and record.iterations[-1] == a:
                    record.losses[-1] = loss  # vnl optimisers: several evaluations
                    continue
                record.iterations.append(a)
                record.losses.append(loss)
                yield len(record.losses) - 1, loss, position
            elif kind == 'done':
                record.reason = 'converged' if converged.is_set() else _reason(a)
                return record
            else:
                raise _engine_error(a) from a
    finally:
        cancel.set()
        thread.join()
        method.RemoveAllCommands()
        if getattr(sys.excepthook, 'napari_coreg_quiet', False):
            sys.excepthook = original_hook


class _LostOverlap(RuntimeError):
    """SimpleITK's metric found (almost) no overlap during a level."""


#: Stop reason of a level whose optimiser lost the overlap: the transform of
#: the level's start is kept, and the later levels are skipped.
LOST_OVERLAP = 'sitk: lost the overlap (kept the start of the level)'


def _current(transform, moving_initial) -> np.ndarray:
    matrix = matrix_from_transform(transform)
    return matrix if moving_initial is None else moving_initial @ matrix


def _engine_error(exc: BaseException) -> Exception:
    text = str(exc)
    if 'sampledpointset' in text.lower():
        return RuntimeError(
            'SimpleITK sampled no points inside the masks: give masks that '
            'select more pixels, or a larger sampling fraction (or None). '
            f'SimpleITK said: {text.strip().splitlines()[-1]}'
        )
    if 'outside' in text.lower() or 'valid points' in text.lower():
        return _LostOverlap(
            'SimpleITK found (almost) no overlap between the images: check '
            "spacing/origin, or start closer (init='center', 'phase' or an "
            f'initial matrix). SimpleITK said: {text.strip().splitlines()[-1]}'
        )
    return RuntimeError(f'SimpleITK registration failed: {text.strip()}')


# --------------------------------------------------------------------------
# the backend


def _shift_scales(transform, moving_initial, corners) -> list[float]:
    """Largest corner move per unit of each parameter (physical, unsquared)."""
    probe = type(transform)(transform)
    base = np.array(transform.GetParameters(), dtype=np.float64)

    def mapped(params):
        probe.SetParameters([float(v) for v in params])
        matrix = matrix_from_transform(probe)
        if moving_initial is not None:
            matrix = moving_initial @ matrix
        return apply_matrix(matrix, corners)

    origin = mapped(base)
    scales = []
    for i in range(base.size):
        delta = 1e-4
        moved = mapped(base + delta * np.eye(base.size)[i])
        shift = float(np.linalg.norm(moved - origin, axis=1).max()) / delta
        scales.append(max(shift, 1e-12))
    return scales


def run(problem: Problem) -> Generator[Progress, None, Outcome]:
    """Register a problem on SimpleITK, yielding progress per iteration."""
    name = problem.method.optimizer
    optimizer = OPTIMIZERS[name]
    n_levels = len(problem.schedule)
    total = problem.batch * sum(level.iterations for level in problem.schedule)
    counter = {'step': 0, 'preview': 0.0}

    matrices, initials, before, after, per_frame = [], [], [], [], []
    summaries = []
    for frame in range(problem.batch):
        outcome = yield from _run_frame(
            problem,
            frame,
            optimizer,
            counter,
            total,
            n_levels,
        )
        start, final, value_before, value_after, reports, summary = outcome
        summaries.append(summary)
        initials.append(start)
        matrices.append(final)
        before.append(value_before)
        after.append(value_after)
        per_frame.append(reports)
    return Outcome(
        moving_from_fixed=np.stack(matrices),
        initial=np.stack(initials),
        metric_before=np.array(before, dtype=np.float64),
        metric_after=np.array(after, dtype=np.float64),
        levels=_merge_reports(per_frame),
        init_report=None if summaries[0] is None else tuple(summaries),
    )


def _run_frame(problem, frame, optimizer, counter, total, n_levels):
    fixed_index = 0 if problem.fixed.shape[0] == 1 else frame
    fixed = image_from_array(problem.fixed[fixed_index], problem.fixed_grid)
    moving = image_from_array(problem.moving[frame], problem.moving_grid)
    masks = (
        mask_image(problem.fixed_mask, problem.fixed_grid),
        mask_image(problem.moving_mask, problem.moving_grid),
    )
    pair = level_pair(fixed, moving, problem, problem.schedule[0])
    start, init_report = _initial(problem, frame, pair, masks)
    transform, moving_initial = _model_transform(problem, start)

    reports = []
    for index, level in enumerate(problem.schedule):
        started = time.perf_counter()
        if index:
            pair = level_pair(fixed, moving, problem, level)
        sampling = level_sampling(
            problem.settings.sampling, pair.fixed.GetNumberOfPixels()
        )
        method = metric_method(problem, masks, sampling)
        if moving_initial is not None:
            method.SetMovingInitialTransform(affine_transform(moving_initial))
        method.SetInitialTransform(transform, inPlace=True)
        step = (problem.settings.learning_rate or STEP_PX) * pair.pixel
        step = min(step, MAX_STEP_FRACTION * min(pair.shape) * pair.pixel)
        tolerance = (problem.settings.tolerance or TOLERANCE_PX) * pair.pixel
        optimizer.configure(
            method, step, level.iterations, itk_seed(problem.settings.seed)
        )
        if optimizer.scales == 'physical':
            method.SetOptimizerScalesFromPhysicalShift()
        elif optimizer.scales == 'shift':
            scales = _shift_scales(transform, moving_initial, pair.corners)
            method.SetOptimizerScales(scales)
        watch = None
        if optimizer.watch:
            watch = _Watch(transform, moving_initial, pair.corners, tolerance)
        steps = _execute(method, pair, problem.metric, optimizer.stops, watch)
        probe = type(transform)(transform)
        saved = transform.GetParameters()
        try:
            while True:
                try:
                    iteration, loss, position = next(steps)
                except StopIteration as done:
                    record = done.value
                    break
                matrix = None
                now = time.perf_counter()
                if problem.batch == 1 and now - counter['preview'] > PREVIEW_SECONDS:
                    probe.SetParameters(position)
                    matrix = matrix_from_transform(probe)
                    if moving_initial is not None:
                        matrix = moving_initial @ matrix
                    matrix = matrix[None]
                    counter['preview'] = now
                yield Progress(
                    step=counter['step'],
                    total=total,
                    level=index,
                    n_levels=n_levels,
                    iteration=iteration,
                    loss=loss,
                    matrix=matrix,
                )
                counter['step'] += 1
        except _LostOverlap:
            transform.SetParameters(saved)
            if not overlap(pair, _current(transform, moving_initial), masks).any():
                raise  # the level started without overlap: nothing to keep
            record = _LevelRun(losses=[], iterations=[], reason=LOST_OVERLAP)
        finally:  # also when the consumer fails: stop and join the thread
            steps.close()
        if not record.losses:  # the stream reports every level at least once
            value = metric_loss(problem.metric, method.GetMetricValue())
            record.losses.append(value)
            yield Progress(
                step=counter['step'],
                total=total,
                level=index,
                n_levels=n_levels,
                iteration=0,
                loss=value,
            )
            counter['step'] += 1
        reports.append(
            LevelReport(
                shape=pair.shape,
                iterations=len(record.iterations),
                seconds=time.perf_counter() - started,
                stop_reason=record.reason,
                losses=tuple(record.losses),
            )
        )
        if record.reason == LOST_OVERLAP:
            break

    final = matrix_from_transform(transform)
    if moving_initial is not None:
        final = moving_initial @ final
    identity = np.eye(problem.ndim + 1)
    value_before = natural(problem, problem.metric, pair, identity, masks)
    value_after = natural(problem, problem.metric, pair, final, masks)
    summary = None if init_report is None else init_report.summary()
    return start, final, value_before, value_after, reports, summary


def _merge_reports(per_frame: list[list[LevelReport]]) -> tuple[LevelReport, ...]:
    """One report per level.

    Losses are means over frames (padded with each frame's last loss where frames
    stopped at different iterations).
    """
    if len(per_frame) == 1:
        return tuple(per_frame[0])
    merged = []
    for reports in zip(*per_frame, strict=True):
        longest = max(len(r.losses) for r in reports)
        padded = np.array(
            [
                list(r.losses) + [r.losses[-1]] * (longest - len(r.losses))
                for r in reports
            ]
        )
        reasons = sorted({r.stop_reason for r in reports})
        merged.append(
            LevelReport(
                shape=reports[0].shape,
                iterations=max(r.iterations for r in reports),
                seconds=float(sum(r.seconds for r in reports)),
                stop_reason=reasons[0] if len(reasons) == 1 else ', '.join(reasons),
                losses=tuple(float(v) for v in padded.mean(axis=0)),
            )
        )
    return tuple(merged)
