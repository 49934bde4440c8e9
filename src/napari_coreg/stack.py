"""Register every frame of a stack: time-lapses, z-stacks, satellite series.

``register_stack`` / ``iter_register_stack`` validate the stack, cut it into
batches of frames and hand each batch to a backend as one batched problem
(the torch engine optimises the whole batch at once; SimpleITK frames go one
by one). Stacks that do not fit in memory (dask, zarr, memory-mapped files)
stream through batch by batch; the aligned stack is computed lazily or
written to ``out``. With ``client=`` the batches run as dask.distributed
tasks and give the same matrices as a local run.

Conventions: numpy axis order; ``moving_from_fixed[i]`` maps a point of the
reference coordinates (physical units) to the point of frame ``i`` that shows
the same structure; matrices compose right to left.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, replace
from numbers import Integral
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .api import drive
from .inputs import as_image, normalise_intensities
from .method import Method, resolve
from .options import MODEL_SPECS, Model
from .problem import Problem
from .pyramid import Level
from .result import LevelReport, Progress
from .stack_result import BatchReport, StackProgress, StackResult
from .transforms import Grid, corner_error

__all__ = [
    'auto_batch_size',
    'iter_register_stack',
    'open_stack',
    'register_stack',
]

#: References a stack can be registered to (besides a frame index).
REFERENCES = ('previous', 'first', 'mean')
#: Default number of rounds of the ``'mean'`` reference.
MEAN_ROUNDS = 3
#: ``'mean'`` stops early when no frame's transform moved its corners by
#: more than this (physical units) between two rounds.
MEAN_TOLERANCE = 0.01
#: Working memory of one frame in the torch engine, bytes per pixel: a base
#: (sampled values, gradients, weights, residuals) plus the Jacobian's
#: columns; measured about 170 B/px for 2D rigid (3 parameters) at 512^2.
BYTES_PER_PIXEL = 120
BYTES_PER_PIXEL_PER_PARAMETER = 16
#: Fraction of the available memory the batches may use ...
MEMORY_FRACTION = 0.25
#: ... and at most this much per batch on a CPU, where bigger batches no
#: longer speed up and would crowd out everything else.
MAX_BATCH_BYTES_CPU = 512 << 20
#: Largest automatic batch.
MAX_BATCH = {'cpu': 16, 'other': 64}
#: Suffixes ``out`` may have, and :func:`open_stack` reads.
OUT_SUFFIXES = ('.zarr', '.npy', '.tif', '.tiff')
#: Default ``init`` of ``reference='previous'`` (other references keep the
#: backend's default, ``'auto'``).
PREVIOUS_INIT = 'phase'
#: Dask tasks in flight per worker (bounds client memory for big stacks).
TASKS_PER_WORKER = 2


# --------------------------------------------------------------------------
# reading and writing stacks


def open_stack(path: str | os.PathLike) -> Any:
    """Open a stack file without reading it into memory.

    ``.npy`` is memory-mapped, ``.tif``/``.tiff`` memory-mapped when the
    file allows it (uncompressed, contiguous) and opened as a zarr store
    otherwise, ``.zarr`` opened read-only.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if not path.exists():
        raise ValueError(f'stack file {str(path)!r} does not exist')
    if suffix == '.npy':
        return np.load(path, mmap_mode='r')
    if suffix in ('.tif', '.tiff'):
        import tifffile

        try:
            return tifffile.memmap(path, mode='r')
        except ValueError:  # compressed or not contiguous
            import zarr

            return zarr.open(tifffile.imread(path, aszarr=True), mode='r')
    if suffix == '.zarr':
        import zarr

        return zarr.open_array(path, mode='r')
    raise ValueError(
        f'cannot open {str(path)!r}: stack files are {", ".join(OUT_SUFFIXES)}'
    )


def _is_dask(data: object) -> bool:
    return type(data).__module__.startswith('dask.') and hasattr(data, 'dask')


def _is_zarr(data: object) -> bool:
    return type(data).__module__.startswith('zarr')


def _in_memory(data: object) -> bool:
    return (
        isinstance(data, np.ndarray)
        and not isinstance(data, np.memmap)
        and (not isinstance(data.base, np.memmap))
    )


def _cast(values: NDArray, dtype: np.dtype) -> NDArray:
    """Float values to ``dtype``: integers are rounded and clipped."""
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(values), info.min, info.max).astype(dtype)
    return values.astype(dtype, copy=False)


