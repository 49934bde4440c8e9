"""A second-order model of mutual information: the histogram's information matrix.

With ``p`` the joint histogram (Mattes' estimator, :mod:`.metrics`) and
``p_m`` its moving marginal, both functions of the parameters ``mu``,

    H = sum_ab dp_ab dp_ab^T / p_ab - sum_b dp_m,b dp_m,b^T / p_m,b

is the part of the Hessian of ``-MI`` that needs first derivatives only
(Thevenaz and Unser's approximation, the counterpart of Gauss-Newton's
``J^T J``). It is positive semi-definite and couples the parameters as the
metric does, but its scale is off by the dropped second-derivative term:
measured, its Newton step points the right way (cosine > 0.95 to a known
shift) but was 0.15 times the shift on a remapped 64 px pair, about the best
length on the 64 px coarsest level of the 512 px affine cases, and up to ten
times too long on their finer levels (sharper images). So the quasi-Newton
solver (:func:`.optim.bfgs`) starts from it only where no finer estimate
exists, and its line search and updates set the length.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .levels import Sample, pullback_factors
from .metrics import fixed_bin, moving_window

__all__ = ['mi_information_matrix', 'point_jacobian']

_TINY = 1e-12


def point_jacobian(s: Sample, dmatrix_dparams: Tensor, projective: bool) -> Tensor:
    """``d values / d params`` per point, ``(B, N, P)``.

    ``s`` needs its geometry and moving gradient; ``dmatrix_dparams`` is
    ``d matrix / d params``, ``(B, (D+1)^2, P)``, as for
    :func:`.levels.pulled_back_gradient`.
    """
    along, points, dmatrix = pullback_factors(s, dmatrix_dparams, projective)
    outer = along[..., :, None] * points[..., None, :]
    return outer.flatten(2) @ dmatrix.flatten(1, 2)


def mi_information_matrix(
    m: Tensor, f: Tensor, w: Tensor, jac: Tensor, bins: int = 32
) -> Tensor:
    """The information matrix ``H`` of the module docstring, ``(B, P, P)``.

    Parameters
    ----------
    m, f, w : Tensor, (B, N), (B or 1, N), (B, N)
        Moving and fixed values and overlap weights, as in :mod:`.metrics`.
    jac : Tensor, (B, N, P)
        ``d m / d params`` (:func:`point_jacobian`).
    bins : int
    """
    batch, n_params = m.shape[0], jac.shape[-1]
    first, weights, slopes = moving_window(m, bins)
    rows = fixed_bin(f, bins).expand(batch, -1)[..., None] * bins
    index = (rows + first[..., None] + torch.arange(4, device=m.device)).flatten(1)
    total = w.sum(dim=1, keepdim=True).clamp_min(_TINY)
    joint = torch.zeros(batch, bins * bins, dtype=m.dtype, device=m.device)
    joint.scatter_add_(1, index, (weights * w[..., None]).flatten(1))
    joint = joint / total
    scale = (w / total)[..., None, None]
    contributions = (slopes[..., None] * jac[:, :, None, :] * scale).flatten(1, 2)
    djoint = m.new_zeros((batch, bins * bins, n_params))
    djoint.scatter_add_(1, index[..., None].expand(-1, -1, n_params), contributions)
    dmarginal = djoint.reshape(batch, bins, bins, n_params).sum(dim=1)
    marginal = joint.reshape(batch, bins, bins).sum(dim=1)
    inverse_joint = torch.where(joint > _TINY, 1 / joint.clamp_min(_TINY), 0)
    inverse_marginal = torch.where(marginal > _TINY, 1 / marginal.clamp_min(_TINY), 0)
    return (djoint * inverse_joint[..., None]).transpose(1, 2) @ djoint - (
        dmarginal * inverse_marginal[..., None]
    ).transpose(1, 2) @ dmarginal
