"""Whether to trust a georeferenced registration: evidence and a verdict.

The evidence comes from the tie-point windows, which are independent
measurements of the same mis-registration: how many windows with data found
a clear phase-correlation peak (a match), how far above the noise floor
those peaks stand, how well the matching windows agree with the fitted
model, whether the windows look more alike after the shift, and how much of
the scenes overlap. The verdict uses the project's vocabulary
(:data:`~napari_coreg.quality.VERDICTS`: ``'ok'``, ``'suspect'``,
``'failed'``) and :class:`~napari_coreg.quality.Assessment`, so the one hold
rule (:func:`~napari_coreg.quality.hold_reasons`) applies to geo results.

Measured on the Sentinel-2 pair: 89 of 97 windows with data match (92%),
median peak 92 noise spreads, spread 0.09 px, window NCC 0.54 -> 0.61.
Unrelated scenes (the target flipped, rolled, or another region) and noise
targets: 0-3 of 63-97 windows match (<= 3%), median peak 11-13, and
the few matches scatter by tens of pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ..quality.verdict import Assessment
from ..transforms import apply_matrix
from .georef import Georef
from .shifts import NOISE_PEAK
from .tiepoints import MIN_PEAK, TiePoints

__all__ = [
    'GeoEvidence',
    'assess_tie_points',
    'judge_geo',
    'model_residuals',
    'overlap_fraction',
]

#: Share of the windows with data that match: failed / suspect below.
FAILED_MATCHED = 0.1
SUSPECT_MATCHED = 0.3
#: Matching windows beyond the model's fitting minimum needed to cross-check.
CHECK_POINTS = 2
#: Robust spread (px, 1.4826 MAD, worse axis) of the matches about the model.
SUSPECT_SPREAD_PX = 0.3
FAILED_SPREAD_PX = 1.0
#: Finest spread (px) a window measures: the phase-correlation upsampling
#: resolution (1 / 100 px), so that identical shifts give no zero bound.
RESOLUTION_PX = 0.01
#: Median peak of the matches (noise spreads) below which they are weak.
SUSPECT_PEAK = 2 * MIN_PEAK
#: Median window NCC after the shift below which the scenes barely agree.
SUSPECT_NCC = 0.1
#: Overlap (share of the smaller scene) below which the result is suspect.
SUSPECT_OVERLAP = 0.1
#: Local mode: RMSE (px) of the correction at its tie points.
SUSPECT_FIT_PX = 0.5
#: Fewest matching windows a model needs (translation, rigid, ..., field).
MODEL_POINTS = {
    'translation': 1,
    'rigid': 2,
    'similarity': 2,
    'affine': 3,
    'polynomial': 6,
    'field': 4,
}


@dataclass(frozen=True)
class GeoEvidence:
    """What the tie points say about a georeferenced registration.

    Attributes
    ----------
    model : str
        The fitted correction (``'translation'`` ... ``'affine'``, or a
        local ``'polynomial'`` / ``'field'``).
    windows, measured, matched : int
        Grid windows; those with data everywhere (measured); those with a
        clear, consistent match (valid tie points).
    peak : float
        Median phase-correlation peak of the matches, in standard deviations
        of the correlation surface (noise: about 4-7).
    spread_px : float
        Robust spread (1.4826 MAD, worse axis) of the matches about the
        model; NaN with too few matches to check.
    ncc_before, ncc_after : float
        Median NCC of the matching windows before and after the shift.
    overlap : float
        Overlap area over the smaller scene's area.
    fit_px : float or None
        Local mode: RMSE of the correction at its tie points.
    """

    model: str
    windows: int
    measured: int
    matched: int
    peak: float
    spread_px: float
    ncc_before: float
    ncc_after: float
    overlap: float
    fit_px: float | None = None

    @property
    def matched_fraction(self) -> float:
        """Matches over the windows with data (0 where none had data)."""
        return self.matched / self.measured if self.measured else 0.0

    @property
    def uncertainty_px(self) -> float | None:
        """95% bound on the median shift (px), ``None`` without a cross-check."""
        if not np.isfinite(self.spread_px):
            return None
        # standard error of a median: 1.2533 sigma / sqrt(n)
        return float(1.96 * 1.2533 * self.spread_px / np.sqrt(self.matched))


def assess_tie_points(
    tie: TiePoints,
    residual_px: NDArray,
    model: str,
    overlap: float,
    fit_px: float | None = None,
) -> Assessment:
    """The verdict on a correction fitted to tie points.

    Parameters
    ----------
    tie : TiePoints
        The measured grid.
    residual_px : ndarray, shape (n_valid, 2)
        Fitted correction minus measured shift at each valid tie point.
    model : str
        The correction (a key of :data:`MODEL_POINTS`).
    overlap : float
        Overlap area over the smaller scene's area.
    fit_px : float, optional
        Local mode: RMSE of the correction at its tie points.
    """
    valid = tie.valid
    matched = int(valid.sum())
    spread = np.nan
    if matched >= MODEL_POINTS[model] + CHECK_POINTS:
        res = np.asarray(residual_px, np.float64)
        mad = np.median(np.abs(res - np.median(res, axis=0)), axis=0)
        spread = max(float(1.4826 * mad.max()), RESOLUTION_PX)

    def median(values: NDArray) -> float:
        return float(np.median(values[valid])) if matched else float('nan')

    evidence = GeoEvidence(
        model=model,
        windows=len(tie),
        measured=sum(reason != 'nodata' for reason in tie.reason),
        matched=matched,
        peak=median(tie.peak),
        spread_px=spread,
        ncc_before=median(tie.ncc_before),
        ncc_after=median(tie.ncc),
        overlap=float(overlap),
        fit_px=fit_px,
    )
    return judge_geo(evidence)


def model_residuals(
    tie: TiePoints, fixed_from_moving_px: NDArray
) -> NDArray[np.float64]:
    """Where a model puts each valid tie point's content, minus the point (px).

    The target content georeferenced at ``p - shift`` truly lies at ``p``;
    the model puts it at ``F (p - shift)``.
    """
    points = tie.points[tie.valid]
    moved = apply_matrix(fixed_from_moving_px, points - tie.shift_px[tie.valid])
    return moved - points


def overlap_fraction(overlap: Georef, *scenes: Georef) -> float:
    """Area of ``overlap`` over the area of the smallest of ``scenes``."""

    def area(geo: Georef) -> float:
        pixel = abs(np.linalg.det(geo.world_from_px[:2, :2]))
        return geo.shape[0] * geo.shape[1] * pixel

    return min(1.0, area(overlap) / min(area(geo) for geo in scenes))


def _rules(e: GeoEvidence) -> list[tuple[str, str]]:
    """(level, reason) for every rule that fires."""
    fired: list[tuple[str, str]] = []
    share = e.matched_fraction
    need = MODEL_POINTS[e.model]
    counts = f'{e.matched} of {e.measured} windows with data'
    if e.matched < need:
        fired.append((
            'failed',
            f'{counts} found a clear match ({need} needed for the {e.model} '
            'correction): the scenes may be unrelated, or clouds, changes or '
            'nodata cover the overlap; check the pair, or try a larger window.',
        ))  # fmt: skip
    elif share < FAILED_MATCHED:
        fired.append((
            'failed',
            f'Only {counts} match ({share:.0%}): the scenes may be unrelated or '
            'mostly covered by clouds; check the tie points before using it.',
        ))  # fmt: skip
    elif share < SUSPECT_MATCHED:
        fired.append((
            'suspect',
            f'Only {counts} match ({share:.0%}): check the tie points.',
        ))  # fmt: skip
    if e.matched >= need and not np.isfinite(e.spread_px):
        fired.append((
            'suspect',
            f'{counts} match: too few to cross-check the windows against '
            'each other; check the overlay (or use a smaller spacing).',
        ))  # fmt: skip
    elif e.spread_px > SUSPECT_SPREAD_PX:
        fired.append((
            'failed' if e.spread_px > FAILED_SPREAD_PX else 'suspect',
            f'The matching windows disagree with the {e.model} correction by '
            f'{e.spread_px:.2f} px (robust spread): the scenes may be distorted '
            'locally (try the local mode) or partly mismatched.',
        ))  # fmt: skip
    if e.matched and e.peak < SUSPECT_PEAK:
        fired.append((
            'suspect',
            f'The matches stand only {e.peak:.0f} noise spreads above the '
            f'correlation floor (noise gives about {NOISE_PEAK:.0f}): weak '
            'evidence; check the overlay.',
        ))  # fmt: skip
    if e.matched and e.ncc_after < SUSPECT_NCC:
        fired.append((
            'suspect',
            f'The windows barely agree after the shift (NCC {e.ncc_after:.2f}): '
            'another sensor needs the gradient similarity.',
        ))  # fmt: skip
    if e.overlap < SUSPECT_OVERLAP:
        fired.append((
            'suspect',
            f'The scenes overlap by only {e.overlap:.0%} of the smaller one: '
            'check the overlay.',
        ))  # fmt: skip
    if e.fit_px is not None and e.fit_px > SUSPECT_FIT_PX:
        fired.append((
            'suspect',
            f'The local correction misses its tie points by {e.fit_px:.2f} px '
            '(RMSE): the shifts are noisy; use a larger window or spacing.',
        ))  # fmt: skip
    return fired


def judge_geo(evidence: GeoEvidence) -> Assessment:
    """The verdict (``'ok'``, ``'suspect'``, ``'failed'``) the evidence supports."""
    fired = _rules(evidence)
    levels = {level for level, _ in fired}
    verdict = 'failed' if 'failed' in levels else 'suspect' if levels else 'ok'
    reasons = tuple(r for level, r in fired if level == 'failed') + tuple(
        r for level, r in fired if level == 'suspect'
    )
    bound = None if verdict == 'failed' else evidence.uncertainty_px
    if verdict == 'ok':
        e = evidence
        reasons = (
            f'{e.matched} of {e.measured} windows with data match '
            f'({e.matched_fraction:.0%}), peak {e.peak:.0f} noise spreads, '
            f'spread {e.spread_px:.2f} px, window NCC {e.ncc_before:.2f} -> '
            f'{e.ncc_after:.2f}, uncertainty {bound:.2f} px (95%).',
        )
    return Assessment(verdict, reasons, bound, evidence)
