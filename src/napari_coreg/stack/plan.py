"""Validate a stack registration once, before any work, and plan it.

Everything a bad argument can break is checked here: axes, frame shape,
reference, model/metric/backend/optimiser/device, batch size, ``out``,
client, and NaN/inf or constant frames of an in-memory stack. The
:class:`Plan` that comes out is what the run needs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from numbers import Integral
from typing import Any

import numpy as np

from ..inputs import as_image
from ..method import Method, resolve
from ..options import Settings
from ..transforms import Grid
from .batching import Spec, auto_batch_size
from .distributed import check_client
from .frames import Frames, as_array, as_frames, check_frames
from .output import check_out

__all__ = [
    'MEAN_ROUNDS',
    'PREVIOUS_INIT',
    'REFERENCES',
    'Plan',
    'make_plan',
    'resolve_method',
]

#: References a stack can be registered to (besides a frame index).
REFERENCES = ('previous', 'first', 'mean')
#: Default number of rounds of the ``'mean'`` reference.
MEAN_ROUNDS = 3
#: Default ``init`` of ``reference='previous'`` (other references keep the
#: backend's default, ``'auto'``).
PREVIOUS_INIT = 'phase'


@dataclass(frozen=True, eq=False)
class Plan:
    """A checked stack registration: what to read, how, and where to write.

    ``reference`` is ``'previous'``, ``'first'``, ``'mean'`` or a frame
    index; ``rounds`` is 1 unless the reference is ``'mean'``.
    """

    frames: Frames
    spec: Spec
    reference: str | int
    register_channel: int | None
    batch_size: int
    rounds: int
    out: Any
    overwrite: bool
    client: Any


def resolve_method(
    model: Any,
    metric: Any,
    backend: Any,
    reference: Any,
    settings: Settings | None,
    given: dict[str, Any],
) -> Method:
    """Resolve and check the :class:`~napari_coreg.Method` of a stack run.

    Parameters
    ----------
    model, metric, backend : str
        The choices (parsed and checked by :func:`napari_coreg.resolve`,
        optimiser and device included).
    reference : str or int
        The reference: ``'previous'`` makes ``init`` default to ``'phase'``
        unless ``init`` is given, ``settings`` is, or the metric is
        multimodal.
    settings : Settings or None
        Settings passed as one object.
    given : dict
        Settings passed as keywords; ``None`` values count as not given.
        Keywords override ``settings``.

    Returns
    -------
    Method

    Raises
    ------
    ValueError
        For an unknown name or a combination the backend cannot do.
    TypeError
        If ``settings`` is not a :class:`~napari_coreg.Settings`.
    """
    method = resolve(model, metric, backend, settings=settings, **given)
    if (
        settings is None
        and given.get('init') is None
        and isinstance(reference, str)
        and reference.lower() == 'previous'
        and not method.metric_spec.multimodal
    ):
        # neighbours differ by small motions: a phase-correlation shift is
        # enough to start from (the rotation search of 'auto' costs ~25 %)
        opts = dataclasses.replace(method.settings, init=PREVIOUS_INIT)
        method = dataclasses.replace(method, settings=opts)
    return method


def _parse_reference(reference: Any, n: int) -> str | int:
    if isinstance(reference, str):
        value = reference.lower()
        if value not in REFERENCES:
            raise ValueError(
                f'unknown reference {reference!r}: choose one of '
                f'{", ".join(map(repr, REFERENCES))} or a frame index'
            )
        return value
    if isinstance(reference, Integral) and not isinstance(reference, bool):
        index = int(reference)
        if not -n <= index < n:
            raise ValueError(
                f'reference frame {index} is out of range for a stack of {n} '
                f'frames: use 0 to {n - 1} (or a negative index)'
            )
        return index % n
    raise ValueError(
        f'reference must be {", ".join(map(repr, REFERENCES))} or a frame '
        f'index, got {reference!r}'
    )


def _frames(stack: Any, axis: Any, channel_axis: Any) -> Frames:
    """See the stack as frames: axes checked, RGB(A) in the last axis found."""
    frames = as_frames(stack, axis, channel_axis)
    shape, ndim = frames.shape, frames.ndim
    axis, channel_axis = frames.axis, frames.channel_axis
    if frames.n < 2:
        raise ValueError(
            f'the stack has {frames.n} frame along axis {axis} (shape {shape}): '
            'nothing to register; is axis= the time/z axis?'
        )
    # the first frame through the pair validation: dtype, size, RGB detection
    probe = np.take(np.asarray(stack[frames.index(0, 1)]), 0, axis=axis)
    first = as_image(
        probe,
        'frame 0',
        channel_axis=(
            None if channel_axis is None else channel_axis - (channel_axis > axis)
        ),
    )
    if channel_axis is None and first.grid.ndim < probe.ndim:
        channel_axis = ndim - 1  # RGB(A) in the last axis, as register() does
        frames = Frames(stack, axis, channel_axis)
    if len(frames.spatial) not in (2, 3):
        raise ValueError(
            f'stack frames have {len(frames.spatial)} spatial axes (stack shape '
            f'{shape}, axis={axis}, channel_axis={channel_axis}): frames must be '
            '2D or 3D; name the channel axis with channel_axis='
        )
    return frames


def _register_channel(value: Any, frames: Frames) -> int | None:
    if value is None:
        return None
    if frames.channel_axis is None:
        raise ValueError('register_channel needs a channel axis: give channel_axis=')
    if (
        not isinstance(value, Integral)
        or isinstance(value, bool)
        or not -frames.channels <= int(value) < frames.channels
    ):
        raise ValueError(
            f'register_channel={value!r} is not one of the '
            f'{frames.channels} channels (0 to {frames.channels - 1})'
        )
    return int(value) % frames.channels


def _batch_size(value: Any, method: Method, frames: Frames) -> int:
    batching = method.capabilities.batching
    if not batching:
        value = 1 if value is None else value
    elif value is None:
        return auto_batch_size(
            frames.spatial, method.settings.device, model=method.model
        )
    if not isinstance(value, Integral) or isinstance(value, bool) or value < 1:
        raise ValueError(f'batch_size must be a positive integer, got {value!r}')
    # a backend without batching (SimpleITK) registers one frame per run
    return int(value) if batching else 1


def make_plan(
    stack: Any,
    *,
    axis: Any,
    reference: Any,
    model: Any,
    metric: Any,
    backend: Any,
    channel_axis: Any,
    register_channel: Any,
    batch_size: Any,
    spacing: Any,
    origin: Any,
    out: Any,
    overwrite: bool,
    client: Any,
    rounds: Any,
    settings: Settings | None,
    given: dict[str, Any],
) -> Plan:
    """Check every argument of a stack registration and plan it.

    Parameters are those of :func:`napari_coreg.iter_register_stack`;
    ``given`` holds the settings passed as keywords (see
    :func:`resolve_method`).

    Returns
    -------
    Plan

    Raises
    ------
    ValueError
        For any bad argument, naming it and the fix.
    TypeError
        If ``settings`` is not a :class:`Settings`.
    """
    method = resolve_method(model, metric, backend, reference, settings, given)
    stack = as_array(stack)
    frames = _frames(stack, axis, channel_axis)
    register_channel = _register_channel(register_channel, frames)
    grid = Grid(
        frames.spatial,
        spacing=tuple(spacing) if spacing is not None else (),
        origin=tuple(origin) if origin is not None else (),
    )
    method.check_ndim(grid.ndim)
    schedule = method.schedule(grid.shape)
    reference = _parse_reference(reference, frames.n)
    batch_size = _batch_size(batch_size, method, frames)
    if not isinstance(rounds, Integral) or isinstance(rounds, bool) or rounds < 1:
        raise ValueError(f'rounds must be a positive integer, got {rounds!r}')
    if not isinstance(overwrite, (bool, np.bool_)):
        raise TypeError(f'overwrite must be True or False, got {overwrite!r}')
    check_out(out, stack, frames, bool(overwrite))
    check_client(client)
    check_frames(frames)
    # last: a missing backend package fails now, not later, and loading it
    # is the first piece of work
    method.engine()
    return Plan(
        frames,
        Spec(method, schedule, grid),
        reference,
        register_channel,
        batch_size,
        int(rounds) if reference == 'mean' else 1,
        out,
        bool(overwrite),
        client,
    )
