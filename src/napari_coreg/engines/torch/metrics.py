"""Intensity metrics over the valid overlap, batched and differentiable (torch).

Every function takes sampled moving values ``m`` and fixed values ``f`` of
shape ``(B, N)`` (``f`` may be ``(1, N)``) and overlap weights ``w`` (1 where
both images are valid, else 0). Losses are "lower is better"; :func:`natural`
gives the value users know (NCC and MI higher is better).

Least-squares metrics (``l1``, ``mse``, ``ncc``) also give a Gauss-Newton
system from the Jacobian ``J = dm/dparams`` of shape ``(B, N, P)``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ...options import Metric

__all__ = [
    'fixed_bin',
    'gauss_newton_system',
    'loss',
    'loss_and_gradient',
    'mutual_information',
    'moving_window',
    'mutual_information_and_gradient',
    'natural',
]

#: Below this absolute difference L1's reweighting is capped (intensities
#: are normalised to about [0, 1]).
L1_EPSILON = 1e-2
_TINY = 1e-12


def _count(w: Tensor) -> Tensor:
    return w.sum(dim=1).clamp_min(1.0)


def _centred(x: Tensor, w: Tensor) -> Tensor:
    mean = (x * w).sum(dim=1, keepdim=True) / _count(w)[:, None]
    return (x - mean) * w


def _zscore(x: Tensor, w: Tensor) -> tuple[Tensor, Tensor]:
    """Zero-mean, unit-norm ``x`` over the overlap, and its norm."""
    centred = _centred(x, w)
    norm = centred.norm(dim=1, keepdim=True).clamp_min(_TINY)
    return centred / norm, norm


def ncc(m: Tensor, f: Tensor, w: Tensor) -> Tensor:
    """Pearson correlation over the overlap, ``(B,)``."""
    zm, _ = _zscore(m, w)
    zf, _ = _zscore(f.expand_as(m), w)
    return (zm * zf).sum(dim=1)


def moving_window(x: Tensor, bins: int) -> tuple[Tensor, Tensor, Tensor]:
    """Cubic B-spline Parzen window of intensities in [0, 1].

    Returns the first of the four bins each value touches ``(B, N)``, the
    four weights ``(B, N, 4)`` (they sum to 1) and their derivatives with
    respect to the intensity. Values are clipped to [0, 1] (zero derivative
    outside) and placed so the window stays inside the bins.
    """
    scale = bins - 3
    position = x.clamp(0, 1) * scale + 1
    first = position.floor().clamp(max=bins - 3)
    t = position - first
    t2 = t * t
    weights = (
        torch.stack(
            [
                (1 - t) ** 3,
                3 * t2 * t - 6 * t2 + 4,
                -3 * t2 * t + 3 * t2 + 3 * t + 1,
                t2 * t,
            ],
            dim=-1,
        )
        / 6
    )
    inside = ((x >= 0) & (x <= 1)).to(x.dtype)[..., None] * scale
    slopes = (
        torch.stack(
            [-0.5 * (1 - t) ** 2, 1.5 * t2 - 2 * t, -1.5 * t2 + t + 0.5, 0.5 * t2],
            dim=-1,
        )
        * inside
    )
    return first.long() - 1, weights, slopes


def fixed_bin(x: Tensor, bins: int) -> Tensor:
    """Zero-order (nearest) bin of fixed intensities, as in Mattes' estimator."""
    return (x.clamp(0, 1) * (bins - 3) + 1).round().long()


def mutual_information_and_gradient(
    m: Tensor, f: Tensor, w: Tensor, bins: int = 32
) -> tuple[Tensor, Tensor]:
    """Mutual information in nats and its derivative with respect to ``m``.

    Mattes' estimator: a zero-order window on the fixed intensity and a cubic
    B-spline window on the moving one, each sample touching four bins, so the
    cost is linear in the number of samples. Intensities are clipped to
    [0, 1]. With the fixed marginal independent of ``m``, the derivative is
    ``sum_k beta'_k * log(P[a, b_k] / p_m[b_k]) * w / sum(w)``.

    Returns
    -------
    mi : Tensor, (B,)
    gradient : Tensor, (B, N)
    """
    batch = m.shape[0]
    first, weights, slopes = moving_window(m, bins)
    rows = fixed_bin(f, bins).expand(batch, -1)[..., None] * bins
    index = rows + first[..., None] + torch.arange(4, device=m.device)
    total = w.sum(dim=1, keepdim=True).clamp_min(_TINY)
    joint = torch.zeros(batch, bins * bins, dtype=m.dtype, device=m.device)
    joint.scatter_add_(1, index.flatten(1), (weights * w[..., None]).flatten(1))
    joint = (joint / total).reshape(batch, bins, bins)
    pf = joint.sum(dim=2, keepdim=True)
    pm = joint.sum(dim=1, keepdim=True)
    log_joint = torch.log(joint.clamp_min(_TINY))
    mi = (joint * (log_joint - torch.log((pf * pm).clamp_min(_TINY)))).sum(dim=(1, 2))
    conditional = (log_joint - torch.log(pm.clamp_min(_TINY))).flatten(1)
    gathered = torch.gather(conditional, 1, index.flatten(1)).reshape(index.shape)
    gradient = (gathered * slopes).sum(-1) * w / total
    return mi, gradient


