"""From evidence to a verdict: 'ok', 'suspect' or 'failed', with reasons.

Each rule looks at one piece of :class:`~.evidence.Evidence` and, when it
fires, says what it saw and what to do, at one of two levels: ``'failed'``
(the result should not be used) or ``'suspect'`` (check it before use).
The verdict is the worst level that fired. Thresholds were set on the
labelled runs of ``benchmarks/bench_verdict.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..options import METRIC_SPECS, Metric
from .evidence import Evidence

__all__ = ['Assessment', 'VERDICTS', 'judge']

VERDICTS = ('ok', 'suspect', 'failed')

#: Mutual information (MI does not assume an intensity relation, so it also
#: catches a wrong metric) at the result, in robust null spreads above chance:
#: below MI_FAILED_Z the result is no better than a random placement, below
#: MI_SUSPECT_Z barely.
MI_FAILED_Z = 4.0
MI_SUSPECT_Z = 5.0
#: The share of the way from chance to a perfect match (the fixed image's own
#: information) that MI covers at the result: below these the images agree
#: only weakly. Successes in the benchmark reach 0.4 or more, failures that
#: still beat chance (flipped inputs, a wrong metric) 0.3 or less.
FAILED_FRACTION = 0.15
SUSPECT_FRACTION = 0.3
#: A mirrored result matching better by this many MI null spreads.
MIRROR_Z = 3.0
#: Overlap fraction below which the result fails / is suspect.
FAILED_OVERLAP = 0.1
SUSPECT_OVERLAP = 0.3
#: Fewer working pixels than this in the overlap cannot support a verdict.
MIN_PIXELS = 256
#: Re-registering the result moves its corners by more than this (px) ...
SUSPECT_STEP_PX = 1.0
FAILED_STEP_PX = 5.0
#: ... or by more than this many pixels of the working copy (the step is
#: resolved to about a quarter of a working pixel on large images).
STEP_RESOLUTION = 0.25
#: A 95% uncertainty above this (px) means the optimum is poorly defined.
SUSPECT_UNCERTAINTY_PX = 2.0
#: Scale (singular values) outside this range, or anisotropy above the ratio.
SCALE_RANGE = (0.25, 4.0)
MAX_ANISOTROPY = 3.0
#: Largest / smallest projective weight over the corners.
MAX_PERSPECTIVE = 2.0
#: Mean landmark residual (px): suspect / failed above.
SUSPECT_LANDMARK_PX = 1.0
FAILED_LANDMARK_PX = 3.0


@dataclass(frozen=True)
class Assessment:
    """A verdict on one result.

    Attributes
    ----------
    verdict : {'ok', 'suspect', 'failed'}
    reasons : tuple of str
        Short sentences: what was seen and what to do (for ``'ok'``, a
        summary of the evidence).
    uncertainty_px : float or None
        95% bound on the corner error (moving pixels); ``None`` where the
        curvature is singular or the verdict is ``'failed'`` (the error is
        then not a local one; ``evidence.curvature.bound_px`` keeps the
        figure).
    evidence : Evidence
        The figures behind it.
    """

    verdict: str
    reasons: tuple[str, ...]
    uncertainty_px: float | None
    evidence: Evidence


def _better(metric: str, after: float, before: float) -> bool:
    """``after`` is at least as good as ``before`` (natural forms, 1e-6 slack)."""
    if not (np.isfinite(after) and np.isfinite(before)):
        return True
    spec = METRIC_SPECS[Metric.parse(metric, 'metric')]
    slack = 1e-6 if spec.higher_is_better else -1e-6
    return spec.improved(before, after + slack)


def _rules(e: Evidence) -> list[tuple[str, str]]:
    """(level, reason) for every rule that fires."""
    fired: list[tuple[str, str]] = []

    def add(level: str, reason: str) -> None:
        fired.append((level, reason))

    if e.overlap_pixels < MIN_PIXELS:
        add(
            'failed',
            f'Only {e.overlap_pixels} pixels overlap (at the working '
            'resolution): too little image to register or to judge; use larger '
            'images or a better starting position.',
        )
    elif e.overlap < FAILED_OVERLAP:
        add(
            'failed',
            f'The images overlap by only {e.overlap:.0%}: give a starting '
            'position (initial=) or check which images are paired.',
        )
    elif e.overlap < SUSPECT_OVERLAP:
        add(
            'suspect',
            f'The images overlap by only {e.overlap:.0%}: check the overlay.',
        )
    if e.determinant < 0 and not e.reflection_allowed:
        add(
            'failed',
            'The transform mirrors the image: a registration cannot undo a '
            "flip; flip the moving image (or fix the layer's direction) first.",
        )
    low, high = e.stretch
    if low < SCALE_RANGE[0] or high > SCALE_RANGE[1] or high > MAX_ANISOTROPY * low:
        add(
            'suspect',
            f'Extreme scale or shear (stretch {low:.2f} to {high:.2f}): check '
            'the pixel spacing, or use a model with fewer degrees of freedom.',
        )
    if e.perspective > MAX_PERSPECTIVE:
        add(
            'suspect',
            'Strong perspective (the image is folded or compressed to one '
            'side): try the affine model.',
        )
    mi_z, fraction = e.mi_z, e.mi_fraction
    if mi_z < MI_FAILED_Z:
        add(
            'failed',
            f'The match is no better than a random placement (mutual information '
            f'{mi_z:.1f} spreads above chance): the images may be unrelated, or '
            'the start was outside the capture range; give a starting position.',
        )
    elif fraction < FAILED_FRACTION:
        add(
            'failed',
            f'The images agree only weakly at the result ({fraction:.0%} of a '
            'perfect match above chance): it may be a wrong local optimum, a '
            'flipped input or the wrong metric (mi for different modalities).',
        )
    elif mi_z < MI_SUSPECT_Z or fraction < SUSPECT_FRACTION:
        add(
            'suspect',
            f'The match is weak ({fraction:.0%} of a perfect match above chance, '
            f'{mi_z:.0f} spreads above a random placement): check the overlay.',
        )
    if e.mirror_z > MIRROR_Z:
        add(
            'failed',
            'A mirrored placement matches better than the result: the moving '
            'image looks flipped or upside down; flip it (or fix the layer '
            'direction) and register again.',
        )
    if not _better(e.metric, e.metric_after, e.metric_before):
        add(
            'failed',
            f'The {e.metric} is worse than before registration '
            f'({e.metric_before:.4g} -> {e.metric_after:.4g}): keep the images '
            'as they were or give a starting position.',
        )
    step = e.curvature.step_px
    if step > max(SUSPECT_STEP_PX, STEP_RESOLUTION * e.working_factor):
        add(
            'failed' if step > FAILED_STEP_PX else 'suspect',
            f'Registering the result again would move it by {step:.1f} px: '
            'the optimiser had not settled; run more iterations or levels.',
        )
    bound = e.curvature.bound_px
    if bound is None:
        add(
            'failed',
            'The metric is flat around the result: there is no structure to '
            'register on (constant or empty overlap).',
        )
    elif bound > SUSPECT_UNCERTAINTY_PX:
        add(
            'suspect',
            f'The position is uncertain to {bound:.1f} px (95%): the images '
            'have little structure in common; check the overlay.',
        )
    if e.stop_reason == 'max_iterations' and step > SUSPECT_STEP_PX / 4:
        add(
            'suspect',
            'The finest level stopped at its iteration cap while still moving: '
            'raise iterations.',
        )
    if e.landmark_px is not None and e.landmark_px > SUSPECT_LANDMARK_PX:
        add(
            'failed' if e.landmark_px > FAILED_LANDMARK_PX else 'suspect',
            f'Landmarks are {e.landmark_px:.1f} px apart after registration: '
            'check the landmarks, or use them as a starting position.',
        )
    return fired


def _summary(e: Evidence) -> str:
    bound = e.curvature.bound_px
    text = (
        f'Match {e.mi_z:.0f} spreads above chance, overlap '
        f'{e.overlap:.0%}, uncertainty {bound:.2f} px (95%)'
    )
    if e.landmark_px is not None:
        text += f', landmarks {e.landmark_px:.2f} px apart'
    return text + '.'


def judge(evidence: Evidence) -> Assessment:
    """The verdict the evidence supports."""
    fired = _rules(evidence)
    levels = {level for level, _ in fired}
    verdict = 'failed' if 'failed' in levels else 'suspect' if levels else 'ok'
    reasons = tuple(reason for level, reason in fired if level == 'failed') + tuple(
        reason for level, reason in fired if level == 'suspect'
    )
    if verdict == 'ok':
        reasons = (_summary(evidence),)
    # the curvature bounds the error around a local optimum; for a failed
    # result the error is not local, so no bound is given
    bound = None if verdict == 'failed' else evidence.curvature.bound_px
    return Assessment(verdict, reasons, bound, evidence)
