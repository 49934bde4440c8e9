"""Curvature of the metric at the result: uncertainty and a re-registration step.

The result is perturbed on the fixed side, ``M(theta) = M @ (I + sum theta_k
G_k)``, by the model's generators (shifts of one working pixel; rotation,
scale, linear and projective terms that move the image's edge by about one
pixel). The residual ``r = warped moving - h(fixed)`` (``h``: the intensity
relation the metric assumes, a line or, for MI, any function) gives the
Gauss-Newton Jacobian ``J = grad(warped) . dp/dtheta``; then

- ``cov(theta) = c sigma^2 (J^T J)^-1`` with ``sigma^2`` the residual
  variance and ``c`` the spatial correlation of the residual (correlated
  pixels carry less independent evidence), mapped to the moving positions
  of the fixed image's corners and centre: the 95% bound of the corner
  error;
- ``-(J^T J)^-1 J^T r``, one Gauss-Newton step of the result registered again
  onto the same images: at an optimum it is tiny.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np
from numpy.typing import NDArray

from ..transforms import grid_points
from .similarity import conditional_mean
from .working import WorkingPair

__all__ = ['Curvature', 'curvature', 'generators']

#: 95% quantile of the chi-square distribution with D degrees of freedom.
CHI2_95 = {1: 3.841, 2: 5.991, 3: 7.815}
#: Radius (working pixels) over which the residual's autocorrelation is summed.
CORRELATION_RADIUS = 3
#: Calibration of the bound on the labelled benchmark (see
#: ``benchmarks/bench_verdict.py``): covers the error of >= 90% successes.
BOUND_FACTOR = 1.0
#: Smallest bound (full pixels): interpolation and resampling bias.
BOUND_FLOOR_PX = 0.05


def _about(linear: NDArray, centre: NDArray) -> NDArray:
    ndim = len(centre)
    g = np.zeros((ndim + 1, ndim + 1))
    g[:ndim, :ndim] = linear
    g[:ndim, ndim] = -linear @ centre
    return g


def generators(model: str, shape: tuple[int, ...]) -> list[NDArray[np.float64]]:
    """Infinitesimal perturbations of ``model`` on a fixed grid of ``shape``.

    Each moves the image's edge by about one pixel (shifts by exactly one).
    """
    ndim = len(shape)
    centre = (np.asarray(shape, np.float64) - 1) / 2
    half = max(float(max(shape)) / 2, 1.0)
    out = []
    for axis in range(ndim):
        g = np.zeros((ndim + 1, ndim + 1))
        g[axis, ndim] = 1.0
        out.append(g)
    if model == 'translation':
        return out
    if model in ('affine', 'homography'):
        for i in range(ndim):
            for j in range(ndim):
                linear = np.zeros((ndim, ndim))
                linear[i, j] = 1.0 / half
                out.append(_about(linear, centre))
    else:
        for i, j in combinations(range(ndim), 2):
            linear = np.zeros((ndim, ndim))
            linear[i, j], linear[j, i] = -1.0 / half, 1.0 / half
            out.append(_about(linear, centre))
        if model == 'similarity':
            out.append(_about(np.eye(ndim) / half, centre))
    if model == 'homography':
        shift = np.eye(ndim + 1)
        shift[:ndim, ndim] = -centre
        for j in range(ndim):
            g = np.zeros((ndim + 1, ndim + 1))
            g[ndim, j] = 1.0 / half
            out.append(g @ shift)
    return out


def _point_derivatives(
    matrix: NDArray, gens: list[NDArray], points: NDArray
) -> NDArray[np.float64]:
    """``d q / d theta`` of ``q = proj(M (I + sum theta G) p)``: (n, D, K)."""
    ndim = points.shape[1]
    x = np.column_stack([points, np.ones(len(points))])
    y = x @ matrix.T
    q = y[:, :ndim] / y[:, ndim:]
    out = np.empty((len(points), ndim, len(gens)))
    for k, g in enumerate(gens):
        dy = x @ (matrix @ g).T
        out[:, :, k] = (dy[:, :ndim] - q * dy[:, ndim:]) / y[:, ndim:]
    return out


def _residual_correlation(residual: NDArray, valid: NDArray) -> float:
    """Sum of the residual's normalised autocorrelation over nearby lags (>= 1)."""
    r = np.where(valid, residual, 0.0)
    pad = [(0, n) for n in r.shape]
    spectrum = np.fft.rfftn(np.pad(r, pad))
    mask = np.fft.rfftn(np.pad(valid.astype(np.float64), pad))
    size, axes = [2 * n for n in r.shape], list(range(r.ndim))
    auto = np.fft.irfftn(np.abs(spectrum) ** 2, s=size, axes=axes)
    counts = np.fft.irfftn(np.abs(mask) ** 2, s=size, axes=axes)
    rad = CORRELATION_RADIUS
    window = np.ix_(*[np.r_[0 : rad + 1, -rad:0] for _ in r.shape])
    auto, counts = auto[window], counts[window]
    covariance = np.where(counts > 0.5, auto / np.maximum(counts, 1), 0.0)
    variance = max(float(covariance.flat[0]), 1e-30)
    return float(max(covariance.sum() / variance, 1.0))


