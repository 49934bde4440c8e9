"""The registration metrics in numpy, over the valid overlap, higher is better.

``score`` returns NCC and MI as they are and L1 / MSE negated, so that every
metric can be compared with "greater means more similar".
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from ..options import METRIC_SPECS, Metric

__all__ = ['MI_BINS', 'conditional_mean', 'score']

#: Bins per image of the joint histogram of mutual information.
MI_BINS = 32


def _bins(values: NDArray, bins: int) -> NDArray[np.intp]:
    return np.clip((values * bins).astype(np.intp), 0, bins - 1)


def mutual_information(f: NDArray, m: NDArray, bins: int = MI_BINS) -> float:
    """Shannon mutual information (nats) of two samples in about [0, 1]."""
    joint = np.bincount(
        _bins(f, bins) * bins + _bins(m, bins), minlength=bins * bins
    ).reshape(bins, bins)
    p = joint / max(joint.sum(), 1)
    pf, pm = p.sum(axis=1), p.sum(axis=0)
    nz = p > 0
    return float(np.sum(p[nz] * np.log(p[nz] / np.outer(pf, pm)[nz])))


def _ncc(f: NDArray, m: NDArray) -> float:
    f = f - f.mean()
    m = m - m.mean()
    denominator = np.sqrt(float(f @ f) * float(m @ m))
    return float(f @ m) / denominator if denominator > 0 else 0.0


def score(metric: str, fixed: NDArray, warped: NDArray) -> float:
    """Similarity of ``fixed`` and ``warped`` where ``warped`` is finite.

    Parameters
    ----------
    metric : {'ncc', 'mi', 'mse', 'l1'}
    fixed, warped : ndarray
        Same shape; ``warped`` is NaN outside the overlap.

    Returns
    -------
    float
        NCC, MI, -MSE or -L1; ``nan`` with fewer than 16 pixels of overlap.
    """
    valid = np.isfinite(warped)
    if valid.sum() < 16:
        return float('nan')
    f = fixed[valid].astype(np.float64)
    m = warped[valid].astype(np.float64)
    if metric == 'ncc':
        return _ncc(f, m)
    if metric == 'mi':
        return mutual_information(f, m)
    if metric == 'mse':
        return -float(np.mean((f - m) ** 2))
    if metric == 'l1':
        return -float(np.mean(np.abs(f - m)))
    # a metric without a numpy form here: NCC, or MI for a multimodal one
    spec = METRIC_SPECS[Metric.parse(metric, 'metric')]
    return mutual_information(f, m) if spec.multimodal else _ncc(f, m)


def conditional_mean(
    predictor: NDArray, target: NDArray, nonlinear: bool
) -> NDArray[np.float64]:
    """Best prediction of ``target`` from ``predictor``.

    A straight-line fit, or (``nonlinear``) the mean of ``target`` in each of
    ``MI_BINS`` bins of ``predictor``: the intensity relation that NCC (line)
    or mutual information (any function) assumes.
    """
    predictor = predictor.astype(np.float64)
    target = target.astype(np.float64)
    if not nonlinear:
        design = np.column_stack([predictor, np.ones_like(predictor)])
        coef, *_ = np.linalg.lstsq(design, target, rcond=None)
        return design @ coef
    bins = _bins(predictor, MI_BINS)
    counts = np.bincount(bins, minlength=MI_BINS)
    sums = np.bincount(bins, weights=target, minlength=MI_BINS)
    means = sums / np.maximum(counts, 1)
    return means[bins]
