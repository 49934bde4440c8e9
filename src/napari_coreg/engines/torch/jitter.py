"""Fixed sample points moved off the pixel grid, for mutual information.

Mutual information over points on the fixed pixel grid has a known
interpolation artefact: at a whole-pixel shift linear interpolation leaves
the moving values unblurred, elsewhere it blurs them (less noise, a sharper
joint histogram), so the metric dips at every whole-pixel position and peaks
beside the truth (measured on the ITK brain T1/PD pair: a minimum at the exact
shift, maxima 0.08-0.1 px away). Points jittered within their pixel, with the
fixed values interpolated there as well, blur every position alike, and the
peak returns to the truth (0.02 px on that pair).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ['jitter', 'values_at']


def jitter(coords: list[Tensor], shape: tuple[int, ...], seed: int) -> list[Tensor]:
    """Pixel coordinates moved by up to half a pixel per axis, reproducibly.

    Parameters
    ----------
    coords : list of Tensor, (N,) each
        Pixel coordinates per axis (numpy order), float64.
    shape : tuple of int
        The level's shape; moved points stay inside it.
    seed : int
        Seed of the offsets (the same seed gives the same points).

    Returns
    -------
    list of Tensor, (N,) each
    """
    generator = torch.Generator().manual_seed(seed)
    moved = []
    for c, n in zip(coords, shape, strict=True):
        offset = torch.rand(c.shape, generator=generator, dtype=c.dtype) - 0.5
        moved.append((c + offset).clamp(0, n - 1) if n > 1 else c)
    return moved


def values_at(image: Tensor, coords: list[Tensor]) -> Tensor:
    """Linear interpolation of ``image`` ``(B, *spatial)`` at pixel ``coords``.

    Returns
    -------
    Tensor, (B, N)
    """
    shape = image.shape[1:]
    grid = [
        (c * (2.0 / (n - 1)) - 1.0 if n > 1 else torch.zeros_like(c)).to(image)
        for c, n in zip(coords, shape, strict=True)
    ]
    grid = torch.stack(grid[::-1], dim=-1).to(image.device)  # grid_sample: x first
    grid = grid.reshape((1,) * len(shape) + grid.shape)
    grid = grid.expand(image.shape[0], *grid.shape[1:])
    sampled = F.grid_sample(
        image[:, None], grid, mode='bilinear', padding_mode='border', align_corners=True
    )
    return sampled.reshape(image.shape[0], -1)
