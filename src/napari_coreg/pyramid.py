"""Pyramid schedules: how much each level shrinks, smooths and iterates."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ['Level', 'default_levels', 'level_schedule', 'shrink_per_axis']

#: The coarsest level of the default schedule keeps about this many pixels
#: along its shortest axis (coarser levels lose the structure to align).
COARSEST_SIZE = 48
#: Most levels the default schedule uses.
MAX_DEFAULT_LEVELS = 6
#: No level may be smaller than this along any axis that has more pixels.
MIN_LEVEL_SIZE = 8


@dataclass(frozen=True)
class Level:
    """One pyramid level, coarse to fine.

    Attributes
    ----------
    factor : int
        Nominal shrink factor; see :func:`shrink_per_axis`.
    sigma : float
        Gaussian smoothing after shrinking, in pixels of this level.
    iterations : int
        Most optimiser iterations at this level.
    """

    factor: int
    sigma: float
    iterations: int


def default_levels(shape: Sequence[int], coarsest_size: int = COARSEST_SIZE) -> int:
    """Number of levels whose coarsest keeps about ``coarsest_size`` pixels.

    Axes thinner than ``coarsest_size`` (the few planes of a z-stack) do not
    limit the pyramid: :func:`shrink_per_axis` keeps them.
    """
    smallest = min((n for n in shape if n >= coarsest_size), default=min(shape))
    levels = 1 + math.floor(math.log2(max(smallest / coarsest_size, 1.0)))
    return max(1, min(levels, MAX_DEFAULT_LEVELS))


def shrink_per_axis(shape: Sequence[int], factor: int) -> tuple[int, ...]:
    """Integer shrink per axis: ``factor``, less where an axis would get thin.

    An axis keeps at least ``MIN_LEVEL_SIZE`` pixels, so the few planes of a
    z-stack are not averaged away while its rows and columns shrink.
    """
    return tuple(
        max(1, min(factor, n // MIN_LEVEL_SIZE)) if n > 1 else 1 for n in shape
    )


def _per_level(
    value: int | float | Sequence | None, n_levels: int, name: str, default
) -> list:
    if value is None:
        return [default(i) for i in range(n_levels)]
    if isinstance(value, (int, float)):
        return [value] * n_levels
    values = list(value)
    if len(values) != n_levels:
        raise ValueError(
            f'{name} has {len(values)} entries but the pyramid has {n_levels} '
            f'levels: give one value per level (coarse to fine) or a single value'
        )
    return values


def level_schedule(
    shape: Sequence[int],
    *,
    levels: int | None = None,
    shrink_factors: Sequence[int] | None = None,
    smoothing_sigmas: float | Sequence[float] | None = None,
    iterations: int | Sequence[int] | None = None,
    default_iterations: int = 100,
    coarsest_size: int = COARSEST_SIZE,
) -> tuple[Level, ...]:
    """Build the pyramid schedule, coarse to fine, and check it fits ``shape``.

    Parameters
    ----------
    shape : sequence of int
        Shape of the fixed image (numpy order, no channel axis).
    levels : int, optional
        Number of levels; by default enough for the coarsest level to keep
        about ``coarsest_size`` pixels along the shortest axis (at most 6). Ignored when
        ``shrink_factors`` is given.
    shrink_factors : sequence of int, optional
        Shrink factor per level, coarse to fine, non-increasing
        (default ``2**(levels-1), ..., 2, 1``). An axis shorter than
        ``factor * 8`` pixels shrinks less, so thin 3D stacks keep their planes.
    smoothing_sigmas : float or sequence of float, optional
        Gaussian sigma per level in that level's pixels (default 1.0, and
        0.5 at a level that does not shrink).
    iterations : int or sequence of int, optional
        Most iterations per level (default ``default_iterations``).
    default_iterations : int
        The backend's default for ``iterations``.
    coarsest_size : int
        The backend's default size of the coarsest level (see ``levels``).

    Returns
    -------
    tuple of Level

    Raises
    ------
    ValueError
        If the lists disagree in length, factors increase or are not
        positive integers, or the image is too small for a factor on every
        axis.
    """
    if shrink_factors is None:
        n_levels = (
            default_levels(shape, coarsest_size) if levels is None else int(levels)
        )
        if n_levels < 1:
            raise ValueError(f'levels must be at least 1, got {levels}')
        shrink_factors = [2**i for i in range(n_levels - 1, -1, -1)]
    factors = [int(f) for f in shrink_factors]
    if (
        not factors
        or any(f < 1 for f in factors)
        or any(f != g for f, g in zip(factors, shrink_factors, strict=True))
    ):
        raise ValueError(
            f'shrink_factors must be positive integers, got {list(shrink_factors)}'
        )
    if any(a < b for a, b in zip(factors[:-1], factors[1:], strict=True)):
        raise ValueError(
            f'shrink_factors must run coarse to fine (non-increasing), got {factors}'
        )
    n_levels = len(factors)
    sigmas = _per_level(
        smoothing_sigmas,
        n_levels,
        'smoothing_sigmas',
        lambda i: 1.0 if factors[i] > 1 else 0.5,
    )
    iters = _per_level(iterations, n_levels, 'iterations', lambda i: default_iterations)
    if any(float(s) < 0 for s in sigmas):
        raise ValueError(f'smoothing_sigmas must be >= 0, got {sigmas}')
    if any(int(n) < 1 for n in iters):
        raise ValueError(f'iterations must be >= 1 per level, got {iters}')

    schedule = []
    for factor, sigma, n_iter in zip(factors, sigmas, iters, strict=True):
        shrink = shrink_per_axis(shape, factor)
        if factor > 1 and all(
            s < factor for n, s in zip(shape, shrink, strict=True) if n > 1
        ):
            raise ValueError(
                f'image of shape {tuple(shape)} is too small for shrink factor '
                f'{factor} (levels need {MIN_LEVEL_SIZE}+ pixels per axis): use '
                f'fewer levels or smaller shrink_factors'
            )
        schedule.append(Level(factor, float(sigma), int(n_iter)))
    return tuple(schedule)
