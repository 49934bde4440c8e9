"""``init='auto'`` and the explicit initialisers: propose, score, keep the best.

Candidates come in tiers, cheapest first, and a tier runs only when the
best start so far is not yet convincing, so that an easy pair pays for
little more than phase correlation:

1. *cheap*: the layers' placement, the image centres and phase
   correlation; unless that matched clearly, the centres of mass, principal
   axes, and phase correlation after a coarse rotation search of +-30
   degrees for 2D models that rotate;
2. *global*: Fourier-Mellin (any rotation, scale 1/4-4) and features +
   RANSAC in 2D; principal axes and the 24 axis rotations in 3D;
3. *grid search* (2D): every 15 degrees and scale steps of 2**(1/4) over
   0.5-2, each followed by phase correlation, at 64 px;
4. *mirror check* (only when still unconvinced): Fourier-Mellin and
   features on the moving image flipped (2D), the 24 axis mirrors (3D), to
   detect a mirrored pair.

The backend scores every candidate with its own sampler at the coarse
level (a function ``score(matrices) -> (K,)``, higher is better, 1 a
perfect match: NCC, or mutual information over the fixed image's entropy
for ``metric='mi'``); the best few distinct candidates go on to refinement.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from ..options import METRIC_SPECS, MODEL_SPECS, Init, Metric, Model
from ..transforms import Grid, apply_matrix, grid_points
from .candidate import Candidate
from .routes import (
    ROTATION_SEARCH,
    axis_mirror_candidates,
    centre_candidate,
    feature_candidates,
    fourier_mellin_candidates,
    grid_search_candidates,
    moment_candidates,
    phase_candidates,
    placement_candidate,
)
from .views import overlap_fraction, view_pair

if TYPE_CHECKING:
    from ..problem import Problem

__all__ = ['InitReport', 'ReflectionError', 'build_starts', 'starts_for_frame']

Scorer = Callable[[NDArray[np.float64]], NDArray[np.float64]]

#: A start that scores at least this (NCC, or normalised MI for
#: ``metric='mi'``) at the coarse level ends the search.
CONFIDENT = {'ncc': 0.8, 'mi': 0.45}
#: A phase-correlation start that scores at least this (NCC at the coarse
#: level) is clear: the cheap tier skips its rotation search and moments,
#: whose starts would only be refined and lose (an easy pair then pays for
#: one phase correlation and one coarse row). None: always search.
CLEAR_MATCH = {'ncc': 0.95, 'mi': None}
#: Longest side of the views, in pixels, per use.
CHEAP_SIZE = {2: 64, 3: 64}
GLOBAL_SIZE = 256
FEATURE_SIZE = 512
SEARCH_SIZE = 64
#: The grid search's rotations (degrees) and scales.
SEARCH_ANGLES = tuple(float(a) for a in range(-165, 181, 15))
SEARCH_SCALES = tuple(2.0 ** (k / 4) for k in range(-4, 5))
#: ``init='phase'`` keeps its shift only when the overlap it leaves is at
#: least this fraction of the centres' overlap.
PHASE_OVERLAP = 0.5
#: Starts closer than this many cheap-view pixels (mean over corners) are one.
SAME_START_PX = 2.0
#: Starts scoring this much below the best are not worth refining.
START_MARGIN = 0.2
#: A mirrored start must beat every proper start by this much, and score
#: at least this fraction of the confidence threshold (be convincing on its
#: own: weaker mirrored matches were measured to occur by chance with MI),
#: to count.
MIRROR_CONFIDENCE = 1.0
#: A mirrored start must beat every proper start by this much to count.
REFLECTION_MARGIN = 0.15


class ReflectionError(ValueError):
    """The moving image is a mirror image of the fixed one."""


@dataclass
class InitReport:
    """Every candidate tried, best first, and the starts kept.

    Attributes
    ----------
    candidates : list of Candidate
        Scored, best first.
    starts : list of Candidate
        The distinct best few handed to refinement (best first).
    tiers : list of str
        The tiers that ran.
    reason : str
        Why the search stopped where it did.
    reflection : dict or None
        Set when a mirrored start clearly beat every proper one.
    seconds : float
    extra : dict
        Route details (feature matches and inliers, ...).
    """

    candidates: list[Candidate] = field(default_factory=list)
    starts: list[Candidate] = field(default_factory=list)
    tiers: list[str] = field(default_factory=list)
    reason: str = ''
    reflection: dict[str, Any] | None = None
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self, winner: int = 0, why: str = '') -> dict[str, Any]:
        """JSON-able account: the start that won, why, and the runners-up.

        Parameters
        ----------
        winner : int
            Index in ``starts`` of the start that won refinement.
        why : str
            How refinement chose it.
        """
        won = self.starts[winner] if self.starts else None
        return {
            'winner': None if won is None else won.name,
            'why': why or self.reason,
            'winner_start': None if won is None else won.summary(),
            'starts': [s.name for s in self.starts],
            'tiers': list(self.tiers),
            'search': self.reason,
            'reflection': self.reflection,
            'candidates': [
                {'name': c.name, 'score': c.summary()['score']}
                for c in self.candidates[:12]
            ],
            'details': self.extra,
            'seconds': round(self.seconds, 4),
        }


@dataclass
class _Search:
    """The state of one search: views, scorer and what was found."""

    fixed: NDArray
    moving: NDArray
    fixed_grid: Grid
    moving_grid: Grid
    model: Model
    scorer: Scorer
    confident: float
    device: Any
    seed: int
    multimodal: bool = False
    report: InitReport = field(default_factory=InitReport)

    def views(self, size: int):
        return view_pair(
            self.fixed, self.moving, self.fixed_grid, self.moving_grid, size
        )

    def add(self, candidates: list[Candidate], tier: str) -> None:
        if tier not in self.report.tiers:
            self.report.tiers.append(tier)
        if not candidates:
            return
        scores = self.scorer(np.stack([c.moving_from_fixed for c in candidates]))
        scored = [c.scored(s) for c, s in zip(candidates, scores, strict=True)]
        ranked = self.report.candidates + scored
        ranked.sort(key=lambda c: -c.score)
        self.report.candidates = ranked

    def best(self, reflected: bool | None = False) -> Candidate | None:
        for c in self.report.candidates:
            if reflected is None or c.reflects == reflected:
                return c
        return None

    def convinced(self) -> bool:
        best = self.best(reflected=None)
        return best is not None and best.score >= self.confident


def _rotates(model: Model) -> bool:
    return MODEL_SPECS[model].rotates


def _cheap(search: _Search, metric: Metric) -> bool:
    """The cheap tier; True when phase correlation alone matched clearly."""
    ndim = search.fixed_grid.ndim
    centre = centre_candidate(search.fixed_grid, search.moving_grid)
    fixed, moving = search.views(CHEAP_SIZE.get(ndim, 64))
    edges = METRIC_SPECS[metric].multimodal
    found = [placement_candidate(ndim), centre]
    found += phase_candidates(fixed, moving, centre, (0.0,), edges, edges)
    search.add(found, 'cheap')
    clear = CLEAR_MATCH.get('mi' if search.multimodal else 'ncc')
    if clear is not None and search.best().score >= clear:
        return True
    found = []
    if ndim == 2 and _rotates(search.model):
        found += phase_candidates(fixed, moving, centre, ROTATION_SEARCH, edges, edges)
    if _rotates(search.model):
        with_scale = MODEL_SPECS[search.model].scales
        found += moment_candidates(fixed, moving, with_scale, search=False)
    else:
        found += moment_candidates(fixed, moving, False, search=False)[:1]
    search.add(found, 'cheap')
    return False


def _features(search: _Search, mirrored: bool = False) -> None:
    fixed, moving = search.views(FEATURE_SIZE)
    cache = search.report.extra.pop('_keypoints', None)
    found, info, keypoints = feature_candidates(
        fixed,
        moving,
        search.model.value,
        cache,
        mirrored=mirrored,
        device=search.device,
        seed=search.seed,
    )
    search.report.extra['_keypoints'] = keypoints
    search.report.extra['features' + ('-mirrored' if mirrored else '')] = info
    search.add(found, 'features' + ('-mirrored' if mirrored else ''))


def _fourier_mellin(search: _Search, mirrored: bool = False) -> None:
    fixed, moving = search.views(GLOBAL_SIZE)
    with_scale = MODEL_SPECS[search.model].scales
    found = fourier_mellin_candidates(
        fixed, moving, with_scale, mirrored, search.multimodal
    )
    search.add(found, 'fourier-mellin' + ('-mirrored' if mirrored else ''))


def _moments(search: _Search, exhaustive: bool) -> None:
    ndim = search.fixed_grid.ndim
    fixed, moving = search.views(CHEAP_SIZE.get(ndim, 64))
    with_scale = MODEL_SPECS[search.model].scales
    search.add(moment_candidates(fixed, moving, with_scale, exhaustive), 'moments')


def _global(search: _Search) -> None:
    if search.fixed_grid.ndim == 3:
        _moments(search, exhaustive=_rotates(search.model))
        return
    if _rotates(search.model):
        _fourier_mellin(search)
    if not search.convinced():
        _features(search)


def _grid_search(search: _Search, metric: Metric) -> bool:
    """The exhaustive rotation (and scale) grid in 2D; False when skipped."""
    if search.fixed_grid.ndim != 2 or not _rotates(search.model):
        return False
    scales = SEARCH_SCALES if MODEL_SPECS[search.model].scales else (1.0,)
    fixed, moving = search.views(SEARCH_SIZE)
    centre = centre_candidate(search.fixed_grid, search.moving_grid)
    found = grid_search_candidates(
        fixed, moving, centre, SEARCH_ANGLES, scales, METRIC_SPECS[metric].multimodal
    )
    search.add(found, 'grid-search')
    return True


def _check_mirror(search: _Search, ran_features: bool, allow: bool) -> None:
    """Try mirrored starts; record a reflection when one clearly wins."""
    if search.fixed_grid.ndim == 3:
        fixed, moving = search.views(CHEAP_SIZE[3])
        search.add(axis_mirror_candidates(fixed, moving), 'axis-mirrors')
    else:
        _fourier_mellin(search, mirrored=True)
        if ran_features:
            _features(search, mirrored=True)
    proper, mirror = search.best(False), search.best(True)
    if mirror is None:
        return
    proper_score = -np.inf if proper is None else proper.score
    convincing = MIRROR_CONFIDENCE * search.confident
    if mirror.score >= max(proper_score + REFLECTION_MARGIN, convincing):
        search.report.reflection = {
            'mirrored_start': mirror.name,
            'mirrored_score': round(mirror.score, 4),
            'best_proper_score': None
            if not np.isfinite(proper_score)
            else round(float(proper_score), 4),
            'allowed': allow,
        }
        if not allow:
            raise ReflectionError(
                'the moving image looks like a mirror image of the fixed one: a '
                f'mirrored start ({mirror.name}) scores {mirror.score:.2f} against '
                f'{proper_score:.2f} for the best proper one, and a '
                f"'{search.model}' registration cannot undo a reflection. Flip "
                'the moving image (or give its layer the flip), or pass '
                'allow_reflection=True to register it as a mirror image.'
            )


def _distinct(
    candidates: list[Candidate], grid: Grid, n: int, allow_reflection: bool
) -> list[Candidate]:
    """The best ``n`` distinct candidates.

    The best ``n`` candidates that differ by more than ``SAME_START_PX``
    and score within ``START_MARGIN`` of the best.
    """
    corners = apply_matrix(grid.phys_from_px, grid_points(grid.shape))
    unit = max(grid.extent * 2 / CHEAP_SIZE.get(grid.ndim, 64), 1e-12)
    kept: list[Candidate] = []
    mapped_kept: list[NDArray] = []
    for c in candidates:
        if not np.isfinite(c.score) or (c.reflects and not allow_reflection):
            continue
        if kept and c.score < kept[0].score - START_MARGIN:
            break
        mapped = apply_matrix(c.moving_from_fixed, corners)
        if not np.all(np.isfinite(mapped)):
            continue
        if any(
            np.linalg.norm(mapped - m, axis=1).mean() < SAME_START_PX * unit
            for m in mapped_kept
        ):
            continue
        kept.append(c)
        mapped_kept.append(mapped)
        if len(kept) == n:
            break
    return kept


def build_starts(
    fixed: NDArray,
    moving: NDArray,
    fixed_grid: Grid,
    moving_grid: Grid,
    *,
    model: Model,
    metric: Metric,
    init: Init,
    scorer: Scorer,
    n_starts: int = 3,
    device=None,
    seed: int = 0,
    allow_reflection: bool = False,
    escalate: bool = True,
) -> InitReport:
    """Propose starting points, score them and keep the best few.

    Parameters
    ----------
    fixed, moving : ndarray
        One fixed and one moving image (spatial axes only).
    fixed_grid, moving_grid : Grid
        Their physical geometry.
    model, metric : Model, Metric
    init : Init
        ``AUTO`` (tiers, see the module docstring), ``IDENTITY``,
        ``CENTER``, ``PHASE``, ``FEATURES``, ``FOURIER_MELLIN`` or
        ``MOMENTS``.
    scorer : callable
        ``scorer(matrices)`` with matrices ``(K, D + 1, D + 1)`` physical
        ``moving_from_fixed``, returning ``(K,)`` scores, higher better, 1 a
        perfect match, ``-inf`` for starts with too little overlap.
    n_starts : int
        Most starts kept for refinement.
    device : str or torch.device, optional
        Where features and RANSAC run.
    seed : int
    allow_reflection : bool
        Let a mirrored start win (else a clearly mirrored pair raises).
    escalate : bool
        Let ``AUTO`` go past the cheap tier. The backends pass False for
        batches (stack frames), whose neighbours differ by small motions and
        which would otherwise pay for global searches frame after frame.

    Returns
    -------
    InitReport

    Raises
    ------
    ReflectionError
        When a mirrored start clearly beats every proper one and
        ``allow_reflection`` is False.
    """
    started = time.perf_counter()
    multimodal = METRIC_SPECS[metric].multimodal
    key = 'mi' if multimodal else 'ncc'
    search = _Search(
        fixed,
        moving,
        fixed_grid,
        moving_grid,
        model,
        scorer,
        CONFIDENT[key],
        device,
        seed,
        multimodal=multimodal,
    )
    report = search.report
    ndim = fixed_grid.ndim
    centre = centre_candidate(fixed_grid, moving_grid)
    if init is Init.IDENTITY:
        search.add([placement_candidate(ndim)], 'identity')
    elif init is Init.CENTER:
        search.add([centre], 'center')
    elif init is Init.PHASE:
        views = search.views(CHEAP_SIZE.get(ndim, 64))
        phase = phase_candidates(*views, centre, use_edges=key == 'mi')[0]
        kept = overlap_fraction(phase.moving_from_fixed, fixed_grid, moving_grid)
        if kept >= PHASE_OVERLAP * overlap_fraction(
            centre.moving_from_fixed, fixed_grid, moving_grid
        ):
            search.add([phase], 'phase')
        else:  # a shift that leaves (almost) no overlap is not believed
            search.add([centre], 'phase')
            report.reason = (
                "init='phase': the shift found left under half the overlap of "
                'the centres; started from the centres'
            )
    elif init is Init.FEATURES:
        if ndim != 2:
            raise ValueError("init='features' is for 2D images: use 'moments' in 3D")
        _features(search)
    elif init is Init.FOURIER_MELLIN:
        if ndim != 2:
            raise ValueError(
                "init='fourier-mellin' is for 2D images: use 'moments' in 3D"
            )
        _fourier_mellin(search)
    elif init is Init.MOMENTS:
        _moments(search, exhaustive=ndim == 3 and _rotates(model))
    else:
        if _cheap(search, metric):
            report.reason = (
                'phase correlation alone matched clearly: no rotation search'
            )
        elif search.convinced():
            report.reason = 'a cheap start already matched well'
        elif not escalate:
            report.reason = 'batched frames: cheap starts only'
        else:
            _global(search)
            if search.convinced():
                report.reason = 'a global start matched well'
            elif _grid_search(search, metric) and search.convinced():
                report.reason = 'the rotation and scale grid search matched well'
            else:
                _check_mirror(search, 'features' in report.tiers, allow_reflection)
                report.reason = 'no start matched well: kept the best scores'
    if not report.reason:
        report.reason = f"init='{init}'"
    report.extra.pop('_keypoints', None)
    report.starts = _distinct(report.candidates, fixed_grid, n_starts, allow_reflection)
    if not report.starts:  # nothing usable: fall back on the centres
        report.starts = [centre.scored(-np.inf)]
        report.reason += '; no usable candidate, started from the centres'
    report.seconds = time.perf_counter() - started
    return report


def starts_for_frame(
    problem: Problem,
    frame: int,
    scorer: Scorer,
    n_starts: int,
    device: Any = None,
) -> InitReport:
    """:func:`build_starts` for one frame of a problem, as both engines call it.

    Only a single pair escalates to the global initialisers: frames of a
    batch (stacks) keep to the cheap starts.
    """
    return build_starts(
        problem.fixed[0 if problem.fixed.shape[0] == 1 else frame],
        problem.moving[frame],
        problem.fixed_grid,
        problem.moving_grid,
        model=problem.model,
        metric=problem.metric,
        init=problem.settings.init,
        scorer=scorer,
        n_starts=n_starts,
        device=device,
        seed=problem.settings.seed,
        allow_reflection=problem.settings.allow_reflection,
        escalate=problem.batch == 1,
    )
