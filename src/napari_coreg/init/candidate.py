"""A starting transform with its name, its score and why it was proposed."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ['Candidate']


@dataclass(frozen=True, eq=False)
class Candidate:
    """One starting ``moving_from_fixed`` matrix proposed by an initialiser.

    Attributes
    ----------
    name : str
        Which initialiser proposed it, e.g. ``'features'``, ``'phase'``.
    moving_from_fixed : ndarray, shape (D + 1, D + 1)
        Physical units, numpy axis order.
    score : float
        Higher is better: the ranking metric at the coarse level, ``nan``
        until scored.
    info : dict
        JSON-able details (inlier count and ratio, angle, scale, ...).
    """

    name: str
    moving_from_fixed: NDArray[np.float64]
    score: float = float('nan')
    info: dict[str, Any] = field(default_factory=dict)

    def scored(self, score: float) -> Candidate:
        """A copy with ``score`` (non-finite scores become ``-inf``)."""
        return replace(self, score=float(score) if np.isfinite(score) else -np.inf)

    @property
    def reflects(self) -> bool:
        """Whether the linear part has a negative determinant (a mirror)."""
        ndim = self.moving_from_fixed.shape[0] - 1
        return bool(np.linalg.det(self.moving_from_fixed[:ndim, :ndim]) < 0)

    def summary(self) -> dict[str, Any]:
        """JSON-able description for the result's ``init_report``."""
        return {
            'name': self.name,
            'score': None if not np.isfinite(self.score) else round(self.score, 4),
            'moving_from_fixed': np.round(self.moving_from_fixed, 6).tolist(),
            **self.info,
        }
