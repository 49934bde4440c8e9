"""Pyramid levels on torch and the pull-back sampler with its Jacobian.

Conventions: matrices are numpy axis order until :func:`_grid_sample_from_px`,
the one place that reverses axes for ``grid_sample`` (``align_corners=True``:
-1 and 1 are the centres of the first and last pixels).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ...pyramid import Level, shrink_per_axis
from ...transforms import Grid, grid_points, homogeneous

__all__ = [
    'LevelData',
    'Sample',
    'build_level',
    'level_grid_matrix',
    'normalised_frame',
    'point_jacobian',
    'sample',
]


def normalised_frame(grid: Grid) -> np.ndarray:
    """``norm_from_phys``: centre the fixed image and divide by half its diagonal."""
    scale = 1.0 / grid.extent
    return homogeneous(np.eye(grid.ndim) * scale, -grid.center * scale)


def _gaussian_kernel(sigma: float, dtype: torch.dtype, device: torch.device) -> Tensor:
    radius = max(1, math.ceil(3 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=dtype, device=device)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    return kernel / kernel.sum()


def gaussian_blur(image: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur of ``(B, C, *spatial)`` (2D or 3D), reflect edges."""
    if sigma <= 0:
        return image
    ndim = image.ndim - 2
    kernel = _gaussian_kernel(sigma, image.dtype, image.device)
    radius = kernel.numel() // 2
    channels = image.shape[1]
    conv = F.conv2d if ndim == 2 else F.conv3d
    for axis in range(ndim):
        size = image.shape[2 + axis]
        if size == 1:
            continue
        shape = [1] * ndim
        shape[axis] = kernel.numel()
        weight = kernel.reshape(1, 1, *shape).repeat(channels, 1, *[1] * ndim)
        pad = [0, 0] * ndim
        r = min(radius, size - 1)
        pad[2 * (ndim - 1 - axis)] = pad[2 * (ndim - 1 - axis) + 1] = r
        padded = F.pad(image, pad, mode='reflect') if r else image
        if r < radius:  # tiny axis: trim the kernel to the padding available
            trim = radius - r
            weight = weight.narrow(2 + axis, trim, kernel.numel() - 2 * trim)
            weight = weight / weight.sum(dim=2 + axis, keepdim=True)
        image = conv(padded, weight, groups=channels)
    return image


