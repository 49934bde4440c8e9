"""Validation figures over the overlap: MSE, NCC and SSIM before and after."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from ..inputs import luminance
from ..transforms import Grid
from ..warp import resample

__all__ = ['overlap_quality']


def _ssim_window(shape: tuple[int, ...]) -> dict:
    """SSIM window options that fit ``shape``.

    The Gaussian window (11 px) where every axis allows it, else the largest odd uniform
    window.
    """
    smallest = min(shape)
    if smallest >= 11:
        return {'gaussian_weights': True}
    return {
        'gaussian_weights': False,
        'win_size': max(3, min(7, smallest - 1 + smallest % 2)),
    }


def _figures(fixed: NDArray, moved: NDArray, valid: NDArray) -> dict[str, float]:
    from skimage.metrics import structural_similarity

    f, m = fixed[valid], moved[valid]
    with np.errstate(invalid='ignore', divide='ignore'):
        ncc = float(np.corrcoef(f, m)[0, 1]) if f.size > 1 else float('nan')
    _, ssim_map = structural_similarity(
        fixed, moved, data_range=1.0, full=True, **_ssim_window(fixed.shape)
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

    Intensities are scaled to about [0, 1] by the fixed image's 0.5 and
    99.5 percentiles and clipped (so nodata values or a few extreme pixels
    do not dominate). ``before`` is the identity (the images as given),
    ``after`` the final transform.

    Returns
    -------
    dict
        ``{'before': {...}, 'after': {...}}`` with keys ``mse``, ``ncc``,
        ``ssim`` and ``overlap`` (fraction of fixed pixels covered).
    """
    fixed_gray = luminance(fixed, fixed_grid.ndim)
    moving_gray = luminance(moving, moving_grid.ndim)
    low, high = (float(v) for v in np.percentile(fixed_gray, [0.5, 99.5]))
    if high <= low:
        low, high = float(fixed_gray.min()), float(fixed_gray.max())
    scale = 1.0 / max(high - low, 1e-12)
    with np.errstate(over='ignore', invalid='ignore'):
        fixed_gray = np.clip((fixed_gray - low) * scale, -0.5, 1.5)
        moving_gray = np.clip((moving_gray - low) * scale, -0.5, 1.5)
    ones = np.ones(moving_grid.shape, np.float32)
    figures = {}
    identity = np.eye(fixed_grid.ndim + 1)
    for name, matrix in (('before', identity), ('after', moving_from_fixed)):
        moved = resample(moving_gray, matrix, fixed_grid, moving_grid)
        valid = resample(ones, matrix, fixed_grid, moving_grid) > 0.999
        figures[name] = _figures(fixed_gray, moved, valid)
    return figures
