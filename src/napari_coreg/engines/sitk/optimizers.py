"""SimpleITK optimisers by name, and the sampling and seeds they run with."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    'CANCEL_WITHIN_LEVEL',
    'MAX_STEP_FRACTION',
    'OPTIMIZERS',
    'STEP_PX',
    'SitkOptimizer',
    'itk_seed',
    'level_sampling',
]

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
    """ITK's seed for our ``seed``.

    ITK reads 0 as "seed from the wall clock", so it gets ``seed + 1`` and every seed, 0
    included, is reproducible.
    """
    return int(seed) + 1


def level_sampling(sampling: float | None, n_pixels: int) -> float | None:
    """The sampling fraction of a level of ``n_pixels``.

    At least :data:`MIN_SAMPLED_POINTS` points, ``None`` (every pixel) when that is all.

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
