"""Pyramid levels on torch and the pull-back sampler with its Jacobian.

Conventions: matrices are numpy axis order until :func:`_grid_sample_from_px`,
the one place that reverses axes for ``grid_sample`` (``align_corners=True``:
-1 and 1 are the centres of the first and last pixels).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ...pyramid import Level, shrink_per_axis
from ...transforms import Grid, grid_points, homogeneous
from .images import blur_margin, level_images, shrink
from .jitter import jitter, values_at

__all__ = [
    'LevelData',
    'Sample',
    'build_level',
    'level_grid_matrix',
    'normalised_frame',
    'pullback_factors',
    'pulled_back_gradient',
    'sample',
]


def normalised_frame(grid: Grid) -> np.ndarray:
    """``norm_from_phys``: centre the fixed image and divide by half its diagonal."""
    scale = 1.0 / grid.extent
    return homogeneous(np.eye(grid.ndim) * scale, -grid.center * scale)


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
    fixed_gradient : Tensor, (B or 1, N, D), or None
        Gradient of the fixed level at the points, in normalised
        coordinates (built on request: the inverse-compositional solver's
        steepest-descent images).
    moving_stack : Tensor, (B, 1 (+ D) (+1 with a mask), *spatial)
        Moving level image, its gradient in normalised coordinates (unless
        built without), and its mask (if any), sampled together in one call.
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
    has_moving_mask : bool
    has_moving_gradient : bool
    """

    fixed_points: Tensor
    fixed_values: Tensor
    fixed_gradient: Tensor | None
    moving_stack: Tensor
    gs_from_norm: Tensor
    px_from_norm: Tensor
    bounds: Tensor
    corners: Tensor
    px_linear: Tensor
    fixed_shape: tuple[int, ...]
    has_moving_mask: bool
    has_moving_gradient: bool = True
    moving_margin: tuple[int, ...] = ()

    @property
    def ndim(self) -> int:
        """Number of spatial dimensions."""
        return self.fixed_points.shape[1] - 1

    @functools.cached_property
    def fixed_columns(self) -> tuple[Tensor, ...]:
        """The fixed points' normalised coordinates, one tensor per axis.

        The fixed points' normalised coordinates, one contiguous ``(N,)``
        tensor per axis (what :func:`sample` multiplies).
        """
        return tuple(c.contiguous() for c in self.fixed_points[:, :-1].T)

    @functools.cached_property
    def grid_bounds(self) -> tuple[tuple[float, float], ...]:
        """Grid_sample coordinates a sample may read, per grid axis.

        Smallest and largest grid_sample coordinate a sample may read, per
        grid axis (x first): the moving level less its blurred margins, or
        ``(-1, -1)`` along an axis of a single pixel.
        """
        last = self.bounds.tolist()
        margin = self.moving_margin or (0,) * len(last)
        bounds = []
        for n, m in zip(last[::-1], margin[::-1], strict=True):
            inset = 2.0 * m / n if n > 0 else 0.0
            bounds.append((-1.0 + inset, 1.0 - inset) if n > 0 else (-1.0, -1.0))
        return tuple(bounds)


#: Values of the strided sample that brackets a top-k's cut-off.
BRACKET_SAMPLES = 1 << 12
#: A bracket holding more than this many times the points wanted (ties) is
#: not ranked on its own: the whole level is, in chunks.
BAND_LIMIT = 16
#: Values per chunk of a large top-k.
TOPK_CHUNK = 1 << 22


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
        return _strongest(strength, limit).cpu()
    if seed is None:
        return torch.arange(0, n_points, math.ceil(n_points / limit))
    generator = torch.Generator().manual_seed(seed)
    return torch.randperm(n_points, generator=generator)[:limit].sort().values


