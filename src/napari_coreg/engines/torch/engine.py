"""The torch backend: pyramid, initialisation and optimisation, batched.

One code path for every device: images and sampling live on the chosen
device in float32; parameters and matrices stay on the CPU in float64.
"""

from __future__ import annotations

import time
from collections.abc import Generator
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from ...options import Model
from ...problem import Outcome, Problem
from ...result import LevelReport, Progress
from ...transforms import apply_matrix, grid_points
from .. import PREVIEW_SECONDS, TOLERANCE_PX
from .compositional import (
    CompositionalObjective,
    MatrixSteps,
    compositional_gauss_newton,
)
from .images import LevelImages
from .init import starting_points
from .levels import LevelData, build_level, normalised_frame, sample
from .metrics import natural
from .models import ParamModel, param_model
from .optim import OPTIMISERS, Objective, Steps

__all__ = ['pick_device', 'run']

#: Default Adam step in normalised units (half-diagonal = 1), per level shrink.
ADAM_RATE = 1e-3
#: Most points a level evaluates: the strongest-gradient fixed pixels, as
#: flat regions carry noise but little alignment information (measured: more
#: accurate and 3-5x faster than every pixel at 512 px and up; 32k points
#: were faster still but missed the ITK brain rotation by 0.37 px).
STRONG_POINTS = 1 << 16
#: Most points of a level that is not the finest: such a level only has to
#: bring the next one within its reach, and the finest sets the accuracy
#: (measured on the 512 px rigid, affine and homography cases: 5-10 % faster,
#: errors unchanged; on the 512 px affine MI cases too, where BFGS took
#: the same number of steps).
COARSE_STRONG_POINTS = 1 << 14
#: Gauss-Newton composes inversely (fixed-side gradients, computed once) at
#: every level but the finest.
INVERSE_LEVELS = True
#: A multi-start candidate whose overlap is below this fraction of the
#: largest candidate overlap cannot win (small overlaps match by chance).
MIN_OVERLAP_RATIO = 0.5
#: Multi-start rows of a frame whose corners lie within this many level
#: pixels of a better row after the warm-up are one start.
SAME_START_PX = 0.5
#: Gauss-Newton stops a level that is not the finest once its steps move no
#: corner by more than this many level pixels (or the tolerance, if larger):
#: the next level corrects what is left in the same iterations.
COARSE_TOLERANCE_PX = 0.02
#: ``metric_before``/``metric_after`` are measured over the whole overlap of
#: the finest level (as the SimpleITK backend does), on at most this many
#: regularly spaced points, not on the strongest-gradient subset.
DENSE_POINTS = 1 << 20
#: Default stop of the quasi-Newton solver on mutual information, in level
#: pixels times the shrink factor: its steps below a hundredth of a pixel
#: changed no error on the 512 px affine MI cases by more than 0.002 px and
#: cost a quarter of the evaluations.
MI_TOLERANCE_PX = 1e-2


def pick_device(device: str | torch.device | None) -> torch.device:
    """The requested device, or the best present: cuda, then mps, then cpu."""
    if device is not None:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device('cuda')
    mps = getattr(torch.backends, 'mps', None)
    if mps is not None and mps.is_available():
        return torch.device('mps')
    return torch.device('cpu')


def _inverse(problem: Problem, index: int) -> bool:
    """Whether level ``index`` composes inversely.

    Whether level ``index`` runs the inverse-compositional Gauss-Newton
    (else, for Gauss-Newton, the forward-compositional one).

    Inverse composition saves the moving gradient but its fixed point is
    off the loss's minimum where the images differ, so the finest level,
    which sets the accuracy, composes forward.
    """
    return (
        problem.method.optimizer == 'gauss-newton'
        and INVERSE_LEVELS
        and index < len(problem.schedule) - 1
    )


def _images(problem: Problem, device: torch.device) -> LevelImages:
    """The problem's level images, built on first use (see :class:`.LevelImages`)."""
    return LevelImages(
        problem.fixed,
        problem.moving,
        problem.fixed_grid,
        problem.moving_grid,
        problem.schedule,
        device,
    )


