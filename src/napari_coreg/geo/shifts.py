"""Sub-pixel shift of one window pair: phase correlation, refined by the engine.

Conventions: both windows lie on the same pixel grid; a shift ``(d_row,
d_col)`` says that a feature at pixel ``p`` of the target window lies at
``p + shift`` in the reference window (``reference(p) ~ target(p - shift)``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

__all__ = [
    'WindowShift',
    'measure_windows',
    'phase_shift',
    'refine_shift',
    'window_ncc',
]

#: Window similarities: pixel values, or gradient orientations.
SIMILARITIES = ('intensity', 'gradient')
#: Most disagreement (pixels) between the phase-correlation and the engine
#: estimate before a window is judged unreliable.
MAX_DISAGREEMENT = 0.5
#: Phase-correlation peak (in standard deviations of the surface) of noise,
#: and above which a match counts as fully clear.
NOISE_PEAK = 6.0
CLEAR_PEAK = 30.0


@dataclass(frozen=True)
class WindowShift:
    """The shift measured in one window.

    Attributes
    ----------
    shift : ndarray, shape (2,)
        ``(d_row, d_col)`` target -> reference, in pixels.
    phase : ndarray, shape (2,)
        The phase-correlation estimate alone.
    ncc : float
        Normalised cross-correlation of the windows after the shift.
    ncc_before : float
        The same before (georeferencing only).
    peak : float
        Phase-correlation peak in standard deviations of the correlation
        surface (about 4-5 for noise, tens for a clear match).
    reliability : float
        A score in [0, 1]: the peak clarity (``peak`` from ``NOISE_PEAK`` to
        ``CLEAR_PEAK`` mapped onto 0-1) times the agreement of the phase and
        engine estimates (1 when they agree, 0 at ``MAX_DISAGREEMENT``).
    """

    shift: NDArray[np.float64]
    phase: NDArray[np.float64]
    ncc: float
    ncc_before: float
    peak: float
    reliability: float


def _normalise(window: NDArray) -> NDArray[np.float32]:
    window = np.asarray(window, dtype=np.float32)
    return (window - window.mean()) / max(float(window.std()), 1e-6)


def phase_shift(
    reference: NDArray, target: NDArray, *, upsample: int = 100
) -> tuple[NDArray[np.float64], NDArray[np.float64], float]:
    """Correlation shifts (target -> reference) of two windows, and peak clarity.

    Both windows are zero-mean and Hann-tapered. Returns ``(phase, cross,
    peak)``: the phase-correlation shift (whitened spectrum: a sharp peak,
    robust to contrast, but pulled towards zero by what the windows share,
    such as the taper), the plain cross-correlation shift (the NCC optimum
    of the tapered windows, precise where the two agree), both to
    ``1 / upsample`` pixel, and the phase-correlation peak in standard
    deviations of its surface (about 4-6 for noise, tens for a clear match).
    """
    from skimage.registration import phase_cross_correlation

    rows, cols = reference.shape
    taper = np.outer(np.hanning(rows), np.hanning(cols)).astype(np.float32)
    ref = (reference - reference.mean()) * taper
    tgt = (target - target.mean()) * taper
    phase, _, _ = phase_cross_correlation(
        ref, tgt, upsample_factor=upsample, normalization='phase'
    )
    cross, _, _ = phase_cross_correlation(
        ref, tgt, upsample_factor=upsample, normalization=None
    )
    spectrum = np.fft.fft2(ref) * np.conj(np.fft.fft2(tgt))
    surface = np.real(np.fft.ifft2(spectrum / np.maximum(np.abs(spectrum), 1e-12)))
    significance = (surface.max() - surface.mean()) / max(float(surface.std()), 1e-12)
    return (
        np.asarray(phase, dtype=np.float64),
        np.asarray(cross, dtype=np.float64),
        float(significance),
    )


def _ncc(a: NDArray, b: NDArray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    denom = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / denom) if denom > 0 else 0.0


def refine_shift(
    reference: NDArray,
    target: NDArray,
    start: NDArray,
    *,
    metric: str = 'ncc',
) -> NDArray[np.float64]:
    """Refine a window shift with the registration engine.

    A translation registration (``metric``, one full-resolution level) of
    the target window onto the reference window, from ``start``
    (target -> reference shift, e.g. from phase correlation).
    """
    from ..api import register

    initial = np.eye(3)
    initial[:2, 2] = -np.asarray(start, dtype=np.float64)
    res = register(
        reference,
        target,
        model='translation',
        metric=metric,
        initial=initial,
        levels=1,
        iterations=20,
    )
    return np.asarray(res.fixed_from_moving[:2, 2], dtype=np.float64)


def window_ncc(reference: NDArray, target: NDArray, shift: NDArray) -> float:
    """NCC of two windows after moving the target by ``shift`` (inner part)."""
    from scipy import ndimage

    moved = ndimage.shift(
        np.asarray(target, np.float32), shift, order=1, mode='nearest'
    )
    margin = int(np.ceil(np.abs(shift).max())) + 1
    if 4 * margin >= min(np.shape(target)):
        return -1.0  # the shift leaves too little of the window
    inner = (slice(margin, -margin), slice(margin, -margin))
    return _ncc(np.asarray(reference, np.float32)[inner], moved[inner])


def measure_windows(
    references: NDArray,
    targets: NDArray,
    *,
    refine: bool = True,
    metric: str = 'ncc',
    upsample: int = 100,
    progress: Callable[[int, int], None] | None = None,
    similarity: str = 'intensity',
) -> list[WindowShift]:
    """Shifts between reference and target windows on the same grid.

    Parameters
    ----------
    references, targets : ndarray, shape (B, rows, cols)
        Fully valid windows of the two scenes (target already on the
        reference grid).
    refine : bool
        Refine the phase-correlation estimates with the registration engine
        (translation, ``metric``) where the phase-correlation peak is clear.
    metric : str
        Engine metric of the refinement (``'ncc'`` or ``'mi'``).
    upsample : int
        Phase-correlation upsampling (precision 1 / upsample pixel).
    progress : callable, optional
        Called as ``progress(done, total)`` after each window.
    similarity : {'intensity', 'gradient'}
        ``'intensity'``: phase and cross-correlation of the pixel values
        (same sensor); ``'gradient'``: correlation of gradient orientations
        (:mod:`napari_coreg.geo.orientation`; different sensors, e.g. radar
        onto optical), where ``ncc`` reports the orientation similarity.

    Returns
    -------
    list of WindowShift
    """
    if similarity not in SIMILARITIES:
        raise ValueError(
            f'unknown similarity {similarity!r}: choose one of {SIMILARITIES}'
        )
    gradient = similarity == 'gradient'
    if gradient:
        from .orientation import orientation_shift, orientation_similarity
    references = np.asarray(references, dtype=np.float32)
    targets = np.asarray(targets, dtype=np.float32)
    if len(references) == 0:
        return []
    phases, starts, peaks = [], [], []
    total = len(references) * (2 if refine else 1)
    for done, (ref, tgt) in enumerate(zip(references, targets, strict=True)):
        if progress is not None:
            progress(done, total)
        if gradient:
            phase, peak = orientation_shift(ref, tgt, upsample=upsample)
            cross = phase
        else:
            phase, cross, peak = phase_shift(
                _normalise(ref), _normalise(tgt), upsample=upsample
            )
        phases.append(phase)
        # the cross-correlation optimum where it confirms the phase peak
        close = np.abs(cross - phase).max() <= MAX_DISAGREEMENT
        starts.append(cross if close else phase)
        peaks.append(peak)
    phases = np.asarray(phases)
    shifts = np.asarray(starts)
    if refine:
        refined = []
        for i, (ref, tgt, start, peak) in enumerate(
            zip(references, targets, shifts, peaks, strict=True)
        ):
            if progress is not None:
                progress(len(references) + i, total)
            clear = peak >= 2 * NOISE_PEAK
            refined.append(
                refine_shift(ref, tgt, start, metric=metric) if clear else start
            )
        shifts = np.asarray(refined)
    if progress is not None:
        progress(total, total)
    out = []
    for ref, tgt, shift, phase, peak in zip(
        references, targets, shifts, phases, peaks, strict=True
    ):
        if gradient:
            ncc_after = orientation_similarity(ref, tgt, shift)
            ncc_before = orientation_similarity(ref, tgt)
        else:
            ncc_after = window_ncc(ref, tgt, shift)
            ncc_before = _ncc(ref, tgt)
        agreement = max(
            0.0, 1.0 - float(np.abs(shift - phase).max()) / MAX_DISAGREEMENT
        )
        clarity = np.clip((peak - NOISE_PEAK) / (CLEAR_PEAK - NOISE_PEAK), 0.0, 1.0)
        reliability = float(clarity) * agreement
        out.append(
            WindowShift(
                shift=np.asarray(shift, np.float64),
                phase=phase,
                ncc=ncc_after,
                ncc_before=ncc_before,
                peak=peak,
                reliability=float(reliability),
            )
        )
    return out
