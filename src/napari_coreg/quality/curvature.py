"""Curvature of the metric at the result: uncertainty and a re-registration step.

The result is perturbed on the fixed side, ``M(theta) = M @ (I + sum theta_k
G_k)``, by the model's generators (shifts of one working pixel; rotation,
scale, linear and projective terms that move the image's edge by about one
pixel). The residual ``r = warped moving - h(fixed)`` (``h``: the intensity
relation the metric assumes, a line or, for MI, any function) gives the
Gauss-Newton Jacobian ``J = grad(warped) . dp/dtheta``; then

- ``cov(theta) = (J^T J)^-1 S (J^T J)^-1``, the cluster-robust (sandwich)
  covariance: ``S`` is the spread of the gradient contributions
  ``J_b^T r_b`` of image blocks, so residual noise correlated within a block
  counts fully and residual structure that does not pull the parameters
  (a smooth illumination change) does not; mapped to the moving positions
  of the fixed image's corners and centre, the 95% quantile of their mean
  displacement is the bound on the corner error;
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

#: Parameter draws for the 95% quantile of the corner error.
SAMPLES = 2000
#: Calibration of the bound on the labelled benchmark (see
#: ``benchmarks/bench_verdict.py``): covers the error of >= 90% successes.
BOUND_FACTOR = 1.0
#: Blocks per axis of the cluster-robust covariance (2D, 3D).
BLOCKS = {2: 8, 3: 4}
#: Smallest bound (full pixels): interpolation and resampling bias (set after
#: the benchmark: successes are often 0.05-0.1 px off, below the statistics).
BOUND_FLOOR_PX = 0.1


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


def _sandwich(
    jac: NDArray, residual: NDArray, coords: NDArray, shape: tuple[int, ...]
) -> NDArray[np.float64]:
    """Cluster-robust ``J^T Sigma J``: the gradient's spread over image blocks.

    The image is cut into ``BLOCKS`` per axis; the metric's gradient
    contributions ``J_b^T r_b`` of the blocks are taken as independent, which
    allows any correlation of the residual within a block and ignores
    residual structure (e.g. a smooth illumination change) that does not
    pull the parameters.
    """
    blocks = BLOCKS.get(len(shape), 4)
    size = np.maximum(np.asarray(shape) / blocks, 1.0)
    index = np.minimum((coords // size).astype(np.intp), blocks - 1)
    label = np.ravel_multi_index(index.T, (blocks,) * len(shape))
    n_blocks = blocks ** len(shape)
    contrib = jac * residual[:, None]
    g = np.stack([np.bincount(label, weights=c, minlength=n_blocks) for c in contrib.T])
    used = np.bincount(label, minlength=n_blocks) > 0
    g = g[:, used]
    g = g - g.mean(axis=1, keepdims=True)
    count = g.shape[1]
    return (g @ g.T) * count / max(count - 1, 1)


def _error_quantile(cov: NDArray, dq: NDArray) -> float:
    """95% quantile of the corner error for parameters ~ N(0, cov).

    The corner error is the mean displacement of the corners and centre
    (``dq``: (points, D, K) derivatives), as in
    :func:`~napari_coreg.transforms.corner_error`; sampled, seeded.
    """
    values, vectors = np.linalg.eigh((cov + cov.T) / 2)
    root = vectors * np.sqrt(np.clip(values, 0, None))
    draws = np.random.default_rng(0).standard_normal((SAMPLES, cov.shape[0]))
    theta = draws @ root.T
    errors = np.linalg.norm(np.einsum('pdk,sk->spd', dq, theta), axis=2).mean(axis=1)
    return float(np.quantile(errors, 0.95))


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
    condition : float
        Condition number of ``J^T J``.
    """

    bound_px: float | None
    step_px: float
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
        return Curvature(None, float('inf'), float('inf'))
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
        return Curvature(None, float('inf'), condition)
    inverse = np.linalg.inv(normal)
    # two re-registrations: with the metric's intensity relation, and with
    # any relation (as mutual information): a wrong metric shows in the second
    steps = [-inverse @ (jac.T @ residual)]
    if metric != 'mi':
        free = moved - conditional_mean(fixed, moved, True)
        steps.append(-inverse @ (jac.T @ free))
    meat = _sandwich(jac, residual, coords, pair.fixed.shape)
    cov = BOUND_FACTOR * inverse @ meat @ inverse
    points = pair.fixed_points(grid_points(pair.full_shape))
    dq = _point_derivatives(pair.matrix, gens, points) * pair.moving_factor
    bound = _error_quantile(cov, dq)
    step_px = max(float(np.linalg.norm(dq @ st, axis=1).mean()) for st in steps)
    return Curvature(max(bound, BOUND_FLOOR_PX), step_px, condition)