def _level(
    problem: Problem,
    index: int,
    device: torch.device,
    full: bool = False,
    dense: bool = False,
    images: LevelImages | None = None,
) -> LevelData:
    """Level ``index`` of the problem.

    ``full`` ignores masks and point limits, ``dense`` keeps the masks and takes
    regularly spaced points; neither differentiates an image (starting points and metric
    values need values only). ``images`` shares the level images between calls.
    """
    n_fixed = int(np.prod(problem.fixed_grid.shape))
    sampling = problem.settings.sampling
    if full:
        limit, seed, strong = n_fixed, None, None
    elif dense:
        limit, seed, strong = min(n_fixed, DENSE_POINTS), None, None
    elif sampling is not None:
        limit, seed, strong = (
            max(64, int(sampling * n_fixed)),
            problem.settings.seed,
            None,
        )
    else:
        limit, seed = n_fixed, None
        finest = index == len(problem.schedule) - 1
        strong = STRONG_POINTS if finest else COARSE_STRONG_POINTS
    return build_level(
        problem.fixed,
        problem.moving,
        problem.fixed_grid,
        problem.moving_grid,
        None if full else problem.fixed_mask,
        None if full else problem.moving_mask,
        problem.schedule[index],
        normalised_frame(problem.fixed_grid),
        device,
        max_points=limit,
        seed=seed,
        strong_points=strong,
        moving_gradient=not (full or dense or _inverse(problem, index)),
        fixed_gradient=not (full or dense) and _inverse(problem, index),
        blur_margins=not (full or dense),
        images=(images or _images(problem, device))(index),
        jitter_seed=None
        if full or dense or not _jittered(problem)
        else problem.settings.seed + index,
    )


def _tolerance(problem: Problem) -> float:
    """The default stop: :data:`TOLERANCE_PX`, or ``MI_TOLERANCE_PX`` for MI."""
    if problem.method.metric_spec.least_squares:
        return TOLERANCE_PX
    return MI_TOLERANCE_PX


def _jittered(problem: Problem) -> bool:
    """Whether the optimised levels sample off the pixel grid (:mod:`.jitter`).

    Mutual information's interpolation artefact pulls its peak off the truth
    on grid points; the least-squares metrics have no such artefact.
    """
    return not problem.method.metric_spec.least_squares


def _models(problem: Problem, norm: np.ndarray) -> tuple[ParamModel, ParamModel | None]:
    """The model, and the similarity that warms it up at the coarsest level.

    Affine and homography start with a similarity at the coarsest level:
    their extra freedoms can otherwise shrink the overlap onto a patch that
    matches by chance before the gross alignment is found.
    """
    corners = None
    spec = problem.method.model_spec
    if spec.projective:
        corners_phys = apply_matrix(
            problem.fixed_grid.phys_from_px, grid_points(problem.fixed_grid.shape)[:-1]
        )
        corners = torch.as_tensor(apply_matrix(norm, corners_phys))
    model = param_model(problem.model, problem.ndim, corners)
    warm = None
    if spec.shears:  # the rotation and scale settle before the rest
        warm = param_model(Model.SIMILARITY, problem.ndim)
    return model, warm


def _physical(matrices: torch.Tensor, norm: np.ndarray) -> np.ndarray:
    return np.linalg.inv(norm) @ matrices.numpy() @ norm


