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

import contextlib
import queue
import sys
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from ..._sitk import (
    empty_transform,
    grid_from_image,
    image_from_array,
    matrix_from_transform,
    set_transform_matrix,
)
from ...options import METRIC_SPECS, Init, Metric, Model
from ...problem import Outcome, Problem
from ...pyramid import Level, shrink_per_axis
from ...result import LevelReport, Progress
from ...transforms import Grid, apply_matrix, grid_points, homogeneous
from .. import PREVIEW_SECONDS, TOLERANCE_PX

__all__ = ['CANCEL_WITHIN_LEVEL', 'OPTIMIZERS', 'run']

#: Rotations tried by ``init='auto'`` for 2D models that rotate (degrees),
#: as the torch backend does.
ROTATION_SEARCH = (0.0, -10.0, 10.0, -20.0, 20.0, -30.0, 30.0)
#: Default first step of the gradient optimisers, in pixels of the level.
STEP_PX = 1.0
#: The first step is at most this fraction of the level's smallest side, so
#: that a large ``learning_rate`` cannot throw the images apart at once.
MAX_STEP_FRACTION = 0.1
#: Random sampling draws at least this many points per level (a smaller
#: ``sampling`` fraction is raised to it; ITK fails with none).
MIN_SAMPLED_POINTS = 256
#: Fraction of the fixed level's pixels the metric samples per evaluation
#: when ``sampling`` is not given: SimpleITK's usual random sampling (its
#: examples use 1-25 %), seeded, so runs are reproducible. ``sampling=1``
#: evaluates every pixel.
DEFAULT_SAMPLING = 0.25
#: Fewest points a level samples by default (small coarse levels of the
#: default sampling sample a larger fraction).
DEFAULT_MIN_SAMPLES = 2048


def itk_seed(seed: int) -> int:
    """ITK's seed for our ``seed``: ITK reads 0 as "seed from the wall clock",
    so it gets ``seed + 1`` and every seed, 0 included, is reproducible."""
    return int(seed) + 1


def level_sampling(sampling: float | None, n_pixels: int) -> float | None:
    """The sampling fraction of a level of ``n_pixels``: at least
    :data:`MIN_SAMPLED_POINTS` points, ``None`` (every pixel) when that is all.

    ``sampling=None`` is the default: :data:`DEFAULT_SAMPLING`, and at least
    :data:`DEFAULT_MIN_SAMPLES` points.
    """
    least = MIN_SAMPLED_POINTS
    if sampling is None:
        sampling, least = DEFAULT_SAMPLING, DEFAULT_MIN_SAMPLES
    fraction = max(float(sampling), least / max(n_pixels, 1))
    return None if fraction >= 1 else fraction


def _regular_step(method, step, iterations, seed):
    # The step is estimated at every iteration so that it moves the fixed
    # image's corners by exactly ``relaxation * step`` physical units: ITK's
    # own normalisation (in parameter space) lets a scale or rotation
    # parameter take a step of ``step`` *radians* or *scale units* near the
    # optimum. Convergence is our corner test, so ITK's minStep is off.
    method.SetOptimizerAsRegularStepGradientDescent(
        learningRate=1.0,
        minStep=1e-12,
        numberOfIterations=iterations,
        relaxationFactor=0.5,
        gradientMagnitudeTolerance=1e-12,
        estimateLearningRate=method.EachIteration,
        maximumStepSizeInPhysicalUnits=step,
    )


def _line_search(method, step, iterations, seed):
    method.SetOptimizerAsGradientDescentLineSearch(
        learningRate=1.0,
        numberOfIterations=iterations,
        convergenceMinimumValue=1e-6,
        convergenceWindowSize=10,
        estimateLearningRate=method.Once,
        maximumStepSizeInPhysicalUnits=step,
    )


