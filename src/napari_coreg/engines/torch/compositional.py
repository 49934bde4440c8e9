"""Compositional Gauss-Newton for the least-squares metrics (l1, mse, ncc).

The current normalised matrix ``A`` is updated by composition with the
model's small transform ``W(dp)``: forward (``W(dp) @ A``: the moving
image's gradient, sampled in the same warp as its values) or inverse
(``A @ inv(W(dp))``: the fixed image's gradient and steepest-descent images,
computed once per level; Baker and Matthews 2004). An iteration costs one
warp and a few reductions over the points, with no autograd: for ``ncc``
the zero-mean, unit-norm residual of ECC (Evangelidis and Psarakis 2008),
for ``l1`` iteratively reweighted least squares.

The steepest-descent images are never formed point by point in the forward
case: they are fixed combinations ``C @ B`` of a few basis rows ``B`` (the
moving gradient times the point coordinates), so one Gram matrix of the
basis rows and the residual rows gives the Gauss-Newton matrix and gradient.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ...options import MODEL_SPECS, Metric
from .levels import LevelData, Sample, sample
from .metrics import L1_EPSILON
from .models import ParamModel

__all__ = ['CompositionalObjective', 'compositional_gauss_newton']

#: Gauss-Newton stops when a step this many times the tolerance is rejected.
NOISE_FLOOR = 10.0
#: A step of less than ``NOISE_FLOOR`` times the tolerance is taken
#: without evaluating it when it is at most this fraction of the step before.
CONTRACTION = 0.3
#: Rows the residual part of the Gram matrix takes, per metric: ncc the
#: unit-norm varying image, the residual and the overlap; mse and l1 the
#: residual.
_TAIL = {Metric.NCC: 3, Metric.MSE: 1, Metric.L1: 1}

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


def _outer(gradient: Tensor, columns: list[Tensor], out: Tensor) -> None:
    """Write ``gradient_i * x_k`` into rows ``i * (D + 1) + k`` of ``out``.

    ``gradient`` ``(R, D, N)``, ``columns`` the ``D`` point coordinates
    (``(R or 1, N)`` or ``(N,)``), the last coordinate being one.
    """
    ndim = gradient.shape[1]
    for i in range(ndim):
        for k, column in enumerate(columns):
            torch.mul(gradient[:, i], column, out=out[:, i * (ndim + 1) + k])
        out[:, i * (ndim + 1) + ndim] = gradient[:, i]


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
    dmatrix: Tensor  # (P, D + 1, D + 1), float64 on the CPU
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
        if metric not in _TAIL:
            raise ValueError(f'{metric} is not a least-squares metric')
        dmatrix = _update_jacobian(model, torch.empty((), dtype=torch.float64))
        steepest = None
        if inverse:
            if data.fixed_gradient is None:
                raise ValueError('the level was built without the fixed gradient')
            steepest = _steepest_descent(
                data.fixed_gradient.transpose(1, 2),
                data.fixed_points.T[None],
                dmatrix.to(data.fixed_points),
                MODEL_SPECS[model.model].projective,
            )
        elif not data.has_moving_gradient:
            raise ValueError('the level was built without the moving gradient')
        return cls(data, model, metric, frame_of, inverse, dmatrix, steepest)

    @property
    def projective(self) -> bool:
        """Whether the model has a projective part."""
        return MODEL_SPECS[self.model.model].projective

    def _fixed(self, rows: Tensor) -> Tensor:
        values = self.data.fixed_values
        if values.shape[0] > 1:
            values = values[self.frame_of[rows].to(values.device)]
        return values

    def _basis(
        self, s: Sample, matrices: Tensor, rows: Tensor, tail: int
    ) -> tuple[Tensor, Tensor | None]:
        """Basis rows of the steepest-descent images, and their combinations.

        Returns ``Z`` ``(R, K + tail, N)`` whose first ``K`` rows ``B`` are
        filled (0 outside the overlap) and ``C`` ``(R or 1, P, K)``, float64
        on the CPU (``None`` for the identity), such that the steepest-descent
        images over the overlap are ``C @ B``.
        """
        w = s.weights
        if self.inverse:
            steepest = self.steepest
            if steepest.shape[0] > 1:
                steepest = steepest[self.frame_of[rows].to(steepest.device)]
            n_basis = steepest.shape[1]
            z = w.new_empty((w.shape[0], n_basis + tail, w.shape[1]))
            torch.mul(steepest, w[:, None], out=z[:, :n_basis])
            return z, None
        gradient = s.gradient.transpose(1, 2)  # (R, D, N), 0 off the overlap
        ndim = gradient.shape[1]
        n_outer = ndim * (ndim + 1)
        linear = self.dmatrix[:, :ndim].flatten(1)  # (P, D (D + 1))
        if not self.projective:  # W(dp) A x = (dW A) x: the fixed points do
            z = w.new_empty((w.shape[0], n_outer + tail, w.shape[1]))
            _outer(gradient, list(self.data.fixed_columns), z)
            combine = (self.dmatrix[None] @ matrices[:, None])[:, :, :ndim]
            return z, combine.flatten(2)
        mapped = s.mapped.transpose(1, 2)  # (R, D, N)
        z = w.new_empty((w.shape[0], n_outer + ndim + 1 + tail, w.shape[1]))
        _outer(gradient, list(mapped.unbind(1)), z)
        along = (gradient * mapped).sum(dim=1)
        for k in range(ndim):
            torch.mul(along, mapped[:, k], out=z[:, n_outer + k])
        z[:, n_outer + ndim] = along
        combine = torch.cat([linear, -self.dmatrix[:, ndim]], dim=1)
        return z, combine[None]

    def system(
        self, matrices: Tensor, rows: Tensor
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Loss, Gauss-Newton matrix and gradient of the update.

        Loss ``(R,)``, Gauss-Newton matrix ``(R, P, P)`` and gradient ``(R, P)``
        of the update ``dp`` at ``matrices`` (normalised, ``(R, D+1, D+1)``),
        float64 arrays.

        Losses are those of :func:`.metrics.loss` (``1 - ncc``, mean squared
        or mean absolute difference over the overlap).
        """
        s = sample(
            self.data,
            matrices,
            self.frame_of[rows],
            geometry=self.projective and not self.inverse,
        )
        w = s.weights
        fixed = self._fixed(rows)
        varying, other = (fixed, s.values) if self.inverse else (s.values, fixed)
        count = w.sum(dim=1).clamp_min(1.0)
        tail = _TAIL[self.metric]
        z, combine = self._basis(s, matrices, rows, tail)
        n_basis = z.shape[1] - tail
        if self.metric is Metric.NCC:
            value, scale = _ncc_rows(varying, other, w, count, z[:, n_basis:])
        else:
            residual = z[:, n_basis]
            torch.sub(varying, other, out=residual)
            residual.mul_(w)
            if self.metric is Metric.MSE:
                value = residual.square().sum(dim=1) / count
                scale = count.rsqrt()
            else:  # IRLS: rows scaled by sqrt(1 / |r|) (capped), over the count
                magnitude = residual.abs()
                value = magnitude.sum(dim=1) / count
                scale = magnitude.clamp_min_(L1_EPSILON).rsqrt_()
                z.mul_(scale[:, None])
                scale = count.rsqrt()
        gram = (z @ z.transpose(1, 2)).double().cpu().numpy()
        scale = scale.double().cpu().numpy()
        basis = gram[:, :n_basis, :n_basis]
        across = gram[:, :n_basis, n_basis:]  # basis . tail rows
        if combine is not None:
            c = combine.numpy()
            basis = c @ basis @ np.swapaxes(c, 1, 2)
            across = c @ across
        if self.metric is Metric.NCC:
            hessian, gradient = _ncc_system(
                basis, across, gram[:, n_basis, n_basis + 1], count, scale
            )
        else:
            factor = (scale**2)[:, None, None]
            hessian, gradient = basis * factor, across[..., 0] * factor[..., 0]
        return value.double().cpu().numpy(), hessian, gradient

    def apply(self, matrices: Tensor, step: Tensor) -> Tensor:
        """The matrices after the update ``step`` ``(R, P)``."""
        update = self.model.matrix(step)
        if self.inverse:
            return matrices @ torch.linalg.inv(update)
        return update @ matrices

    def displacement(self, old: Tensor, new: Tensor) -> np.ndarray:
        """Largest move of the level's corners between two matrix sets.

        Largest move of the level's corners between two matrix sets, in
        moving level pixels, ``(R,)``.
        """
        corners = self.data.corners.numpy()
        moved = []
        for matrices in (old, new):
            homog = corners @ np.swapaxes(matrices.numpy(), 1, 2)
            moved.append(homog[..., :-1] / homog[..., -1:])
        shift = (moved[1] - moved[0]) @ self.data.px_linear.numpy().T
        return np.linalg.norm(shift, axis=-1).max(axis=-1)