def _strongest(strength: Tensor, limit: int) -> Tensor:
    """Indices, in order, of the ``limit`` largest values of ``strength``.

    The set of a top-k, found faster on CPUs: a random sample (fixed seed)
    of ``BRACKET_SAMPLES`` values brackets the cut-off, and only the values
    inside the bracket are ranked (a plain top-k when the bracket misses).
    """
    n = strength.numel()
    generator = torch.Generator().manual_seed(0)
    picks = torch.randint(n, (min(n, BRACKET_SAMPLES),), generator=generator)
    sample = strength[picks.to(strength.device)].sort().values
    m = sample.numel()
    below = 1 - limit / n  # fraction of the values under the cut-off
    spread = 4 * math.sqrt(below * (1 - below) / m) + 2 / m
    low = sample[max(0, math.floor((below - spread) * m))]
    high = sample[min(m - 1, math.ceil((below + spread) * m))]
    keep = strength > high
    in_band = (strength >= low) & ~keep
    need = limit - int(torch.count_nonzero(keep))
    n_band = int(torch.count_nonzero(in_band))
    if need < 0 or need > n_band or n_band > BAND_LIMIT * limit:
        # missed (or ties made the band wide): rank everything
        return _topk_chunked(strength, limit).sort().values
    band = torch.nonzero(in_band)[:, 0]
    keep[band[torch.topk(strength[band], need, sorted=False).indices]] = True
    return torch.nonzero(keep)[:, 0]


def _topk_chunked(values: Tensor, k: int) -> Tensor:
    """Indices of the ``k`` largest of flat ``values``, a chunk at a time.

    Each chunk's ``k`` largest are candidates, and the candidates are ranked:
    the same set as one top-k (up to ties) without its full-size buffers.
    """
    chunk = max(TOPK_CHUNK, 2 * k)
    if values.numel() <= chunk:
        return torch.topk(values, k, sorted=False).indices
    found_values, found_indices = [], []
    for start in range(0, values.numel(), chunk):
        part = values[start : start + chunk]
        best = torch.topk(part, min(k, part.numel()), sorted=False)
        found_values.append(best.values)
        found_indices.append(best.indices + start)
    candidates = torch.cat(found_values)
    return torch.cat(found_indices)[torch.topk(candidates, k, sorted=False).indices]


def _unravel(index: Tensor | None, shape: tuple[int, ...]) -> list[Tensor]:
    """Pixel coordinates ``(N,)`` per axis of flat ``index``, as float64.

    ``None`` stands for every pixel in order. Exact: float arithmetic is
    much faster than integer division here.
    """
    if index is None:
        axes = [torch.arange(n, dtype=torch.float64) for n in shape]
        return [c.reshape(-1) for c in torch.meshgrid(*axes, indexing='ij')]
    rest = index.double()
    coords = []
    for size in shape[:0:-1]:
        outer = torch.floor(rest / size)
        coords.append(rest - outer * size)
        rest = outer
    return [rest, *coords[::-1]]


def _axis_gradients(
    image: Tensor, targets: list[Tensor] | None = None
) -> Iterator[Tensor]:
    """Central differences of ``(B, *spatial)`` along each spatial axis.

    One-sided at the ends (as :func:`torch.gradient`). One axis at a time,
    into ``targets`` (one per axis) or else in one buffer that the next axis
    overwrites (use or copy each before asking for the next), so that a
    large level holds one gradient at once.
    """
    buffer = torch.empty_like(image) if targets is None else None
    for axis in range(1, image.ndim):
        out = buffer if targets is None else targets[axis - 1]
        n = image.shape[axis]
        if n == 1:
            out.zero_()
        else:
            inner = out.narrow(axis, 1, n - 2)
            torch.sub(
                image.narrow(axis, 2, n - 2), image.narrow(axis, 0, n - 2), out=inner
            )
            inner.mul_(0.5)
            for end, ahead, behind in ((0, 1, 0), (n - 1, n - 1, n - 2)):
                torch.sub(
                    image.narrow(axis, ahead, 1),
                    image.narrow(axis, behind, 1),
                    out=out.narrow(axis, end, 1),
                )
        yield out


def _gradient_magnitude(gradients: Iterable[Tensor]) -> Tensor:
    """Sum over the batch of the squared gradient magnitude, flat."""
    magnitude = None
    for g in gradients:  # squared in place: the buffer is not kept
        g = g.square_()
        g = g.sum(dim=0) if g.shape[0] > 1 else g[0]
        magnitude = g.clone() if magnitude is None else magnitude.add_(g)
    return magnitude.reshape(-1)