def _conjugate_gradient(method, step, iterations, seed):
    method.SetOptimizerAsConjugateGradientLineSearch(
        learningRate=1.0,
        numberOfIterations=iterations,
        convergenceMinimumValue=1e-6,
        convergenceWindowSize=10,
        estimateLearningRate=method.Once,
        maximumStepSizeInPhysicalUnits=step,
    )


def _lbfgs2(method, step, iterations, seed):
    method.SetOptimizerAsLBFGS2(solutionAccuracy=1e-5, numberOfIterations=iterations)


def _lbfgsb(method, step, iterations, seed):
    method.SetOptimizerAsLBFGSB(
        gradientConvergenceTolerance=1e-5,
        numberOfIterations=iterations,
        maximumNumberOfCorrections=5,
        maximumNumberOfFunctionEvaluations=2000,
        costFunctionConvergenceFactor=1e7,
    )


def _amoeba(method, step, iterations, seed):
    method.SetOptimizerAsAmoeba(
        simplexDelta=step,
        numberOfIterations=iterations,
        parametersConvergenceTolerance=step * 1e-3,
        functionConvergenceTolerance=1e-6,
    )


def _evolutionary(method, step, iterations, seed):
    method.SetOptimizerAsOnePlusOneEvolutionary(
        numberOfIterations=iterations,
        epsilon=1e-3 * step,
        initialRadius=step,
        growthFactor=1.05,
        shrinkFactor=0.98,
        seed=seed,
    )


@dataclass(frozen=True)
class SitkOptimizer:
    """How the backend drives one SimpleITK optimiser.

    Attributes
    ----------
    configure : callable
        ``configure(method, step, iterations, seed)``; ``step`` is the first
        step, a physical length (``learning_rate`` pixels of the level).
    stops : bool
        Honours ``StopRegistration()`` from the iteration callback (ITKv4
        optimisers); the vnl-based ones do not.
    scales : str
        ``'physical'``: ITK's ``SetOptimizerScalesFromPhysicalShift``
        (squared shifts, what the gradient optimisers expect); ``'shift'``:
        our own unsquared shifts, so that Amoeba's simplex and the
        evolutionary search radius are physical lengths; ``'none'``: the
        optimiser ignores scales (ITK warns and uses ones).
    watch : bool
        Ends a level by our corner test (see :data:`TOLERANCE_PX`).
    """

    configure: Callable
    stops: bool
    scales: str = 'physical'
    watch: bool = False


#: SimpleITK optimisers by name.
OPTIMIZERS: dict[str, SitkOptimizer] = {
    'gradient-descent': SitkOptimizer(_regular_step, True, watch=True),
    'gradient-descent-line-search': SitkOptimizer(_line_search, True),
    'conjugate-gradient': SitkOptimizer(_conjugate_gradient, True),
    'lbfgsb': SitkOptimizer(_lbfgsb, False, scales='none'),
    'lbfgs2': SitkOptimizer(_lbfgs2, False, scales='none'),
    'amoeba': SitkOptimizer(_amoeba, False, scales='shift'),
    'evolutionary': SitkOptimizer(_evolutionary, True, scales='shift'),
}
#: Optimisers that stop within a level when cancelled, without raising.
CANCEL_WITHIN_LEVEL = frozenset(n for n, o in OPTIMIZERS.items() if o.stops)


# --------------------------------------------------------------------------
# images and levels


@dataclass(frozen=True)
class _Pair:
    """One level of one frame: fixed and moving SimpleITK images."""

    fixed: sitk.Image
    moving: sitk.Image
    shape: tuple[int, ...]  # fixed level shape, numpy order
    pixel: float  # mean fixed level spacing (physical)
    corners: np.ndarray  # fixed level corners, physical, numpy order


def _level_image(image: sitk.Image, shape: tuple[int, ...], level: Level) -> sitk.Image:
    shrink = shrink_per_axis(shape, level.factor)
    if any(s > 1 for s in shrink):
        image = sitk.BinShrink(image, [int(s) for s in shrink[::-1]])
    if level.sigma > 0:
        variance = [(level.sigma * sp) ** 2 for sp in image.GetSpacing()]
        image = sitk.DiscreteGaussian(
            image,
            variance=variance,
            maximumKernelWidth=128,
            maximumError=0.01,
            useImageSpacing=True,
        )
    return image