def _shrink(image: Tensor, shrink: tuple[int, ...]) -> Tensor:
    """Block-average ``(B, C, *spatial)`` by ``shrink``, dropping partial blocks."""
    if all(s == 1 for s in shrink):
        return image
    spatial = image.shape[2:]
    crop = [slice(None), slice(None)] + [
        slice(0, (n // s) * s) for n, s in zip(spatial, shrink, strict=True)
    ]
    pool = F.avg_pool2d if len(shrink) == 2 else F.avg_pool3d
    return pool(image[tuple(crop)], kernel_size=shrink, stride=shrink)


def level_grid_matrix(grid: Grid, shrink: tuple[int, ...]) -> np.ndarray:
    """``phys_from_level_px``: level pixel i is the centre of block i."""
    full_from_level = homogeneous(np.diag(shrink), (np.array(shrink) - 1) / 2)
    return grid.phys_from_px @ full_from_level


def _grid_sample_from_px(shape: tuple[int, ...]) -> np.ndarray:
    """Pixel indices (numpy order) to grid_sample coordinates (x, y[, z])."""
    ndim = len(shape)
    scale = np.array([2.0 / max(n - 1, 1) for n in shape])
    return homogeneous(np.diag(scale), -np.ones(ndim))[[*range(ndim)[::-1], ndim]]


@dataclass(frozen=True, eq=False)
class LevelData:
    """One level of a batched problem, on the device.

    Attributes
    ----------
    fixed_points : Tensor, (N, D + 1)
        Homogeneous normalised coordinates of the fixed sample points.
    fixed_values : Tensor, (B or 1, N)
    fixed_weights : Tensor, (N,)
        1 inside the fixed mask (all ones without one).
    moving_stack : Tensor, (B, 1 + D (+1 with a mask), *spatial)
        Moving level image, its gradient in normalised coordinates, and
        its mask (if any), sampled together in one call.
    gs_from_norm : Tensor, (D + 1, D + 1)
        Normalised moving coordinates to grid_sample coordinates.
    bounds : Tensor, (D,)
        Last pixel index per axis of the moving level (numpy order).
    px_from_norm : Tensor, (D + 1, D + 1)
        Normalised moving coordinates to moving level pixels.
    corners : Tensor, (2**D + 1, D + 1), float64 on the CPU
        Homogeneous normalised corners and centre of the fixed level, to
        measure how far a step moves the image.
    px_linear : Tensor, (D, D), float64 on the CPU
        Linear part of ``px_from_norm``.
    fixed_shape : tuple of int
    """

    fixed_points: Tensor
    fixed_values: Tensor
    fixed_weights: Tensor
    moving_stack: Tensor
    gs_from_norm: Tensor
    px_from_norm: Tensor
    bounds: Tensor
    corners: Tensor
    px_linear: Tensor
    fixed_shape: tuple[int, ...]
    has_moving_mask: bool

    @property
    def ndim(self) -> int:
        """Number of spatial dimensions."""
        return self.fixed_points.shape[1] - 1


def _pyramid_image(array: np.ndarray, shrink, sigma, device) -> Tensor:
    image = torch.as_tensor(array, device=device)[:, None]
    return gaussian_blur(_shrink(image, shrink), sigma)


def _subset(
    n_points: int, limit: int, seed: int | None, strength: Tensor | None = None
) -> Tensor | None:
    """Indices of at most ``limit`` points.

    The ``limit`` points of largest ``strength`` when it is given, else a
    random subset when ``seed`` is given, else a regular stride.
    """
    if n_points <= limit:
        return None
    if strength is not None:
        return torch.topk(strength, limit, sorted=False).indices.sort().values
    if seed is None:
        return torch.arange(0, n_points, math.ceil(n_points / limit))
    generator = torch.Generator().manual_seed(seed)
    return torch.randperm(n_points, generator=generator)[:limit].sort().values


def _gradient_magnitude(image: Tensor) -> Tensor:
    """Mean over the batch of the gradient magnitude of ``(B, *spatial)``, flat."""
    magnitude = torch.zeros(image.shape[1:], dtype=image.dtype, device=image.device)
    for axis in range(1, image.ndim):
        for frame in image:
            magnitude += torch.gradient(frame, dim=axis - 1)[0].square_()
    return magnitude.reshape(-1)


def build_level(
    fixed: np.ndarray,
    moving: np.ndarray,
    fixed_grid: Grid,
    moving_grid: Grid,
    fixed_mask: np.ndarray | None,
    moving_mask: np.ndarray | None,
    level: Level,
    norm_from_phys: np.ndarray,
    device: torch.device,
    max_points: int,
    seed: int | None = None,
    strong_points: int | None = None,
) -> LevelData:
    """Shrink, smooth and differentiate one level of the problem.

    The fixed points are all pixels of the level inside the fixed mask,
    reduced to ``max_points`` (random with ``seed``, else regular), and then
    to the ``strong_points`` of largest fixed gradient when that is given:
    flat regions carry little alignment information.
    """
    ndim = fixed_grid.ndim
    f_shrink = shrink_per_axis(fixed_grid.shape, level.factor)
    m_shrink = shrink_per_axis(moving_grid.shape, level.factor)
    fixed_l = _pyramid_image(fixed, f_shrink, level.sigma, device)[:, 0]
    moving_l = _pyramid_image(moving, m_shrink, level.sigma, device)
    fixed_shape = tuple(fixed_l.shape[1:])
    moving_shape = tuple(moving_l.shape[2:])

    # fixed sample points, in the normalised frame (coordinates are made for
    # the chosen points only, so large levels cost little memory)
    n_pixels = math.prod(fixed_shape)
    index = None  # every pixel, without materialising their indices
    if fixed_mask is not None:
        mask_l = _shrink(
            torch.as_tensor(fixed_mask, dtype=torch.float32)[None, None], f_shrink
        )
        index = torch.nonzero(mask_l.reshape(-1) >= 0.5)[:, 0]
    count = n_pixels if index is None else index.numel()
    chosen = _subset(count, max_points, seed)
    if chosen is not None:
        index = chosen if index is None else index[chosen]
        count = index.numel()
    if strong_points is not None and count > strong_points:
        strength = _gradient_magnitude(fixed_l).cpu()
        if index is not None:
            strength = strength[index]
        chosen = _subset(count, strong_points, None, strength)
        index = chosen if index is None else index[chosen]
    if index is None:
        index = torch.arange(n_pixels)
    px = torch.stack(torch.unravel_index(index, fixed_shape), dim=-1).double()
    norm_from_px = torch.as_tensor(
        norm_from_phys @ level_grid_matrix(fixed_grid, f_shrink)
    )
    points = torch.cat([px, torch.ones(index.numel(), 1, dtype=torch.float64)], 1)
    points = points @ norm_from_px.T
    values = fixed_l.reshape(fixed_l.shape[0], -1)[:, index.to(device)]
    weights = torch.ones(index.numel())

    # moving: image, gradient in normalised coordinates, mask
    px_from_norm = np.linalg.inv(
        norm_from_phys @ level_grid_matrix(moving_grid, m_shrink)
    )
    # one tensor holds image, gradient (normalised coordinates) and mask, so
    # that a single grid_sample call reads them all
    linear = px_from_norm[:ndim, :ndim]
    n_channels = 1 + ndim + (moving_mask is not None)
    stack = moving_l.new_empty((moving_l.shape[0], n_channels, *moving_shape))
    stack[:, :1] = moving_l
    stack[:, 1 : 1 + ndim] = 0
    for axis in range(ndim):
        along = torch.gradient(moving_l[:, 0], dim=axis + 1)[0]
        for out in range(ndim):
            if linear[axis, out]:
                stack[:, 1 + out].add_(along, alpha=float(linear[axis, out]))
        del along
    if moving_mask is not None:
        mask = torch.as_tensor(moving_mask, dtype=moving_l.dtype, device=device)
        stack[:, -1] = _shrink(mask[None, None], m_shrink)[:, 0]
    del moving_l
    gs_from_norm = _grid_sample_from_px(moving_shape) @ px_from_norm

    dtype = stack.dtype
    corners = (
        np.c_[grid_points(fixed_shape), np.ones(2**ndim + 1)] @ norm_from_px.numpy().T
    )
    return LevelData(
        fixed_points=points.to(device=device, dtype=dtype),
        fixed_values=values,
        fixed_weights=weights.to(device=device, dtype=dtype),
        moving_stack=stack,
        gs_from_norm=torch.as_tensor(gs_from_norm, device=device, dtype=dtype),
        px_from_norm=torch.as_tensor(px_from_norm, device=device, dtype=dtype),
        bounds=torch.tensor([n - 1 for n in moving_shape], device=device, dtype=dtype),
        corners=torch.as_tensor(corners),
        px_linear=torch.as_tensor(px_from_norm[:ndim, :ndim]),
        fixed_shape=fixed_shape,
        has_moving_mask=moving_mask is not None,
    )


@dataclass(frozen=True, eq=False)
class Sample:
    """Moving values at the mapped fixed points and what their derivative needs."""

    values: Tensor  # (B, N)
    weights: Tensor  # (B, N): overlap (and masks)
    gradient: Tensor  # (B, N, D): d values / d mapped point (normalised)
    mapped: Tensor  # (B, N, D): mapped points (normalised)
    points: Tensor  # (B, N, D + 1): homogeneous points fed to the matrix
    depth: Tensor  # (B, N): projective depth w


def sample(data: LevelData, matrices: Tensor, frames: Tensor | None = None) -> Sample:
    """Pull moving values back through ``matrices`` (normalised, (B, D+1, D+1)).

    Parameters
    ----------
    data : LevelData
    matrices : Tensor, (B, D + 1, D + 1)
        Normalised ``moving_from_fixed`` per frame.
    frames : Tensor of int, optional
        Which moving frame of ``data`` each matrix belongs to (default: the
        i-th matrix to the i-th frame).
    """
    ndim = data.ndim
    stack = data.moving_stack
    if frames is not None and not (
        frames.numel() == stack.shape[0]
        and torch.equal(frames.cpu(), torch.arange(stack.shape[0]))
    ):
        stack = stack[frames.to(stack.device)]
    matrices = matrices.to(device=stack.device, dtype=stack.dtype)
    points = data.fixed_points.expand(matrices.shape[0], -1, -1)
    homog = points @ matrices.transpose(1, 2)
    depth = homog[..., ndim]
    mapped = homog[..., :ndim] / depth[..., None]
    mapped_h = torch.cat([mapped, torch.ones_like(depth)[..., None]], dim=-1)
    grid = mapped_h @ data.gs_from_norm[:ndim].T
    pixel = mapped_h @ data.px_from_norm[:ndim].T
    inside = ((pixel >= 0) & (pixel <= data.bounds)).all(dim=-1)
    grid = torch.where(inside[..., None], grid, 0)  # no inf/NaN into grid_sample
    shape = (grid.shape[0],) + (1,) * (ndim - 1) + grid.shape[1:]
    sampled = F.grid_sample(
        stack,
        grid.reshape(shape),
        mode='bilinear',
        padding_mode='zeros',
        align_corners=True,
    ).reshape(stack.shape[0], stack.shape[1], -1)
    sampled = sampled * inside[:, None]
    weights = inside.to(stack.dtype) * data.fixed_weights
    if data.has_moving_mask:
        weights = weights * (sampled[:, -1] >= 0.5)
    return Sample(
        values=sampled[:, 0],
        weights=weights,
        gradient=sampled[:, 1 : 1 + ndim].transpose(1, 2),
        mapped=mapped,
        points=points,
        depth=depth,
    )


def point_jacobian(s: Sample, dmatrix_dparams: Tensor, projective: bool) -> Tensor:
    """``d values / d params``, (B, N, P), from ``d matrix / d params`` (B, (D+1)^2, P).

    For ``x' = proj(T z)``: ``d x'_i / d T_jk = (delta_ij - x'_i delta_Dj) z_k / w``.
    Without a projective part (``projective=False``) the matrix's last row is
    constant and ``w = 1``, which saves a third of the work.
    """
    ndim = s.mapped.shape[-1]
    dmatrix = dmatrix_dparams.to(device=s.points.device, dtype=s.points.dtype)
    dmatrix = dmatrix.reshape(dmatrix.shape[0], ndim + 1, ndim + 1, -1)
    if projective:
        along = torch.cat(
            [s.gradient, -(s.gradient * s.mapped).sum(-1, keepdim=True)], dim=-1
        )
        points = s.points / s.depth[..., None]
    else:
        along, points, dmatrix = s.gradient, s.points, dmatrix[:, :ndim]
    outer = along[..., :, None] * points[..., None, :]
    return outer.flatten(2) @ dmatrix.flatten(1, 2)
