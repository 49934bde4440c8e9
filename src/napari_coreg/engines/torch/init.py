"""Starting points for the torch backend.

The shared initialisers of :mod:`napari_coreg.init`, scored on the coarsest level by
torch sampling.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from ...init import InitReport, starts_for_frame
from ...options import Metric
from ...problem import Problem
from .levels import LevelData, sample
from .metrics import natural

__all__ = ['MIN_OVERLAP', 'MULTI_START', 'starting_points']

#: How many of the best-ranked distinct starting points ``init='auto'``
#: optimises at the coarsest level before it keeps the best.
MULTI_START = 3
#: Most coarse-level points a candidate is scored on (volumes whose coarsest
#: level is large would otherwise make ranking dozens of starts slow).
SCORE_POINTS = 1 << 15
#: Candidates that cover less than this fraction of the coarse fixed
#: points cannot be ranked (small overlaps match by chance).
MIN_OVERLAP = 0.1


def _to_norm(matrices: np.ndarray, norm: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(norm @ matrices @ np.linalg.inv(norm))


def _thinned(data: LevelData) -> LevelData:
    """``data`` with at most ``SCORE_POINTS`` evenly strided fixed points."""
    n = data.fixed_points.shape[0]
    if n <= SCORE_POINTS:
        return data
    keep = torch.arange(0, n, -(-n // SCORE_POINTS), device=data.fixed_points.device)
    return replace(
        data,
        fixed_points=data.fixed_points[keep],
        fixed_values=data.fixed_values[:, keep],
    )


def _scorer(problem: Problem, data: LevelData, frame: int, norm: np.ndarray):
    """``score(matrices) -> (K,)``: NCC, or MI over the fixed entropy for MI."""
    data = _thinned(data)
    # candidates are scored by MI for multimodal metrics, else by NCC
    metric = Metric.MI if problem.method.metric_spec.multimodal else Metric.NCC
    bins = problem.settings.mi_bins
    values = data.fixed_values
    fixed = values[0 if values.shape[0] == 1 else frame][None]
    scale = 1.0
    if metric is Metric.MI:
        entropy = natural(metric, fixed, fixed, torch.ones_like(fixed), bins)
        scale = 1 / max(float(entropy[0]), 1e-6)

    def score(matrices: np.ndarray) -> np.ndarray:
        frames = torch.full((len(matrices),), frame, dtype=torch.long)
        s = sample(data, _to_norm(matrices, norm), frames)
        found = natural(metric, s.values, fixed, s.weights, bins).cpu().double()
        overlap = s.weights.cpu().double().mean(dim=1)
        found = torch.where(overlap >= MIN_OVERLAP, found * scale, -torch.inf)
        return torch.nan_to_num(found, nan=-torch.inf).numpy()

    return score


def starting_points(
    problem: Problem, data: LevelData | None, norm: np.ndarray, device: torch.device
) -> tuple[np.ndarray, list[InitReport] | None]:
    """Starting ``moving_from_fixed`` matrices per frame, best first.

    Parameters
    ----------
    problem : Problem
    data : LevelData or None
        The coarsest level, without masks and without point subsets (not
        needed, and may be None, when the problem has ``initial``).
    norm : ndarray
        ``norm_from_phys`` of the engine.
    device : torch.device
        Where features and RANSAC run.

    Returns
    -------
    starts : ndarray, shape (B, K, D + 1, D + 1)
        ``K`` distinct starts per frame (``K = 1`` with ``initial`` or an
        initialiser that proposes one); frames with fewer repeat their last.
    reports : list of InitReport or None
        Per frame; ``None`` when ``initial`` was given.
    """
    batch, size = problem.batch, problem.ndim + 1
    if problem.initial is not None:
        starts = np.broadcast_to(problem.initial[:, None], (batch, 1, size, size))
        return starts.copy(), None
    reports = []
    for frame in range(batch):
        reports.append(
            starts_for_frame(
                problem, frame, _scorer(problem, data, frame, norm), MULTI_START, device
            )
        )
    n_starts = max(len(r.starts) for r in reports)
    starts = np.empty((batch, n_starts, size, size))
    for frame, report in enumerate(reports):
        matrices = [s.moving_from_fixed for s in report.starts]
        matrices += matrices[-1:] * (n_starts - len(matrices))
        starts[frame] = np.stack(matrices)
    return starts, reports