class _Frames:
    """A stack seen as frames: ``(n, *spatial, channels)`` slabs on demand.

    Reading a slab reads only those frames (and only one channel when asked),
    so dask, zarr and memory-mapped stacks are never loaded whole.
    """

    def __init__(self, data: Any, axis: int, channel_axis: int | None) -> None:
        self.data = data
        self.shape = tuple(int(n) for n in data.shape)
        self.ndim = len(self.shape)
        self.axis = axis
        self.channel_axis = channel_axis
        self.dtype = np.dtype(data.dtype)
        spatial_axes = [a for a in range(self.ndim) if a not in (axis, channel_axis)]
        self.spatial_axes = tuple(spatial_axes)
        self.spatial = tuple(self.shape[a] for a in spatial_axes)
        self.n = self.shape[axis]
        self.channels = 1 if channel_axis is None else self.shape[channel_axis]
        order = [axis, *spatial_axes]
        if channel_axis is not None:
            order.append(channel_axis)
        self._perm = tuple(order)
        self._inverse = tuple(np.argsort(order))

    @property
    def in_memory(self) -> bool:
        return _in_memory(self.data)

    def slab(self, start: int, stop: int, channel: int | None = None) -> NDArray:
        """Frames ``start:stop`` as ``(n, *spatial, C)`` (``C = 1`` for one channel)."""
        index = [slice(None)] * self.ndim
        index[self.axis] = slice(start, stop)
        if self.channel_axis is not None and channel is not None:
            index[self.channel_axis] = slice(channel, channel + 1)
        block = np.asarray(self.data[tuple(index)])
        block = np.transpose(block, self._perm)
        return block if self.channel_axis is not None else block[..., None]

    def to_layout(self, frames: NDArray) -> NDArray:
        """``(n, *spatial, C)`` back to the input's axis order."""
        if self.channel_axis is None:
            frames = frames[..., 0]
        return np.transpose(frames, self._inverse)

    def frame_layout(self, frame: NDArray) -> NDArray:
        """One ``(*spatial, C)`` frame in the input's order, stack axis removed."""
        return np.take(self.to_layout(frame[None]), 0, axis=self.axis)

    def resampled(
        self, frames: NDArray, matrices: NDArray, grid: Grid, dtype: np.dtype
    ) -> NDArray:
        """Resample ``(n, *spatial, C)`` frames onto the reference grid."""
        from .warp import resample

        out = np.empty(frames.shape, dtype=dtype)
        for k in range(frames.shape[0]):
            out[k] = _cast(resample(frames[k], matrices[k], grid, grid), dtype)
        return out

    def aligned_frame(self, index: int, matrix: NDArray, grid: Grid) -> NDArray:
        frames = self.slab(index, index + 1)
        return self.frame_layout(
            self.resampled(frames, matrix[None], grid, self.dtype)[0]
        )

    def aligned(self, matrices: NDArray, grid: Grid) -> Any:
        """The whole aligned stack: numpy for in-memory input, else lazy dask."""
        if self.in_memory:
            frames = self.slab(0, self.n)
            return self.to_layout(self.resampled(frames, matrices, grid, self.dtype))
        try:
            import dask.array as da
        except ImportError as error:  # pragma: no cover - dask is a dev extra
            raise ImportError(
                'the aligned stack of an out-of-core input is a dask array: '
                "pip install 'napari-coreg[stack]', or pass out= to write it"
            ) from error
        # one frame per chunk, read only when that chunk is computed
        chunks = [-1] * self.ndim
        chunks[self.axis] = 1
        if _is_dask(self.data):
            source = self.data.rechunk(tuple(chunks))
        else:
            source = da.from_array(self.data, chunks=tuple(chunks), asarray=True)

        def block(values: NDArray, block_info=None) -> NDArray:
            start, stop = block_info[0]['array-location'][self.axis]
            frames = np.transpose(values, self._perm)
            if self.channel_axis is None:
                frames = frames[..., None]
            moved = self.resampled(frames, matrices[start:stop], grid, self.dtype)
            return self.to_layout(moved)

        return source.map_blocks(block, dtype=self.dtype)

    def write(self, out: Any, start: int, stop: int, frames: NDArray) -> None:
        index = [slice(None)] * self.ndim
        index[self.axis] = slice(start, stop)
        out[tuple(index)] = self.to_layout(frames)


def _gray(slab: NDArray, first: int, frames: Sequence[int]) -> NDArray[np.float32]:
    """Checked single-channel float32 frames, normalised to about [0, 1].

    ``slab`` is ``(n, *spatial, C)`` holding frames ``first, first + 1, ...``;
    the registration uses the luminance (3-4 channels) or the mean of the
    channels (one channel when ``register_channel`` was given).
    """
    out = []
    for index in frames:
        try:
            image = as_image(slab[index - first], f'frame {index}', channel_axis=-1)
        except ValueError as error:
            raise ValueError(f'{error} (stack frame {index})') from None
        out.append(normalise_intensities(image.gray))
    return np.stack(out)


def _open_out(out: Any, frames: _Frames, overwrite: bool) -> Any:
    """A writable array of the input's shape and dtype for the aligned stack."""
    shape, dtype = frames.shape, frames.dtype
    if not isinstance(out, (str, os.PathLike)):
        return out
    path = Path(out)
    suffix = path.suffix.lower()
    if path.exists() and overwrite:
        if path.is_dir():
            import shutil

            shutil.rmtree(path)
        else:
            path.unlink()
    if suffix == '.npy':
        return np.lib.format.open_memmap(path, mode='w+', dtype=dtype, shape=shape)
    if suffix in ('.tif', '.tiff'):
        import tifffile

        return tifffile.memmap(path, shape=shape, dtype=dtype, bigtiff=True)
    import zarr

    chunks = list(shape)
    chunks[frames.axis] = 1
    return zarr.open_array(
        path, mode='w', shape=shape, dtype=dtype, chunks=tuple(chunks)
    )