@dataclass
class _Run:
    """What one registration carries from stage to stage.

    ``base`` holds one normalised matrix per row; a row is a frame, or a
    (frame, starting point) pair during the coarsest level's multi-start,
    and ``frame_of`` says which frame each row belongs to, ``start_of``
    which of its starting points.
    """

    problem: Problem
    optimiser: str
    tolerance: float
    norm: np.ndarray
    base: torch.Tensor
    frame_of: torch.Tensor
    start_of: torch.Tensor
    total: int
    step: int = 0
    last_matrix_time: float = 0.0
    memory: dict = field(default_factory=dict)

    def objective(self, model: ParamModel, data: LevelData) -> Objective:
        return Objective(
            data,
            model,
            self.base,
            self.problem.metric,
            self.problem.settings.mi_bins,
            self.frame_of,
        )

    def _scores(self, data: LevelData) -> tuple[Tensor, Tensor]:
        """Loss of every row at ``data``, and infinity where its overlap is small.

        Also the corners of the level under each row, in moving level pixels.
        """
        objective = self.objective(
            param_model(Model.TRANSLATION, self.problem.ndim), data
        )
        rows = torch.arange(self.base.shape[0])
        losses, overlaps = objective.loss_and_overlap(
            torch.zeros(rows.numel(), self.problem.ndim, dtype=torch.float64), rows
        )
        for frame in range(self.problem.batch):
            mine = self.frame_of == frame
            small = overlaps < MIN_OVERLAP_RATIO * overlaps[mine].max()
            losses[mine & small] = torch.inf
        homog = data.corners @ self.base.transpose(1, 2)
        corners = homog[..., :-1] / homog[..., -1:] @ data.px_linear.T
        return losses, corners

    def _keep(self, rows: list[int]) -> None:
        self.base = self.base[rows]
        self.frame_of = self.frame_of[rows]
        self.start_of = self.start_of[rows]

    def drop_duplicate_starts(self, data: LevelData) -> None:
        """Merge multi-start rows that reached the same place.

        Rows of a frame whose corners lie within ``SAME_START_PX`` level
        pixels of a row of lower loss are dropped: the rest of the
        registration would take them to the same optimum.
        """
        losses, corners = self._scores(data)
        kept: list[int] = []
        for row in torch.argsort(losses, stable=True).tolist():
            mine = [k for k in kept if self.frame_of[k] == self.frame_of[row]]
            apart = [(corners[row] - corners[k]).norm(dim=-1).amax() for k in mine]
            if all(float(d) > SAME_START_PX for d in apart):
                kept.append(row)
        self._keep(sorted(kept))

    def keep_best_start(self, data: LevelData) -> list[int]:
        """Reduce the multi-start rows to the best row per frame.

        Returns, per frame, the index of the start that won.
        """
        losses, _ = self._scores(data)
        best, won = [], []
        for frame in range(self.problem.batch):
            mine = torch.nonzero(self.frame_of == frame)[:, 0]
            best.append(int(mine[torch.argmin(losses[mine])]))
            won.append(int(self.start_of[best[-1]]))
        self._keep(best)
        return won


def _stage(
    run_: _Run,
    model: ParamModel,
    data: LevelData,
    level_index: int,
    losses: list[float],
) -> Generator[Progress, None, str]:
    """Optimise ``model`` on one level from ``run_.base``; fold the result in."""
    problem = run_.problem
    level = problem.schedule[level_index]
    tolerance = run_.tolerance * level.factor
    if run_.optimiser == 'gauss-newton':
        if level_index < len(problem.schedule) - 1:
            tolerance = max(tolerance, COARSE_TOLERANCE_PX)
        objective = CompositionalObjective.build(
            data, model, problem.metric, run_.frame_of, _inverse(problem, level_index)
        )
        steps = compositional_gauss_newton(
            objective,
            run_.base,
            level.iterations,
            tolerance,
        )
    else:
        kwargs = {}
        if run_.optimiser == 'bfgs':
            kwargs['memory'] = run_.memory.setdefault(model.n_params, {})
        if run_.optimiser == 'adam':
            kwargs['learning_rate'] = (
                problem.settings.learning_rate or ADAM_RATE
            ) * level.factor
        params = torch.zeros(run_.base.shape[0], model.n_params, dtype=torch.float64)
        steps = _as_matrices(
            OPTIMISERS[run_.optimiser](
                run_.objective(model, data),
                params,
                level.iterations,
                tolerance,
                **kwargs,
            ),
            model,
            run_.base,
        )
    while True:
        try:
            row_losses, matrices = next(steps)
        except StopIteration as done:
            matrices, reason = done.value
            break
        losses.append(float(row_losses.mean()))
        now = time.perf_counter()
        matrix = None
        if now - run_.last_matrix_time > PREVIEW_SECONDS:
            matrix = _physical(matrices, run_.norm)
            run_.last_matrix_time = now
        yield Progress(
            step=run_.step,
            total=run_.total,
            level=level_index,
            n_levels=len(problem.schedule),
            iteration=len(losses) - 1,
            loss=losses[-1],
            matrix=matrix,
        )
        run_.step += 1
    run_.base = matrices
    return reason