def _in_frame(
    gradients: Iterable[Tensor], linear: np.ndarray, out: Tensor, offset: int
) -> None:
    """Write pixel-axis gradients in normalised coordinates.

    Write pixel-axis gradients, turned into normalised coordinates by
    ``linear`` (``px_from_norm``'s linear part, ``(D, D)``), into channels
    ``offset`` to ``offset + D`` of ``out``.
    """
    ndim = len(linear)
    out[:, offset : offset + ndim] = 0
    for axis, along in enumerate(gradients):
        for to in range(ndim):
            if linear[axis, to]:
                out[:, offset + to].add_(along, alpha=float(linear[axis, to]))


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
    moving_gradient: bool = True,
    fixed_gradient: bool = False,
    blur_margins: bool = True,
    images: list[Tensor] | None = None,
    jitter_seed: int | None = None,
) -> LevelData:
    """Shrink, smooth and differentiate one level of the problem.

    The fixed points are all pixels of the level inside the fixed mask,
    reduced to ``max_points`` (random with ``seed``, else regular), and then
    to the ``strong_points`` of largest fixed gradient when that is given:
    flat regions carry little alignment information. ``moving_gradient``
    and ``fixed_gradient`` say which image's gradient the optimiser needs
    (forward-additive solvers the moving one, inverse-compositional ones
    the fixed one). ``blur_margins`` makes samples that fall in the moving
    image's blurred margin (:func:`blur_margin`: values that mixed in the
    reflected padding) count as outside it; they pulled the optimum of a
    shifted camera crop by 0.05 px (0.15 px with sigma 1). Measured, not yet
    understood: leaving out the fixed image's margin as well moved the ITK
    brain Rotated10 optimum by 0.27 px, so the fixed points keep theirs.
    ``images`` are the level's images ``[fixed, moving]`` when already built
    (:class:`.images.LevelImages`); the moving one is then replaced by a view
    into the sampled stack when it is copied there, which frees the copy.
    ``jitter_seed`` moves the points off the pixel grid (:mod:`.jitter`,
    fixed values interpolated; not with ``fixed_gradient``).
    """
    ndim = fixed_grid.ndim
    f_shrink = shrink_per_axis(fixed_grid.shape, level.factor)
    m_shrink = shrink_per_axis(moving_grid.shape, level.factor)
    if images is None:
        images = list(
            level_images(fixed, moving, fixed_grid, moving_grid, level, device)
        )
    fixed_l, moving_l = images
    fixed_shape = tuple(fixed_l.shape[1:])
    moving_shape = tuple(moving_l.shape[2:])

    # fixed sample points, in the normalised frame (coordinates are made for
    # the chosen points only, so large levels cost little memory)
    n_pixels = math.prod(fixed_shape)
    index = None  # every pixel, without materialising their indices
    if fixed_mask is not None:
        keep = (
            shrink(
                torch.as_tensor(fixed_mask, dtype=torch.float32)[None, None], f_shrink
            )[0, 0]
            >= 0.5
        )
        index = torch.nonzero(keep.reshape(-1))[:, 0]
    count = n_pixels if index is None else index.numel()
    chosen = _subset(count, max_points, seed)
    if chosen is not None:
        index = chosen if index is None else index[chosen]
        count = index.numel()
    fixed_grads = None
    if fixed_gradient:
        fixed_grads = [g.clone() for g in _axis_gradients(fixed_l)]
    if strong_points is not None and count > strong_points:
        strength = _gradient_magnitude(
            (g.clone() for g in fixed_grads)
            if fixed_grads
            else _axis_gradients(fixed_l)
        )
        if index is not None:
            strength = strength[index.to(strength.device)]
        chosen = _subset(count, strong_points, None, strength)
        del strength  # a level-sized buffer, before the moving stack
        index = chosen if index is None else index[chosen]
    norm_from_px = torch.as_tensor(
        norm_from_phys @ level_grid_matrix(fixed_grid, f_shrink)
    )
    pixels = _unravel(index, fixed_shape)
    if jitter_seed is not None:
        pixels = jitter(pixels, fixed_shape, jitter_seed)
    columns = _rows_at(norm_from_px[None, :ndim], pixels)
    count = columns[0].shape[1]
    points = torch.ones((count, ndim + 1), dtype=fixed_l.dtype, device=device)
    for axis, column in enumerate(columns):
        points[:, axis] = column[0]
    on_device = slice(None) if index is None else index.to(device)
    if jitter_seed is None:
        values = fixed_l.reshape(fixed_l.shape[0], -1)[:, on_device]
    else:
        values = values_at(fixed_l, pixels)
    gradient_at_points = None
    if fixed_gradient:
        linear = np.linalg.inv(norm_from_px.numpy())[:ndim, :ndim]
        at_points = [g.flatten(1)[:, on_device] for g in fixed_grads]
        gradient_at_points = fixed_l.new_zeros((fixed_l.shape[0], ndim, count))
        _in_frame(at_points, linear, gradient_at_points, 0)
        gradient_at_points = gradient_at_points.transpose(1, 2)
    del fixed_grads

    # moving: image, gradient in normalised coordinates, mask
    px_from_norm = np.linalg.inv(
        norm_from_phys @ level_grid_matrix(moving_grid, m_shrink)
    )
    # one tensor holds image, gradient (normalised coordinates) and mask, so
    # that a single grid_sample call reads them all
    n_grad = ndim if moving_gradient else 0
    n_channels = 1 + n_grad + (moving_mask is not None)
    if n_channels == 1:  # the image alone: no copy
        stack = moving_l
    else:
        stack = moving_l.new_empty((moving_l.shape[0], n_channels, *moving_shape))
        stack[:, :1] = moving_l
        images[1] = moving_l = stack[:, :1]  # one copy of the image
    linear = px_from_norm[:ndim, :ndim]
    if moving_gradient and np.count_nonzero(linear - np.diag(np.diag(linear))) == 0:
        # axis-aligned: each gradient straight into its channel, no buffer
        targets = [stack[:, 1 + axis] for axis in range(ndim)]
        for axis, along in enumerate(_axis_gradients(moving_l[:, 0], targets)):
            along.mul_(float(linear[axis, axis]))
    elif moving_gradient:
        _in_frame(_axis_gradients(moving_l[:, 0]), linear, stack, 1)
    if moving_mask is not None:
        mask = torch.as_tensor(moving_mask, dtype=moving_l.dtype, device=device)
        stack[:, -1] = shrink(mask[None, None], m_shrink)[:, 0]
    del moving_l
    gs_from_norm = _grid_sample_from_px(moving_shape) @ px_from_norm

    dtype = stack.dtype
    corners = (
        np.c_[grid_points(fixed_shape), np.ones(2**ndim + 1)] @ norm_from_px.numpy().T
    )
    return LevelData(
        fixed_points=points,
        fixed_values=values,
        fixed_gradient=gradient_at_points,
        moving_stack=stack,
        gs_from_norm=torch.as_tensor(gs_from_norm, device=device, dtype=dtype),
        px_from_norm=torch.as_tensor(px_from_norm, device=device, dtype=dtype),
        bounds=torch.tensor([n - 1 for n in moving_shape], device=device, dtype=dtype),
        corners=torch.as_tensor(corners),
        px_linear=torch.as_tensor(px_from_norm[:ndim, :ndim]),
        fixed_shape=fixed_shape,
        has_moving_mask=moving_mask is not None,
        moving_margin=tuple(
            blur_margin(level.sigma if blur_margins else 0.0, n) for n in moving_shape
        ),
        has_moving_gradient=moving_gradient,
    )


