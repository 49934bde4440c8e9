"""The torch backend: pyramid, initialisation and optimisation, batched.

One code path for every device: images and sampling live on the chosen
device in float32; parameters and matrices stay on the CPU in float64.
"""

from __future__ import annotations

import time
from collections.abc import Generator

import numpy as np
import torch

from ..metrics import natural
from ..models import param_model
from ..options import Init, Model
from ..problem import Outcome, Problem
from ..result import LevelReport, Progress
from ..transforms import apply_matrix, homogeneous
from .torch_levels import LevelData, build_level, normalised_frame, sample
from .torch_optim import OPTIMISERS, Objective

__all__ = ['pick_device', 'run']

#: Default convergence: a step that moves no corner by more than this many
#: pixels of the level ends it.
TOLERANCE_PX = 1e-3
#: Default Adam step in normalised units (half-diagonal = 1), per level shrink.
ADAM_RATE = 1e-3
#: Rotations tried by ``init='auto'`` for models that rotate (2D), degrees.
ROTATION_SEARCH = (0.0, -10.0, 10.0, -20.0, 20.0, -30.0, 30.0)
#: Most points mutual information evaluates per level (regular subset).
MI_POINTS = 1 << 17


def pick_device(device: str | torch.device | None) -> torch.device:
    """The requested device, or the best present: cuda, then mps, then cpu."""
    if device is not None:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device('cuda')
    if getattr(torch.backends, 'mps', None) and torch.backends.mps.is_available():
        return torch.device('mps')
    return torch.device('cpu')


def _optimiser_name(problem: Problem) -> str:
    name = problem.settings.optimizer
    if name == 'auto':
        return 'bfgs' if problem.metric.value == 'mi' else 'gauss-newton'
    if name not in OPTIMISERS:
        raise ValueError(
            f"unknown torch optimizer {name!r}: choose 'auto', "
            + ', '.join(repr(k) for k in OPTIMISERS)
        )
    if name == 'gauss-newton' and problem.metric.value == 'mi':
        raise ValueError(
            "mutual information is not a least-squares metric: use "
            "optimizer='bfgs' or 'adam' (or 'auto')"
        )
    return name


def _level(problem: Problem, index: int, device: torch.device, full: bool = False) -> LevelData:
    mi = problem.metric.value == 'mi'
    sampling = problem.settings.sampling
    n_fixed = int(np.prod(problem.fixed_grid.shape))
    if full:
        limit, seed = n_fixed, None
    elif sampling is not None:
        limit, seed = max(64, int(sampling * n_fixed)), problem.settings.seed
    else:
        limit, seed = (MI_POINTS if mi else 1 << 20), None
    return build_level(
        problem.fixed, problem.moving, problem.fixed_grid, problem.moving_grid,
        None if full else problem.fixed_mask, None if full else problem.moving_mask,
        problem.schedule[index], normalised_frame(problem.fixed_grid), device,
        max_points=limit, seed=seed,
    )


def _centre_alignment(problem: Problem) -> np.ndarray:
    offset = problem.moving_grid.center - problem.fixed_grid.center
    return homogeneous(np.eye(problem.ndim), offset)


def _rotation_about(angle_deg: float, centre: np.ndarray) -> np.ndarray:
    a = np.deg2rad(angle_deg)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return homogeneous(rot, centre - rot @ centre)


def _phase_shift(data: LevelData, frame_matrix: np.ndarray, frame: int,
                 norm_from_phys: np.ndarray, phys_from_px: np.ndarray) -> np.ndarray:
    """Refine a candidate by the phase-correlation translation (physical)."""
    from skimage.registration import phase_cross_correlation

    matrix = torch.as_tensor(norm_from_phys @ frame_matrix @ np.linalg.inv(norm_from_phys))
    s = sample(data, matrix[None], torch.tensor([frame]))
    moved = (s.values * s.weights)[0].reshape(data.fixed_shape).cpu().numpy()
    values = data.fixed_values
    fixed = values[0 if values.shape[0] == 1 else frame].reshape(data.fixed_shape).cpu().numpy()
    shift, _, _ = phase_cross_correlation(fixed, moved, upsample_factor=4, normalization=None)
    offset = phys_from_px[:-1, :-1] @ -np.asarray(shift)
    return frame_matrix @ homogeneous(np.eye(len(shift)), offset)


