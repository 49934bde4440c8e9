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

from .options import Metric

__all__ = ['gauss_newton_system', 'loss', 'mutual_information', 'natural']

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


def _parzen(x: Tensor, bins: int) -> Tensor:
    """Cubic B-spline Parzen weights of intensities in [0, 1]: ``(B, N, bins)``."""
    position = x.clamp(0, 1) * (bins - 3) + 1  # keep the kernel inside the bins
    centres = torch.arange(bins, dtype=x.dtype, device=x.device)
    d = (position[..., None] - centres).abs()
    inner = (4 - 6 * d**2 + 3 * d**3) / 6
    outer = (2 - d).clamp_min(0) ** 3 / 6
    return torch.where(d < 1, inner, outer)


def mutual_information(m: Tensor, f: Tensor, w: Tensor, bins: int = 32) -> Tensor:
    """Mutual information in nats from a Parzen-window joint histogram, ``(B,)``.

    Intensities are expected in about [0, 1] (values outside are clipped).
    """
    wm = _parzen(m, bins) * w[..., None]
    wf = _parzen(f, bins).expand(m.shape[0], -1, -1)
    joint = wf.transpose(1, 2) @ wm
    joint = joint / joint.sum(dim=(1, 2), keepdim=True).clamp_min(_TINY)
    pf = joint.sum(dim=2, keepdim=True)
    pm = joint.sum(dim=1, keepdim=True)
    ratio = joint / (pf * pm).clamp_min(_TINY)
    return (joint * torch.log(ratio.clamp_min(_TINY))).sum(dim=(1, 2))


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
        return value, jr.transpose(1, 2) @ jr, (jr.transpose(1, 2) @ residual[..., None])[..., 0]
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
