"""Transform models as batched maps from parameters to matrices (torch).

Every model works in the engine's *normalised frame*: physical coordinates
minus the fixed image's centre, divided by half its diagonal. There all
parameters are dimensionless and of similar size (a unit change moves points
by about half the image), so one optimiser step size suits every model, and
zero parameters are the identity.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ...options import Model

__all__ = ['ParamModel', 'param_model']

#: Step of the central differences that give ``d matrix / d params`` (the
#: maps are smooth, so the float64 error is about its square).
DIFFERENCE_STEP = 1e-5


def _homogeneous(linear: Tensor, offset: Tensor) -> Tensor:
    """``(B, D, D)`` and ``(B, D)`` to ``(B, D+1, D+1)``."""
    batch, ndim = offset.shape
    matrix = torch.zeros(
        batch, ndim + 1, ndim + 1, dtype=offset.dtype, device=offset.device
    )
    matrix[:, :ndim, :ndim] = linear
    matrix[:, :ndim, ndim] = offset
    matrix[:, ndim, ndim] = 1
    return matrix


def _rotation(angles: Tensor, ndim: int) -> Tensor:
    """2D: one angle per row; 3D: a rotation vector (axis times angle), via exp."""
    if ndim == 2:
        cos, sin = torch.cos(angles[:, 0]), torch.sin(angles[:, 0])
        return torch.stack(
            [torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2
        )
    a, b, c = angles.unbind(-1)
    zero = torch.zeros_like(a)
    skew = torch.stack(
        [
            torch.stack([zero, -c, b], -1),
            torch.stack([c, zero, -a], -1),
            torch.stack([-b, a, zero], -1),
        ],
        -2,
    )
    return torch.linalg.matrix_exp(skew)


class ParamModel:
    """A model's parameter count and its batched map ``params -> matrices``.

    Parameters
    ----------
    model : Model
    ndim : int
    n_params : int
    matrix : callable
        ``(B, P) -> (B, D+1, D+1)``, zero parameters giving the identity.
    """

    def __init__(
        self,
        model: Model,
        ndim: int,
        n_params: int,
        matrix: Callable[[Tensor], Tensor],
    ) -> None:
        self.model = model
        self.ndim = ndim
        self.n_params = n_params
        self.matrix = matrix

    def matrices(self, params: Tensor, base: Tensor) -> Tensor:
        """``matrix(params) @ base``: ``(B, P), (B, D+1, D+1) -> (B, D+1, D+1)``."""
        return self.matrix(params) @ base

    def jacobians(self, params: Tensor, base: Tensor) -> Tensor:
        """``d matrices / d params`` by central differences, ``(B, (D+1)**2, P)``."""
        batch, n_params = params.shape
        steps = DIFFERENCE_STEP * torch.eye(
            n_params, dtype=params.dtype, device=params.device
        )
        shifted = torch.cat([params[:, None] + steps, params[:, None] - steps], 1)
        size = self.ndim + 1
        mats = self.matrix(shifted.reshape(-1, n_params))
        mats = mats.reshape(batch, 2, n_params, size, size) @ base[:, None, None]
        diff = (mats[:, 0] - mats[:, 1]) / (2 * DIFFERENCE_STEP)
        return diff.reshape(batch, n_params, size * size).transpose(1, 2)


def param_model(model: Model, ndim: int, corners: Tensor | None = None) -> ParamModel:
    """The parametrisation of ``model`` in ``ndim`` dimensions.

    Parameters
    ----------
    model : Model
    ndim : int
    corners : Tensor, shape (4, 2), optional
        Homography only: the control points (the fixed image's corners in
        the normalised frame); the parameters are their displacements.
    """
    n_rot = 1 if ndim == 2 else 3

    def eye(p: Tensor) -> Tensor:
        return torch.eye(ndim, dtype=p.dtype, device=p.device).expand(
            p.shape[0], -1, -1
        )

    if model is Model.TRANSLATION:
        return ParamModel(model, ndim, ndim, lambda p: _homogeneous(eye(p), p))
    if model is Model.RIGID:
        return ParamModel(
            model,
            ndim,
            n_rot + ndim,
            lambda p: _homogeneous(_rotation(p[:, :n_rot], ndim), p[:, n_rot:]),
        )
    if model is Model.SIMILARITY:
        return ParamModel(
            model,
            ndim,
            1 + n_rot + ndim,
            lambda p: _homogeneous(
                torch.exp(p[:, :1, None]) * _rotation(p[:, 1 : 1 + n_rot], ndim),
                p[:, 1 + n_rot :],
            ),
        )
    if model is Model.AFFINE:
        n_lin = ndim * ndim
        return ParamModel(
            model,
            ndim,
            n_lin + ndim,
            lambda p: _homogeneous(
                eye(p) + p[:, :n_lin].reshape(-1, ndim, ndim), p[:, n_lin:]
            ),
        )
    if model is Model.HOMOGRAPHY:
        if ndim != 2 or corners is None:
            raise ValueError('a homography needs 2D images and four corners')
        from ...homography import corner_homography

        return ParamModel(
            model,
            ndim,
            8,
            lambda p: corner_homography(p.reshape(-1, 4, 2), corners.to(p)),
        )
    raise ValueError(f'no parametrisation for {model}')