def _level_pair(
    fixed: sitk.Image, moving: sitk.Image, problem: Problem, level: Level
) -> _Pair:
    fixed_l = _level_image(fixed, problem.fixed_grid.shape, level)
    moving_l = _level_image(moving, problem.moving_grid.shape, level)
    grid = grid_from_image(fixed_l)
    corners = apply_matrix(grid.phys_from_px, grid_points(grid.shape)[:-1])
    return _Pair(
        fixed=fixed_l,
        moving=moving_l,
        shape=grid.shape,
        pixel=float(np.mean(grid.spacing)),
        corners=corners,
    )


def _mask(mask: np.ndarray | None, grid: Grid) -> sitk.Image | None:
    if mask is None:
        return None
    return image_from_array(mask.astype(np.uint8), grid)


# --------------------------------------------------------------------------
# metric values


@dataclass(frozen=True)
class _SitkMetric:
    """How one of our metrics is set on SimpleITK, and its value read back.

    ``natural`` turns SimpleITK's metric value (minimised) into the value
    users read: Correlation returns ``-ncc**2`` (so ``|ncc|``), Mattes
    ``-MI``, MeanSquares the MSE.
    """

    set: Callable[[sitk.ImageRegistrationMethod, int], None]
    natural: Callable[[float], float]


#: Every metric this backend declares (engines/__init__.py), by name.
METRICS: dict[Metric, _SitkMetric] = {
    Metric.MSE: _SitkMetric(
        lambda method, bins: method.SetMetricAsMeanSquares(), lambda v: v
    ),
    Metric.NCC: _SitkMetric(
        lambda method, bins: method.SetMetricAsCorrelation(),
        lambda v: float(np.sqrt(max(-v, 0.0))),
    ),
    Metric.MI: _SitkMetric(
        lambda method, bins: method.SetMetricAsMattesMutualInformation(
            numberOfHistogramBins=bins
        ),
        lambda v: -v,
    ),
}


def _method(
    problem: Problem, masks, sampling: float | None = None, metric: Metric | None = None
) -> sitk.ImageRegistrationMethod:
    method = sitk.ImageRegistrationMethod()
    METRICS[metric or problem.metric].set(method, problem.settings.mi_bins)
    method.SetInterpolator(sitk.sitkLinear)
    fixed_mask, moving_mask = masks
    if fixed_mask is not None:
        method.SetMetricFixedMask(fixed_mask)
    if moving_mask is not None:
        method.SetMetricMovingMask(moving_mask)
    if sampling is None:
        method.SetMetricSamplingStrategy(method.NONE)
    else:
        method.SetMetricSamplingStrategy(method.RANDOM)
        method.SetMetricSamplingPercentage(
            float(sampling), itk_seed(problem.settings.seed)
        )
    method.SetShrinkFactorsPerLevel([1])
    method.SetSmoothingSigmasPerLevel([0.0])
    return method


def _affine(matrix: np.ndarray) -> sitk.Transform:
    ndim = matrix.shape[0] - 1
    transform = sitk.AffineTransform(ndim)
    set_transform_matrix(transform, matrix)
    return transform


def _overlap(pair: _Pair, matrix: np.ndarray, masks) -> np.ndarray:
    """Fixed level pixels inside the mapped moving image (and the masks)."""
    transform = _affine(matrix)
    ones = sitk.Image(pair.moving.GetSize(), sitk.sitkFloat32) + 1.0
    ones.CopyInformation(pair.moving)
    inside = sitk.Resample(ones, pair.fixed, transform, sitk.sitkLinear, 0.0)
    valid = sitk.GetArrayViewFromImage(inside) > 0.999
    fixed_mask, moving_mask = masks
    if fixed_mask is not None:
        on_fixed = sitk.Resample(
            fixed_mask, pair.fixed, sitk.Transform(), sitk.sitkNearestNeighbor, 0
        )
        valid &= sitk.GetArrayViewFromImage(on_fixed) > 0
    if moving_mask is not None:
        on_moving = sitk.Resample(
            moving_mask, pair.fixed, transform, sitk.sitkNearestNeighbor, 0
        )
        valid &= sitk.GetArrayViewFromImage(on_moving) > 0
    return valid


