"""Compositional Gauss-Newton for the least-squares metrics (l1, mse, ncc).

The current normalised matrix ``A`` is updated by composition with the
model's small transform ``W(dp)``: forward (``W(dp) @ A``: the moving
image's gradient, sampled in the same warp as its values) or inverse
(``A @ inv(W(dp))``: the fixed image's gradient and steepest-descent images,
computed once per level; Baker and Matthews 2004). An iteration costs one
warp and a few reductions over the points, with no autograd: for ``ncc``
the zero-mean, unit-norm residual of ECC (Evangelidis and Psarakis 2008),
for ``l1`` iteratively reweighted least squares.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass

import torch
from torch import Tensor

from ...options import MODEL_SPECS, Metric
from .levels import LevelData, Sample, sample
from .metrics import L1_EPSILON
from .models import ParamModel

__all__ = ['CompositionalObjective', 'compositional_gauss_newton']

#: Gauss-Newton stops when a step this many times the tolerance is rejected.
NOISE_FLOOR = 10.0

MatrixSteps = Generator[tuple[Tensor, Tensor], None, tuple[Tensor, str]]


def _steepest_descent(
    gradient: Tensor, points: Tensor, dmatrix: Tensor, projective: bool
) -> Tensor:
    """``d I(proj(W(dp) x)) / dp`` at ``dp = 0``, ``(R, P, N)``.

    ``gradient`` ``(R, D, N)`` is the image's gradient at the points ``x``,
    ``points`` ``(R or 1, D + 1, N)`` their homogeneous coordinates (last row
    ones) and ``dmatrix`` ``(P, D + 1, D + 1)`` is ``dW / dp`` at the
    identity. With ``d x'_i / d W_jk = (delta_ij - x_i delta_Dj) x_k``, the
    points run along the last axis so that the reductions of an iteration
    are matrix products over them.
    """
    ndim = gradient.shape[1]
    outer = gradient[:, :, None, :] * points[:, None]  # (R, D, D + 1, N)
    steepest = dmatrix[:, :ndim].flatten(1) @ outer.flatten(1, 2)
    if projective:
        along = (gradient * points[:, :ndim]).sum(dim=1, keepdim=True)
        steepest -= dmatrix[:, ndim] @ (along * points)
    return steepest


def _update_jacobian(model: ParamModel, like: Tensor) -> Tensor:
    """``dW / dp`` of the model at ``p = 0``, ``(P, D + 1, D + 1)``."""
    size = model.ndim + 1
    identity = torch.eye(size, dtype=torch.float64)[None]
    zero = torch.zeros(1, model.n_params, dtype=torch.float64)
    dmatrix = model.jacobians(zero, identity)[0].T.reshape(-1, size, size)
    return dmatrix.to(device=like.device, dtype=like.dtype)


@dataclass(frozen=True, eq=False)
class CompositionalObjective:
    """One level's least-squares metric in a compositional update.

    One level's least-squares metric and its Gauss-Newton system in a
    compositional update ``dp`` of the current matrices.

    ``inverse=True``: the update is sought on the fixed side (``A @
    inv(W(dp))``), so the steepest-descent images are the fixed image's,
    computed once; this is fastest but its fixed point is not exactly the
    loss's minimum where the images differ (e.g. content missing from the
    moving image). ``inverse=False`` (forward compositional, ``W(dp) @ A``):
    the moving image's gradient, pulled back with its values in the same
    warp, gives the exact derivative of the loss. ``frame_of[row]`` is the
    moving frame of each row.
    """

    data: LevelData
    model: ParamModel
    metric: Metric
    frame_of: Tensor
    inverse: bool
    dmatrix: Tensor  # (P, D + 1, D + 1)
    steepest: Tensor | None  # (F, P, N): the fixed image's, when inverse

    @classmethod
    def build(
        cls,
        data: LevelData,
        model: ParamModel,
        metric: Metric,
        frame_of: Tensor,
        inverse: bool,
    ) -> CompositionalObjective:
        """Check the metric; precompute the fixed side's steepest descent."""
        if metric not in (Metric.L1, Metric.MSE, Metric.NCC):
            raise ValueError(f'{metric} is not a least-squares metric')
        dmatrix = _update_jacobian(model, data.fixed_values)
        steepest = None
        if inverse:
            if data.fixed_gradient is None:
                raise ValueError('the level was built without the fixed gradient')
            steepest = _steepest_descent(
                data.fixed_gradient.transpose(1, 2),
                data.fixed_points.T[None],
                dmatrix,
                MODEL_SPECS[model.model].projective,
            )
        elif not data.has_moving_gradient:
            raise ValueError('the level was built without the moving gradient')
        return cls(data, model, metric, frame_of, inverse, dmatrix, steepest)

    def _fixed(self, rows: Tensor) -> Tensor:
        values = self.data.fixed_values
        if values.shape[0] > 1:
            values = values[self.frame_of[rows].to(values.device)]
        return values

    def _varying(self, s: Sample, rows: Tensor) -> Tensor:
        """Steepest-descent images of the side the update moves, ``(R, P, N)``."""
        if self.inverse:
            steepest = self.steepest
            if steepest.shape[0] > 1:
                steepest = steepest[self.frame_of[rows].to(steepest.device)]
            return steepest
        mapped = s.mapped.transpose(1, 2)
        points = torch.cat([mapped, torch.ones_like(mapped[:, :1])], dim=1)
        return _steepest_descent(
            s.gradient.transpose(1, 2),
            points,
            self.dmatrix,
            MODEL_SPECS[self.model.model].projective,
        )

    def system(self, matrices: Tensor, rows: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Loss, Gauss-Newton matrix and gradient of the update.

        Loss ``(R,)``, Gauss-Newton matrix ``(R, P, P)`` and gradient ``(R, P)``
        of the update ``dp`` at ``matrices`` (normalised, ``(R, D+1, D+1)``).

        Losses are those of :func:`.metrics.loss` (``1 - ncc``, mean squared
        or mean absolute difference over the overlap).
        """
        s = sample(self.data, matrices, self.frame_of[rows], not self.inverse)
        fixed, sd = self._fixed(rows), self._varying(s, rows)
        varying, other = (fixed, s.values) if self.inverse else (s.values, fixed)
        w = s.weights
        count = w.sum(dim=1).clamp_min(1.0)
        if self.metric is Metric.NCC:
            value, hessian, gradient = _ncc_system(varying, other, w, count, sd)
        else:
            residual = (varying - other) * w
            if self.metric is Metric.MSE:
                weights = w / count[:, None]
                value = residual.square().sum(dim=1) / count
            else:
                weights = w / residual.abs().clamp_min(L1_EPSILON) / count[:, None]
                value = residual.abs().sum(dim=1) / count
            hessian = (sd * weights[:, None]) @ sd.transpose(1, 2)
            gradient = (sd @ (residual * weights)[..., None])[..., 0]
        return value.double().cpu(), hessian.double().cpu(), gradient.double().cpu()

    def apply(self, matrices: Tensor, step: Tensor) -> Tensor:
        """The matrices after the update ``step`` ``(R, P)``."""
        update = self.model.matrix(step)
        if self.inverse:
            return matrices @ torch.linalg.inv(update)
        return update @ matrices

    def displacement(self, old: Tensor, new: Tensor) -> Tensor:
        """Largest move of the level's corners between two matrix sets.

        Largest move of the level's corners between two matrix sets, in
        moving level pixels, ``(R,)``.
        """
        moved = []
        for matrices in (old, new):
            homog = self.data.corners @ matrices.transpose(1, 2)
            mapped = homog[..., :-1] / homog[..., -1:]
            moved.append(mapped @ self.data.px_linear.T)
        return (moved[1] - moved[0]).norm(dim=-1).amax(dim=-1).double()


def _ncc_system(
    varying: Tensor, other: Tensor, w: Tensor, count: Tensor, sd: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """The NCC residual of ECC, linearised at ``dp = 0``.

    ``|z(V(W(dp))) - z(O)|^2 / 2`` linearised at ``dp = 0``, ``V`` the image
    the update moves (steepest-descent images ``sd``), ``O`` the other.

    With ``z`` the zero-mean, unit-norm vector over the overlap, the
    Jacobian is ``J = (SDc - zV a^T) / |Vc|`` (``SDc`` the centred
    steepest-descent images, ``a = SDc^T zV``); ``J^T J`` and ``J^T r`` are
    formed from ``SD^T W SD``, the weighted mean of ``SD`` and ``a`` without
    building ``J``.
    """
    varying = varying.expand_as(w)
    other = other.expand_as(w)
    v_centred = (varying - (varying * w).sum(1, keepdim=True) / count[:, None]) * w
    o_centred = (other - (other * w).sum(1, keepdim=True) / count[:, None]) * w
    f_norm = v_centred.norm(dim=1).clamp_min(1e-12)
    zf = v_centred / f_norm[:, None]
    zm = o_centred / o_centred.norm(dim=1, keepdim=True).clamp_min(1e-12)
    residual = zf - zm
    value = 0.5 * residual.square().sum(dim=1)
    weighted = sd * w[:, None]
    mean = weighted.sum(dim=2) / count[:, None]
    a = (sd @ zf[..., None])[..., 0]
    outer = weighted @ sd.transpose(1, 2)
    centred = outer - count[:, None, None] * mean[:, :, None] * mean[:, None, :]
    hessian = (centred - a[:, :, None] * a[:, None, :]) / f_norm[:, None, None] ** 2
    along = (sd @ residual[..., None])[..., 0]
    gradient = (along - a * (zf * residual).sum(1, keepdim=True)) / f_norm[:, None]
    return value, hessian, gradient


def compositional_gauss_newton(
    objective: CompositionalObjective, base: Tensor, iterations: int, tolerance: float
) -> MatrixSteps:
    """Levenberg-Marquardt on the compositional update.

    Yields the per-row best loss and best matrices after every iteration and
    returns the best matrices with the reason it stopped. A step that raises
    the loss is rejected and the damping raised; an accepted one lowers it.
    A row stops when its step moves no corner by more than ``tolerance``
    level pixels, or when a step of less than ``NOISE_FLOOR`` times that is
    rejected: the loss no longer resolves it.
    """
    n = base.shape[0]
    best = base.clone()
    trial = base.clone()
    best_loss = torch.full((n,), torch.inf, dtype=torch.float64)
    hessian = gradient = None
    damping = torch.full_like(best_loss, 1e-3)
    active = torch.ones(n, dtype=torch.bool)
    attempted = torch.full_like(best_loss, torch.inf)
    for _ in range(iterations):
        rows = torch.nonzero(active)[:, 0]
        value, h, g = objective.system(trial[rows], rows)
        if hessian is None:
            hessian, gradient = h.clone(), g.clone()
        accept = value <= best_loss[rows]
        floor = rows[~accept & (attempted[rows] < NOISE_FLOOR * tolerance)]
        active[floor] = False
        done = rows[accept]
        best[done], best_loss[done] = trial[rows][accept], value[accept]
        hessian[done], gradient[done] = h[accept], g[accept]
        damping[done] = (damping[done] / 4).clamp_min(1e-9)
        damping[rows[~accept]] *= 8
        yield best_loss.clone(), best
        rows = torch.nonzero(active)[:, 0]
        if rows.numel() == 0:
            return best, 'converged'

        h = hessian[rows]
        diag = torch.diagonal(h, dim1=1, dim2=2)
        floor = 1e-9 * diag.amax(-1, keepdim=True).clamp_min(1e-30)
        damped = h + torch.diag_embed(damping[rows, None] * diag + floor)
        step = -torch.linalg.solve(damped, gradient[rows][..., None])[..., 0]
        trial[rows] = objective.apply(best[rows], step.to(best))
        moved = objective.displacement(best[rows], trial[rows])
        attempted[rows] = moved
        stuck = damping[rows] > 1e8
        active[rows[(moved < tolerance) | stuck]] = False
        if not active.any():
            return best, 'converged'
    return best, 'max_iterations'