def _check_out(out: Any, data: Any, frames: _Frames, overwrite: bool) -> None:
    if out is None:
        return
    if isinstance(out, (str, os.PathLike)):
        path = Path(out)
        if path.suffix.lower() not in OUT_SUFFIXES:
            raise ValueError(
                f'out={str(path)!r}: give a path ending in '
                f'{", ".join(OUT_SUFFIXES)}, or a writable array'
            )
        if not path.parent.is_dir():
            raise ValueError(
                f'out={str(path)!r}: folder {str(path.parent)!r} does not exist'
            )
        source = getattr(data, 'filename', None)
        if source is not None and Path(source).resolve() == path.resolve():
            raise ValueError(
                f'out={str(path)!r} is the input stack: choose another path '
                '(the input is never overwritten)'
            )
        if path.exists() and not overwrite:
            raise ValueError(
                f'out={str(path)!r} exists: remove it, choose another path or '
                'pass overwrite=True'
            )
        return
    if tuple(getattr(out, 'shape', ())) != frames.shape:
        raise ValueError(
            f'out has shape {tuple(getattr(out, "shape", ()))} but the stack has '
            f"shape {frames.shape}: pass an array of the stack's shape or a path"
        )
    if out is data or (
        isinstance(out, np.ndarray)
        and isinstance(data, np.ndarray)
        and np.shares_memory(out, data)
    ):
        raise ValueError(
            'out is (a view of) the input stack: pass a separate array '
            '(the input is never overwritten)'
        )
    if isinstance(out, np.ndarray) and not out.flags.writeable:
        raise ValueError('out is read-only: pass a writable array')


# --------------------------------------------------------------------------
# batch size


def available_memory() -> int:
    """Bytes of memory available to this process (psutil when installed)."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:  # pragma: no cover - psutil is a dev extra
        try:
            return int(os.sysconf('SC_AVPHYS_PAGES') * os.sysconf('SC_PAGE_SIZE'))
        except (ValueError, OSError, AttributeError):
            return 2 << 30


def auto_batch_size(
    spatial: Sequence[int],
    device: str | None = None,
    memory: int | None = None,
    model: str = 'rigid',
) -> int:
    """Frames per engine run that fit the memory budget.

    The budget is a quarter of the available memory, and at most 512 MiB on
    a CPU (larger batches no longer run faster there).

    Parameters
    ----------
    spatial : sequence of int
        Shape of one frame.
    device : str, optional
        torch device; on CUDA the device's free memory counts.
    memory : int, optional
        Bytes available (default: what is available now).
    model : str
        Transform model (its parameter count sizes the Jacobian).
    """
    pixels = int(np.prod(spatial))
    params = MODEL_SPECS[Model.parse(model, 'model')].n_params(len(spatial))
    per_frame = pixels * (BYTES_PER_PIXEL + BYTES_PER_PIXEL_PER_PARAMETER * params)
    cpu = device is None or str(device) == 'cpu'
    if memory is None:
        memory = available_memory()
        if device is not None and str(device).startswith('cuda'):
            import torch

            memory = int(torch.cuda.mem_get_info(torch.device(device))[0])
    budget = MEMORY_FRACTION * memory
    if cpu:
        budget = min(budget, MAX_BATCH_BYTES_CPU)
    fits = int(budget // max(per_frame, 1))
    return max(1, min(fits, MAX_BATCH['cpu' if cpu else 'other']))


# --------------------------------------------------------------------------
# the work of one batch (runs here or in a dask worker)


@dataclass(frozen=True)
class _Spec:
    """Everything a batch needs besides its pixels (small, picklable)."""

    method: Method
    schedule: tuple[Level, ...]
    grid: Grid


@dataclass(frozen=True)
class _Job:
    """One batch: which frames, against what, from where.

    ``kind``: ``'pairs'`` registers each frame to the frame before it,
    ``'fixed'`` to one fixed image, ``'sum'`` only averages frames (resampled
    through ``initial`` when given).
    """

    index: int
    kind: str
    frames: tuple[int, ...]
    start: int
    stop: int
    round: int = 0
    initial: NDArray | None = None
    accumulate: bool = False


@dataclass(frozen=True, eq=False)
class _BatchOut:
    job: _Job
    matrices: NDArray | None
    before: NDArray | None
    after: NDArray | None
    levels: tuple[LevelReport, ...]
    seconds: float
    total: NDArray | None = None  # sum of (aligned) normalised frames
    count: NDArray | None = None  # frames that covered each pixel


def _accumulate(gray: NDArray, matrices: NDArray | None, grid: Grid):
    """Sum and coverage count of ``gray`` frames (resampled when matrices given)."""
    if matrices is None:
        return gray.sum(axis=0, dtype=np.float64), np.full(gray.shape[1:], len(gray))
    from .warp import resample

    total = np.zeros(gray.shape[1:], np.float64)
    count = np.zeros(gray.shape[1:], np.int64)
    for image, matrix in zip(gray, matrices, strict=True):
        moved = resample(image, matrix, grid, grid, fill=np.nan)
        valid = np.isfinite(moved)
        total += np.where(valid, moved, 0)
        count += valid
    return total, count


def _iter_batch(
    spec: _Spec, job: _Job, slab: NDArray, fixed: NDArray | None
) -> Generator[Progress, None, _BatchOut]:
    """Register one batch, yielding the engine's progress."""
    started = time.perf_counter()
    needed = sorted(
        set(job.frames)
        | ({f - 1 for f in job.frames} if job.kind == 'pairs' else set())
    )
    gray_all = _gray(slab, job.start, needed)
    where = {f: k for k, f in enumerate(needed)}
    moving = gray_all[[where[f] for f in job.frames]]
    if job.kind == 'sum':
        total, count = _accumulate(moving, job.initial, spec.grid)
        return _BatchOut(
            job, None, None, None, (), time.perf_counter() - started, total, count
        )
    if job.kind == 'pairs':
        fixed_batch = gray_all[[where[f - 1] for f in job.frames]]
    else:
        fixed_batch = np.asarray(fixed, dtype=np.float32)[None]
    engine = spec.method.engine()
    problem = Problem(
        fixed=fixed_batch,
        moving=moving,
        fixed_grid=spec.grid,
        moving_grid=spec.grid,
        fixed_mask=None,
        moving_mask=None,
        method=spec.method,
        schedule=spec.schedule,
        initial=job.initial,
    )
    outcome = yield from engine.run(problem)
    total = count = None
    if job.accumulate:
        total, count = _accumulate(moving, outcome.moving_from_fixed, spec.grid)
    return _BatchOut(
        job,
        outcome.moving_from_fixed,
        outcome.metric_before,
        outcome.metric_after,
        outcome.levels,
        time.perf_counter() - started,
        total,
        count,
    )


