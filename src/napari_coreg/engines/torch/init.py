"""Starting points for the torch backend: centre, phase correlation, rotations."""

from __future__ import annotations

import numpy as np
import torch
from skimage.filters import sobel
from skimage.registration import phase_cross_correlation

from ...options import Init, Metric, Model
from ...problem import Problem
from ...transforms import homogeneous
from .levels import LevelData, sample
from .metrics import natural

__all__ = ['MULTI_START', 'starting_points']

#: Rotations tried by ``init='auto'`` for 2D models that rotate, in degrees.
ROTATION_SEARCH = (0.0, -10.0, 10.0, -20.0, 20.0, -30.0, 30.0)
#: How many of the best-ranked starting points ``init='auto'`` optimises at
#: the coarsest level before it keeps the best.
MULTI_START = 3


def _rotation_about(angle_deg: float, centre: np.ndarray) -> np.ndarray:
    a = np.deg2rad(angle_deg)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return homogeneous(rot, centre - rot @ centre)


def _to_norm(matrices: np.ndarray, norm: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(norm @ matrices @ np.linalg.inv(norm))


def _fixed_image(data: LevelData, frame: int) -> np.ndarray:
    values = data.fixed_values
    row = values[0 if values.shape[0] == 1 else frame]
    return row.reshape(data.fixed_shape).cpu().numpy()


def _phase_correlated(
    data: LevelData,
    start: np.ndarray,
    frame: int,
    norm: np.ndarray,
    phys_from_level_px: np.ndarray,
    edges: bool,
) -> np.ndarray:
    """``start`` followed by the translation phase correlation finds (physical).

    With ``edges``, the images are compared by their gradient magnitude,
    which different modalities share more than their intensities.
    """
    s = sample(data, _to_norm(start[None], norm), torch.tensor([frame]))
    moved = (s.values * s.weights)[0].reshape(data.fixed_shape).cpu().numpy()
    fixed = _fixed_image(data, frame)
    if edges:
        fixed, moved = sobel(fixed), sobel(moved)
    shift, _, _ = phase_cross_correlation(
        fixed, moved, upsample_factor=4, normalization=None
    )
    offset = phys_from_level_px[:-1, :-1] @ -np.asarray(shift)
    return start @ homogeneous(np.eye(len(shift)), offset)


def _ranked(
    problem: Problem,
    data: LevelData,
    candidates: np.ndarray,
    frame: int,
    norm: np.ndarray,
) -> np.ndarray:
    """Candidates sorted best first by NCC (by MI when the metric is MI)."""
    metric = Metric.MI if problem.metric is Metric.MI else Metric.NCC
    frames = torch.full((len(candidates),), frame, dtype=torch.long)
    s = sample(data, _to_norm(candidates, norm), frames)
    fixed = data.fixed_values[0 if data.fixed_values.shape[0] == 1 else frame][None]
    score = natural(metric, s.values, fixed, s.weights, problem.settings.mi_bins)
    return candidates[np.argsort(-score.double().cpu().numpy(), kind='stable')]


def starting_points(
    problem: Problem,
    data: LevelData,
    norm: np.ndarray,
    phys_from_level_px: np.ndarray,
) -> np.ndarray:
    """Starting ``moving_from_fixed`` matrices per frame, best first.

    Parameters
    ----------
    problem : Problem
    data : LevelData
        The coarsest level, without masks and without point subsets, so that
        sampled values form an image for phase correlation.
    norm : ndarray
        ``norm_from_phys`` of the engine.
    phys_from_level_px : ndarray
        Physical position of the coarsest fixed level's pixels.

    Returns
    -------
    ndarray, shape (B, K, D + 1, D + 1)
        ``K = 1`` unless ``init='auto'``, which keeps centre alignment and
        the ``MULTI_START - 1`` best of phase correlation after each trial
        rotation (2D models that rotate; for mutual information, phase
        correlation of gradient magnitudes, and the rotations alone too).
    """
    batch, size = problem.batch, problem.ndim + 1
    if problem.initial is not None:
        return np.broadcast_to(problem.initial[:, None], (batch, 1, size, size)).copy()
    init = problem.settings.init
    if init is Init.IDENTITY:
        return np.broadcast_to(np.eye(size), (batch, 1, size, size)).copy()
    centre = homogeneous(
        np.eye(problem.ndim), problem.moving_grid.center - problem.fixed_grid.center
    )
    if init is Init.CENTER:
        return np.broadcast_to(centre, (batch, 1, size, size)).copy()
    edges = problem.metric is Metric.MI
    if init is Init.PHASE:
        return np.stack(
            [
                _phase_correlated(data, centre, frame, norm, phys_from_level_px, edges)[
                    None
                ]
                for frame in range(batch)
            ]
        )
    rotates = problem.ndim == 2 and problem.model is not Model.TRANSLATION
    angles = ROTATION_SEARCH if rotates else (0.0,)
    fixed_centre = problem.fixed_grid.center
    starts = [
        centre @ _rotation_about(a, fixed_centre) if a else centre for a in angles
    ]
    ranked = []
    for frame in range(batch):
        candidates = np.stack(
            [
                _phase_correlated(data, start, frame, norm, phys_from_level_px, edges)
                for start in starts
            ]
            + (starts[1:] if edges else [])
        )
        best = _ranked(problem, data, candidates, frame, norm)[: MULTI_START - 1]
        ranked.append(np.concatenate([best, centre[None]]))
    return np.stack(ranked)
