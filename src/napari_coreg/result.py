"""What a registration returns: progress events and results."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .transforms import Grid

if TYPE_CHECKING:
    from .quality import Assessment

__all__ = ['LevelReport', 'Progress', 'RegistrationResult']


@dataclass(frozen=True)
class Progress:
    """One optimiser step, as yielded by :func:`napari_coreg.iter_register`.

    Attributes
    ----------
    step : int
        0-based over the whole run.
    total : int
        Upper bound on steps (convergence usually ends levels sooner).
    level : int
        Pyramid level, 0 = coarsest.
    n_levels : int
        Number of levels.
    iteration : int
        Iteration within the level.
    loss : float
        Current loss (lower is better); for a batch, the mean over frames.
    matrix : ndarray or None
        Current ``moving_from_fixed`` (physical units): ``(D+1, D+1)`` from
        :func:`~napari_coreg.iter_register`, ``(B, D+1, D+1)`` from a batched
        backend run. Set about every 0.2 s; ``None`` on other steps and where
        the backend does not expose it mid-level.
    """

    step: int
    total: int
    level: int
    n_levels: int
    iteration: int
    loss: float
    matrix: NDArray[np.float64] | None = None


@dataclass(frozen=True)
class LevelReport:
    """How one pyramid level went."""

    shape: tuple[int, ...]
    iterations: int
    seconds: float
    stop_reason: str
    losses: tuple[float, ...]


@dataclass(frozen=True, eq=False)
class RegistrationResult:
    """Outcome of :func:`napari_coreg.register`.

    Attributes
    ----------
    moving_from_fixed : ndarray, shape (D + 1, D + 1)
        Maps a fixed physical point to the moving physical point showing the
        same structure (numpy axis order; the pull-back that resamples moving
        onto the fixed grid).
    model, metric, backend : str
        What was run.
    metric_before, metric_after : float
        The registration metric in its natural form (NCC and MI: higher is
        better; L1 and MSE: lower is better) over the overlap on the finest
        level: before = the images as given (identity in physical space),
        after = at the result.
    levels : tuple of LevelReport
        Per level: shape, iterations, time, stop reason and loss history.
    elapsed : float
        Wall-clock seconds of the optimisation.
    fixed_grid, moving_grid : Grid
        Physical geometry of the two images.
    settings : dict
        Every setting used, JSON-able.

    Notes
    -----
    ``aligned`` (moving resampled onto the fixed grid), ``quality``
    (MSE / NCC / SSIM over the overlap, before and after) and the verdict
    (``verdict``, ``verdict_reasons``, ``uncertainty_px``, see
    :func:`napari_coreg.quality.assess`) are computed on first access.
    """

    moving_from_fixed: NDArray[np.float64]
    model: str
    metric: str
    backend: str
    metric_before: float
    metric_after: float
    levels: tuple[LevelReport, ...]
    elapsed: float
    fixed_grid: Grid
    moving_grid: Grid
    settings: dict[str, Any] = field(default_factory=dict)
    _fixed: NDArray = field(default=None, repr=False)
    _moving: NDArray = field(default=None, repr=False)
    _fixed_mask: NDArray | None = field(default=None, repr=False)
    _moving_mask: NDArray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        matrix = np.array(self.moving_from_fixed, dtype=np.float64)
        matrix.setflags(write=False)
        object.__setattr__(self, 'moving_from_fixed', matrix)

    @property
    def ndim(self) -> int:
        """Number of spatial dimensions."""
        return self.moving_from_fixed.shape[0] - 1

    @property
    def fixed_from_moving(self) -> NDArray[np.float64]:
        """Inverse of :attr:`moving_from_fixed` (napari's direction)."""
        return np.linalg.inv(self.moving_from_fixed)

    @property
    def stop_reason(self) -> str:
        """Why the finest level stopped."""
        return self.levels[-1].stop_reason

    @property
    def loss_history(self) -> tuple[tuple[float, ...], ...]:
        """Loss per iteration, one tuple per level (coarse to fine)."""
        return tuple(level.losses for level in self.levels)

    @cached_property
    def aligned(self) -> NDArray:
        """Moving resampled onto the fixed grid (fixed's shape; channels kept)."""
        from .warp import resample

        return resample(
            self._moving, self.moving_from_fixed, self.fixed_grid, self.moving_grid
        )

    @cached_property
    def quality(self) -> dict[str, dict[str, float]]:
        """MSE, NCC and SSIM over the overlap, ``{'before': ..., 'after': ...}``.

        Before = the images as given (identity in physical space). Intensities
        are rescaled to [0, 1] by the fixed image's range first.
        """
        from .quality import overlap_quality

        return overlap_quality(
            self._fixed,
            self._moving,
            self.moving_from_fixed,
            self.fixed_grid,
            self.moving_grid,
        )

    @cached_property
    def assessment(self) -> Assessment:
        """The verdict with its evidence (:class:`~napari_coreg.quality.Assessment`)."""
        from .quality import assess

        return assess(self)

    @property
    def verdict(self) -> str:
        """Whether to trust the result: ``'ok'``, ``'suspect'`` or ``'failed'``."""
        return self.assessment.verdict

    @property
    def verdict_reasons(self) -> tuple[str, ...]:
        """Short sentences behind the verdict, each saying what to do."""
        return self.assessment.reasons

    @property
    def uncertainty_px(self) -> float | None:
        """95% bound on the corner error (moving pixels), or ``None``.

        From the curvature of the metric at the result and the residual
        noise; ``None`` where the metric is flat (nothing to register on) or
        the verdict is ``'failed'``.
        """
        return self.assessment.uncertainty_px

    def report(
        self,
        path: str | os.PathLike,
        *,
        overwrite: bool = False,
        fixed_points: ArrayLike | None = None,
        moving_points: ArrayLike | None = None,
    ) -> Path:
        """Write a self-contained HTML report.

        See :func:`napari_coreg.quality.write_report`.
        Never overwrites an existing file unless ``overwrite=True``; paired
        landmarks (physical, numpy order) join the verdict. Returns the path
        written.
        """
        from .quality import write_report

        return write_report(
            self,
            path,
            overwrite=overwrite,
            fixed_points=fixed_points,
            moving_points=moving_points,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary: matrices, conventions, settings, figures, verdict."""
        from . import __version__

        return {
            'moving_from_fixed': self.moving_from_fixed.tolist(),
            'fixed_from_moving': self.fixed_from_moving.tolist(),
            'conventions': {
                'direction': 'moving_from_fixed maps fixed physical points to '
                'moving physical points (ITK pull-back); fixed_from_moving is '
                'its inverse (napari layer.affine direction)',
                'axes': 'numpy order: (row, col) in 2D, (plane, row, col) in 3D',
                'units': 'physical: pixel index times spacing plus origin',
            },
            'model': self.model,
            'metric': self.metric,
            'backend': self.backend,
            'metric_before': self.metric_before,
            'metric_after': self.metric_after,
            'elapsed_s': self.elapsed,
            'stop_reason': self.stop_reason,
            'verdict': self.verdict,
            'verdict_reasons': list(self.verdict_reasons),
            'uncertainty_px': self.uncertainty_px,
            'fixed_grid': self.fixed_grid.to_dict(),
            'moving_grid': self.moving_grid.to_dict(),
            'settings': self.settings,
            'napari_coreg_version': __version__,
        }
