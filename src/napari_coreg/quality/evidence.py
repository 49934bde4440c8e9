"""Evidence for a verdict, gathered from a finished registration.

Everything is measured on block-averaged working copies (see
:mod:`.working`), so it costs a few tens of milliseconds whatever the size:

- the metric at the result against a null distribution: the same metric
  with the result shifted by 10-30% of the image in random directions
  (what "aligned by chance" looks like for these images), for the run's
  metric and for mutual information (which does not assume an intensity
  relation, and so catches a wrong metric);
- the overlap fraction;
- the curvature of the metric (uncertainty) and a Gauss-Newton
  re-registration of the result onto the same images (:mod:`.curvature`);
- parameter sanity (reflection, extreme scale or shear, strong
  perspective);
- convergence of the finest level;
- landmark residuals, where given.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..transforms import Grid, apply_matrix, grid_points
from ..warp import pixel_matrix
from .curvature import Curvature, curvature
from .similarity import score
from .working import WorkingPair, working_pair

__all__ = ['Evidence', 'gather']

#: Random placements in the null distribution.
NULL_SAMPLES = 16
#: Their shift per axis, as a fraction of the image (random sign); the
#: spread of the null is robust (median absolute deviation), because a few
#: placements may land on similar structure.
NULL_SHIFT = (0.1, 0.3)


@dataclass(frozen=True)
class Evidence:
    """What the verdict is decided on (all figures on the working copies).

    Attributes
    ----------
    metric : str
        The registration metric.
    metric_before, metric_after : float
        The engine's figures, natural form.
    score_after, null_median, null_spread : float
        Metric at the result (higher is better) and the median and standard
        deviation of the same metric at random placements.
    mi_after, mi_null_median, mi_null_spread : float
        The same for mutual information.
    mi_self : float
        Mutual information of the fixed image with itself over the overlap
        (its entropy): what a perfect match would reach.
    mi_mirrored : float
        Best mutual information of the result composed with a mirror (each
        axis, and all axes at once) through the fixed image's centre.
    overlap : float
        Fraction of the fixed image that the moving image covers.
    overlap_pixels : int
        Working pixels in the overlap.
    curvature : Curvature
        Uncertainty and re-registration step.
    determinant : float
        Determinant of the linear part (physical); negative = a reflection.
    stretch : tuple of float
        Largest and smallest singular value of the linear part (physical).
    perspective : float
        Ratio of the largest to smallest projective weight over the corners
        (1 for an affine transform).
    stop_reason : str
        Why the finest level stopped.
    landmark_px : float or None
        Mean landmark residual in moving pixels, or ``None``.
    working_factor : int
        Moving pixels per pixel of the working copy.
    reflection_allowed : bool
        The registration was allowed to mirror (``allow_reflection``).
    """

    metric: str
    metric_before: float
    metric_after: float
    score_after: float
    null_median: float
    null_spread: float
    mi_after: float
    mi_null_median: float
    mi_null_spread: float
    mi_self: float
    mi_mirrored: float
    overlap: float
    overlap_pixels: int
    curvature: Curvature
    determinant: float
    stretch: tuple[float, float]
    perspective: float
    stop_reason: str
    landmark_px: float | None
    working_factor: int = 1
    reflection_allowed: bool = False

    @property
    def z(self) -> float:
        """How far the metric at the result is above chance, in null spreads."""
        return _z(self.score_after, self.null_median, self.null_spread)

    @property
    def mi_z(self) -> float:
        """The same for mutual information."""
        return _z(self.mi_after, self.mi_null_median, self.mi_null_spread)

    @property
    def mi_fraction(self) -> float:
        """Share of the way from chance (0) to a perfect match (1), in MI."""
        gain = self.mi_self - self.mi_null_median
        if not (np.isfinite(gain) and np.isfinite(self.mi_after)) or gain <= 0:
            return 0.0
        return float((self.mi_after - self.mi_null_median) / gain)

    @property
    def mirror_z(self) -> float:
        """How much better a mirrored result matches, in MI null spreads."""
        return _z(self.mi_mirrored, self.mi_after, self.mi_null_spread)


def _z(value: float, median: float, spread: float) -> float:
    if not np.isfinite(value):
        return float('-inf')
    if not np.isfinite(median):
        return float('inf')
    return float((value - median) / max(spread, 1e-3 * max(abs(median), 1e-6)))


def _shifted(warped: NDArray, offset: NDArray) -> NDArray[np.float32]:
    """``warped`` moved by whole pixels: ``out[p] = warped[p + offset]``.

    ``warped(p) = moving(M p)``, so this is the moving image placed by
    ``M @ translation(offset)``, without resampling; NaN where nothing lands.
    """
    out = np.full(warped.shape, np.nan, np.float32)
    dst, src = [], []
    for n, d in zip(warped.shape, offset, strict=True):
        d = int(d)
        dst.append(slice(max(0, -d), min(n, n - d)))
        src.append(slice(max(0, d), min(n, n + d)))
    out[tuple(dst)] = warped[tuple(src)]
    return out


def _null(
    pair: WorkingPair, warped: NDArray, metrics: tuple[str, ...]
) -> NDArray[np.float64]:
    """Metric values at random placements: (NULL_SAMPLES, len(metrics)).

    The result shifted by whole working pixels (10-30% of the image per
    axis, random signs); the fixed mask stays where it is.
    """
    rng = np.random.default_rng(0)
    ndim = pair.ndim
    shape = np.asarray(pair.fixed.shape, np.float64)
    out = np.full((NULL_SAMPLES, len(metrics)), np.nan)
    for i in range(NULL_SAMPLES):
        sign = rng.choice((-1.0, 1.0), ndim)
        offset = np.round(sign * rng.uniform(*NULL_SHIFT, ndim) * shape)
        moved = _shifted(warped, offset)
        if pair.fixed_mask is not None:
            moved[~pair.fixed_mask] = np.nan
        out[i] = [score(m, pair.fixed, moved) for m in metrics]
    return out


def _robust(values: NDArray) -> tuple[float, float]:
    """Median and robust spread (1.4826 x median absolute deviation)."""
    values = values[np.isfinite(values)]
    if values.size < 3:
        return float('nan'), float('nan')
    median = float(np.median(values))
    return median, 1.4826 * float(np.median(np.abs(values - median)))


def _mirrors(pair: WorkingPair, warped: NDArray) -> float:
    """Best mutual information of the result composed with a mirror.

    Mirrors about each axis through the fixed image's centre, and the point
    reflection (a 180 degree rotation in 2D): a flipped or upside-down input
    that the model cannot undo matches better through one of them. A mirror
    through the centre maps the pixel grid onto itself, so the result
    composed with it is ``warped`` flipped.
    """
    ndim = pair.ndim
    flips = [(k,) for k in range(ndim)] + [tuple(range(ndim))]
    best = float('-inf')
    for axes in flips:
        moved = np.flip(warped, axes).copy()
        if pair.fixed_mask is not None:
            moved[~pair.fixed_mask] = np.nan
        best = max(best, score('mi', pair.fixed, moved))
    return best


def _linear_sanity(
    moving_from_fixed: NDArray, fixed_grid: Grid, moving_grid: Grid
) -> tuple[float, tuple[float, float], float]:
    ndim = fixed_grid.ndim
    matrix = np.asarray(moving_from_fixed, np.float64)
    linear = matrix[:ndim, :ndim] / matrix[ndim, ndim]
    singular = np.linalg.svd(linear, compute_uv=False)
    px = pixel_matrix(matrix, fixed_grid, moving_grid)
    corners = grid_points(fixed_grid.shape)
    weights = np.column_stack([corners, np.ones(len(corners))]) @ px[ndim]
    if np.any(weights <= 0):
        perspective = float('inf')
    else:
        perspective = float(weights.max() / weights.min())
    return (
        float(np.linalg.det(linear)),
        (float(singular[0]), float(singular[-1])),
        perspective,
    )


def _landmarks(
    moving_from_fixed: NDArray,
    moving_grid: Grid,
    fixed_points: ArrayLike | None,
    moving_points: ArrayLike | None,
) -> float | None:
    if fixed_points is None or moving_points is None:
        return None
    fixed_points = np.atleast_2d(np.asarray(fixed_points, np.float64))
    moving_points = np.atleast_2d(np.asarray(moving_points, np.float64))
    if fixed_points.shape != moving_points.shape or not len(fixed_points):
        raise ValueError(
            f'landmarks need the same number of fixed and moving points, got '
            f'{fixed_points.shape} and {moving_points.shape}'
        )
    to_px = moving_grid.px_from_phys
    mapped = apply_matrix(to_px @ moving_from_fixed, fixed_points)
    target = apply_matrix(to_px, moving_points)
    return float(np.linalg.norm(mapped - target, axis=1).mean())


def gather(
    fixed: NDArray,
    moving: NDArray,
    moving_from_fixed: ArrayLike,
    fixed_grid: Grid,
    moving_grid: Grid,
    *,
    model: str,
    metric: str,
    metric_before: float,
    metric_after: float,
    stop_reason: str,
    fixed_points: ArrayLike | None = None,
    moving_points: ArrayLike | None = None,
    fixed_mask: NDArray | None = None,
    moving_mask: NDArray | None = None,
    reflection_allowed: bool = False,
) -> Evidence:
    """Measure the evidence for one registered pair.

    Parameters
    ----------
    fixed, moving : ndarray
        The images as given to the registration (channels last allowed).
    moving_from_fixed : array_like, shape (D + 1, D + 1)
        The result (physical units).
    fixed_grid, moving_grid : Grid
        Geometry of the images.
    model, metric : str
        What was run.
    metric_before, metric_after : float
        The engine's figures (natural form).
    stop_reason : str
        Why the finest level stopped.
    fixed_points, moving_points : array_like, shape (n, D), optional
        Paired landmarks in physical coordinates.
    fixed_mask, moving_mask : ndarray of bool, optional
        Pixels that counted in the registration (spatial shape).
    """
    matrix = np.asarray(moving_from_fixed, np.float64)
    pair = working_pair(
        fixed, moving, matrix, fixed_grid, moving_grid, fixed_mask, moving_mask
    )
    warped = pair.warped()
    metrics = (metric, 'mi')
    null = _null(pair, warped, metrics)
    median, spread = _robust(null[:, 0])
    mi_median, mi_spread = _robust(null[:, 1])
    valid = np.isfinite(warped)
    determinant, stretch, perspective = _linear_sanity(matrix, fixed_grid, moving_grid)
    return Evidence(
        metric=metric,
        metric_before=float(metric_before),
        metric_after=float(metric_after),
        score_after=score(metric, pair.fixed, warped),
        null_median=median,
        null_spread=spread,
        mi_after=score('mi', pair.fixed, warped),
        mi_null_median=mi_median,
        mi_null_spread=mi_spread,
        mi_self=score('mi', pair.fixed, np.where(valid, pair.fixed, np.nan)),
        mi_mirrored=_mirrors(pair, warped),
        overlap=float(valid.sum() / max(pair.fixed_area, 1)),
        overlap_pixels=int(valid.sum()),
        curvature=curvature(pair, model, metric),
        determinant=determinant,
        stretch=stretch,
        perspective=perspective,
        stop_reason=stop_reason,
        landmark_px=_landmarks(matrix, moving_grid, fixed_points, moving_points),
        working_factor=pair.moving_factor,
        reflection_allowed=reflection_allowed,
    )