def _step(steps: Generator) -> tuple[Any, Any]:
    """One engine step of a batch: ``(progress, None)`` or ``(None, result)``."""
    try:
        return next(steps), None
    except StopIteration as done:
        return None, done.value


def _solve(spec: _Spec, job: _Job, slab: Any, fixed: NDArray | None) -> _BatchOut:
    """Run one batch to the end (a dask task). ``slab`` may be a reader."""
    if isinstance(slab, _Reader):
        slab = slab()
    steps = _iter_batch(spec, job, slab, fixed)
    while True:
        progress, result = _step(steps)
        if result is not None:
            return result


@dataclass(frozen=True, eq=False)
class _Reader:
    """Reads a slab where it runs (a worker reading a zarr store itself)."""

    frames: _Frames
    start: int
    stop: int
    channel: int | None

    def __call__(self) -> NDArray:
        return self.frames.slab(self.start, self.stop, self.channel)


# --------------------------------------------------------------------------
# validation


@dataclass(frozen=True, eq=False)
class _Plan:
    frames: _Frames
    spec: _Spec
    reference: str | int
    register_channel: int | None
    batch_size: int
    rounds: int
    out: Any
    overwrite: bool
    client: Any


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


def _axis(value: Any, ndim: int, name: str) -> int:
    if not isinstance(value, Integral) or isinstance(value, bool):
        raise ValueError(f'{name} must be an integer axis, got {value!r}')
    if not -ndim <= int(value) < ndim:
        raise ValueError(f'{name}={value} is out of range for a {ndim}D stack')
    return int(value) % ndim