@dataclass(frozen=True, eq=False)
class Sample:
    """Moving values at the mapped fixed points and what their derivative needs.

    ``gradient`` is None when the level has no moving gradient; ``mapped``,
    ``points`` and ``depth`` are None unless ``sample`` was asked for the
    geometry (forward-additive derivatives need it).
    """

    values: Tensor  # (B, N): 0 outside the moving level
    weights: Tensor  # (B, N): overlap (and masks)
    gradient: Tensor | None  # (B, N, D): d values / d mapped point
    # (normalised), 0 where the weight is
    mapped: Tensor | None = None  # (B, N, D): mapped points (normalised)
    points: Tensor | None = None  # (B, N, D + 1): homogeneous fixed points
    depth: Tensor | None = None  # (B, N): projective depth w


def _rows_at(matrices: Tensor, coords: list[Tensor]) -> list[Tensor]:
    """Rows of ``matrices @ (coords, 1)``.

    (B, K, D + 1) and D tensors (B or 1, N) to K tensors (B, N).

    Multiply-adds per coordinate: on CPUs a matmul whose inner size is 3 or 4
    is several times slower.
    """
    ndim = len(coords)
    rows = []
    for i in range(matrices.shape[1]):
        row = matrices[:, i, :1] * coords[0]
        for k in range(1, ndim):
            row.addcmul_(matrices[:, i, k : k + 1], coords[k])
        rows.append(row.add_(matrices[:, i, ndim : ndim + 1]))
    return rows


