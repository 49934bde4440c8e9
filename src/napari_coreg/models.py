"""Transform models as differentiable maps from parameters to matrices (torch).

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

from .options import Model

__all__ = ['ParamModel', 'param_model']


def _homogeneous(linear: Tensor, offset: Tensor) -> Tensor:
    ndim = linear.shape[-1]
    top = torch.cat([linear, offset[..., None]], dim=-1)
    bottom = torch.zeros(ndim + 1, dtype=linear.dtype, device=linear.device)
    bottom = torch.cat([bottom[:-1], torch.ones_like(bottom[-1:])])
    return torch.cat([top, bottom[None]], dim=-2)


def _rotation(angles: Tensor, ndim: int) -> Tensor:
    """2D: one angle; 3D: a rotation vector (axis times angle), via exp."""
    if ndim == 2:
        cos, sin = torch.cos(angles[0]), torch.sin(angles[0])
        return torch.stack([torch.stack([cos, -sin]), torch.stack([sin, cos])])
    zero = torch.zeros_like(angles[0])
    a, b, c = angles
    skew = torch.stack(
        [
            torch.stack([zero, -c, b]),
            torch.stack([c, zero, -a]),
            torch.stack([-b, a, zero]),
        ]
    )
    return torch.linalg.matrix_exp(skew)


def _n_rotation(ndim: int) -> int:
    return 1 if ndim == 2 else 3


class ParamModel:
    """A model's parameter count and its map ``params -> (D+1, D+1)``.

    ``matrix`` takes one parameter vector. ``matrices`` and ``jacobians``
    work on a batch ``(B, P)`` and compose with a starting matrix per frame:
    ``matrix(params) @ base``, so zero parameters give ``base``.
    """

    def __init__(
        self, model: Model, ndim: int, n_params: int,
        matrix: Callable[[Tensor], Tensor],
    ) -> None:
        self.model = model
        self.ndim = ndim
        self.n_params = n_params
        self.matrix = matrix

    def _composed(self, params: Tensor, base: Tensor) -> Tensor:
        return self.matrix(params) @ base

    def matrices(self, params: Tensor, base: Tensor) -> Tensor:
        """``(B, P), (B, D+1, D+1) -> (B, D+1, D+1)``."""
        return torch.func.vmap(self._composed)(params, base)

    def jacobians(self, params: Tensor, base: Tensor) -> Tensor:
        """``d matrices / d params``: ``(B, (D+1)**2, P)``."""
        size = (self.ndim + 1) ** 2
        jac = torch.func.vmap(torch.func.jacfwd(self._composed))(params, base)
        return jac.reshape(params.shape[0], size, self.n_params)


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
    n_rot = _n_rotation(ndim)
    eye = torch.eye(ndim, dtype=torch.float64)

    if model is Model.TRANSLATION:
        return ParamModel(model, ndim, ndim, lambda p: _homogeneous(eye.to(p), p))
    if model is Model.RIGID:
        return ParamModel(
            model, ndim, n_rot + ndim,
            lambda p: _homogeneous(_rotation(p[:n_rot], ndim), p[n_rot:]),
        )
    if model is Model.SIMILARITY:
        return ParamModel(
            model, ndim, 1 + n_rot + ndim,
            lambda p: _homogeneous(
                torch.exp(p[0]) * _rotation(p[1 : 1 + n_rot], ndim), p[1 + n_rot :]
            ),
        )
    if model is Model.AFFINE:
        n_lin = ndim * ndim
        return ParamModel(
            model, ndim, n_lin + ndim,
            lambda p: _homogeneous(
                eye.to(p) + p[:n_lin].reshape(ndim, ndim), p[n_lin:]
            ),
        )
    if model is Model.HOMOGRAPHY:
        if ndim != 2 or corners is None:
            raise ValueError('a homography needs 2D images and four corners')
        from .homography import corner_homography

        def matrix(p: Tensor) -> Tensor:
            return corner_homography(p.reshape(1, 4, 2), corners.to(p))[0]

        return ParamModel(model, ndim, 8, matrix)
    raise ValueError(f'no parametrisation for {model}')
