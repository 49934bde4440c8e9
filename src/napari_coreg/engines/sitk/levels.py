"""Pyramid levels of the SimpleITK backend: shrunk, smoothed image pairs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from ..._sitk import grid_from_image, image_from_array
from ...problem import Problem
from ...pyramid import Level, shrink_per_axis
from ...transforms import Grid, apply_matrix, grid_points

__all__ = ['Pair', 'level_pair', 'mask_image']


@dataclass(frozen=True)
class Pair:
    """One level of one frame: fixed and moving SimpleITK images."""

    fixed: sitk.Image
    moving: sitk.Image
    shape: tuple[int, ...]  # fixed level shape, numpy order
    pixel: float  # mean fixed level spacing (physical)
    corners: np.ndarray  # fixed level corners, physical, numpy order


def level_image(image: sitk.Image, shape: tuple[int, ...], level: Level) -> sitk.Image:
    shrink = shrink_per_axis(shape, level.factor)
    if any(s > 1 for s in shrink):
        image = sitk.BinShrink(image, [int(s) for s in shrink[::-1]])
    if level.sigma > 0:
        variance = [(level.sigma * sp) ** 2 for sp in image.GetSpacing()]
        image = sitk.DiscreteGaussian(
            image,
            variance=variance,
            maximumKernelWidth=128,
            maximumError=0.01,
            useImageSpacing=True,
        )
    return image


def level_pair(
    fixed: sitk.Image, moving: sitk.Image, problem: Problem, level: Level
) -> Pair:
    """The fixed and moving images of one pyramid level, with its geometry."""
    fixed_l = level_image(fixed, problem.fixed_grid.shape, level)
    moving_l = level_image(moving, problem.moving_grid.shape, level)
    grid = grid_from_image(fixed_l)
    corners = apply_matrix(grid.phys_from_px, grid_points(grid.shape)[:-1])
    return Pair(
        fixed=fixed_l,
        moving=moving_l,
        shape=grid.shape,
        pixel=float(np.mean(grid.spacing)),
        corners=corners,
    )


def mask_image(mask: np.ndarray | None, grid: Grid) -> sitk.Image | None:
    """A mask as a SimpleITK image placed on ``grid`` (None stays None)."""
    if mask is None:
        return None
    return image_from_array(mask.astype(np.uint8), grid)
