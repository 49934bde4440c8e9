"""Least-squares fits of each model to point correspondences (numpy).

Used to polish a RANSAC hypothesis on its inliers and to fit the requested
model at the end. Points are ``(n, 2)`` arrays in one coordinate order;
every function returns the ``(3, 3)`` matrix ``dst_from_src``.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from ..transforms import homogeneous

__all__ = ['FITS', 'fit']


def _translation(src: NDArray, dst: NDArray) -> NDArray:
    return homogeneous(np.eye(2), (dst - src).mean(axis=0))


def _procrustes(src: NDArray, dst: NDArray, with_scale: bool) -> NDArray:
    """Rotation (and scale) plus translation; Umeyama's closed form."""
    mu_s, mu_d = src.mean(axis=0), dst.mean(axis=0)
    a, b = src - mu_s, dst - mu_d
    u, sigma, vt = np.linalg.svd(b.T @ a / len(src))
    sign = np.diag([1.0, np.sign(np.linalg.det(u @ vt)) or 1.0])
    rotation = u @ sign @ vt
    scale = 1.0
    if with_scale:
        variance = (a**2).sum() / len(src)
        scale = float((sigma * np.diag(sign)).sum() / max(variance, 1e-300))
    linear = scale * rotation
    return homogeneous(linear, mu_d - linear @ mu_s)


def _rigid(src: NDArray, dst: NDArray) -> NDArray:
    return _procrustes(src, dst, with_scale=False)


def _similarity(src: NDArray, dst: NDArray) -> NDArray:
    return _procrustes(src, dst, with_scale=True)


def _affine(src: NDArray, dst: NDArray) -> NDArray:
    design = np.hstack([src, np.ones((len(src), 1))])
    solution, *_ = np.linalg.lstsq(design, dst, rcond=None)
    matrix = np.eye(3)
    matrix[:2] = solution.T
    return matrix


def _normaliser(points: NDArray) -> NDArray:
    """Hartley's conditioning: centroid to 0, mean distance sqrt(2)."""
    centre = points.mean(axis=0)
    spread = np.sqrt(((points - centre) ** 2).sum(axis=1)).mean()
    scale = np.sqrt(2) / max(spread, 1e-12)
    return homogeneous(scale * np.eye(2), -scale * centre)


def _homography(src: NDArray, dst: NDArray) -> NDArray:
    """Normalised direct linear transform."""
    t_src, t_dst = _normaliser(src), _normaliser(dst)
    p = src @ t_src[:2, :2].T + t_src[:2, 2]
    q = dst @ t_dst[:2, :2].T + t_dst[:2, 2]
    n = len(p)
    rows = np.zeros((2 * n, 9))
    ones = np.ones(n)
    rows[0::2, 0:2], rows[0::2, 2] = p, ones
    rows[0::2, 6:8], rows[0::2, 8] = -q[:, :1] * p, -q[:, 0]
    rows[1::2, 3:5], rows[1::2, 5] = p, ones
    rows[1::2, 6:8], rows[1::2, 8] = -q[:, 1:] * p, -q[:, 1]
    _, _, vt = np.linalg.svd(rows)
    matrix = np.linalg.inv(t_dst) @ vt[-1].reshape(3, 3) @ t_src
    return matrix / matrix[2, 2]


#: Least-squares fit per model name.
FITS = {
    'translation': _translation,
    'rigid': _rigid,
    'similarity': _similarity,
    'affine': _affine,
    'homography': _homography,
}

#: Fewest correspondences each fit needs.
MIN_POINTS = {
    'translation': 1,
    'rigid': 2,
    'similarity': 2,
    'affine': 3,
    'homography': 4,
}


def fit(model: str, src: NDArray, dst: NDArray) -> NDArray[np.float64]:
    """Least-squares ``dst_from_src`` of ``model`` through the correspondences."""
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    if len(src) < MIN_POINTS[model]:
        raise ValueError(
            f'a {model} fit needs {MIN_POINTS[model]} correspondences, got {len(src)}'
        )
    return FITS[model](src, dst)


def residuals(matrix: NDArray, src: NDArray, dst: NDArray) -> NDArray[np.float64]:
    """Distances between ``dst`` and ``src`` mapped by ``matrix``."""
    mapped = src @ matrix[:2, :2].T + matrix[:2, 2]
    depth = src @ matrix[2, :2] + matrix[2, 2]
    with np.errstate(divide='ignore', invalid='ignore'):
        error = np.linalg.norm(mapped / depth[:, None] - dst, axis=1)
    return np.where(np.isfinite(error), error, np.inf)