def _plan(
    stack: Any,
    axis: int,
    reference: Any,
    model: str,
    metric: str,
    backend: str,
    channel_axis: int | None,
    register_channel: int | None,
    batch_size: int | None,
    spacing,
    origin,
    out,
    overwrite: bool,
    client: Any,
    rounds: int,
    settings: dict,
) -> _Plan:
    method = resolve(model, metric, backend, **settings)
    if (
        isinstance(reference, str)
        and reference.lower() == 'previous'
        and 'init' not in settings
        and not method.metric_spec.multimodal
    ):
        # neighbours differ by small motions: a phase-correlation shift is
        # enough to start from (the rotation search of 'auto' costs ~25 %)
        method = replace(method, settings=replace(method.settings, init=PREVIOUS_INIT))
    opts = method.settings
    if isinstance(stack, (str, os.PathLike)):
        stack = open_stack(stack)
    elif not hasattr(stack, 'shape') or not hasattr(stack, 'dtype'):
        stack = np.asarray(stack)
    shape = tuple(stack.shape)
    ndim = len(shape)
    if ndim < 3:
        raise ValueError(
            f'stack has shape {shape}: a stack is 3D (frames, rows, cols) or '
            '4D (frames, planes, rows, cols), plus an optional channel axis; '
            'for one pair of images use register'
        )
    axis = _axis(axis, ndim, 'axis')
    if channel_axis is not None:
        channel_axis = _axis(channel_axis, ndim, 'channel_axis')
        if channel_axis == axis:
            raise ValueError(
                f'axis and channel_axis are both {axis}: name the stack '
                '(time or z) axis and the channel axis separately'
            )
    frames = _Frames(stack, axis, channel_axis)
    if frames.n < 2:
        raise ValueError(
            f'the stack has {frames.n} frame along axis {axis} (shape {shape}): '
            'nothing to register; is axis= the time/z axis?'
        )
    # the first frame through the pair validation: dtype, size, RGB detection
    probe = np.take(
        np.asarray(
            stack[tuple(slice(0, 1) if a == axis else slice(None) for a in range(ndim))]
        ),
        0,
        axis=axis,
    )
    first = as_image(
        probe,
        'frame 0',
        channel_axis=(
            None if channel_axis is None else channel_axis - (channel_axis > axis)
        ),
    )
    if channel_axis is None and first.grid.ndim < probe.ndim:
        channel_axis = ndim - 1  # RGB(A) in the last axis, as register() does
        frames = _Frames(stack, axis, channel_axis)
    if len(frames.spatial) not in (2, 3):
        raise ValueError(
            f'stack frames have {len(frames.spatial)} spatial axes (stack shape '
            f'{shape}, axis={axis}, channel_axis={channel_axis}): frames must be '
            '2D or 3D; name the channel axis with channel_axis='
        )
    if register_channel is not None:
        if channel_axis is None:
            raise ValueError(
                'register_channel needs a channel axis: give channel_axis='
            )
        if not isinstance(register_channel, Integral) or not (
            -frames.channels <= int(register_channel) < frames.channels
        ):
            raise ValueError(
                f'register_channel={register_channel!r} is not one of the '
                f'{frames.channels} channels (0 to {frames.channels - 1})'
            )
        register_channel = int(register_channel) % frames.channels
    grid = Grid(
        frames.spatial,
        spacing=tuple(spacing) if spacing is not None else (),
        origin=tuple(origin) if origin is not None else (),
    )
    method.check_ndim(grid.ndim)
    schedule = method.schedule(grid.shape)
    method.engine()  # a missing backend package fails now, not later
    reference = _parse_reference(reference, frames.n)
    if batch_size is None:
        batch_size = (
            1
            if not method.capabilities.batching
            else auto_batch_size(frames.spatial, opts.device, model=method.model)
        )
    elif not isinstance(batch_size, Integral) or batch_size < 1:
        raise ValueError(f'batch_size must be a positive integer, got {batch_size!r}')
    if not method.capabilities.batching:
        batch_size = 1  # SimpleITK registers one frame per run
    if not isinstance(rounds, Integral) or rounds < 1:
        raise ValueError(f'rounds must be a positive integer, got {rounds!r}')
    _check_out(out, stack, frames, overwrite)
    if client is not None and not (
        client == 'local' if isinstance(client, str) else hasattr(client, 'submit')
    ):
        raise ValueError(
            f"client must be a dask.distributed Client or 'local', got {client!r}"
        )
    spec = _Spec(method, schedule, grid)
    return _Plan(
        frames,
        spec,
        reference,
        register_channel,
        int(batch_size),
        int(rounds) if reference == 'mean' else 1,
        out,
        overwrite,
        client,
    )


# --------------------------------------------------------------------------
# running


def _chunks(items: Sequence[int], size: int) -> Iterator[tuple[int, ...]]:
    for k in range(0, len(items), size):
        yield tuple(items[k : k + size])


def _jobs(
    plan: _Plan,
    round_: int,
    initial: NDArray | None,
    kind: str | None = None,
    accumulate: bool = False,
) -> list[_Job]:
    n, size = plan.frames.n, plan.batch_size
    if kind is None:
        kind = {'previous': 'pairs', 'mean': 'fixed', 'first': 'fixed'}.get(
            plan.reference, 'fixed'
        )
    reference = 0 if plan.reference == 'first' else plan.reference
    if kind == 'pairs':
        moving = list(range(1, n))
    elif isinstance(reference, int) and kind == 'fixed':
        moving = [i for i in range(n) if i != reference]
    else:
        moving = list(range(n))
    jobs = []
    for index, frames in enumerate(_chunks(moving, size)):
        start = frames[0] - (1 if kind == 'pairs' else 0)
        jobs.append(
            _Job(
                index=index,
                kind=kind,
                frames=frames,
                start=start,
                stop=frames[-1] + 1,
                round=round_,
                initial=None if initial is None else initial[list(frames)],
                accumulate=accumulate,
            )
        )
    return jobs


class _Local:
    """Runs jobs here, one after another, forwarding the engine's progress."""

    def __init__(self, plan: _Plan) -> None:
        self.plan = plan

    def run(
        self, jobs: list[_Job], fixed: NDArray | None
    ) -> Generator[tuple[Progress | None, _BatchOut | None], None, None]:
        channel = self.plan.register_channel
        for job in jobs:
            slab = self.plan.frames.slab(job.start, job.stop, channel)
            steps = _iter_batch(self.plan.spec, job, slab, fixed)
            try:
                while True:
                    progress, result = _step(steps)
                    if result is not None:
                        break
                    yield progress, None
            finally:
                steps.close()
            del slab
            yield None, result

    def close(self) -> None:
        pass


