"""``register`` and ``iter_register``: validate, pick a backend, run."""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import replace

from numpy.typing import ArrayLike

from .inputs import Image
from .method import resolve
from .options import Settings
from .problem import Outcome, Problem
from .result import Progress, RegistrationResult

__all__ = ['iter_register', 'register']


def _result(
    outcome: Outcome,
    problem: Problem,
    fixed: Image,
    moving: Image,
    elapsed: float,
) -> RegistrationResult:
    settings = problem.settings.to_dict()
    settings['schedule'] = [
        {'factor': lv.factor, 'sigma': lv.sigma, 'iterations': lv.iterations}
        for lv in problem.schedule
    ]
    settings['initial_moving_from_fixed'] = outcome.initial[0].tolist()
    if outcome.init_report is not None:
        settings['init_report'] = outcome.init_report[0]
    return RegistrationResult(
        moving_from_fixed=outcome.moving_from_fixed[0],
        model=problem.model.value,
        metric=problem.metric.value,
        backend=problem.method.backend.value,
        metric_before=float(outcome.metric_before[0]),
        metric_after=float(outcome.metric_after[0]),
        levels=outcome.levels,
        elapsed=elapsed,
        fixed_grid=fixed.grid,
        moving_grid=moving.grid,
        settings=settings,
        _fixed=fixed.data,
        _moving=moving.data,
        _fixed_mask=problem.fixed_mask,
        _moving_mask=problem.moving_mask,
    )


def drive(
    steps: Generator[Progress, None, object],
    callback: Callable[[Progress], None] | None = None,
):
    """Run a registration generator to its end, passing each event to ``callback``.

    Returns the generator's return value (the result).
    """
    while True:
        try:
            progress = next(steps)
        except StopIteration as done:
            return done.value
        if callback is not None:
            callback(progress)


def iter_register(
    fixed: ArrayLike,
    moving: ArrayLike,
    model: str = 'affine',
    metric: str = 'ncc',
    backend: str = 'torch',
    *,
    fixed_spacing: Sequence[float] | None = None,
    fixed_origin: Sequence[float] | None = None,
    moving_spacing: Sequence[float] | None = None,
    moving_origin: Sequence[float] | None = None,
    fixed_direction: ArrayLike | None = None,
    moving_direction: ArrayLike | None = None,
    fixed_mask: ArrayLike | None = None,
    moving_mask: ArrayLike | None = None,
    initial: ArrayLike | None = None,
    channel_axis: int | None = None,
    levels: int | None = None,
    shrink_factors: Sequence[int] | None = None,
    smoothing_sigmas: float | Sequence[float] | None = None,
    iterations: int | Sequence[int] | None = None,
    optimizer: str | None = None,
    learning_rate: float | None = None,
    init: str | None = None,
    tolerance: float | None = None,
    mi_bins: int | None = None,
    sampling: float | None = None,
    seed: int | None = None,
    device: str | None = None,
    match_histograms: bool | None = None,
    allow_reflection: bool | None = None,
    settings: Settings | None = None,
) -> Generator[Progress, None, RegistrationResult]:
    """Register step by step: yield :class:`Progress`, return the result.

    Input is validated when this function is called, before the first step.
    Stop iterating (or ``close()`` the generator) to cancel; the
    :class:`RegistrationResult` is the generator's return value
    (``StopIteration.value``).

    Parameters
    ----------
    fixed, moving : array_like or SimpleITK.Image
        2D ``(row, col)`` or 3D ``(plane, row, col)`` images of any numeric
        dtype (numpy, dask, or SimpleITK images, which keep their geometry).
        RGB(A) in the last axis of a 2D image is registered on its
        luminance; other channel layouts need ``channel_axis``. The inputs
        are never modified.
    model : {'translation', 'rigid', 'similarity', 'affine', 'homography'}
        Transform model; ``'homography'`` is 2D only.
    metric : {'l1', 'mse', 'ncc', 'mi'}
        Similarity over the overlap. ``'mi'`` (mutual information) is the one
        for images of different modalities.
    backend : {'torch', 'sitk'}
        ``'torch'``: gradient optimisation on PyTorch (GPU when present).
        ``'sitk'``: SimpleITK's ImageRegistrationMethod (no l1, no homography).
    fixed_spacing, moving_spacing : sequence of float, optional
        Pixel spacing per axis (numpy order, e.g. napari ``scale``).
    fixed_origin, moving_origin : sequence of float, optional
        Physical position of pixel 0 (e.g. napari ``translate``).
    fixed_direction, moving_direction : array_like, shape (D, D), optional
        Orthonormal matrix whose columns are the physical directions of the
        array axes (numpy order; e.g. a napari layer's ``rotate``).
    fixed_mask, moving_mask : array_like of bool, optional
        Pixels that count (spatial shape of their image).
    initial : array_like, shape (D + 1, D + 1), optional
        Starting ``moving_from_fixed`` in physical units, of the model's
        kind; overrides ``init``.
    channel_axis : int, optional
        Axis holding channels in both images.
    levels, shrink_factors, smoothing_sigmas, iterations, optimizer, \
learning_rate, init, tolerance, mi_bins, sampling, seed, device, \
match_histograms, allow_reflection
        Pyramid and optimiser settings: see :class:`napari_coreg.Settings`.
        ``None`` means "not given": the value in ``settings``, else the
        default.
    settings : Settings, optional
        All of the above in one object; explicit keywords win over it.

    Returns
    -------
    generator
        Yields :class:`Progress`; returns the :class:`RegistrationResult`.

    Raises
    ------
    ValueError
        For bad input (ndim, NaN/inf, empty or constant images, images too
        small for the pyramid, unknown names, homography in 3D) and for a
        combination the backend cannot do, before any work starts.
    TypeError
        For arguments of the wrong type.

    Notes
    -----
    Conventions: numpy axis order; ``moving_from_fixed`` maps fixed physical
    points to moving physical points; physical = pixel index x spacing +
    origin (pixels when neither is given). See ``docs/conventions.md``.
    """
    method = resolve(
        model,
        metric,
        backend,
        settings=settings,
        levels=levels,
        shrink_factors=shrink_factors,
        smoothing_sigmas=smoothing_sigmas,
        iterations=iterations,
        optimizer=optimizer,
        learning_rate=learning_rate,
        init=init,
        tolerance=tolerance,
        mi_bins=mi_bins,
        sampling=sampling,
        seed=seed,
        device=device,
        match_histograms=match_histograms,
        allow_reflection=allow_reflection,
    )
    problem, fixed_img, moving_img = Problem.from_images(
        fixed,
        moving,
        method,
        fixed_spacing=fixed_spacing,
        fixed_origin=fixed_origin,
        moving_spacing=moving_spacing,
        moving_origin=moving_origin,
        fixed_direction=fixed_direction,
        moving_direction=moving_direction,
        fixed_mask=fixed_mask,
        moving_mask=moving_mask,
        initial=initial,
        channel_axis=channel_axis,
    )
    engine = method.engine()

    def steps() -> Generator[Progress, None, RegistrationResult]:
        start = time.perf_counter()
        engine_steps = engine.run(problem)
        while True:
            try:
                progress = next(engine_steps)
            except StopIteration as done:
                outcome = done.value
                break
            if progress.matrix is not None:  # one pair: drop the batch axis
                progress = replace(progress, matrix=progress.matrix[0])
            yield progress
        return _result(
            outcome, problem, fixed_img, moving_img, time.perf_counter() - start
        )

    return steps()


