"""A validated registration problem, as handed to a backend."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .inputs import Image, as_image, as_mask, match_histogram, normalise_intensities
from .method import Method
from .options import Metric, Model, Settings
from .pyramid import Level, level_schedule
from .result import LevelReport
from .transforms import Grid

__all__ = ['Outcome', 'Problem', 'check_initial']

#: A starting matrix whose linear part (in pixels of the two images) scales
#: any direction by more than this factor, or less than its inverse, cannot
#: be a registration's start: the images would not overlap in any useful way.
MAX_INITIAL_SCALE = 1e4


def check_initial(
    initial: ArrayLike, method: Method, fixed: Grid, moving: Grid
) -> NDArray[np.float64]:
    """A usable starting ``moving_from_fixed``.

    Finite, of the method's model, and not degenerate in pixels (physical units may be
    anything).

    Raises
    ------
    ValueError
        Naming what is wrong with ``initial`` and what to pass instead.
    """
    initial = np.array(initial, dtype=np.float64)
    size = fixed.ndim + 1
    if initial.shape != (size, size) or not np.isfinite(initial).all():
        raise ValueError(
            f'initial must be a finite ({size}, {size}) moving_from_fixed matrix, '
            f'got shape {initial.shape}'
        )
    spec = method.model_spec
    if not spec.projective and not np.allclose(initial[-1], np.eye(size)[-1]):
        raise ValueError(
            f'initial has a projective last row {initial[-1]} but the model is '
            f"'{method.model}': pass an affine matrix (last row 0, ..., 0, 1) or "
            "use model='homography'"
        )
    px = moving.px_from_phys @ initial @ fixed.phys_from_px
    linear = px / px[-1, -1] if spec.projective else px[:-1, :-1]
    singular = np.linalg.svd(linear, compute_uv=False)
    if not (
        singular.min() > 1 / MAX_INITIAL_SCALE and singular.max() < MAX_INITIAL_SCALE
    ):
        raise ValueError(
            'initial is singular or degenerate (it scales the image by '
            f'{singular.min():.3g} to {singular.max():.3g} in pixels): pass an '
            'invertible matrix in physical units (spacing and origin included)'
        )
    if not spec.fits(initial, atol=1e-6):
        kind = 'a reflection' if np.linalg.det(initial[:-1, :-1]) < 0 else 'outside it'
        raise ValueError(
            f"initial is {kind} for the '{method.model}' model: pass a "
            f'{method.model} matrix, or choose a model that contains it '
            "(e.g. model='affine')"
        )
    return initial


@dataclass(frozen=True, eq=False)
class Problem:
    """Everything a backend needs, already checked.

    Attributes
    ----------
    fixed : ndarray, shape (B or 1, *spatial), float32
        Fixed image(s), single channel, intensities rescaled to about [0, 1].
    moving : ndarray, shape (B, *spatial), float32
        Moving image(s), like ``fixed``. A batch registers each moving image
        to its fixed image (or all to the one fixed image).
    fixed_grid, moving_grid : Grid
        Physical geometry (shared by the batch).
    fixed_mask, moving_mask : ndarray of bool or None
        Where the images count (spatial shape), or ``None`` for everywhere.
    method : Method
        Model, metric, backend, settings and the resolved optimiser.
    schedule : tuple of Level
        Pyramid, coarse to fine.
    initial : ndarray, shape (B, D + 1, D + 1), or None
        Starting ``moving_from_fixed`` per frame (physical); ``None`` lets
        ``settings.init`` choose.
    """

    fixed: NDArray[np.float32]
    moving: NDArray[np.float32]
    fixed_grid: Grid
    moving_grid: Grid
    fixed_mask: NDArray[np.bool_] | None
    moving_mask: NDArray[np.bool_] | None
    method: Method
    schedule: tuple[Level, ...]
    initial: NDArray[np.float64] | None

    @classmethod
    def from_images(
        cls,
        fixed: ArrayLike,
        moving: ArrayLike,
        method: Method,
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
    ) -> tuple[Problem, Image, Image]:
        """Check one pair of images against ``method`` and build the problem.

        Returns the problem and the two checked images (their data is what
        the result resamples). Raises ValueError before any work for bad
        input; see :func:`napari_coreg.register` for the parameters.
        """
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
                f'{moving_img.grid.ndim}D {moving_img.grid.shape}: both images '
                'need the same number of spatial dimensions'
            )
        method.check_ndim(ndim)
        schedule = method.schedule(fixed_img.grid.shape)
        level_schedule(  # the moving image must fit the same pyramid
            moving_img.grid.shape, shrink_factors=[lv.factor for lv in schedule]
        )
        if initial is not None:
            initial = check_initial(initial, method, fixed_img.grid, moving_img.grid)
        fixed_mask = as_mask(
            fixed_mask, fixed_img.grid.shape, 'fixed_mask', fixed_img.valid
        )
        moving_mask = as_mask(
            moving_mask, moving_img.grid.shape, 'moving_mask', moving_img.valid
        )
        fixed_gray = normalise_intensities(fixed_img.gray, fixed_mask)
        moving_gray = normalise_intensities(moving_img.gray, moving_mask)
        if method.settings.match_histograms and method.metric_spec.difference:
            moving_gray = match_histogram(moving_gray, fixed_gray)
        problem = cls(
            fixed=fixed_gray[None],
            moving=moving_gray[None],
            fixed_grid=fixed_img.grid,
            moving_grid=moving_img.grid,
            fixed_mask=fixed_mask,
            moving_mask=moving_mask,
            method=method,
            schedule=schedule,
            initial=None if initial is None else initial[None],
        )
        return problem, fixed_img, moving_img

    @property
    def model(self) -> Model:
        """The transform model."""
        return self.method.model

    @property
    def metric(self) -> Metric:
        """The intensity metric."""
        return self.method.metric

    @property
    def settings(self) -> Settings:
        """Every setting."""
        return self.method.settings

    @property
    def ndim(self) -> int:
        """Number of spatial dimensions."""
        return self.fixed_grid.ndim

    @property
    def batch(self) -> int:
        """Number of moving images registered together."""
        return self.moving.shape[0]


@dataclass(frozen=True, eq=False)
class Outcome:
    """What a backend returns for a (batched) problem.

    Attributes
    ----------
    moving_from_fixed : ndarray, shape (B, D + 1, D + 1)
        Final transform per frame, physical units, numpy order.
    initial : ndarray, shape (B, D + 1, D + 1)
        The starting transform the backend used.
    metric_before, metric_after : ndarray, shape (B,)
        Registration metric in natural form at ``initial`` and at the end.
    levels : tuple of LevelReport
        Per level; losses are means over the batch.
    init_report : tuple of dict, optional
        Per frame: the starting points tried, which won and why (``None``
        when ``initial`` was given).
    """

    moving_from_fixed: NDArray[np.float64]
    initial: NDArray[np.float64]
    metric_before: NDArray[np.float64]
    metric_after: NDArray[np.float64]
    levels: tuple[LevelReport, ...]
    init_report: tuple[dict, ...] | None = None