def _overlap_ncc(pair: _Pair, matrix: np.ndarray, masks) -> float:
    """Pearson correlation over the overlap (and masks), fixed level grid."""
    valid = _overlap(pair, matrix, masks)
    moved = sitk.Resample(pair.moving, pair.fixed, _affine(matrix), sitk.sitkLinear)
    f = sitk.GetArrayViewFromImage(pair.fixed)[valid].astype(np.float64)
    m = sitk.GetArrayViewFromImage(moved)[valid].astype(np.float64)
    if f.size < 2:
        return 0.0
    f, m = f - f.mean(), m - m.mean()
    denom = np.sqrt((f * f).sum() * (m * m).sum())
    return float((f * m).sum() / denom) if denom > 0 else 0.0


def _natural(
    problem: Problem, metric: Metric, pair: _Pair, matrix: np.ndarray, masks
) -> float:
    """The metric as users read it (NCC in [-1, 1], MI in nats, MSE)."""
    if metric is Metric.NCC:
        return _overlap_ncc(pair, matrix, masks)
    method = _method(problem, masks, metric=metric)
    method.SetInitialTransform(_affine(matrix))
    try:
        value = method.MetricEvaluate(pair.fixed, pair.moving)
    except RuntimeError:  # no overlap at all
        return float('nan')
    return METRICS[metric].natural(value)


def _loss(metric: Metric, value: float) -> float:
    """SimpleITK's metric value as the lower-is-better loss torch reports."""
    return METRIC_SPECS[metric].loss(METRICS[metric].natural(value))


# --------------------------------------------------------------------------
# initialisation


def _centred(fixed: sitk.Image, moving: sitk.Image, mode) -> np.ndarray:
    vehicle = sitk.AffineTransform(fixed.GetDimension())
    start = sitk.CenteredTransformInitializer(fixed, moving, vehicle, mode)
    return matrix_from_transform(start)


def _phase(pair: _Pair, matrix: np.ndarray) -> np.ndarray:
    """Refine ``matrix`` by the phase-correlation translation on the level."""
    from skimage.registration import phase_cross_correlation

    moved = sitk.Resample(
        pair.moving, pair.fixed, _affine(matrix), sitk.sitkLinear, 0.0
    )
    shift, _, _ = phase_cross_correlation(
        sitk.GetArrayViewFromImage(pair.fixed),
        sitk.GetArrayViewFromImage(moved),
        upsample_factor=4,
        normalization=None,
    )
    grid_linear = grid_from_image(pair.fixed).phys_from_px[:-1, :-1]
    return matrix @ homogeneous(np.eye(len(shift)), grid_linear @ -np.asarray(shift))


def _rotation_about(angle_deg: float, centre: np.ndarray) -> np.ndarray:
    a = np.deg2rad(angle_deg)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return homogeneous(rot, centre - rot @ centre)