def register(
    fixed: ArrayLike,
    moving: ArrayLike,
    model: str = 'affine',
    metric: str = 'ncc',
    backend: str = 'torch',
    *,
    callback: Callable[[Progress], None] | None = None,
    fixed_spacing: Sequence[float] | None = None,
    fixed_origin: Sequence[float] | None = None,
    moving_spacing: Sequence[float] | None = None,
    moving_origin: Sequence[float] | None = None,
    fixed_direction: ArrayLike | None = None,
    moving_direction: ArrayLike | None = None,
    fixed_mask: ArrayLike | None = None,
    moving_mask: ArrayLike | None = None,
    initial: ArrayLike | None = None,
    channel_axis: int | None = None,
    levels: int | None = None,
    shrink_factors: Sequence[int] | None = None,
    smoothing_sigmas: float | Sequence[float] | None = None,
    iterations: int | Sequence[int] | None = None,
    optimizer: str | None = None,
    learning_rate: float | None = None,
    init: str | None = None,
    tolerance: float | None = None,
    mi_bins: int | None = None,
    sampling: float | None = None,
    seed: int | None = None,
    device: str | None = None,
    match_histograms: bool | None = None,
    allow_reflection: bool | None = None,
    settings: Settings | None = None,
) -> RegistrationResult:
    """Find the transform that aligns ``moving`` onto ``fixed``.

    Takes the parameters of :func:`iter_register` (see there), plus
    ``callback``, called with every :class:`Progress` in the calling thread.

    Returns
    -------
    RegistrationResult
        ``moving_from_fixed`` (pull-back, physical units, numpy order),
        ``fixed_from_moving``, ``aligned`` (moving on the fixed grid),
        metric before/after, per-level history and times.

    Raises
    ------
    ValueError
        For bad input or an impossible combination, before any work.
    TypeError
        For arguments of the wrong type.

    Examples
    --------
    >>> import numpy as np
    >>> from skimage import data
    >>> from scipy import ndimage
    >>> fixed = data.camera()[100:356, 100:356].astype(np.float32)
    >>> moving = ndimage.shift(fixed, (3.0, -2.0))
    >>> res = register(fixed, moving, model='translation', metric='ncc')
    >>> np.round(res.moving_from_fixed[:2, 2], 1)
    array([ 3., -2.])
    """
    steps = iter_register(
        fixed,
        moving,
        model,
        metric,
        backend,
        fixed_spacing=fixed_spacing,
        fixed_origin=fixed_origin,
        moving_spacing=moving_spacing,
        moving_origin=moving_origin,
        fixed_direction=fixed_direction,
        moving_direction=moving_direction,
        fixed_mask=fixed_mask,
        moving_mask=moving_mask,
        initial=initial,
        channel_axis=channel_axis,
        levels=levels,
        shrink_factors=shrink_factors,
        smoothing_sigmas=smoothing_sigmas,
        iterations=iterations,
        optimizer=optimizer,
        learning_rate=learning_rate,
        init=init,
        tolerance=tolerance,
        mi_bins=mi_bins,
        sampling=sampling,
        seed=seed,
        device=device,
        match_histograms=match_histograms,
        allow_reflection=allow_reflection,
        settings=settings,
    )
    return drive(steps, callback)
