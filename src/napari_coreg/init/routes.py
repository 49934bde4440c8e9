"""Candidate starting points, one function per initialiser.

Each takes views (see :mod:`.views`) and returns :class:`.Candidate`
objects whose matrices are physical ``moving_from_fixed``.
"""

from __future__ import annotations

import time

import numpy as np
from numpy.typing import NDArray

from ..transforms import Grid, homogeneous
from .candidate import Candidate
from .fit import fit
from .fourier_mellin import fourier_mellin
from .moments import (
    axis_rotations,
    centre_of_mass,
    principal_axes_starts,
    rotations_about,
)
from .phase import translations
from .views import View, physical

__all__ = [
    'axis_mirror_candidates',
    'centre_candidate',
    'feature_candidates',
    'fourier_mellin_candidates',
    'grid_search_candidates',
    'moment_candidates',
    'phase_candidates',
    'placement_candidate',
]

#: Fewest RANSAC inliers beyond the minimal sample for a feature start (the
#: coarse-level score, not this count, decides whether it wins).
MIN_INLIERS = 5
#: RANSAC inlier distance, as a fraction of the feature view's longest side
#: (at least 2 view pixels).
INLIER_FRACTION = 0.004
#: Coarse rotations (degrees) tried with phase correlation for 2D models
#: that rotate (today's cheap search for small rotations).
ROTATION_SEARCH = (-10.0, 10.0, -20.0, 20.0, -30.0, 30.0)
#: The solver RANSAC runs for each requested model.
SOLVER = {
    'translation': 'similarity',
    'rigid': 'similarity',
    'similarity': 'similarity',
    'affine': 'affine',
    'homography': 'homography',
}


def placement_candidate(ndim: int) -> Candidate:
    """The layers as they are placed: identity in physical coordinates."""
    return Candidate('placement', np.eye(ndim + 1))


def centre_candidate(fixed_grid: Grid, moving_grid: Grid) -> Candidate:
    """The image centres brought together (a translation)."""
    shift = moving_grid.center - fixed_grid.center
    return Candidate('center', homogeneous(np.eye(fixed_grid.ndim), shift))


def _rotation(angle_deg: float) -> NDArray[np.float64]:
    a = np.deg2rad(angle_deg)
    return np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]])


def phase_candidates(
    fixed: View,
    moving: View,
    centre: Candidate,
    angles: tuple[float, ...] = (0.0,),
    use_edges: bool = False,
    with_rotations: bool = False,
) -> list[Candidate]:
    """Starts from phase correlation, after trial rotations.

    Phase correlation from ``centre`` after each of ``angles`` (degrees, 2D,
    0 for none) about the fixed centre; ``with_rotations`` also keeps the
    rotations alone.
    """
    start = np.linalg.inv(moving.phys_from_px) @ centre.moving_from_fixed
    start = start @ fixed.phys_from_px
    found = []
    for angle in angles:
        turned = start
        if angle:
            turn = homogeneous(_rotation(angle), np.zeros(2))
            about = homogeneous(np.eye(2), fixed.center)
            turned = start @ about @ turn @ np.linalg.inv(about)
            if with_rotations:
                found.append(
                    Candidate(
                        'rotation',
                        physical(turned, fixed, moving),
                        info={'angle': angle},
                    )
                )
        for matrix in translations(fixed, moving, turned, use_edges):
            found.append(
                Candidate(
                    'phase', physical(matrix, fixed, moving), info={'angle': angle}
                )
            )
    return found


def grid_search_candidates(
    fixed: View,
    moving: View,
    centre: Candidate,
    angles: tuple[float, ...],
    scales: tuple[float, ...],
    use_edges: bool,
) -> list[Candidate]:
    """Starts from a coarse grid of rotations and scales.

    Every rotation and scale of a coarse grid about the fixed centre, each
    followed by phase correlation (2D): the exhaustive fallback.
    """
    start = np.linalg.inv(moving.phys_from_px) @ centre.moving_from_fixed
    start = start @ fixed.phys_from_px
    about = homogeneous(np.eye(2), fixed.center)
    found = []
    for angle in angles:
        for scale in scales:
            turn = homogeneous(scale * _rotation(angle), np.zeros(2))
            turned = start @ about @ turn @ np.linalg.inv(about)
            for matrix in translations(fixed, moving, turned, use_edges):
                found.append(
                    Candidate(
                        'grid-search',
                        physical(matrix, fixed, moving),
                        info={'angle': angle, 'scale': round(scale, 4)},
                    )
                )
    return found


