"""Batched RANSAC in torch: thousands of minimal-sample hypotheses at once.

Minimal solvers, each solving a whole batch of samples with elementwise
tensor arithmetic (no loop over hypotheses, no linear solve):

- ``'similarity'``, 2 points: ``z -> a z + b`` in complex form;
- ``'affine'``, 3 points: edge matrices and their adjugates;
- ``'homography'``, 4 points: the project's Affine-Core-Affine solver,
  :func:`napari_coreg.homography.homography_from_four_points`.

Every hypothesis is scored against every correspondence at once (MSAC:
truncated squared residuals); batches continue until the usual confidence
bound is met. The best hypothesis is then polished by local optimisation
(iterated least squares on its inliers with a shrinking threshold, as in
LO-RANSAC, Chum et al. 2003). Runs on any torch device.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from .fit import fit, residuals

__all__ = ['SAMPLE_SIZE', 'RansacResult', 'ransac']

#: Correspondences per minimal sample.
SAMPLE_SIZE = {'similarity': 2, 'affine': 3, 'homography': 4}
#: Hypotheses solved and scored in the first batch; each next batch is
#: twice as large, up to ``BATCH`` (easy problems stop after the first).
FIRST_BATCH = 256
BATCH = 4096
#: Rounds of local optimisation of the best hypothesis.
LO_ROUNDS = 4


@dataclass(frozen=True)
class RansacResult:
    """What :func:`ransac` found.

    Attributes
    ----------
    matrix : ndarray, shape (3, 3)
        ``dst_from_src`` after local optimisation.
    inliers : ndarray of bool, shape (m,)
    hypotheses : int
        Minimal-sample hypotheses solved and scored.
    seconds : float
    """

    matrix: NDArray[np.float64]
    inliers: NDArray[np.bool_]
    hypotheses: int
    seconds: float

    @property
    def n_inliers(self) -> int:
        """Number of inliers."""
        return int(self.inliers.sum())


def _similarity(p, q):
    """``(B, 2, 2)`` points -> ``(B, 3, 3)``: ``q = a p + b`` as complex."""
    import torch

    dp, dq = p[:, 1] - p[:, 0], q[:, 1] - q[:, 0]
    norm = (dp**2).sum(-1)
    a_re = (dq[:, 0] * dp[:, 0] + dq[:, 1] * dp[:, 1]) / norm
    a_im = (dq[:, 1] * dp[:, 0] - dq[:, 0] * dp[:, 1]) / norm
    linear = torch.stack([a_re, -a_im, a_im, a_re], -1).view(-1, 2, 2)
    offset = q[:, 0] - (linear @ p[:, 0, :, None])[..., 0]
    return _homogeneous(linear, offset)


def _affine(p, q):
    """``(B, 3, 2)`` points -> ``(B, 3, 3)`` through edges and adjugates."""
    import torch

    e = torch.stack([p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]], -1)  # columns
    f = torch.stack([q[:, 1] - q[:, 0], q[:, 2] - q[:, 0]], -1)
    det = e[:, 0, 0] * e[:, 1, 1] - e[:, 0, 1] * e[:, 1, 0]
    adjugate = torch.stack([e[:, 1, 1], -e[:, 0, 1], -e[:, 1, 0], e[:, 0, 0]], -1).view(
        -1, 2, 2
    )
    linear = f @ adjugate / det[:, None, None]
    offset = q[:, 0] - (linear @ p[:, 0, :, None])[..., 0]
    return _homogeneous(linear, offset)


def _homography(p, q):
    from ..homography import homography_from_four_points

    return homography_from_four_points(p, q)


def _homogeneous(linear, offset):
    import torch

    bottom = torch.zeros(len(linear), 1, 3, dtype=linear.dtype, device=linear.device)
    bottom[:, 0, 2] = 1
    return torch.cat([torch.cat([linear, offset[..., None]], -1), bottom], 1)


_SOLVERS = {'similarity': _similarity, 'affine': _affine, 'homography': _homography}


def _scores(matrices, src_h, dst, threshold: float):
    """MSAC cost and inlier counts of every hypothesis, ``(B,)`` each."""
    import torch

    mapped = src_h @ matrices.transpose(1, 2)  # (B, m, 3)
    with torch.no_grad():
        points = mapped[..., :2] / mapped[..., 2:]
        squared = ((points - dst) ** 2).sum(-1)
        squared = torch.nan_to_num(squared, nan=torch.inf, posinf=torch.inf)
        limit = threshold**2
        cost = squared.clamp(max=limit).sum(-1)
        count = (squared < limit).sum(-1)
    return cost, count


def _needed(inlier_ratio: float, sample: int, confidence: float) -> float:
    """Hypotheses needed to draw one all-inlier sample with ``confidence``."""
    good = inlier_ratio**sample
    if good <= 0:
        return np.inf
    if good >= 1:
        return 1.0
    return np.log(1 - confidence) / np.log(1 - good)


def _polish(
    model: str, matrix: NDArray, src: NDArray, dst: NDArray, threshold: float
) -> NDArray[np.float64]:
    """Local optimisation.

    Refit on the inliers while the threshold shrinks from 3 times to the final
    threshold; keep the fit with most inliers.
    """
    best, best_count = matrix, int((residuals(matrix, src, dst) < threshold).sum())
    for factor in np.linspace(3.0, 1.0, LO_ROUNDS):
        inliers = residuals(best, src, dst) < factor * threshold
        if inliers.sum() < SAMPLE_SIZE[model] + 1:
            break
        candidate = fit(model, src[inliers], dst[inliers])
        count = int((residuals(candidate, src, dst) < threshold).sum())
        if count >= best_count:
            best, best_count = candidate, count
    return best


def ransac(
    src: NDArray,
    dst: NDArray,
    model: str,
    threshold: float,
    *,
    confidence: float = 0.999,
    max_hypotheses: int = 32768,
    seed: int = 0,
    device=None,
) -> RansacResult | None:
    """Robust ``dst_from_src`` of ``model`` from noisy correspondences.

    Parameters
    ----------
    src, dst : ndarray, shape (m, 2)
        Corresponding points, one coordinate order for both.
    model : {'similarity', 'affine', 'homography'}
        Minimal solver.
    threshold : float
        Inlier distance, in the units of ``dst``.
    confidence : float
        Stop once an all-inlier sample was drawn with this probability.
    max_hypotheses : int
        Upper bound on hypotheses.
    seed : int
        Seed of the samples.
    device : str or torch.device, optional
        Where the hypotheses are solved and scored (default CPU).

    Returns
    -------
    RansacResult or None
        ``None`` when there are fewer correspondences than a minimal sample
        plus one.
    """
    import torch

    started = time.perf_counter()
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    sample = SAMPLE_SIZE[model]
    m = len(src)
    if m <= sample:
        return None
    device = torch.device('cpu') if device is None else torch.device(device)
    dtype = torch.float32  # conditioned coordinates: ample precision, fast
    # condition the coordinates: centroid 0, unit mean distance
    centre_s, centre_d = src.mean(0), dst.mean(0)
    scale = 1 / max(np.linalg.norm(dst - centre_d, axis=1).mean(), 1e-12)
    p = torch.as_tensor((src - centre_s) * scale, dtype=dtype, device=device)
    q = torch.as_tensor((dst - centre_d) * scale, dtype=dtype, device=device)
    p_h = torch.cat([p, torch.ones(m, 1, dtype=dtype, device=device)], 1)
    generator = torch.Generator(device=device).manual_seed(seed)
    best_cost, best_count, best = np.inf, 0, None
    done, size = 0, FIRST_BATCH
    while done < max_hypotheses:
        batch = min(size, max_hypotheses - done)
        size = min(2 * size, BATCH)
        # repeated indices make degenerate samples, which score nothing
        index = torch.randint(m, (batch, sample), generator=generator, device=device)
        matrices = _SOLVERS[model](p[index], q[index])
        cost, count = _scores(matrices, p_h, q, threshold * scale)
        done += batch
        winner = int(torch.argmin(cost))
        if float(cost[winner]) < best_cost:
            best_cost = float(cost[winner])
            best_count = int(count[winner])
            best = matrices[winner].cpu().double().numpy()
        if done >= _needed(best_count / m, sample, confidence):
            break
    if best is None or not np.all(np.isfinite(best)):
        return None
    to_s = np.diag([scale, scale, 1.0]) @ np.array(
        [[1, 0, -centre_s[0]], [0, 1, -centre_s[1]], [0, 0, 1.0]]
    )
    from_d = np.array(
        [[1, 0, centre_d[0]], [0, 1, centre_d[1]], [0, 0, 1.0]]
    ) @ np.diag([1 / scale, 1 / scale, 1.0])
    matrix = from_d @ best @ to_s
    matrix = _polish(model, matrix / matrix[2, 2], src, dst, threshold)
    return RansacResult(
        matrix=matrix,
        inliers=residuals(matrix, src, dst) < threshold,
        hypotheses=done,
        seconds=time.perf_counter() - started,
    )