def _as_matrices(steps: Steps, model: ParamModel, base: Tensor) -> MatrixSteps:
    """A parameter optimiser's steps, as normalised matrices."""
    while True:
        try:
            row_losses, params = next(steps)
        except StopIteration as done:
            params, reason = done.value
            return model.matrices(params, base), reason
        yield row_losses, model.matrices(params, base)


def _start(
    problem: Problem,
    device: torch.device,
    norm: np.ndarray,
    images: LevelImages | None = None,
):
    """Starting points per frame, best first, and the report.

    Starting points per frame, ``(B, K, D+1, D+1)``, best first, and the
    initialisation reports (``None`` with ``initial``).
    """
    if problem.initial is not None:  # nothing to score
        return starting_points(problem, None, norm, device)
    data = _level(problem, 0, device, full=True, images=images)
    return starting_points(problem, data, norm, device)


def _init_summaries(reports, won: list[int] | None) -> tuple[dict, ...] | None:
    """What each frame's initialisation tried and which start won, and why."""
    if reports is None:
        return None
    summaries = []
    for frame, report in enumerate(reports):
        index = 0 if won is None else min(won[frame], len(report.starts) - 1)
        why = report.reason
        if won is not None and len(report.starts) > 1:
            why = (
                f'lowest loss after optimising {len(report.starts)} starts on the '
                f'coarsest level ({report.reason})'
            )
        summaries.append(report.summary(index, why))
    return tuple(summaries)


def run(problem: Problem) -> Generator[Progress, None, Outcome]:
    """Register a (batched) problem, yielding progress after every iteration."""
    device = pick_device(problem.settings.device)
    norm = normalised_frame(problem.fixed_grid)
    model, warm = _models(problem, norm)
    images = _images(problem, device)
    starts, init_reports = _start(problem, device, norm, images)
    batch, n_starts = starts.shape[:2]
    first = problem.schedule[0].iterations
    run_ = _Run(
        problem=problem,
        optimiser=problem.method.optimizer,
        tolerance=problem.settings.tolerance or _tolerance(problem),
        norm=norm,
        base=torch.as_tensor(
            norm @ starts.reshape(-1, *starts.shape[2:]) @ np.linalg.inv(norm)
        ),
        frame_of=torch.arange(batch).repeat_interleave(n_starts),
        start_of=torch.arange(n_starts).repeat(batch),
        total=sum(level.iterations for level in problem.schedule)
        + (first if warm else 0),
    )
    reports, won, data = [], None, None
    for index in range(len(problem.schedule)):
        started = time.perf_counter()
        del data  # the previous level, before this one is built
        data = _level(problem, index, device, images=images)
        losses: list[float] = []
        if index == 0 and warm is not None:
            yield from _stage(run_, warm, data, index, losses)
            if n_starts > 1:
                run_.drop_duplicate_starts(data)
        reason = yield from _stage(run_, model, data, index, losses)
        if n_starts > 1 and index == 0:
            won = run_.keep_best_start(data)
        reports.append(
            LevelReport(
                shape=data.fixed_shape,
                iterations=len(losses),
                seconds=time.perf_counter() - started,
                stop_reason=reason,
                losses=tuple(losses),
            )
        )
    identity = torch.eye(problem.ndim + 1, dtype=torch.float64).expand_as(run_.base)
    del data  # the finest level's points and gradients, before the dense points
    data = _level(problem, len(problem.schedule) - 1, device, dense=True, images=images)
    return Outcome(
        moving_from_fixed=_physical(run_.base, norm),
        initial=starts[:, 0],
        metric_before=_natural(problem, data, identity),
        metric_after=_natural(problem, data, run_.base),
        levels=tuple(reports),
        init_report=_init_summaries(init_reports, won),
    )


def _natural(problem: Problem, data: LevelData, base: torch.Tensor) -> np.ndarray:
    s = sample(data, base)
    values = natural(
        problem.metric, s.values, data.fixed_values, s.weights, problem.settings.mi_bins
    )
    return values.double().cpu().numpy()