def sample(
    data: LevelData,
    matrices: Tensor,
    frames: Tensor | None = None,
    geometry: bool = False,
) -> Sample:
    """Pull moving values back through ``matrices`` (normalised, (B, D+1, D+1)).

    Parameters
    ----------
    data : LevelData
    matrices : Tensor, (B, D + 1, D + 1)
        Normalised ``moving_from_fixed`` per frame.
    frames : Tensor of int, optional
        Which moving frame of ``data`` each matrix belongs to (default: the
        i-th matrix to the i-th frame).
    geometry : bool
        Also return the mapped points, the fixed points and the depth.
    """
    ndim = data.ndim
    stack = data.moving_stack
    if frames is not None and frames.tolist() != list(range(stack.shape[0])):
        stack = stack[frames.to(stack.device)]
    matrices = matrices.to(dtype=torch.float64)
    dtype, device = stack.dtype, stack.device
    coords = list(data.fixed_columns)
    last = matrices.detach()[:, ndim].cpu().numpy()
    affine = bool((last[:, :ndim] == 0).all() and (last[:, ndim] == 1).all())
    gs_from_norm = data.gs_from_norm.to(torch.float64)
    mapped = depth = None
    if affine:
        grid = _rows_at((gs_from_norm @ matrices)[:, :ndim].to(device, dtype), coords)
        if geometry:
            mapped = _rows_at(matrices[:, :ndim].to(device, dtype), coords)
            depth = torch.ones_like(mapped[0])
    else:
        homog = _rows_at(matrices.to(device, dtype), coords)
        depth = homog[ndim]
        mapped = [h / depth for h in homog[:ndim]]
        grid = _rows_at(gs_from_norm[None, :ndim].to(device, dtype), mapped)
    inside = None
    for axis, g in enumerate(grid):  # grid axis 0 is the last numpy axis
        low, high = data.grid_bounds[axis]
        within = (g >= low) & (g <= high)
        inside = within if inside is None else inside & within
    grid = torch.stack(grid, dim=-1)
    if not affine:  # no inf/NaN into grid_sample
        grid = torch.where(inside[..., None], grid, 0)
    shape = (grid.shape[0],) + (1,) * (ndim - 1) + grid.shape[1:]
    sampled = F.grid_sample(
        stack,
        grid.reshape(shape),
        mode='bilinear',
        padding_mode='zeros',
        align_corners=True,
    ).reshape(stack.shape[0], stack.shape[1], -1)
    weights = inside.to(dtype)
    if data.has_moving_mask:
        weights = weights * (sampled[:, -1] >= 0.5)
    gradient = None
    if data.has_moving_gradient:
        gradient = (sampled[:, 1 : 1 + ndim] * weights[:, None]).transpose(1, 2)
    return Sample(
        values=sampled[:, 0] * inside,
        weights=weights,
        gradient=gradient,
        mapped=None if mapped is None else torch.stack(mapped, dim=-1),
        points=data.fixed_points.expand(grid.shape[0], -1, -1) if geometry else None,
        depth=depth,
    )


def pullback_factors(
    s: Sample, dmatrix_dparams: Tensor, projective: bool
) -> tuple[Tensor, Tensor, Tensor]:
    """The factors ``along``, ``points``, ``dmatrix`` of ``d values / d params``.

    Per point, ``d values_n / d params = sum_jk along_nj points_nk dmatrix_jk``.
    ``s`` needs its geometry and moving gradient; ``dmatrix_dparams`` is
    ``d matrix / d params``, ``(B, (D+1)^2, P)``. Without a projective part
    the matrix's last row is constant and is dropped.
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
    return along, points, dmatrix


def pulled_back_gradient(
    s: Sample, dvalues: Tensor, dmatrix_dparams: Tensor, projective: bool
) -> Tensor:
    """The gradient of a loss through the sampled values, ``(B, P)``.

    ``sum_n dvalues_n * d values_n / d params``, ``(B, P)``, without forming
    the per-point Jacobian; ``s`` needs its geometry and moving gradient.

    ``dmatrix_dparams`` is ``d matrix / d params``, ``(B, (D+1)^2, P)``. For
    ``x' = proj(T z)``: ``d x'_i / d T_jk = (delta_ij - x'_i delta_Dj) z_k / w``,
    so the sum over points is one ``(D+1) x (D+1)`` moment per row,
    contracted with ``d T / d params``. Without a projective part
    (``projective=False``) the matrix's last row is constant and ``w = 1``.
    """
    along, points, dmatrix = pullback_factors(s, dmatrix_dparams, projective)
    moment = (along * dvalues[..., None]).transpose(1, 2) @ points
    return (moment.flatten(1)[..., None] * dmatrix.flatten(1, 2)).sum(dim=1)