def moment_candidates(
    fixed: View, moving: View, with_scale: bool, search: bool
) -> list[Candidate]:
    """Starts from centres of mass and principal axes.

    Centres of mass, principal axes and (``search``) every axis rotation
    about the centres of mass.
    """
    c_f, c_m = centre_of_mass(fixed.image), centre_of_mass(moving.image)
    ndim = fixed.image.ndim
    found = [
        Candidate(
            'center-of-mass',
            physical(homogeneous(np.eye(ndim), c_m - c_f), fixed, moving),
        )
    ]
    for i, matrix in enumerate(
        principal_axes_starts(fixed.image, moving.image, with_scale)
    ):
        found.append(
            Candidate(
                'principal-axes', physical(matrix, fixed, moving), info={'sign': i}
            )
        )
    if search:
        for i, matrix in enumerate(
            rotations_about(axis_rotations(ndim)[1:], c_f, c_m), start=1
        ):
            found.append(
                Candidate(
                    'axis-rotation', physical(matrix, fixed, moving), info={'turn': i}
                )
            )
    return found


def axis_mirror_candidates(fixed: View, moving: View) -> list[Candidate]:
    """Every axis permutation with a mirror (determinant -1) about the centres of mass.

    The reflection check of volumes.
    """
    c_f, c_m = centre_of_mass(fixed.image), centre_of_mass(moving.image)
    mirrors = axis_rotations(fixed.image.ndim, proper=False)
    return [
        Candidate('axis-mirror', physical(m, fixed, moving), info={'turn': i})
        for i, m in enumerate(rotations_about(mirrors, c_f, c_m))
    ]


def fourier_mellin_candidates(
    fixed: View,
    moving: View,
    with_scale: bool,
    mirrored: bool = False,
    multimodal: bool = False,
) -> list[Candidate]:
    """Fourier-Mellin rotation + scale + translation (2D).

    ``mirrored`` runs it on the moving view flipped left to right; ``multimodal`` also
    tries masked-correlation translations.
    """
    started = time.perf_counter()
    image, flip = _maybe_mirrored(moving, mirrored)
    found = fourier_mellin(
        fixed, View(image, moving.phys_from_px), 2, with_scale, multimodal
    )
    seconds = round(time.perf_counter() - started, 4)
    name = 'fourier-mellin' + ('-mirrored' if mirrored else '')
    return [
        Candidate(
            name, physical(flip @ m, fixed, moving), info={**i, 'seconds': seconds}
        )
        for m, i in found
    ]


def _maybe_mirrored(moving: View, mirrored: bool) -> tuple[NDArray, NDArray]:
    """The moving image, flipped when ``mirrored``, and its pixel matrix.

    The moving image (flipped left to right when ``mirrored``) and the
    matrix from its pixels to the moving view's pixels.
    """
    if not mirrored:
        return moving.image, np.eye(3)
    width = moving.image.shape[1]
    flip = np.array([[1.0, 0, 0], [0, -1.0, width - 1], [0, 0, 1]])
    return moving.image[:, ::-1].copy(), flip


def feature_candidates(
    fixed: View,
    moving: View,
    model: str,
    fixed_keypoints=None,
    mirrored: bool = False,
    device=None,
    seed: int = 0,
) -> tuple[list[Candidate], dict, object]:
    """Starts from keypoints, matches and RANSAC.

    Keypoints, matches, RANSAC with the model's minimal solver, and the
    model fitted to the inliers.

    Returns
    -------
    candidates : list of Candidate
        Empty when too few inliers were found.
    info : dict
        Keypoints, matches, inliers and their ratio, hypotheses, seconds.
    fixed_keypoints
        The fixed keypoints, to pass back for a second (mirrored) run.
    """
    from .features import detect, match
    from .ransac import SAMPLE_SIZE, ransac

    started = time.perf_counter()
    if fixed_keypoints is None:
        fixed_keypoints, _ = detect(fixed.image, device)
    image, flip = _maybe_mirrored(moving, mirrored)
    moving_keypoints, detector = detect(image, device)
    pairs = match(fixed_keypoints, moving_keypoints, device)
    src = fixed_keypoints.points[pairs[:, 0]]
    dst = moving_keypoints.points[pairs[:, 1]]
    solver = SOLVER[model]
    threshold = max(2.0, INLIER_FRACTION * max(fixed.image.shape))
    found = ransac(src, dst, solver, threshold, seed=seed, device=device)
    info = {
        'detector': detector,
        'keypoints': [len(fixed_keypoints.points), len(moving_keypoints.points)],
        'matches': len(pairs),
        'solver': solver,
        'inliers': 0 if found is None else found.n_inliers,
        'inlier_ratio': 0.0
        if found is None
        else round(found.n_inliers / max(len(pairs), 1), 4),
        'hypotheses': 0 if found is None else found.hypotheses,
        'ransac_seconds': None if found is None else round(found.seconds, 4),
    }
    candidates = []
    if found is not None and found.n_inliers >= SAMPLE_SIZE[solver] + MIN_INLIERS:
        inliers = found.inliers
        matrix = fit(model, src[inliers], dst[inliers])
        name = 'features' + ('-mirrored' if mirrored else '')
        candidates.append(
            Candidate(name, physical(flip @ matrix, fixed, moving), info=info)
        )
    info['seconds'] = round(time.perf_counter() - started, 4)
    return candidates, info, fixed_keypoints
