"""``register`` and ``iter_register``: validate, pick a backend, run."""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import replace

import numpy as np
from numpy.typing import ArrayLike

from .engines import check_device, check_supported, default_iterations, load_engine
from .inputs import Image, as_image, as_mask, match_histogram, normalise_intensities
from .options import Backend, Metric, Model, Settings
from .problem import Outcome, Problem
from .pyramid import level_schedule
from .result import Progress, RegistrationResult

__all__ = ['iter_register', 'register']

_RUN_DOC = """
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
        Starting ``moving_from_fixed`` in physical units; overrides ``init``.
    channel_axis : int, optional
        Axis holding channels in both images.
    **settings
        Pyramid and optimiser settings, see :class:`napari_coreg.Settings`:
        ``levels``, ``shrink_factors``, ``smoothing_sigmas``, ``iterations``,
        ``optimizer``, ``learning_rate``, ``init``, ``tolerance``,
        ``mi_bins``, ``sampling``, ``seed``, ``device``, ``match_histograms``.

    Raises
    ------
    ValueError
        For bad input (ndim, NaN/inf, empty or constant images, images too
        small for the pyramid, unknown names, homography in 3D) and for a
        combination the backend cannot do, before any work starts.

    Notes
    -----
    Conventions: numpy axis order; ``moving_from_fixed`` maps fixed physical
    points to moving physical points; physical = pixel index x spacing +
    origin (pixels when neither is given). See ``docs/conventions.md``.
"""


def _check_initial(initial: ArrayLike, ndim: int, model: Model) -> np.ndarray:
    """A usable starting ``moving_from_fixed``: finite, invertible, and affine
    unless the model is a homography."""
    initial = np.asarray(initial, dtype=np.float64)
    size = ndim + 1
    if initial.shape != (size, size) or not np.isfinite(initial).all():
        raise ValueError(
            f'initial must be a finite ({size}, {size}) moving_from_fixed matrix, '
            f'got shape {initial.shape}'
        )
    if np.linalg.cond(initial) > 1e12:
        raise ValueError('initial is singular: pass an invertible matrix')
    if model is not Model.HOMOGRAPHY and not np.allclose(initial[-1], np.eye(size)[-1]):
        raise ValueError(
            f'initial has a projective last row {initial[-1]} but the model is '
            f"'{model}': pass an affine matrix (last row 0, ..., 0, 1) or use "
            "model='homography'"
        )
    return initial


def _prepare(
    fixed: ArrayLike,
    moving: ArrayLike,
    model: str,
    metric: str,
    backend: str,
    *,
    fixed_spacing: Sequence[float] | None,
    fixed_origin: Sequence[float] | None,
    moving_spacing: Sequence[float] | None,
    moving_origin: Sequence[float] | None,
    fixed_direction: ArrayLike | None,
    moving_direction: ArrayLike | None,
    fixed_mask: ArrayLike | None,
    moving_mask: ArrayLike | None,
    initial: ArrayLike | None,
    channel_axis: int | None,
    settings: dict,
) -> tuple[Problem, Image, Image, Backend]:
    model = Model.parse(model, 'model')
    metric = Metric.parse(metric, 'metric')
    backend = Backend.parse(backend, 'backend')
    opts = Settings(**settings)
    fixed_img = as_image(
        fixed,
        'fixed',
        spacing=fixed_spacing,
        origin=fixed_origin,
        direction=fixed_direction,
        channel_axis=channel_axis,
    )
    moving_img = as_image(
        moving,
        'moving',
        spacing=moving_spacing,
        origin=moving_origin,
        direction=moving_direction,
        channel_axis=channel_axis,
    )
    ndim = fixed_img.grid.ndim
    if moving_img.grid.ndim != ndim:
        raise ValueError(
            f'fixed is {ndim}D {fixed_img.grid.shape} but moving is '
            f'{moving_img.grid.ndim}D {moving_img.grid.shape}: both images need '
            'the same number of spatial dimensions'
        )
    check_supported(backend, model, metric, ndim, opts.optimizer)
    check_device(backend, opts.device)
    schedule = level_schedule(
        fixed_img.grid.shape,
        levels=opts.levels,
        shrink_factors=opts.shrink_factors,
        smoothing_sigmas=opts.smoothing_sigmas,
        iterations=opts.iterations,
        default_iterations=default_iterations(backend, opts.optimizer),
    )
    level_schedule(  # the moving image must fit the same pyramid
        moving_img.grid.shape, shrink_factors=[lv.factor for lv in schedule]
    )
    if initial is not None:
        initial = _check_initial(initial, ndim, model)[None]
    fixed_gray = normalise_intensities(fixed_img.gray)
    moving_gray = normalise_intensities(moving_img.gray)
    if opts.match_histograms and metric in (Metric.L1, Metric.MSE):
        moving_gray = match_histogram(moving_gray, fixed_gray)
    problem = Problem(
        fixed=fixed_gray[None],
        moving=moving_gray[None],
        fixed_grid=fixed_img.grid,
        moving_grid=moving_img.grid,
        fixed_mask=as_mask(fixed_mask, fixed_img.grid.shape, 'fixed_mask'),
        moving_mask=as_mask(moving_mask, moving_img.grid.shape, 'moving_mask'),
        model=model,
        metric=metric,
        schedule=schedule,
        initial=initial,
        settings=opts,
    )
    return problem, fixed_img, moving_img, backend


def _result(
    outcome: Outcome,
    problem: Problem,
    fixed: Image,
    moving: Image,
    backend: Backend,
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
        backend=backend.value,
        metric_before=float(outcome.metric_before[0]),
        metric_after=float(outcome.metric_after[0]),
        levels=outcome.levels,
        elapsed=elapsed,
        fixed_grid=fixed.grid,
        moving_grid=moving.grid,
        settings=settings,
        _fixed=fixed.data,
        _moving=moving.data,
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
    **settings,
) -> Generator[Progress, None, RegistrationResult]:
    """Register step by step: yield :class:`Progress`, return the result.

    Input is validated when this function is called, before the first step.
    Stop iterating (or ``close()`` the generator) to cancel; the
    :class:`RegistrationResult` is the generator's return value
    (``StopIteration.value``).
    """
    problem, fixed_img, moving_img, backend_ = _prepare(
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
        settings=settings,
    )
    run = load_engine(backend_)

    def steps() -> Generator[Progress, None, RegistrationResult]:
        start = time.perf_counter()
        engine_steps = run(problem)
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
            outcome,
            problem,
            fixed_img,
            moving_img,
            backend_,
            time.perf_counter() - start,
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
    **kwargs,
) -> RegistrationResult:
    """Find the transform that aligns ``moving`` onto ``fixed``.

    Takes the arguments of :func:`iter_register`, plus ``callback``, called
    with every :class:`Progress` in the calling thread.

    Returns
    -------
    RegistrationResult
        ``moving_from_fixed`` (pull-back, physical units, numpy order),
        ``fixed_from_moving``, ``aligned`` (moving on the fixed grid),
        metric before/after, per-level history and times.

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
    steps = iter_register(fixed, moving, model, metric, backend, **kwargs)
    return drive(steps, callback)


register.__doc__ += _RUN_DOC
iter_register.__doc__ += _RUN_DOC
