"""Fourier-Mellin: rotation and scale by log-polar phase correlation (2D).

The magnitude of an image's Fourier transform ignores translation and turns
with the image; a scale shrinks it by the same factor. In log-polar
coordinates both become shifts, which phase correlation finds; the
translation then follows by ordinary phase correlation. Both steps work on
the gradient magnitude, which images of different modalities share more
than their intensities and which carries the information of texture-poor
images (Reddy and Chatterji, IEEE TIP 5(8), 1996).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from ..transforms import homogeneous
from .phase import edges, translations
from .views import View

__all__ = ['correlation_peaks', 'fourier_mellin']

#: Angular samples of the log-polar spectra over 180 degrees (the magnitude
#: spectrum is point-symmetric, so 180 degrees hold all of it).
ANGLES = 360
#: Largest scale change searched, either way.
MAX_SCALE = 4.0


def _padded(image: NDArray, size: int) -> NDArray[np.float64]:
    """``image`` centred in a ``size`` x ``size`` square, Hann-windowed."""
    out = np.zeros((size, size))
    rows, cols = (min(n, size) for n in image.shape)
    r0, c0 = (image.shape[0] - rows) // 2, (image.shape[1] - cols) // 2
    window = np.outer(np.hanning(rows), np.hanning(cols))
    patch = image[r0 : r0 + rows, c0 : c0 + cols]
    patch = (patch - patch.mean()) * window
    out[(size - rows) // 2 :][:rows, (size - cols) // 2 :][:, :cols] = patch
    return out


def _log_polar_spectrum(image: NDArray, size: int) -> tuple[NDArray, float]:
    """High-passed magnitude spectrum in log-polar coordinates.

    Returns the ``(ANGLES, radii)`` array and the number of radial samples
    per unit of log-radius.
    """
    from scipy import ndimage

    spectrum = np.abs(np.fft.fftshift(np.fft.fft2(_padded(image, size))))
    freq = np.fft.fftshift(np.fft.fftfreq(size))
    f_row, f_col = np.meshgrid(freq, freq, indexing='ij')
    highpass = 1 - np.cos(np.pi * f_row) * np.cos(np.pi * f_col)
    spectrum *= highpass * (2 - highpass)
    radius = size / 2
    n_radii = size // 2
    per_log = n_radii / np.log(radius)
    theta = np.linspace(0, np.pi, ANGLES, endpoint=False)
    rho = np.exp(np.arange(n_radii) / per_log)
    centre = size // 2
    rows = centre + rho[None, :] * np.sin(theta)[:, None]
    cols = centre + rho[None, :] * np.cos(theta)[:, None]
    polar = ndimage.map_coordinates(spectrum, [rows, cols], order=1)
    return np.log1p(polar), per_log


def correlation_peaks(
    reference: NDArray, moving: NDArray, n_peaks: int, wrap_rows: bool = True
) -> list[tuple[NDArray[np.float64], float]]:
    """The ``n_peaks`` highest peaks of the phase correlation surface.

    Returns ``(shift, height)`` pairs; ``moving`` shifted by ``shift``
    matches ``reference`` (scikit-image's convention). Shifts are refined
    to a fraction of a sample by a parabola through each peak.
    """
    cross = np.fft.fft2(reference) * np.conj(np.fft.fft2(moving))
    surface = np.real(np.fft.ifft2(cross / np.maximum(np.abs(cross), 1e-12)))
    flat = surface.ravel()
    peaks: list[tuple[NDArray[np.float64], float]] = []
    order = np.argsort(flat)[::-1]
    shape = np.array(surface.shape)
    for index in order[: 50 * n_peaks]:
        pos = np.array(np.unravel_index(index, surface.shape))
        if any(np.all(np.abs(pos - p[1]) <= 2) for p in peaks):
            continue
        shift = pos.astype(np.float64)
        for axis in range(2):
            step = np.eye(2, dtype=int)[axis]
            lo = surface[tuple((pos - step) % shape)]
            hi = surface[tuple((pos + step) % shape)]
            mid = surface[tuple(pos)]
            denom = lo - 2 * mid + hi
            if denom < 0:
                shift[axis] += 0.5 * (lo - hi) / denom
        shift = np.where(shift > shape / 2, shift - shape, shift)
        peaks.append((float(flat[index]), pos, shift))
        if len(peaks) == n_peaks:
            break
    return [(p[2], p[0]) for p in peaks]


def fourier_mellin(
    fixed: View,
    moving: View,
    n_peaks: int = 2,
    with_scale: bool = True,
    masked: bool = False,
) -> list[tuple[NDArray[np.float64], dict]]:
    """Rotation, scale and translation candidates between two 2D views.

    Parameters
    ----------
    fixed, moving : View
        Views with one common pixel size (see :func:`.views.view_pair`).
    n_peaks : int
        Log-polar correlation peaks kept; each gives two candidates (the
        magnitude spectrum cannot tell an angle from the angle + 180 degrees).
    with_scale : bool
        Keep the scale found (else 1, for rigid models).
    masked : bool
        Also try the masked-correlation translation (see
        :func:`.phase.translations`; for images of different modalities).

    Returns
    -------
    list of (ndarray, dict)
        ``moving_px_from_fixed_px`` matrices and their angle (degrees),
        scale and peak height.
    """
    grad_f, grad_m = edges(fixed.image), edges(moving.image)
    size = int(2 ** np.ceil(np.log2(max(*grad_f.shape, *grad_m.shape))))
    polar_f, per_log = _log_polar_spectrum(grad_f, size)
    polar_m, _ = _log_polar_spectrum(grad_m, size)
    found = []
    for shift, height in correlation_peaks(polar_f, polar_m, n_peaks):
        # moving's log-polar spectrum, shifted by `shift`, matches fixed's;
        # a moving image larger by s has a spectrum smaller by s
        angle = -shift[0] * 180.0 / ANGLES
        scale = float(np.exp(shift[1] / per_log)) if with_scale else 1.0
        if not 1 / MAX_SCALE <= scale <= MAX_SCALE:
            continue
        for turn in (0.0, 180.0):
            a = np.deg2rad(angle + turn)
            # (row, col) axes: a turn by +a in the (col, row) = (x, y) plane
            linear = scale * np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]])
            start = homogeneous(linear, moving.center - linear @ fixed.center)
            info = {
                'angle_deg': round(float((angle + turn + 180) % 360 - 180), 3),
                'scale': round(scale, 5),
                'peak': round(float(height), 4),
            }
            shifts = translations(fixed, moving, start, use_edges=True)
            for matrix in shifts if masked else shifts[:1]:
                found.append((matrix, info))
    return found
