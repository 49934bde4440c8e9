"""A validated registration problem, as handed to a backend."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from .options import Metric, Model, Settings
from .pyramid import Level
from .result import LevelReport
from .transforms import Grid

__all__ = ['Outcome', 'Problem']


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
    model, metric : Model, Metric
    schedule : tuple of Level
        Pyramid, coarse to fine.
    initial : ndarray, shape (B, D + 1, D + 1), or None
        Starting ``moving_from_fixed`` per frame (physical); ``None`` lets
        ``settings.init`` choose.
    settings : Settings
    """

    fixed: NDArray[np.float32]
    moving: NDArray[np.float32]
    fixed_grid: Grid
    moving_grid: Grid
    fixed_mask: NDArray[np.bool_] | None
    moving_mask: NDArray[np.bool_] | None
    model: Model
    metric: Metric
    schedule: tuple[Level, ...]
    initial: NDArray[np.float64] | None
    settings: Settings

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
