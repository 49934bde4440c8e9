"""Translation by phase correlation, after any starting transform (numpy)."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from ..transforms import homogeneous
from .views import View

__all__ = ['edges', 'phase_correlated', 'translations', 'warped']


def edges(image: NDArray) -> NDArray[np.float32]:
    """Gradient magnitude: what different modalities share more than intensity."""
    image = np.asarray(image, np.float32)
    squares = [ndimage.sobel(image, axis=a) ** 2 for a in range(image.ndim)]
    return np.sqrt(np.sum(squares, axis=0)).astype(np.float32)


def warped(moving: NDArray, moving_px_from_fixed_px: NDArray, shape) -> NDArray:
    """``moving`` pulled back onto a fixed pixel grid of ``shape`` (linear, 0 outside).

    Projective matrices are handled point by point.
    """
    matrix = np.asarray(moving_px_from_fixed_px, np.float64)
    ndim = len(shape)
    if np.allclose(matrix[-1, :-1], 0):
        matrix = matrix / matrix[-1, -1]
        return ndimage.affine_transform(
            moving, matrix, output_shape=tuple(shape), order=1, cval=0.0
        )
    grid = np.indices(shape, dtype=np.float64).reshape(ndim, -1)
    mapped = matrix @ np.vstack([grid, np.ones(grid.shape[1])])
    coords = mapped[:ndim] / mapped[ndim]
    values = ndimage.map_coordinates(moving, coords, order=1, cval=0.0)
    return values.reshape(shape)


def _shifted(matrix: NDArray, shift) -> NDArray[np.float64]:
    ndim = matrix.shape[0] - 1
    return np.asarray(matrix, np.float64) @ homogeneous(
        np.eye(ndim), -np.asarray(shift)
    )


def phase_correlated(
    fixed: View,
    moving: View,
    moving_px_from_fixed_px: NDArray,
    use_edges: bool = False,
) -> NDArray[np.float64]:
    """A pixel matrix refined by the phase-correlation translation.

    ``moving_px_from_fixed_px`` followed by the translation that phase
    correlation finds between the fixed view and the moving view pulled back
    through it.

    Parameters
    ----------
    fixed, moving : View
    moving_px_from_fixed_px : ndarray, shape (D + 1, D + 1)
        Starting transform between the views' pixels.
    use_edges : bool
        Correlate gradient magnitudes (for images of different modalities).

    Returns
    -------
    ndarray, shape (D + 1, D + 1)
        The refined ``moving_px_from_fixed_px``.
    """
    return translations(fixed, moving, moving_px_from_fixed_px, use_edges)[0]


def translations(
    fixed: View,
    moving: View,
    moving_px_from_fixed_px: NDArray,
    use_edges: bool = False,
) -> list[NDArray[np.float64]]:
    """Like :func:`phase_correlated`.

    With ``use_edges``, also the shift of masked normalised cross-correlation of the
    gradient magnitudes, which judges each shift on its own overlap only (Padfield, IEEE
    TIP 21(5), 2012) and so finds large shifts between different modalities more often.
    """
    from skimage.registration import phase_cross_correlation

    moved = warped(moving.image, moving_px_from_fixed_px, fixed.image.shape)
    reference = fixed.image
    if use_edges:
        reference, moved = edges(reference), edges(moved)
    shift, _, _ = phase_cross_correlation(
        reference, moved, upsample_factor=4, normalization=None
    )
    found = [_shifted(moving_px_from_fixed_px, shift)]
    if use_edges:
        inside = warped(
            np.ones_like(moving.image), moving_px_from_fixed_px, fixed.image.shape
        )
        inside = ndimage.binary_erosion(inside > 0.999, iterations=2)
        if inside.sum() >= 16:
            masked = phase_cross_correlation(
                reference,
                moved,
                reference_mask=np.ones(reference.shape, bool),
                moving_mask=inside,
                overlap_ratio=0.2,
            )[0]
            found.append(_shifted(moving_px_from_fixed_px, masked))
    return found