@dataclass(frozen=True)
class Curvature:
    """Local shape of the metric at the result.

    Attributes
    ----------
    bound_px : float or None
        95% bound on the corner error (full moving pixels); ``None`` where the
        curvature is singular (nothing to register on).
    step_px : float
        Mean corner displacement (full moving pixels) of one Gauss-Newton step
        from the result: how far registering again would move it (the larger
        of the steps with the metric's intensity relation and with any
        relation).
    correlation : float
        Residual correlation factor used to inflate the covariance.
    condition : float
        Condition number of ``J^T J``.
    """

    bound_px: float | None
    step_px: float
    correlation: float
    condition: float


def curvature(pair: WorkingPair, model: str, metric: str) -> Curvature:
    """Gauss-Newton curvature, uncertainty and re-registration step."""
    ndim = pair.ndim
    warped = pair.warped()
    grads = np.gradient(warped)
    valid = np.isfinite(warped)
    for g in grads:
        valid &= np.isfinite(g)
    gens = generators(model, pair.fixed.shape)
    n_valid = int(valid.sum())
    if n_valid <= 4 * len(gens):
        return Curvature(None, float('inf'), 1.0, float('inf'))
    coords = np.argwhere(valid).astype(np.float64)
    dpoint = _point_derivatives(np.eye(ndim + 1), gens, coords)  # (n, D, K)
    grad = np.stack([g[valid] for g in grads], axis=1).astype(np.float64)
    jac = np.einsum('nd,ndk->nk', grad, dpoint)
    moved = warped[valid].astype(np.float64)
    fixed = pair.fixed[valid]
    residual = moved - conditional_mean(fixed, moved, metric == 'mi')
    normal = jac.T @ jac
    condition = float(np.linalg.cond(normal))
    if not np.isfinite(condition) or condition > 1e12:
        return Curvature(None, float('inf'), 1.0, condition)
    inverse = np.linalg.inv(normal)
    # two re-registrations: with the metric's intensity relation, and with
    # any relation (as mutual information): a wrong metric shows in the second
    steps = [-inverse @ (jac.T @ residual)]
    if metric != 'mi':
        free = moved - conditional_mean(fixed, moved, True)
        steps.append(-inverse @ (jac.T @ free))
    sigma2 = float(residual @ residual) / max(n_valid - len(gens), 1)
    full = np.zeros(pair.fixed.shape)
    full[valid] = residual
    correlation = _residual_correlation(full, valid)
    cov = BOUND_FACTOR * correlation * sigma2 * inverse
    points = pair.fixed_points(grid_points(pair.full_shape))
    dq = _point_derivatives(pair.matrix, gens, points) * pair.moving_factor
    worst = max(float(np.linalg.eigvalsh(d @ cov @ d.T)[-1]) for d in dq)
    bound = float(np.sqrt(CHI2_95.get(ndim, 7.815) * max(worst, 0.0)))
    step_px = max(float(np.linalg.norm(dq @ st, axis=1).mean()) for st in steps)
    return Curvature(max(bound, BOUND_FLOOR_PX), step_px, correlation, condition)
