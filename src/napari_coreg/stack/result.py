"""What a stack registration returns: per-frame transforms, figures, progress.

Kept apart from :mod:`napari_coreg.result` (single pairs); imports only numpy
at module level so that ``import napari_coreg`` stays light.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from numbers import Integral
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..result import LevelReport, Progress
from ..transforms import Grid
from .frames import as_array, as_frames

__all__ = ['BatchReport', 'StackProgress', 'StackResult']


@dataclass(frozen=True)
class StackProgress(Progress):
    """Progress of :func:`napari_coreg.iter_register_stack`.

    The :class:`~napari_coreg.Progress` fields describe the engine step of
    the batch being optimised (``level``, ``iteration``, ``loss`` = mean over
    the batch); ``step`` and ``total`` count frame operations over the whole
    run (registrations in every round, then frames written to ``out``), so
    ``step / total`` is the fraction done. ``total`` is an upper bound: the
    ``'mean'`` reference may stop after fewer rounds.

    Attributes
    ----------
    phase : str
        ``'mean'`` (averaging frames for the ``'mean'`` reference),
        ``'register'`` or ``'write'`` (resampling into ``out``).
    frames_done, n_frames : int
        Frames finished in this phase (and round), out of ``n_frames``.
    batch, n_batches : int
        0-based batch of this phase, and how many there are.
    round, n_rounds : int
        0-based round (several only for ``reference='mean'``).
    """

    phase: str = 'register'
    frames_done: int = 0
    n_frames: int = 0
    batch: int = 0
    n_batches: int = 0
    round: int = 0
    n_rounds: int = 1


@dataclass(frozen=True)
class BatchReport:
    """How one batch of frames went (one engine run, or one dask task).

    Attributes
    ----------
    frames : tuple of int
        Stack indices of the frames registered in this batch (the moving
        frames; with ``reference='previous'`` each is registered to the frame
        before it).
    round : int
        Round of the ``'mean'`` reference (0 otherwise).
    seconds : float
        Wall-clock seconds of the registration of the batch, reading and
        intensity normalisation included.
    levels : tuple of LevelReport
        Per pyramid level; losses are means over the batch's frames.
    """

    frames: tuple[int, ...]
    round: int
    seconds: float
    levels: tuple[LevelReport, ...]


def _readonly(array: ArrayLike, dtype=np.float64) -> NDArray:
    out = np.array(array, dtype=dtype)
    out.setflags(write=False)
    return out


@dataclass(frozen=True, eq=False)
class StackResult:
    """Outcome of :func:`napari_coreg.register_stack`.

    Attributes
    ----------
    moving_from_fixed : ndarray, shape (N, D + 1, D + 1)
        Frame ``i``'s ``moving_from_fixed``: maps a point of the *reference*
        coordinates (physical, numpy order) to the point of frame ``i`` that
        shows the same structure. The reference coordinates are those of the
        first frame for ``'previous'`` (the chain of neighbour registrations
        composed) and ``'first'``, of frame ``k`` for ``reference=k``, and of
        the iterated mean image for ``'mean'``.
    reference : str or int
        ``'previous'``, ``'first'``, ``'mean'`` or the reference frame index.
    model, metric, backend : str
    metric_before, metric_after : ndarray, shape (N,)
        The registration metric (natural form: NCC and MI higher is better)
        of each frame against what it was registered to (the previous frame,
        the reference frame or the mean image), before (as stored) and after.
        NaN for a frame that was not registered (the reference frame, or the
        first frame with ``'previous'``).
    frame_seconds : ndarray, shape (N,)
        Registration time per frame: its batch's time divided by the number
        of frames in the batch (summed over rounds); 0 for an unregistered
        frame.
    batch_of_frame : ndarray of int, shape (N, rounds)
        Index into :attr:`batches` of the batch that registered each frame
        in each round (-1 for an unregistered frame).
    batches : tuple of BatchReport
        Per batch: frames, round, time and per-level history.
    elapsed : float
        Wall-clock seconds of the whole run (writing ``out`` included).
    grid : Grid
        Physical geometry of one frame (spatial axes only).
    axis, channel_axis : int or None
        Stack and channel axes of the input (non-negative); ``channel_axis``
        is ``None`` for single-channel stacks.
    register_channel : int or None
        Channel the transforms were estimated on (``None``: their luminance
        or mean).
    rounds : int
        Rounds run (more than one only for ``'mean'``).
    settings : dict
        Every setting used, JSON-able.

    Notes
    -----
    ``aligned`` is the input resampled onto the reference coordinates, in
    the input's layout and dtype (integers rounded and clipped): the array
    written when ``out`` was given; otherwise, for an in-memory numpy input,
    a numpy array computed on first access, and for an out-of-core input
    (dask, zarr, memory-mapped) a lazy dask array computed frame by frame.
    """

    moving_from_fixed: NDArray[np.float64]
    reference: str | int
    model: str
    metric: str
    backend: str
    metric_before: NDArray[np.float64]
    metric_after: NDArray[np.float64]
    frame_seconds: NDArray[np.float64]
    batch_of_frame: NDArray[np.int64]
    batches: tuple[BatchReport, ...]
    elapsed: float
    grid: Grid
    axis: int
    channel_axis: int | None
    register_channel: int | None
    rounds: int
    settings: dict[str, Any] = field(default_factory=dict)
    _frames: Any = field(default=None, repr=False)
    _out: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        """Store the arrays as read-only float64 (int64 for batch indices)."""
        object.__setattr__(self, 'moving_from_fixed', _readonly(self.moving_from_fixed))
        for name in ('metric_before', 'metric_after', 'frame_seconds'):
            object.__setattr__(self, name, _readonly(getattr(self, name)))
        object.__setattr__(
            self, 'batch_of_frame', _readonly(self.batch_of_frame, np.int64)
        )

    @property
    def fixed_from_moving(self) -> NDArray[np.float64]:
        """Per-frame inverses (napari's ``layer.affine`` direction)."""
        return np.linalg.inv(self.moving_from_fixed)

    @property
    def n_frames(self) -> int:
        """Number of frames."""
        return self.moving_from_fixed.shape[0]

    @property
    def ndim(self) -> int:
        """Number of spatial dimensions of a frame."""
        return self.moving_from_fixed.shape[1] - 1

    @property
    def aligned(self):
        """The aligned stack (see the class notes for its type)."""
        if self._out is not None:
            return self._out
        cached = self.__dict__.get('_aligned_cache')
        if cached is None:
            cached = self._frames.aligned(self.moving_from_fixed, self.grid)
            object.__setattr__(self, '_aligned_cache', cached)
        return cached

    @cached_property
    def assessments(self) -> tuple:
        """Per frame, the verdict with its evidence (``None``: not registered).

        See :func:`napari_coreg.quality.assess`; computed on first access,
        a few tens of milliseconds per frame.
        """
        from ..quality.frames import assess_frames

        return assess_frames(self)

    @property
    def verdicts(self) -> tuple[str, ...]:
        """Per frame ``'ok'``, ``'suspect'`` or ``'failed'`` (unregistered: ok)."""
        return tuple('ok' if a is None else a.verdict for a in self.assessments)

    @property
    def verdict_reasons(self) -> tuple[tuple[str, ...], ...]:
        """Per frame, the sentences behind its verdict."""
        return tuple(
            ('Not registered: the reference.',) if a is None else a.reasons
            for a in self.assessments
        )

    @property
    def flagged_frames(self) -> tuple[int, ...]:
        """Indices of the frames whose verdict is not ``'ok'``."""
        return tuple(i for i, v in enumerate(self.verdicts) if v != 'ok')

    def aligned_frame(self, index: int) -> NDArray:
        """Frame ``index`` resampled onto the reference coordinates (numpy).

        Shape: the frame's axes in input order (the stack axis removed).
        """
        if not isinstance(index, Integral) or isinstance(index, bool):
            raise TypeError(f'frame index must be an integer, got {index!r}')
        index = int(index)
        if not -self.n_frames <= index < self.n_frames:
            raise IndexError(
                f'frame {index} is out of range for a stack of {self.n_frames}'
            )
        index %= self.n_frames
        return self._frames.aligned_frame(
            index, self.moving_from_fixed[index], self.grid
        )

    def apply(
        self, stack: Any, channel_axis: int | None = None, axis: int | None = None
    ) -> Any:
        """Resample another stack (e.g. another channel) through these transforms.

        Parameters
        ----------
        stack : array_like or path
            Same number of frames along :attr:`axis` and same frame shape as
            the registered stack (numpy, dask, zarr, memory-mapped, or a
            path read as by :func:`~napari_coreg.stack.open_stack`).
        channel_axis : int, optional
            Its channel axis, if any.
        axis : int, optional
            Its stack axis (default: :attr:`axis`).

        Returns
        -------
        ndarray or dask array
            numpy for an in-memory input, a lazy dask array otherwise; the
            input's layout and dtype.

        Raises
        ------
        ValueError
            For axes out of range, or a stack whose frames do not match.
        """
        stack = as_array(stack)
        frames = as_frames(stack, self.axis if axis is None else axis, channel_axis)
        if frames.n != self.n_frames or frames.spatial != self.grid.shape:
            raise ValueError(
                f'stack of shape {frames.shape} does not match the registered '
                f'one ({self.n_frames} frames of {self.grid.shape}): give its '
                f'stack axis (axis=, now {frames.axis}) and channel axis '
                f'(channel_axis=, now {frames.channel_axis})'
            )
        return frames.aligned(self.moving_from_fixed, self.grid)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary: matrices, conventions, per-frame figures."""
        from .. import __version__

        def floats(values):
            return [None if not np.isfinite(v) else float(v) for v in values]

        return {
            'moving_from_fixed': self.moving_from_fixed.tolist(),
            'fixed_from_moving': self.fixed_from_moving.tolist(),
            'conventions': {
                'direction': 'moving_from_fixed[i] maps reference physical '
                'points to physical points of frame i (ITK pull-back); '
                'fixed_from_moving[i] is its inverse (napari layer.affine '
                'direction)',
                'reference': 'coordinates of the first frame (previous, first), '
                'of frame k (reference=k) or of the iterated mean (mean)',
                'axes': 'numpy order: (row, col) in 2D, (plane, row, col) in 3D',
                'units': 'physical: pixel index times spacing plus origin',
            },
            'reference': self.reference,
            'model': self.model,
            'metric': self.metric,
            'backend': self.backend,
            'n_frames': self.n_frames,
            'axis': self.axis,
            'channel_axis': self.channel_axis,
            'register_channel': self.register_channel,
            'rounds': self.rounds,
            'metric_before': floats(self.metric_before),
            'metric_after': floats(self.metric_after),
            'frame_seconds': floats(self.frame_seconds),
            'elapsed_s': self.elapsed,
            'batches': [
                {
                    'frames': list(b.frames),
                    'round': b.round,
                    'seconds': b.seconds,
                    'levels': [
                        {
                            'shape': list(lv.shape),
                            'iterations': lv.iterations,
                            'seconds': lv.seconds,
                            'stop_reason': lv.stop_reason,
                        }
                        for lv in b.levels
                    ],
                }
                for b in self.batches
            ],
            'grid': self.grid.to_dict(),
            'settings': self.settings,
            'napari_coreg_version': __version__,
        }