class _Distributed:
    """Runs jobs as dask.distributed tasks, a bounded number in flight."""

    def __init__(self, plan: _Plan) -> None:
        self.plan = plan
        self.own = None
        client = plan.client
        if isinstance(client, str):  # 'local'
            from distributed import Client, LocalCluster

            workers = max(1, min(4, (os.cpu_count() or 2)))
            cluster = LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
            )
            client = Client(cluster)
            self.own = cluster
        self.client = client
        self.futures: list = []

    def _source(self, job: _Job):
        """What a task reads its frames from: a reader (zarr on disk), a
        future (dask), or the slab itself (read here)."""
        frames, channel = self.plan.frames, self.plan.register_channel
        if _is_zarr(frames.data) and _zarr_on_disk(frames.data):
            return _Reader(frames, job.start, job.stop, channel)
        if _is_dask(frames.data):
            index = [slice(None)] * frames.ndim
            index[frames.axis] = slice(job.start, job.stop)
            if frames.channel_axis is not None and channel is not None:
                index[frames.channel_axis] = slice(channel, channel + 1)
            future = self.client.compute(frames.data[tuple(index)])
            return self.client.submit(
                _to_slab,
                future,
                frames._perm,
                frames.channel_axis is None,
                pure=False,
            )
        return frames.slab(job.start, job.stop, channel)

    def run(
        self, jobs: list[_Job], fixed: NDArray | None
    ) -> Generator[tuple[Progress | None, _BatchOut | None], None, None]:
        from distributed import as_completed

        limit = TASKS_PER_WORKER * max(1, len(self.client.scheduler_info()['workers']))
        pending = list(jobs)
        fixed_future = None
        if fixed is not None:
            fixed_future = self.client.scatter(fixed, broadcast=True)
        queue = as_completed()
        while pending or queue.count():
            while pending and queue.count() < limit:
                job = pending.pop(0)
                future = self.client.submit(
                    _solve,
                    self.plan.spec,
                    job,
                    self._source(job),
                    fixed_future,
                    pure=False,
                )
                self.futures.append(future)
                queue.add(future)
            future = next(queue)
            result = future.result()
            self.futures.remove(future)
            future.release()
            yield None, result

    def close(self) -> None:
        for future in self.futures:
            future.cancel()
        self.futures.clear()
        if self.own is not None:
            self.client.close()
            self.own.close()


def _zarr_on_disk(array: Any) -> bool:
    """Whether a worker can open the same zarr store (not an in-memory one)."""
    store = getattr(array, 'store', None)
    name = type(store).__name__.lower()
    return 'memory' not in name and store is not None


def _to_slab(block: NDArray, perm: tuple[int, ...], add_channel: bool) -> NDArray:
    block = np.transpose(np.asarray(block), perm)
    return block[..., None] if add_channel else block


def _mean_image(outs: list[_BatchOut]) -> NDArray[np.float32]:
    total = sum(o.total for o in outs)
    count = sum(o.count for o in outs)
    mean = np.where(count > 0, total / np.maximum(count, 1), 0.0).astype(np.float32)
    if mean.min() == mean.max():
        raise ValueError(
            'the mean of the aligned frames is constant: the frames do not '
            "overlap; use reference='previous' or a frame index"
        )
    return normalise_intensities(mean)


def _compose_previous(pairs: NDArray, n: int, ndim: int) -> NDArray:
    """Chain neighbour transforms so every frame maps from frame 0.

    ``pairs[i - 1]`` is ``frame_i_from_frame_(i-1)``; the result's ``[i]`` is
    ``frame_i_from_frame_0 = pairs[i-1] @ ... @ pairs[0]``.
    """
    out = np.empty((n, ndim + 1, ndim + 1))
    out[0] = np.eye(ndim + 1)
    for i in range(1, n):
        out[i] = pairs[i - 1] @ out[i - 1]
    return out


