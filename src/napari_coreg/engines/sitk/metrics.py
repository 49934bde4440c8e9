"""Metric values of the SimpleITK backend: how each metric is set and read."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from ..._sitk import set_transform_matrix
from ...options import METRIC_SPECS, Metric
from ...problem import Problem
from .levels import Pair
from .optimizers import itk_seed

__all__ = [
    'METRICS',
    'affine_transform',
    'loss',
    'metric_method',
    'natural',
    'overlap',
    'overlap_ncc',
]


@dataclass(frozen=True)
class SitkMetric:
    """How one of our metrics is set on SimpleITK, and its value read back.

    ``natural`` turns SimpleITK's metric value (minimised) into the value
    users read: Correlation returns ``-ncc**2`` (so ``|ncc|``), Mattes
    ``-MI``, MeanSquares the MSE.
    """

    set: Callable[[sitk.ImageRegistrationMethod, int], None]
    natural: Callable[[float], float]


#: Every metric this backend declares (engines/__init__.py), by name.
METRICS: dict[Metric, SitkMetric] = {
    Metric.MSE: SitkMetric(
        lambda method, bins: method.SetMetricAsMeanSquares(), lambda v: v
    ),
    Metric.NCC: SitkMetric(
        lambda method, bins: method.SetMetricAsCorrelation(),
        lambda v: float(np.sqrt(max(-v, 0.0))),
    ),
    Metric.MI: SitkMetric(
        lambda method, bins: method.SetMetricAsMattesMutualInformation(
            numberOfHistogramBins=bins
        ),
        lambda v: -v,
    ),
}


def metric_method(
    problem: Problem, masks, sampling: float | None = None, metric: Metric | None = None
) -> sitk.ImageRegistrationMethod:
    """An ``ImageRegistrationMethod`` set up with the metric, masks and sampling."""
    method = sitk.ImageRegistrationMethod()
    METRICS[metric or problem.metric].set(method, problem.settings.mi_bins)
    method.SetInterpolator(sitk.sitkLinear)
    fixed_mask, moving_mask = masks
    if fixed_mask is not None:
        method.SetMetricFixedMask(fixed_mask)
    if moving_mask is not None:
        method.SetMetricMovingMask(moving_mask)
    if sampling is None:
        method.SetMetricSamplingStrategy(method.NONE)
    else:
        method.SetMetricSamplingStrategy(method.RANDOM)
        method.SetMetricSamplingPercentage(
            float(sampling), itk_seed(problem.settings.seed)
        )
    method.SetShrinkFactorsPerLevel([1])
    method.SetSmoothingSigmasPerLevel([0.0])
    return method


def affine_transform(matrix: np.ndarray) -> sitk.Transform:
    """An ITK affine transform equal to a numpy-order physical matrix."""
    ndim = matrix.shape[0] - 1
    transform = sitk.AffineTransform(ndim)
    set_transform_matrix(transform, matrix)
    return transform


def overlap(pair: Pair, matrix: np.ndarray, masks) -> np.ndarray:
    """Fixed level pixels inside the mapped moving image (and the masks)."""
    transform = affine_transform(matrix)
    ones = sitk.Image(pair.moving.GetSize(), sitk.sitkFloat32) + 1.0
    ones.CopyInformation(pair.moving)
    inside = sitk.Resample(ones, pair.fixed, transform, sitk.sitkLinear, 0.0)
    valid = sitk.GetArrayViewFromImage(inside) > 0.999
    fixed_mask, moving_mask = masks
    if fixed_mask is not None:
        on_fixed = sitk.Resample(
            fixed_mask, pair.fixed, sitk.Transform(), sitk.sitkNearestNeighbor, 0
        )
        valid &= sitk.GetArrayViewFromImage(on_fixed) > 0
    if moving_mask is not None:
        on_moving = sitk.Resample(
            moving_mask, pair.fixed, transform, sitk.sitkNearestNeighbor, 0
        )
        valid &= sitk.GetArrayViewFromImage(on_moving) > 0
    return valid


def overlap_ncc(pair: Pair, matrix: np.ndarray, masks) -> float:
    """Pearson correlation over the overlap (and masks), fixed level grid."""
    valid = overlap(pair, matrix, masks)
    moved = sitk.Resample(
        pair.moving, pair.fixed, affine_transform(matrix), sitk.sitkLinear
    )
    f = sitk.GetArrayViewFromImage(pair.fixed)[valid].astype(np.float64)
    m = sitk.GetArrayViewFromImage(moved)[valid].astype(np.float64)
    if f.size < 2:
        return 0.0
    f, m = f - f.mean(), m - m.mean()
    denom = np.sqrt((f * f).sum() * (m * m).sum())
    return float((f * m).sum() / denom) if denom > 0 else 0.0


def natural(
    problem: Problem, metric: Metric, pair: Pair, matrix: np.ndarray, masks
) -> float:
    """The metric as users read it (NCC in [-1, 1], MI in nats, MSE)."""
    if metric is Metric.NCC:
        return overlap_ncc(pair, matrix, masks)
    method = metric_method(problem, masks, metric=metric)
    method.SetInitialTransform(affine_transform(matrix))
    try:
        value = method.MetricEvaluate(pair.fixed, pair.moving)
    except RuntimeError:  # no overlap at all
        return float('nan')
    return METRICS[metric].natural(value)


def loss(metric: Metric, value: float) -> float:
    """SimpleITK's metric value as the lower-is-better loss torch reports."""
    return METRIC_SPECS[metric].loss(METRICS[metric].natural(value))
