"""Structure-based window matching for scenes of different sensors.

Intensities of an optical and a radar scene (or of two bands) are not
related by any monotone map, but their edges lie in the same places. Each
window becomes a field of gradient orientations, ``(gx + i gy)^2 / (|g|^2 +
eps^2)``: unit length on edges, near 0 in flat areas, and with the angle
doubled so that a contrast reversal (dark-bright becoming bright-dark) maps
to the same value. The shift is the peak of the cross-correlation of the two
fields (normalised gradient fields, correlated over all shifts by FFT).

Conventions: as :mod:`napari_coreg.geo.shifts` (target -> reference).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

__all__ = ['orientation_field', 'orientation_shift', 'orientation_similarity']

#: Gaussian smoothing (pixels) before the gradients.
SIGMA = 1.0
#: ``eps`` as a fraction of the window's median gradient magnitude.
EPS_FRACTION = 0.5


def orientation_field(window: NDArray) -> NDArray[np.complex64]:
    """Doubled-angle gradient orientations of a window (complex, |z| <= 1)."""
    from scipy import ndimage

    smooth = ndimage.gaussian_filter(np.asarray(window, np.float32), SIGMA)
    gy, gx = np.gradient(smooth)
    z = gx + 1j * gy
    power = np.abs(z) ** 2
    eps = EPS_FRACTION * float(np.median(np.sqrt(power))) + 1e-12
    return (z**2 / (power + eps**2)).astype(np.complex64)


def orientation_shift(
    reference: NDArray, target: NDArray, *, upsample: int = 100
) -> tuple[NDArray[np.float64], float]:
    """Shift (target -> reference) and peak clarity by orientation correlation.

    Returns ``(shift, peak)``; ``peak`` is the correlation maximum in
    standard deviations of the correlation surface.
    """
    from skimage.registration import phase_cross_correlation

    rows, cols = reference.shape
    taper = np.outer(np.hanning(rows), np.hanning(cols)).astype(np.float32)
    ref = orientation_field(reference) * taper
    tgt = orientation_field(target) * taper
    shift, _, _ = phase_cross_correlation(
        ref, tgt, upsample_factor=upsample, normalization=None
    )
    surface = np.abs(np.fft.ifft2(np.fft.fft2(ref) * np.conj(np.fft.fft2(tgt))))
    peak = (surface.max() - surface.mean()) / max(float(surface.std()), 1e-12)
    return np.asarray(shift, np.float64), float(peak)


def orientation_similarity(
    reference: NDArray, target: NDArray, shift: NDArray | None = None
) -> float:
    """Normalised correlation of the orientation fields (target moved by ``shift``)."""
    from scipy import ndimage

    ref = orientation_field(reference)
    tgt = orientation_field(target)
    if shift is not None:
        tgt = ndimage.shift(tgt.real, shift, order=1) + 1j * ndimage.shift(
            tgt.imag, shift, order=1
        )
        margin = int(np.ceil(np.abs(shift).max())) + 1
        if 4 * margin >= min(ref.shape):
            return -1.0
        inner = (slice(margin, -margin), slice(margin, -margin))
        ref, tgt = ref[inner], tgt[inner]
    num = float(np.real(np.vdot(tgt, ref)))
    den = float(np.sqrt(np.vdot(ref, ref).real * np.vdot(tgt, tgt).real))
    return num / den if den > 0 else 0.0
