r"""Batched, differentiable closed-form homography from four point pairs.

The solver follows the Affine-Core-Affine (ACA) decomposition of Cai et al.,
"Fast and Interpretable 2D Homography Decomposition: Similarity-Kernel-Similarity
and Affine-Core-Affine Transformations" (arXiv:2402.18008); the formulas below
are derived independently here.

Derivation
----------
Let :math:`p_0..p_3` be the source and :math:`q_0..q_3` the destination points,
:math:`\tilde q_j = (q_j, 1)`, and :math:`\times` the 2D cross product.

1. *Affine normalisation.* With :math:`E = [p_1 - p_0,\; p_2 - p_0]` (2x2, as
   columns), the affine map :math:`A_p = [[E^{-1}, -E^{-1} p_0], [0, 0, 1]]`
   sends :math:`p_0, p_1, p_2` to the canonical triangle :math:`(0, 0)`,
   :math:`(1, 0)`, :math:`(0, 1)`, and :math:`p_3` to :math:`(\mu_1, \mu_2)`,
   where :math:`\mu` are the barycentric coordinates of :math:`p_3` in the
   triangle :math:`(p_0, p_1, p_2)`: :math:`p_3 = \sum_i \mu_i p_i`,
   :math:`\mu_i = T_i / T`, with :math:`T` twice the signed area of
   :math:`(p_0, p_1, p_2)` and :math:`T_i` that of the same triangle with
   :math:`p_i` replaced by :math:`p_3`. Likewise :math:`A_q`, :math:`\nu`,
   :math:`T'` and :math:`T'_i` for the destination.
2. *Core.* A homography fixing the three canonical points has the form
   :math:`[[k + a, 0, 0], [0, k + b, 0], [a, b, k]]`. Requiring it to send
   :math:`(\mu_1, \mu_2)` to :math:`(\nu_1, \nu_2)` gives, with
   :math:`\rho_i = \nu_i / \mu_i`,

   .. math::

       K = \begin{bmatrix} \rho_1 & 0 & 0 \\ 0 & \rho_2 & 0 \\
           \rho_1 - \rho_0 & \rho_2 - \rho_0 & \rho_0 \end{bmatrix},

   since :math:`K (\mu_1, \mu_2, 1)^T = (\nu_1, \nu_2,
   \nu_1 + \nu_2 + \rho_0 \mu_0)^T = (\nu_1, \nu_2, 1)^T`. As
   :math:`\rho_i = r_i T / T'` with :math:`r_i = T'_i / T_i`, and a homography
   is defined up to scale, :math:`K` may use :math:`r_i` in place of
   :math:`\rho_i`.
3. *Composition.* :math:`H = A_q^{-1} K A_p`. As
   :math:`A_q^{-1} = [\tilde q_1 - \tilde q_0,\; \tilde q_2 - \tilde q_0,\;
   \tilde q_0]` (columns), :math:`A_q^{-1} K = [u, v, w]` with
   :math:`u = r_1 \tilde q_1 - r_0 \tilde q_0`,
   :math:`v = r_2 \tilde q_2 - r_0 \tilde q_0`, :math:`w = r_0 \tilde q_0`;
   and :math:`T A_p = [[\operatorname{adj} E, -\operatorname{adj}(E)\, p_0],
   [0, 0, T]]`. Hence

   .. math::

       H \propto \big[\, L \;\big|\; T w - L p_0 \,\big],
       \qquad L = [u, v] \operatorname{adj} E,

   which is finally divided by its bottom-right entry.

That is about a hundred floating-point operations per homography, with
divisions only in :math:`r_i` and the final scaling, all as elementwise tensor
arithmetic (no linear solve, no loop over the batch). The batch is laid out
last so that every operation runs on contiguous rows.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Size, Tensor

__all__ = ['corner_homography', 'homography_from_four_points']

# Rows of the difference vectors built by `_edges_and_areas` whose cross
# products give the signed areas T, T0, T1, T2 of the module docstring.
_LEFT_EDGE = [0, 3, 2, 0]
_RIGHT_EDGE = [1, 4, 1, 2]


def _check_quad(points: Tensor, name: str) -> None:
    """Raise ``ValueError`` unless ``points`` has shape ``(..., 4, 2)``."""
    if points.ndim < 2 or tuple(points.shape[-2:]) != (4, 2):
        shape = tuple(points.shape)
        raise ValueError(f'{name} must have shape (..., 4, 2), got {shape}')


def _batch_last(src: Tensor, dst: Tensor, batch_shape: Size) -> Tensor:
    """Gather both quadrilaterals into one contiguous, batch-last tensor.

    Returns
    -------
    Tensor
        Shape ``(4, 2, 2, N)``: point, coordinate, quadrilateral (source,
        destination), flattened batch.
    """
    rows = [points.expand(*batch_shape, 4, 2).reshape(-1, 8).T for points in (src, dst)]
    return torch.stack(rows, dim=1).view(4, 2, 2, -1)


def _edges_and_areas(points: Tensor) -> tuple[Tensor, Tensor]:
    """Return difference vectors and the signed triangle areas of both quads.

    Parameters
    ----------
    points : Tensor
        Batch-last points from `_batch_last`, shape ``(4, 2, 2, N)``.

    Returns
    -------
    edges : Tensor
        ``p1 - p0, p2 - p0, p3 - p0, p2 - p1, p3 - p1``, shape ``(5, 2, 2, N)``.
    areas : Tensor
        Twice the signed areas ``T, T0, T1, T2`` of the triangles
        ``(p0, p1, p2), (p3, p1, p2), (p0, p3, p2), (p0, p1, p3)``, shape
        ``(4, 2, N)``. Each comes from differences to a vertex of its own
        triangle, so it is exactly zero when its points are exactly collinear.
    """
    edges = torch.cat([points[1:] - points[:1], points[2:] - points[1:2]])
    left, right = edges[_LEFT_EDGE], edges[_RIGHT_EDGE]
    return edges, left[:, 0] * right[:, 1] - left[:, 1] * right[:, 0]


def _destination_core(dst: Tensor, areas: Tensor) -> tuple[Tensor, Tensor]:
    """Return the columns ``u, v`` and ``w`` of ``A_q^{-1} K``.

    Parameters
    ----------
    dst : Tensor
        Destination points ``q0, q1, q2``, shape ``(3, 2, N)``.
    areas : Tensor
        Signed areas from `_edges_and_areas`, shape ``(4, 2, N)``.

    Returns
    -------
    uv : Tensor
        ``u`` and ``v``, shape ``(2, 3, N)``.
    w : Tensor
        Shape ``(3, N)``.
    """
    ratios = areas[1:, 1] / areas[1:, 0]
    scaled = ratios.unsqueeze(1) * F.pad(dst, (0, 0, 0, 1), value=1.0)
    return scaled[1:] - scaled[:1], scaled[0]


def _compose(
    uv: Tensor, w: Tensor, src_edges: Tensor, origin: Tensor, area: Tensor
) -> Tensor:
    """Return ``[u, v, w] @ (T A_p)``, the unnormalised homography.

    Parameters
    ----------
    uv, w : Tensor
        Output of `_destination_core`.
    src_edges : Tensor
        Source edges ``p1 - p0`` and ``p2 - p0``, shape ``(2, 2, N)``.
    origin : Tensor
        Source point ``p0``, shape ``(2, N)``.
    area : Tensor
        ``T``, the determinant of the source edge matrix, shape ``(N,)``.

    Returns
    -------
    Tensor
        Shape ``(3, 3, N)``.
    """
    (e1x, e1y), (e2x, e2y) = src_edges
    adjugate = torch.stack([e2y, -e2x, -e1y, e1x]).view(2, 2, -1)
    linear = (uv.unsqueeze(2) * adjugate.unsqueeze(1)).sum(0)
    translation = area * w - (linear * origin).sum(1)
    return torch.cat([linear, translation.unsqueeze(1)], dim=1)


def homography_from_four_points(src: Tensor, dst: Tensor) -> Tensor:
    """Solve the homography mapping four source points onto four destination points.

    Closed-form Affine-Core-Affine solver (see the module docstring): batched,
    differentiable by autograd and device-agnostic.

    Parameters
    ----------
    src, dst : Tensor
        Point coordinates, shape ``(B, 4, 2)`` (or any leading batch shapes
        that broadcast together), of one floating-point dtype and on one
        device. Both use the same coordinate order, e.g. ``(x, y)``.

    Returns
    -------
    Tensor
        Contiguous ``(B, 3, 3)`` matrices ``H`` with ``H[..., 2, 2] == 1`` such
        that ``dst_i ~ H @ [src_i, 1]`` (equality after the projective divide).

    Raises
    ------
    ValueError
        If ``src`` or ``dst`` does not have shape ``(..., 4, 2)``.

    Notes
    -----
    Degenerate input: if any three of the four source points, or any three of
    the four destination points, are exactly collinear (a signed triangle area
    evaluates to exactly zero), no invertible homography exists and every
    entry of that batch element's result is NaN; its gradients are then
    meaningless (zero or NaN). Nearly collinear points give finite but
    ill-conditioned results. As with any ``H[2, 2] == 1`` normalisation
    (kornia's too), a homography that sends the origin to infinity cannot be
    represented and gives non-finite entries.
    """
    _check_quad(src, 'src')
    _check_quad(dst, 'dst')
    batch_shape = torch.broadcast_shapes(src.shape, dst.shape)[:-2]
    points = _batch_last(src, dst, batch_shape)
    edges, areas = _edges_and_areas(points)
    uv, w = _destination_core(points[:3, :, 1], areas)
    homography = _compose(uv, w, edges[:2, :, 0], points[0, :, 0], areas[0, 0])
    degenerate = areas.eq(0).flatten(0, 1).any(0)
    homography = homography / homography[2, 2].masked_fill(degenerate, torch.nan)
    return homography.permute(2, 0, 1).contiguous().view(*batch_shape, 3, 3)


def corner_homography(displacements: Tensor, corners: Tensor) -> Tensor:
    """Return the homography that moves each corner by its displacement.

    Parameters
    ----------
    displacements : Tensor
        Corner displacements, shape ``(B, 4, 2)``; gradients flow to it.
    corners : Tensor
        Corner coordinates, shape ``(4, 2)`` (shared by the batch) or
        ``(B, 4, 2)``.

    Returns
    -------
    Tensor
        ``(B, 3, 3)`` homographies mapping ``corners`` onto
        ``corners + displacements``; exactly the identity for zero
        displacements.
    """
    return homography_from_four_points(corners, corners + displacements)