def _initial(problem: Problem, device: torch.device) -> np.ndarray:
    """Starting ``moving_from_fixed`` per frame (physical), ``(B, D+1, D+1)``."""
    if problem.initial is not None:
        return np.broadcast_to(problem.initial, (problem.batch, *problem.initial.shape[1:])).copy()
    init = problem.settings.init
    centre = _centre_alignment(problem)
    if init is Init.IDENTITY:
        return np.repeat(np.eye(problem.ndim + 1)[None], problem.batch, 0)
    if init is Init.CENTER:
        return np.repeat(centre[None], problem.batch, 0)

    data = _level(problem, 0, device, full=True)
    norm = normalised_frame(problem.fixed_grid)
    from .torch_levels import _level_grid_matrix
    from ..pyramid import shrink_per_axis
    phys_from_px = _level_grid_matrix(
        problem.fixed_grid, shrink_per_axis(problem.fixed_grid.shape, problem.schedule[0].factor)
    )
    rotates = problem.ndim == 2 and problem.model is not Model.TRANSLATION
    angles = ROTATION_SEARCH if (init is Init.AUTO and rotates) else (0.0,)
    fixed_centre = problem.fixed_grid.center
    chosen = []
    for frame in range(problem.batch):
        candidates = [centre] if init is Init.AUTO else []
        for angle in angles:
            start = centre @ _rotation_about(angle, fixed_centre) if problem.ndim == 2 else centre
            candidates.append(_phase_shift(data, start, frame, norm, phys_from_px))
        if len(candidates) == 1:
            chosen.append(candidates[0])
            continue
        stacked = np.stack(candidates)
        normalised = torch.as_tensor(norm @ stacked @ np.linalg.inv(norm))
        frames = torch.full((len(candidates),), frame, dtype=torch.long)
        s = sample(data, normalised, frames)
        fixed = data.fixed_values[0 if data.fixed_values.shape[0] == 1 else frame][None]
        losses = -natural(_ranking_metric(problem), s.values, fixed, s.weights, problem.settings.mi_bins)
        chosen.append(candidates[int(torch.argmin(losses.cpu()))])
    return np.stack(chosen)


def _ranking_metric(problem: Problem):
    """Rank starting points by NCC, or by MI when the metric is MI."""
    from ..options import Metric

    return Metric.MI if problem.metric is Metric.MI else Metric.NCC


def _physical(model_matrices: torch.Tensor, norm: np.ndarray) -> np.ndarray:
    return np.linalg.inv(norm) @ model_matrices.numpy() @ norm


def run(problem: Problem) -> Generator[Progress, None, Outcome]:
    """Register a (batched) problem, yielding progress after every iteration."""
    device = pick_device(problem.settings.device)
    optimiser_name = _optimiser_name(problem)
    optimiser = OPTIMISERS[optimiser_name]
    tolerance = problem.settings.tolerance or TOLERANCE_PX
    norm = normalised_frame(problem.fixed_grid)
    corners = None
    if problem.model is Model.HOMOGRAPHY:
        from ..transforms import grid_points

        corners_phys = apply_matrix(problem.fixed_grid.phys_from_px, grid_points(problem.fixed_grid.shape)[:-1])
        corners = torch.as_tensor(apply_matrix(norm, corners_phys))
    model = param_model(problem.model, problem.ndim, corners)

    initial = _initial(problem, device)
    base = torch.as_tensor(norm @ initial @ np.linalg.inv(norm))
    params = torch.zeros(problem.batch, model.n_params, dtype=torch.float64)
    total = sum(level.iterations for level in problem.schedule)
    n_levels = len(problem.schedule)
    reports, step = [], 0
    for index, level in enumerate(problem.schedule):
        started = time.perf_counter()
        data = _level(problem, index, device)
        objective = Objective(data, model, base, problem.metric, problem.settings.mi_bins)
        kwargs = {}
        if optimiser_name == 'adam':
            kwargs['learning_rate'] = (problem.settings.learning_rate or ADAM_RATE) * level.factor
        steps = optimiser(objective, params, level.iterations, tolerance, **kwargs)
        losses: list[float] = []
        while True:
            try:
                frame_losses = next(steps)
            except StopIteration as done:
                params, reason = done.value
                break
            losses.append(float(frame_losses.mean()))
            yield Progress(
                step=step, total=total, level=index, n_levels=n_levels,
                iteration=len(losses) - 1, loss=losses[-1],
            )
            step += 1
        # fold the level's result into the base so the next level starts at zero
        base = model.matrices(params, base)
        params = torch.zeros_like(params)
        reports.append(LevelReport(
            shape=data.fixed_shape, iterations=len(losses),
            seconds=time.perf_counter() - started, stop_reason=reason,
            losses=tuple(losses),
        ))
    return Outcome(
        moving_from_fixed=_physical(base, norm),
        initial=initial,
        metric_before=_natural(problem, data, torch.eye(problem.ndim + 1).expand_as(base)),
        metric_after=_natural(problem, data, base),
        levels=tuple(reports),
    )


def _natural(problem: Problem, data: LevelData, base: torch.Tensor) -> np.ndarray:
    s = sample(data, base)
    values = natural(problem.metric, s.values, data.fixed_values, s.weights, problem.settings.mi_bins)
    return values.double().cpu().numpy()