def _initial(
    problem: Problem,
    frame: int,
    full: tuple[sitk.Image, sitk.Image],
    coarse: _Pair,
    masks,
) -> np.ndarray:
    """Starting ``moving_from_fixed`` (physical, numpy order) of one frame."""
    ndim = problem.ndim
    if problem.initial is not None:
        return problem.initial[min(frame, problem.initial.shape[0] - 1)].copy()
    init = problem.settings.init
    if init is Init.IDENTITY:
        return np.eye(ndim + 1)
    geometry = _centred(*full, sitk.CenteredTransformInitializerFilter.GEOMETRY)
    if init is Init.CENTER:
        return geometry
    if init is Init.PHASE:  # unless the shift leaves (almost) no overlap
        phase = _phase(coarse, geometry)
        kept = _overlap(coarse, phase, masks).sum()
        return (
            phase if kept >= 0.5 * _overlap(coarse, geometry, masks).sum() else geometry
        )
    # auto: centre of geometry or of mass, and phase correlation from the
    # centre (with a coarse rotation search in 2D); keep the best
    candidates = [geometry]
    with contextlib.suppress(RuntimeError):  # zero image mass
        candidates.append(
            _centred(*full, sitk.CenteredTransformInitializerFilter.MOMENTS)
        )
    rotates = ndim == 2 and problem.model is not Model.TRANSLATION
    centre = problem.fixed_grid.center
    for angle in ROTATION_SEARCH if rotates else (0.0,):
        start = geometry @ _rotation_about(angle, centre) if angle else geometry
        candidates.append(_phase(coarse, start))
    ranking = Metric.MI if problem.metric is Metric.MI else Metric.NCC
    scores = [_natural(problem, ranking, coarse, c, masks) for c in candidates]
    scores = [s if np.isfinite(s) else -np.inf for s in scores]
    return candidates[int(np.argmax(scores))]


def _model_transform(problem: Problem, start: np.ndarray):
    """The optimised transform (centred on the fixed image) and, when
    ``start`` is outside the model, a fixed moving-side initial transform."""
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
    """Corner test of convergence: the largest move of the fixed level's
    corners between two iterations, in physical units (as torch's)."""

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
    method, pair: _Pair, metric: Metric, stoppable: bool, watch: _Watch | None
) -> Generator[tuple[int, float, tuple], None, _LevelRun]:
    """Run ``method.Execute`` in a thread; yield (iteration, loss, position)
    as it goes."""
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
                loss = _loss(metric, value)
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
    for frame in range(problem.batch):
        outcome = yield from _run_frame(
            problem,
            frame,
            optimizer,
            counter,
            total,
            n_levels,
        )
        start, final, value_before, value_after, reports = outcome
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
    )


def _run_frame(problem, frame, optimizer, counter, total, n_levels):
    fixed_index = 0 if problem.fixed.shape[0] == 1 else frame
    fixed = image_from_array(problem.fixed[fixed_index], problem.fixed_grid)
    moving = image_from_array(problem.moving[frame], problem.moving_grid)
    masks = (
        _mask(problem.fixed_mask, problem.fixed_grid),
        _mask(problem.moving_mask, problem.moving_grid),
    )
    pair = _level_pair(fixed, moving, problem, problem.schedule[0])
    start = _initial(problem, frame, (fixed, moving), pair, masks)
    transform, moving_initial = _model_transform(problem, start)

    reports = []
    for index, level in enumerate(problem.schedule):
        started = time.perf_counter()
        if index:
            pair = _level_pair(fixed, moving, problem, level)
        sampling = level_sampling(
            problem.settings.sampling, pair.fixed.GetNumberOfPixels()
        )
        method = _method(problem, masks, sampling)
        if moving_initial is not None:
            method.SetMovingInitialTransform(_affine(moving_initial))
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
            if not _overlap(pair, _current(transform, moving_initial), masks).any():
                raise  # the level started without overlap: nothing to keep
            record = _LevelRun(losses=[], iterations=[], reason=LOST_OVERLAP)
        finally:  # also when the consumer fails: stop and join the thread
            steps.close()
        if not record.losses:  # the stream reports every level at least once
            value = _loss(problem.metric, method.GetMetricValue())
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
    value_before = _natural(problem, problem.metric, pair, identity, masks)
    value_after = _natural(problem, problem.metric, pair, final, masks)
    return start, final, value_before, value_after, reports


def _merge_reports(per_frame: list[list[LevelReport]]) -> tuple[LevelReport, ...]:
    """One report per level; losses are means over frames (padded with
    each frame's last loss where frames stopped at different iterations)."""
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