def _run(plan: _Plan) -> Generator[StackProgress, None, StackResult]:
    started = time.perf_counter()
    frames, spec = plan.frames, plan.spec
    n, ndim = frames.n, spec.grid.ndim
    eye = np.eye(ndim + 1)
    runner = _Distributed(plan) if plan.client is not None else _Local(plan)
    matrices = np.repeat(eye[None], n, axis=0)
    before = np.full(n, np.nan)
    after = np.full(n, np.nan)
    seconds = np.zeros(n)
    batch_of_frame = np.full((n, plan.rounds), -1, dtype=np.int64)
    reports: list[BatchReport] = []
    writes = n if plan.out is not None else 0
    n_moving = n - (0 if plan.reference == 'mean' else 1)
    total = n_moving * plan.rounds + writes + (n if plan.reference == 'mean' else 0)
    step = 0
    rounds_run = 0

    def drive(jobs, fixed, phase, round_):
        """Run jobs, yield StackProgress, return outputs in job order."""
        nonlocal step
        outs: list[_BatchOut | None] = [None] * len(jobs)
        done_frames = 0
        for progress, result in runner.run(jobs, fixed):
            if result is not None:
                outs[result.job.index] = result
                done_frames += len(result.job.frames)
                step += len(result.job.frames)
                progress = Progress(
                    step,
                    total,
                    len(spec.schedule) - 1,
                    len(spec.schedule),
                    0,
                    float('nan'),
                )
            finished = sum(o is not None for o in outs)
            yield StackProgress(
                step=step,
                total=total,
                level=progress.level,
                n_levels=progress.n_levels,
                iteration=progress.iteration,
                loss=progress.loss,
                matrix=None,
                phase=phase,
                frames_done=done_frames,
                n_frames=sum(len(j.frames) for j in jobs),
                batch=min(finished, len(jobs) - 1),
                n_batches=len(jobs),
                round=round_,
                n_rounds=plan.rounds,
            )
        return outs

    def record(outs, round_):
        for out in outs:
            if out.matrices is None:
                continue
            reports.append(
                BatchReport(
                    frames=out.job.frames,
                    round=round_,
                    seconds=out.seconds,
                    levels=out.levels,
                )
            )
            idx = list(out.job.frames)
            before[idx], after[idx] = out.before, out.after
            seconds[idx] += out.seconds / len(idx)
            batch_of_frame[idx, round_] = len(reports) - 1

    try:
        if plan.reference == 'previous':
            outs = yield from drive(_jobs(plan, 0, None), None, 'register', 0)
            record(outs, 0)
            pairs = np.concatenate([o.matrices for o in outs])
            matrices = _compose_previous(pairs, n, ndim)
            rounds_run = 1
        elif plan.reference == 'mean':
            sums = yield from drive(_jobs(plan, 0, None, kind='sum'), None, 'mean', 0)
            fixed = _mean_image(sums)
            current = None
            for round_ in range(plan.rounds):
                last = round_ == plan.rounds - 1
                outs = yield from drive(
                    _jobs(plan, round_, current, accumulate=not last),
                    fixed,
                    'register',
                    round_,
                )
                record(outs, round_)
                new = np.concatenate([o.matrices for o in outs])
                rounds_run = round_ + 1
                moved = (
                    np.inf
                    if current is None
                    else max(
                        corner_error(a, b, spec.grid.shape)
                        for a, b in zip(new, current, strict=True)
                    )
                )
                current = new
                if last or moved < MEAN_TOLERANCE:
                    break
                fixed = _mean_image(outs)
            matrices = current
            batch_of_frame = batch_of_frame[:, :rounds_run]
        else:
            ref = 0 if plan.reference == 'first' else plan.reference
            slab = frames.slab(ref, ref + 1, plan.register_channel)
            fixed = _gray(slab, ref, [ref])[0]
            outs = yield from drive(_jobs(plan, 0, None), fixed, 'register', 0)
            record(outs, 0)
            for out in outs:
                matrices[list(out.job.frames)] = out.matrices
            rounds_run = 1
        target = None
        if plan.out is not None:
            target = _open_out(plan.out, frames, plan.overwrite)
            n_batches = -(-n // plan.batch_size)
            for b, begin in enumerate(range(0, n, plan.batch_size)):
                end = min(n, begin + plan.batch_size)
                slab = frames.slab(begin, end)
                dtype = np.dtype(target.dtype)
                frames.write(
                    target,
                    begin,
                    end,
                    frames.resampled(slab, matrices[begin:end], spec.grid, dtype),
                )
                del slab
                step += end - begin
                yield StackProgress(
                    step=step,
                    total=total,
                    level=len(spec.schedule) - 1,
                    n_levels=len(spec.schedule),
                    iteration=0,
                    loss=float('nan'),
                    phase='write',
                    frames_done=end,
                    n_frames=n,
                    batch=b,
                    n_batches=n_batches,
                    round=0,
                    n_rounds=1,
                )
            if hasattr(target, 'flush'):
                target.flush()
    finally:
        runner.close()
    settings = spec.method.settings.to_dict()
    settings['schedule'] = [
        {'factor': lv.factor, 'sigma': lv.sigma, 'iterations': lv.iterations}
        for lv in spec.schedule
    ]
    settings['batch_size'] = plan.batch_size
    settings['distributed'] = plan.client is not None
    return StackResult(
        moving_from_fixed=matrices,
        reference=plan.reference,
        model=spec.method.model.value,
        metric=spec.method.metric.value,
        backend=spec.method.backend.value,
        metric_before=before,
        metric_after=after,
        frame_seconds=seconds,
        batch_of_frame=batch_of_frame,
        batches=tuple(reports),
        elapsed=time.perf_counter() - started,
        grid=spec.grid,
        axis=frames.axis,
        channel_axis=frames.channel_axis,
        register_channel=plan.register_channel,
        rounds=rounds_run,
        settings=settings,
        _frames=frames,
        _out=target,
    )


_STACK_DOC = """
    Parameters
    ----------
    stack : array_like or path
        Frames along ``axis``: 2D frames ``(rows, cols)`` or 3D ``(planes,
        rows, cols)``, plus an optional channel axis. numpy, dask and zarr
        arrays, memory maps (``np.load(..., mmap_mode='r')``,
        ``tifffile.memmap``) or a ``.npy``/``.tif``/``.zarr`` path (see
        :func:`open_stack`). Out-of-core stacks are read batch by batch.
        The input is never modified.
    axis : int
        The stack (time, z or date) axis.
    reference : {'previous', 'first', 'mean'} or int
        ``'previous'``: each frame is registered to the frame before it and
        the transforms are chained, so every frame lands in the first frame's
        coordinates (best for drift and for serial sections that change
        along the stack). ``'first'`` or a frame index: every frame is
        registered to that frame. ``'mean'``: frames are registered to their
        mean, the mean of the aligned frames is recomputed and the
        registration repeated (``rounds`` times at most).
    model, metric, backend : str
        As for :func:`napari_coreg.register`; ``model`` defaults to
        ``'rigid'`` (drift).
    channel_axis : int, optional
        Axis holding channels (``(C, T, Y, X)``: ``axis=1, channel_axis=0``).
        RGB(A) in the last axis of 2D frames is detected.
    register_channel : int, optional
        The channel the transforms are estimated on; they are applied to
        every channel. Default: the luminance (RGB) or mean of the channels.
    batch_size : int, optional
        Frames per engine run (torch optimises them together). Default:
        what fits in a quarter of the available memory, at most 512 MiB and
        16 frames on a CPU (see :func:`auto_batch_size`). SimpleITK
        registers frames one by one.
    spacing, origin : sequence of float, optional
        Physical pixel spacing and position of pixel 0 of every frame
        (numpy order, spatial axes only, e.g. napari ``scale``).
    out : path or array, optional
        Where to write the aligned stack (same shape and layout as the
        input, dtype of the input for a path): a ``.zarr``, ``.npy`` or
        ``.tif`` path (not existing, unless ``overwrite=True``) or a
        writable array. Written batch by batch after the registration.
    overwrite : bool
        Replace an existing ``out`` file.
    client : dask.distributed.Client or 'local', optional
        Run the batches as dask tasks on this client (``'local'``: a
        LocalCluster for the duration of the call). The matrices equal
        those of a local run with the same ``batch_size``.
    rounds : int
        Most rounds of the ``'mean'`` reference (it stops early when the
        transforms no longer change).
    **settings
        Pyramid and optimiser settings, see :class:`napari_coreg.Settings`
        (``levels``, ``iterations``, ``init``, ``device``, ...). With
        ``reference='previous'`` (and metric other than ``'mi'``) ``init``
        defaults to ``'phase'``: neighbouring frames differ by small motions,
        so the phase-correlation shift is a good start and the rotation
        search of ``'auto'`` is skipped; pass ``init='auto'`` for frames
        rotated by more than about 10 degrees from one to the next.

    Raises
    ------
    ValueError
        For bad input, found before any work: axes, frame shape, a frame
        index out of range, an unsupported model/metric/backend combination,
        an ``out`` that exists or has the wrong shape. A NaN or constant
        frame of an out-of-core stack is found when its batch is read.

    Notes
    -----
    Conventions: numpy axis order; ``moving_from_fixed[i]`` maps reference
    physical points to physical points of frame ``i``; physical = pixel
    index x spacing + origin.
"""


def iter_register_stack(
    stack: ArrayLike | str | os.PathLike,
    axis: int = 0,
    reference: str | int = 'previous',
    model: str = 'rigid',
    metric: str = 'ncc',
    backend: str = 'torch',
    *,
    channel_axis: int | None = None,
    register_channel: int | None = None,
    batch_size: int | None = None,
    spacing: Sequence[float] | None = None,
    origin: Sequence[float] | None = None,
    out: Any = None,
    overwrite: bool = False,
    client: Any = None,
    rounds: int = MEAN_ROUNDS,
    **settings,
) -> Generator[StackProgress, None, StackResult]:
    """Register a stack step by step: yield :class:`StackProgress`, return the result.

    The stack is validated when this function is called. Progress is yielded
    after every engine iteration and every batch; stop iterating (or
    ``close()`` the generator) to cancel: dask tasks are cancelled and a
    LocalCluster made for the call is closed. The :class:`StackResult` is
    the generator's return value (``StopIteration.value``).
    """
    plan = _plan(
        stack,
        axis,
        reference,
        model,
        metric,
        backend,
        channel_axis,
        register_channel,
        batch_size,
        spacing,
        origin,
        out,
        overwrite,
        client,
        rounds,
        settings,
    )
    return _run(plan)


def register_stack(
    stack: ArrayLike | str | os.PathLike,
    axis: int = 0,
    reference: str | int = 'previous',
    model: str = 'rigid',
    metric: str = 'ncc',
    backend: str = 'torch',
    *,
    callback: Callable[[StackProgress], None] | None = None,
    **kwargs,
) -> StackResult:
    """Align every frame of a stack to a reference.

    Takes the arguments of :func:`iter_register_stack`, plus ``callback``,
    called with every :class:`StackProgress` in the calling thread.

    Returns
    -------
    StackResult
        ``moving_from_fixed`` ``(N, D + 1, D + 1)`` per frame (reference
        coordinates to frame coordinates), per-frame metric before/after and
        time, per-batch reports, and ``aligned``.

    Examples
    --------
    >>> import numpy as np
    >>> from scipy import ndimage
    >>> from skimage import data
    >>> image = data.camera()[100:228, 100:228].astype(np.float32)
    >>> stack = np.stack([ndimage.shift(image, (k, -k)) for k in range(4)])
    >>> res = register_stack(stack, model='translation')
    >>> np.round(res.moving_from_fixed[:, :2, 2], 1)[3]
    array([ 3., -3.])
    """
    steps = iter_register_stack(
        stack, axis, reference, model, metric, backend, **kwargs
    )
    return drive(steps, callback)


register_stack.__doc__ += _STACK_DOC
iter_register_stack.__doc__ += _STACK_DOC