def mutual_information(m: Tensor, f: Tensor, w: Tensor, bins: int = 32) -> Tensor:
    """Mutual information in nats (Mattes' estimator), ``(B,)``."""
    return mutual_information_and_gradient(m, f, w, bins)[0]


def natural(metric: Metric, m: Tensor, f: Tensor, w: Tensor, bins: int = 32) -> Tensor:
    """The metric as users read it: NCC (-1..1), MI (nats), mean L1, MSE."""
    if metric is Metric.NCC:
        return ncc(m, f, w)
    if metric is Metric.MI:
        return mutual_information(m, f, w, bins)
    diff = (m - f) * w
    total = diff.abs().sum(dim=1) if metric is Metric.L1 else (diff**2).sum(dim=1)
    return total / _count(w)


def loss(metric: Metric, m: Tensor, f: Tensor, w: Tensor, bins: int = 32) -> Tensor:
    """Lower-is-better form of :func:`natural`, ``(B,)``."""
    value = natural(metric, m, f, w, bins)
    if metric is Metric.NCC:
        return 1 - value
    if metric is Metric.MI:
        return -value
    return value


def loss_and_gradient(
    metric: Metric, m: Tensor, f: Tensor, w: Tensor, bins: int = 32
) -> tuple[Tensor, Tensor]:
    """:func:`loss` per frame and its derivative with respect to ``m``.

    Analytic for every metric (no autograd): for ``ncc``,
    ``d(1 - ncc)/dm = -(z_f - ncc z_m) / |m_c|`` (both z-scores are
    zero-mean over the overlap, so the mean's derivative vanishes).
    """
    if metric is Metric.MI:
        mi, gradient = mutual_information_and_gradient(m, f, w, bins)
        return -mi, -gradient
    if metric is Metric.NCC:
        zm, norm = _zscore(m, w)
        zf, _ = _zscore(f.expand_as(m), w)
        value = (zm * zf).sum(dim=1)
        gradient = -(zf - value[:, None] * zm) / norm
        return 1 - value, gradient
    count = _count(w)[:, None]
    diff = (m - f) * w
    if metric is Metric.MSE:
        return (diff**2).sum(dim=1) / count[:, 0], 2 * diff * w / count
    if metric is Metric.L1:
        return diff.abs().sum(dim=1) / count[:, 0], torch.sign(diff) * w / count
    raise ValueError(f'no loss for {metric}')


def gauss_newton_system(
    metric: Metric, m: Tensor, f: Tensor, w: Tensor, jac: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Loss, Gauss-Newton matrix and gradient of a least-squares metric.

    Returns
    -------
    loss : Tensor, (B,)
        As :func:`loss`.
    hessian : Tensor, (B, P, P)
        ``J_r^T J_r`` of the residuals ``r``.
    gradient : Tensor, (B, P)
        ``J_r^T r``.

    Notes
    -----
    ``ncc`` minimises ``|z_m - z_f|^2 = 2 (1 - ncc)`` over z-scored
    intensities, whose Jacobian projects out the mean and the direction of
    ``z_m``; ``l1`` is iteratively reweighted least squares.
    """
    count = _count(w)
    if metric is Metric.NCC:
        zm, norm = _zscore(m, w)
        zf, _ = _zscore(f.expand_as(m), w)
        residual = zm - zf
        jc = _centred_jac(jac, w) / norm[..., None]
        jr = jc - zm[..., None] * (zm[:, None, :] @ jc)
        value = 0.5 * (residual**2).sum(dim=1)
        return (
            value,
            jr.transpose(1, 2) @ jr,
            (jr.transpose(1, 2) @ residual[..., None])[..., 0],
        )
    residual = (m - f) * w
    if metric is Metric.MSE:
        weights = w / count[:, None]
        value = (residual**2).sum(dim=1) / count
    elif metric is Metric.L1:
        weights = w / residual.abs().clamp_min(L1_EPSILON) / count[:, None]
        value = residual.abs().sum(dim=1) / count
    else:
        raise ValueError(f'{metric} is not a least-squares metric')
    wj = jac * weights[..., None]
    hessian = wj.transpose(1, 2) @ jac
    gradient = (wj.transpose(1, 2) @ residual[..., None])[..., 0]
    return value, hessian, gradient


def _centred_jac(jac: Tensor, w: Tensor) -> Tensor:
    mean = (jac * w[..., None]).sum(dim=1, keepdim=True) / _count(w)[:, None, None]
    return (jac - mean) * w[..., None]
