"""How a benchmark scores an estimate: the corner error, a failure is infinite."""

from __future__ import annotations

import numpy as np

from napari_coreg.transforms import corner_error


def error_px(estimate, truth, shape) -> float:
    """Mean distance (px) of corners and centre mapped by ``estimate`` and ``truth``.

    ``inf`` when ``estimate`` is None (the method raised) or not finite.
    """
    if estimate is None or not np.all(np.isfinite(estimate)):
        return float('inf')
    error = corner_error(estimate, truth, tuple(shape[:2]))
    return error if np.isfinite(error) else float('inf')


def gray(image: np.ndarray) -> np.ndarray:
    """An RGB image in [0, 1] as float32 luma (ITU-R 601 weights)."""
    return (image @ np.array([0.299, 0.587, 0.114], np.float32)).astype(np.float32)
