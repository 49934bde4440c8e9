"""Batched first-order optimisers over transform parameters at one level.

(Gauss-Newton for the least-squares metrics is inverse-compositional and
lives in :mod:`.inverse`.)

Each optimiser is a generator: it yields the per-frame loss and the best
parameters so far after every iteration (so callers can report progress and
cancel) and returns the best parameters with the reason it stopped. Rows
(frames) converge independently; a converged row is no longer evaluated.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass

import torch
from torch import Tensor

from ...options import MODEL_SPECS, Metric
from .curvature import mi_information_matrix, point_jacobian
from .levels import LevelData, pulled_back_gradient, sample
from .metrics import loss, loss_and_gradient
from .models import ParamModel

__all__ = ['OPTIMISERS', 'Objective', 'adam', 'bfgs']

Steps = Generator[tuple[Tensor, Tensor], None, tuple[Tensor, str]]

#: BFGS tries no step that moves a corner by more than this many level pixels.
MAX_STEP_PX = 4.0
#: Most loss evaluations of one BFGS line search.
LINE_SEARCH_STEPS = 12
#: Levenberg-Marquardt damping of the MI information matrix before it is
#: inverted, relative to its diagonal.
DAMPING = 1e-3
CARRY_SCALE = 0.25


@dataclass(frozen=True, eq=False)
class Objective:
    """The loss of a batch of rows at one level, and its derivatives.

    A row is one parameter vector; ``frame_of[row]`` is the moving frame it
    registers (rows may share a frame: multi-start). Methods take ``rows``,
    the indices of the rows being evaluated.
    """

    data: LevelData
    model: ParamModel
    base: Tensor  # (R, D+1, D+1): starting normalised matrices, CPU float64
    metric: Metric
    bins: int
    frame_of: Tensor  # (R,): frame of each row

    def _fixed(self, rows: Tensor) -> Tensor:
        values = self.data.fixed_values
        if values.shape[0] == 1:
            return values
        return values[self.frame_of[rows].to(values.device)]

    def _sample(self, params: Tensor, rows: Tensor, geometry: bool = False):
        matrices = self.model.matrices(params, self.base[rows])
        return sample(self.data, matrices, self.frame_of[rows], geometry)

    def loss_and_overlap(self, params: Tensor, rows: Tensor) -> tuple[Tensor, Tensor]:
        """Loss per row and the number of overlapping points."""
        s = self._sample(params, rows)
        value = loss(self.metric, s.values, self._fixed(rows), s.weights, self.bins)
        return value.double().cpu(), s.weights.sum(dim=1).double().cpu()

    def gradient(self, params: Tensor, rows: Tensor) -> tuple[Tensor, Tensor]:
        """Loss and its gradient with respect to the parameters."""
        return self.gradient_and_curvature(params, rows, curvature=False)[:2]

    def gradient_and_curvature(
        self, params: Tensor, rows: Tensor, curvature: bool = True
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """Loss, gradient and, for MI, the information matrix (else None).

        The matrix is :func:`.curvature.mi_information_matrix`, ``(b, P, P)``.
        """
        s = self._sample(params, rows, geometry=True)
        fixed = self._fixed(rows)
        value, dvalues = loss_and_gradient(
            self.metric, s.values, fixed, s.weights, self.bins
        )
        dmatrix = self.model.jacobians(params, self.base[rows])
        projective = MODEL_SPECS[self.model.model].projective
        grad = pulled_back_gradient(s, dvalues, dmatrix, projective)
        matrix = None
        if curvature and self.metric is Metric.MI:
            jac = point_jacobian(s, dmatrix, projective)
            matrix = mi_information_matrix(s.values, fixed, s.weights, jac, self.bins)
            matrix = matrix.double().cpu()
        return value.double().cpu(), grad.double().cpu(), matrix

    def displacement(self, old: Tensor, new: Tensor, rows: Tensor) -> Tensor:
        """Largest move of the level's corners between two parameter sets.

        Largest move of the level's corner points between two parameter sets,
        in moving level pixels, ``(b,)``.
        """
        base = self.base[rows]
        moved = []
        for params in (old, new):
            homog = self.data.corners @ self.model.matrices(params, base).transpose(
                1, 2
            )
            mapped = homog[..., :-1] / homog[..., -1:]
            moved.append(mapped @ self.data.px_linear.T)
        return (moved[1] - moved[0]).norm(dim=-1).amax(dim=-1).double()


def bfgs(
    objective: Objective,
    params: Tensor,
    iterations: int,
    tolerance: float,
    memory: dict[str, Tensor] | None = None,
) -> Steps:
    """Quasi-Newton (BFGS) with a backtracking line search, for any metric.

    The first step moves the points by about one level pixel along the
    steepest descent, and no step tries to move them by more than
    ``MAX_STEP_PX`` level pixels; backtracking interpolates the loss
    quadratically. A row stops when a step moves no corner by more than
    ``tolerance`` level pixels, or when no step along its direction helps.
    """
    n, n_params = params.shape
    rows = torch.arange(n)
    carried = None if memory is None else memory.get('inverse')
    if carried is not None and carried.shape != (n, n_params, n_params):
        carried = None
    value, grad, curvature = objective.gradient_and_curvature(
        params, rows, curvature=carried is None
    )
    eye = torch.eye(n_params, dtype=torch.float64)
    gnorm = grad.norm(dim=1).clamp_min(1e-30)
    unit = objective.displacement(params, params + grad / gnorm[:, None], rows)
    initial = eye / (unit.clamp_min(1e-12) * gnorm)[:, None, None]
    if carried is not None:
        initial = carried * CARRY_SCALE
    elif curvature is not None:
        initial = _damped_inverse(curvature, initial)
    inverse = initial.clone()
    best = params.clone()
    active = torch.ones(n, dtype=torch.bool)
    for _ in range(iterations):
        rows = torch.nonzero(active)[:, 0]
        g = grad[rows]
        direction = -(inverse[rows] @ g[..., None])[..., 0]
        uphill = (direction * g).sum(1) >= 0
        inverse[rows[uphill]] = initial[rows[uphill]]
        direction[uphill] = -(initial[rows[uphill]] @ g[uphill][..., None])[..., 0]
        slope = (direction * g).sum(1)
        reach = objective.displacement(best[rows], best[rows] + direction, rows)
        step = (MAX_STEP_PX / reach.clamp_min(1e-12)).clamp(max=1.0)
        pending = torch.ones(rows.numel(), dtype=torch.bool)
        new_value, new_grad = value[rows].clone(), g.clone()
        for _ in range(LINE_SEARCH_STEPS):
            idx = torch.nonzero(pending)[:, 0]
            trial = best[rows[idx]] + step[idx, None] * direction[idx]
            v, gr = objective.gradient(trial, rows[idx])
            rise = v - value[rows[idx]] - step[idx] * slope[idx]
            ok = rise <= -(1 - 1e-4) * step[idx] * slope[idx]  # Armijo
            new_value[idx[ok]], new_grad[idx[ok]] = v[ok], gr[ok]
            pending[idx[ok]] = False
            a = step[idx[~ok]]
            minimum = -slope[idx[~ok]] * a * a / (2 * rise[~ok].clamp_min(1e-30))
            step[idx[~ok]] = torch.minimum(torch.maximum(minimum, 0.1 * a), 0.5 * a)
            if not pending.any():
                break
        s = step[:, None] * direction * (~pending)[:, None]
        y = new_grad - g
        sy = (s * y).sum(1)
        update = ~pending & (sy > 1e-12)
        if update.any():
            rho = (1 / sy[update])[:, None, None]
            left = eye - rho * (s[update][:, :, None] @ y[update][:, None, :])
            inverse[rows[update]] = left @ inverse[rows[update]] @ left.transpose(
                1, 2
            ) + rho * (s[update][:, :, None] @ s[update][:, None, :])
        old = best[rows].clone()
        best[rows] = best[rows] + s
        value[rows], grad[rows] = new_value, new_grad
        yield value.clone(), best
        moved = objective.displacement(old, best[rows], rows)
        active[rows[(moved < tolerance) | pending]] = False
        if not active.any():
            break
    if memory is not None:
        memory['inverse'] = inverse
    return best, 'converged' if not active.any() else 'max_iterations'


def _damped_inverse(matrix: Tensor, fallback: Tensor) -> Tensor:
    """Inverse of positive semi-definite ``(B, P, P)`` matrices, damped.

    Levenberg-Marquardt damping (``DAMPING`` times the diagonal, and times
    its mean); a row whose damped matrix is still not positive definite
    keeps ``fallback``.
    """
    diagonal = torch.diagonal(matrix, dim1=1, dim2=2)
    floor = diagonal.mean(dim=1, keepdim=True).clamp_min(1e-30)
    damped = matrix + torch.diag_embed(DAMPING * (diagonal + floor))
    factor, info = torch.linalg.cholesky_ex(damped)
    ok = ((info == 0) & torch.isfinite(factor).all(dim=(1, 2)))[:, None, None]
    eye = torch.eye(matrix.shape[-1], dtype=matrix.dtype).expand_as(matrix)
    inverse = torch.cholesky_solve(eye, torch.where(ok, factor, eye))
    return torch.where(ok, inverse, fallback)


def adam(
    objective: Objective,
    params: Tensor,
    iterations: int,
    tolerance: float,
    learning_rate: float,
) -> Steps:
    """Adam (the method of kornia's registration tutorial), for any metric.

    Stops when the mean loss has not improved by more than ``tolerance``
    (relative) over 20 iterations.
    """
    n = params.shape[0]
    rows = torch.arange(n, device=params.device)
    current = params.clone().requires_grad_(True)
    optimiser = torch.optim.Adam([current], lr=learning_rate)
    best, best_loss = params.clone(), torch.full((n,), torch.inf, dtype=torch.float64)
    history: list[float] = []
    for _ in range(iterations):
        value, grad = objective.gradient(current.detach(), rows)
        better = value < best_loss
        best[better], best_loss[better] = current.detach()[better], value[better]
        current.grad = grad.to(current)
        optimiser.step()
        history.append(float(value.mean()))
        yield best_loss.clone(), best
        if len(history) > 20 and history[-21] - min(history[-20:]) < tolerance * abs(
            history[-21]
        ):
            return best, 'converged'
    return best, 'max_iterations'


OPTIMISERS: dict[str, Callable[..., Steps]] = {
    'bfgs': bfgs,
    'adam': adam,
}
