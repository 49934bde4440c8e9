"""Validation figures over the overlap: MSE, NCC and SSIM before and after."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from ..inputs import luminance
from ..transforms import Grid
from ..warp import resample

__all__ = ['overlap_quality']


def _figures(fixed: NDArray, moved: NDArray, valid: NDArray) -> dict[str, float]:
    from skimage.metrics import structural_similarity

    f, m = fixed[valid], moved[valid]
    ncc = float(np.corrcoef(f, m)[0, 1]) if f.size > 1 else float('nan')
    _, ssim_map = structural_similarity(
        fixed, moved, data_range=1.0, full=True, gaussian_weights=True
    )
    return {
        'mse': float(np.mean((f - m) ** 2)),
        'ncc': ncc,
        'ssim': float(ssim_map[valid].mean()),
        'overlap': float(valid.mean()),
    }


def overlap_quality(
    fixed: NDArray,
    moving: NDArray,
    moving_from_fixed: NDArray,
    fixed_grid: Grid,
    moving_grid: Grid,
) -> dict[str, dict[str, float]]:
    """MSE, NCC and SSIM of moving resampled on fixed, over their overlap.

    Intensities are scaled to [0, 1] by the fixed image's range. ``before``
    is the identity (the images as given), ``after`` the final transform.

    Returns
    -------
    dict
        ``{'before': {...}, 'after': {...}}`` with keys ``mse``, ``ncc``,
        ``ssim`` and ``overlap`` (fraction of fixed pixels covered).
    """
    fixed_gray = luminance(fixed, fixed_grid.ndim)
    moving_gray = luminance(moving, moving_grid.ndim)
    low, high = float(fixed_gray.min()), float(fixed_gray.max())
    scale = 1.0 / max(high - low, 1e-12)
    fixed_gray = (fixed_gray - low) * scale
    moving_gray = (moving_gray - low) * scale
    ones = np.ones(moving_grid.shape, np.float32)
    figures = {}
    identity = np.eye(fixed_grid.ndim + 1)
    for name, matrix in (('before', identity), ('after', moving_from_fixed)):
        moved = resample(moving_gray, matrix, fixed_grid, moving_grid)
        valid = resample(ones, matrix, fixed_grid, moving_grid) > 0.999
        figures[name] = _figures(fixed_gray, moved, valid)
    return figures