def _ncc_rows(
    varying: Tensor, other: Tensor, w: Tensor, count: Tensor, tail: Tensor
) -> tuple[Tensor, Tensor]:
    """Fill the NCC rows of the Gram matrix; the loss and ``1 / |Vc|``.

    ``tail`` ``(R, 3, N)`` receives ``zV``, the residual ``zV - zO`` and the
    overlap ``w``, with ``z`` the zero-mean, unit-norm vector over the
    overlap and ``V`` the image the update moves.
    """
    centred = []
    for image in (varying, other):
        mean = (image * w).sum(dim=1, keepdim=True) / count[:, None]
        c = (image - mean).mul_(w)
        norm = torch.linalg.vector_norm(c, dim=1, keepdim=True).clamp_min_(1e-12)
        centred.append((c, norm))
    (v_centred, v_norm), (o_centred, o_norm) = centred
    torch.div(v_centred, v_norm, out=tail[:, 0])
    torch.sub(tail[:, 0], o_centred.div_(o_norm), out=tail[:, 1])
    tail[:, 2] = w
    value = 0.5 * torch.linalg.vector_norm(tail[:, 1], dim=1).square()
    return value, v_norm[:, 0].reciprocal()


def _ncc_system(
    basis: np.ndarray,
    across: np.ndarray,
    z_dot_r: np.ndarray,
    count: Tensor,
    inverse_norm: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """The NCC residual of ECC, linearised at ``dp = 0``.

    ``|z(V(W(dp))) - z(O)|^2 / 2`` linearised at ``dp = 0``, ``V`` the image
    the update moves, ``O`` the other, from the steepest-descent images'
    Gram matrix ``basis`` ``SD W SD^T`` and their products ``across`` with
    ``zV``, the residual and the overlap.

    With ``z`` the zero-mean, unit-norm vector over the overlap, the
    Jacobian is ``J = (SDc - zV a^T) / |Vc|`` (``SDc`` the centred
    steepest-descent images, ``a = SDc^T zV``); ``J^T J`` and ``J^T r`` are
    formed without building ``J``.
    """
    count = count.double().cpu().numpy()[:, None, None]
    a, along, total = across[..., 0], across[..., 1], across[..., 2]
    mean = total / count[..., 0]
    centred = basis - count * mean[:, :, None] * mean[:, None, :]
    scale = inverse_norm[:, None]
    hessian = (centred - a[:, :, None] * a[:, None, :]) * scale[..., None] ** 2
    gradient = (along - a * z_dot_r[:, None]) * scale
    return hessian, gradient


def compositional_gauss_newton(
    objective: CompositionalObjective, base: Tensor, iterations: int, tolerance: float
) -> MatrixSteps:
    """Levenberg-Marquardt on the compositional update.

    Yields the per-row best loss and best matrices after every iteration and
    returns the best matrices with the reason it stopped. A step that raises
    the loss is rejected and the damping raised; an accepted one lowers it.
    A row stops when its step moves no corner by more than ``tolerance``
    level pixels, or when a step of less than ``NOISE_FLOOR`` times that is
    rejected: the loss no longer resolves it. For the same reason a step
    that small is taken without evaluating it, and the row stops, when the
    step before it was accepted and the steps shrink fast (at most
    ``CONTRACTION`` times the previous one: what is left after it is then a
    fraction of it), as ECC stops; this saves a warp or two per level.
    The bookkeeping is on small float64 arrays (numpy: cheaper per
    operation than torch).
    """
    n = base.shape[0]
    best = base.clone()
    trial = base.clone()
    best_loss = np.full(n, np.inf)
    hessian = gradient = None
    damping = np.full(n, 1e-3)
    active = np.ones(n, dtype=bool)
    attempted = np.full(n, np.inf)
    trusted = np.zeros(n, dtype=bool)  # the row's last step was accepted
    for _ in range(iterations):
        rows = np.flatnonzero(active)
        index = torch.from_numpy(rows)
        value, h, g = objective.system(trial[index], index)
        if hessian is None:
            hessian, gradient = h.copy(), g.copy()
        accept = value <= best_loss[rows]
        trusted[rows] = accept
        active[rows[~accept & (attempted[rows] < NOISE_FLOOR * tolerance)]] = False
        done = rows[accept]
        best[torch.from_numpy(done)] = trial[torch.from_numpy(done)]
        best_loss[done] = value[accept]
        hessian[done], gradient[done] = h[accept], g[accept]
        damping[done] = np.maximum(damping[done] / 4, 1e-9)
        damping[rows[~accept]] *= 8
        yield torch.from_numpy(best_loss.copy()), best
        rows = np.flatnonzero(active)
        if rows.size == 0:
            return best, 'converged'

        damped = hessian[rows].copy()
        diagonal = np.arange(damped.shape[-1])
        diag = damped[:, diagonal, diagonal]
        floor = 1e-9 * np.maximum(diag.max(axis=-1, keepdims=True), 1e-30)
        damped[:, diagonal, diagonal] += damping[rows, None] * diag + floor
        step = -np.linalg.solve(damped, gradient[rows][..., None])[..., 0]
        index = torch.from_numpy(rows)
        trial[index] = objective.apply(best[index], torch.from_numpy(step))
        moved = objective.displacement(best[index], trial[index])
        final = (
            (moved < NOISE_FLOOR * tolerance)
            & trusted[rows]
            & (moved <= CONTRACTION * attempted[rows])
        )
        attempted[rows] = moved
        taken = torch.from_numpy(rows[final])
        best[taken] = trial[taken]
        stuck = damping[rows] > 1e8
        active[rows[final | (moved < tolerance) | stuck]] = False
        if not active.any():
            return best, 'converged'
    return best, 'max_iterations'
