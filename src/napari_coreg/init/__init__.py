"""Starting points for registration, shared by the backends.

Layer placement, image centres, centres of mass and principal axes, phase
correlation, Fourier-Mellin (rotation + scale), and features + RANSAC with
the project's batched four-point ACA homography solver. Each initialiser
proposes physical ``moving_from_fixed`` matrices (:class:`Candidate`);
:func:`build_starts` runs them in tiers, has the backend score them at its
coarse level and keeps the best few for refinement.

numpy and scipy only at import; torch, kornia and scikit-image's feature
detectors are imported where they are used.
"""

from __future__ import annotations

from .builder import InitReport, ReflectionError, build_starts, starts_for_frame
from .candidate import Candidate

__all__ = [
    'Candidate',
    'InitReport',
    'ReflectionError',
    'build_starts',
    'starts_for_frame',
]
