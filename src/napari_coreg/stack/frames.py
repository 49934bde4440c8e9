"""A stack seen as frames: open stack files, read slabs, resample lazily.

Reading a slab reads only those frames (and only one channel when asked), so
dask, zarr and memory-mapped stacks are never loaded whole.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from numbers import Integral
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..inputs import as_image, normalise_intensities
from ..transforms import Grid

__all__ = [
    'OUT_SUFFIXES',
    'Frames',
    'as_array',
    'as_frames',
    'as_slab',
    'check_axis',
    'check_frames',
    'gray',
    'is_dask',
    'is_zarr',
    'open_stack',
]

#: Suffixes ``out`` may have, and :func:`open_stack` reads.
OUT_SUFFIXES = ('.zarr', '.npy', '.tif', '.tiff')
#: Frames checked for NaN/inf at a time (bounds the temporary mask).
FINITE_CHUNK_BYTES = 64 << 20


def open_stack(path: str | os.PathLike) -> Any:
    """Open a stack file without reading it into memory.

    Parameters
    ----------
    path : str or PathLike
        A ``.npy`` file (memory-mapped), a ``.tif``/``.tiff`` file
        (memory-mapped when the file allows it, uncompressed and contiguous,
        else opened as a zarr store) or a ``.zarr`` store (read-only).

    Returns
    -------
    array-like
        A numpy memory map or a read-only zarr array.

    Raises
    ------
    ValueError
        If the file does not exist or has another suffix.
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


def is_dask(data: object) -> bool:
    """Whether ``data`` is a dask array (checked without importing dask)."""
    return type(data).__module__.startswith('dask.') and hasattr(data, 'dask')


def is_zarr(data: object) -> bool:
    """Whether ``data`` is a zarr array (checked without importing zarr)."""
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


def as_slab(block: Any, perm: tuple[int, ...], add_channel: bool) -> NDArray:
    """Transpose a block of frames to ``(n, *spatial[, C])`` (picklable).

    Parameters
    ----------
    block : array-like
        Frames in the input's axis order.
    perm : tuple of int
        Stack axis, spatial axes, channel axis.
    add_channel : bool
        Append a channel axis of length 1 (single-channel stacks).

    Returns
    -------
    ndarray
    """
    block = np.transpose(np.asarray(block), perm)
    return block[..., None] if add_channel else block


class Frames:
    """A stack seen as frames: ``(n, *spatial, channels)`` slabs on demand.

    Parameters
    ----------
    data : array-like
        numpy, dask, zarr or memory-mapped stack.
    axis : int
        The stack axis (non-negative).
    channel_axis : int or None
        The channel axis (non-negative), if any.
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
        self.perm = tuple(order)
        self._inverse = tuple(np.argsort(order))

    @property
    def in_memory(self) -> bool:
        """Whether the stack is a plain in-memory numpy array."""
        return _in_memory(self.data)

    def index(self, start: int, stop: int, channel: int | None = None) -> tuple:
        """Index frames ``start:stop`` (one channel when given)."""
        index = [slice(None)] * self.ndim
        index[self.axis] = slice(start, stop)
        if self.channel_axis is not None and channel is not None:
            index[self.channel_axis] = slice(channel, channel + 1)
        return tuple(index)

    def to_slab(self, block: Any) -> NDArray:
        """Turn a block in the input's order into ``(n, *spatial, C)``."""
        return as_slab(block, self.perm, self.channel_axis is None)

    def slab(self, start: int, stop: int, channel: int | None = None) -> NDArray:
        """Frames ``start:stop`` as ``(n, *spatial, C)`` (``C = 1`` for one channel)."""
        return self.to_slab(self.data[self.index(start, stop, channel)])

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
        from ..warp import resample

        out = np.empty(frames.shape, dtype=dtype)
        for k in range(frames.shape[0]):
            out[k] = _cast(resample(frames[k], matrices[k], grid, grid), dtype)
        return out

    def aligned_frame(self, index: int, matrix: NDArray, grid: Grid) -> NDArray:
        """Frame ``index`` resampled through ``matrix``, in the input's order."""
        frames = self.slab(index, index + 1)
        return self.frame_layout(
            self.resampled(frames, matrix[None], grid, self.dtype)[0]
        )

    def aligned(self, matrices: NDArray, grid: Grid) -> Any:
        """Align the whole stack: numpy for in-memory input, else lazy dask."""
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
        if is_dask(self.data):
            source = self.data.rechunk(tuple(chunks))
        else:
            source = da.from_array(self.data, chunks=tuple(chunks), asarray=True)

        def block(values: NDArray, block_info=None) -> NDArray:
            start, stop = block_info[0]['array-location'][self.axis]
            moved = self.resampled(
                self.to_slab(values), matrices[start:stop], grid, self.dtype
            )
            return self.to_layout(moved)

        return source.map_blocks(block, dtype=self.dtype)

    def write(self, out: Any, start: int, stop: int, frames: NDArray) -> None:
        """Write ``(n, *spatial, C)`` frames to ``out[start:stop]`` (input order)."""
        out[self.index(start, stop)] = self.to_layout(frames)


def as_array(stack: Any) -> Any:
    """Return a stack as an array: paths opened (:func:`open_stack`).

    numpy, dask, zarr and memory-mapped arrays are returned as they are
    (nothing is read); anything else goes through ``np.asarray``.
    """
    if isinstance(stack, (str, os.PathLike)):
        return open_stack(stack)
    if not hasattr(stack, 'shape') or not hasattr(stack, 'dtype'):
        return np.asarray(stack)
    return stack


def check_axis(value: Any, ndim: int, name: str) -> int:
    """``value`` as a non-negative axis of an ``ndim``-D stack.

    Raises
    ------
    ValueError
        If it is not an integer or out of range.
    """
    if not isinstance(value, Integral) or isinstance(value, bool):
        raise ValueError(f'{name} must be an integer axis, got {value!r}')
    if not -ndim <= int(value) < ndim:
        raise ValueError(f'{name}={value} is out of range for a {ndim}D stack')
    return int(value) % ndim


def as_frames(stack: Any, axis: Any, channel_axis: Any) -> Frames:
    """``stack`` (an array) seen as frames, its axes checked.

    Raises
    ------
    ValueError
        For fewer than 3 dimensions, an axis out of range or not an
        integer, or the same axis named twice.
    """
    shape = tuple(stack.shape)
    ndim = len(shape)
    if ndim < 3:
        raise ValueError(
            f'stack has shape {shape}: a stack is 3D (frames, rows, cols) or '
            '4D (frames, planes, rows, cols), plus an optional channel axis; '
            'for one pair of images use register'
        )
    axis = check_axis(axis, ndim, 'axis')
    if channel_axis is not None:
        channel_axis = check_axis(channel_axis, ndim, 'channel_axis')
        if channel_axis == axis:
            raise ValueError(
                f'axis and channel_axis are both {axis}: name the stack '
                '(time or z) axis and the channel axis separately'
            )
    return Frames(stack, axis, channel_axis)


def gray(slab: NDArray, first: int, frames: Sequence[int]) -> NDArray[np.float32]:
    """Check frames and make them single-channel float32 in about [0, 1].

    Parameters
    ----------
    slab : ndarray
        ``(n, *spatial, C)`` holding frames ``first, first + 1, ...``.
    first : int
        Stack index of the slab's first frame.
    frames : sequence of int
        Stack indices of the frames wanted.

    Returns
    -------
    ndarray
        ``(len(frames), *spatial)``: the luminance (3-4 channels) or the mean
        of the channels (one channel when ``register_channel`` was given).

    Raises
    ------
    ValueError
        For a NaN/inf or constant frame, naming its stack index.
    """
    out = []
    for index in frames:
        try:
            image = as_image(slab[index - first], f'frame {index}', channel_axis=-1)
        except ValueError as error:
            raise ValueError(f'{error} (stack frame {index})') from None
        out.append(normalise_intensities(image.gray))
    return np.stack(out)


def check_frames(frames: Frames) -> None:
    """Raise ValueError naming the first NaN/inf or constant frame.

    Only in-memory numpy stacks are checked here, before any work (a pass
    over memory that is there anyway); out-of-core stacks (dask, zarr,
    memory-mapped) are checked frame by frame when their batch is read, so
    that nothing is read twice: the error then comes after the batches
    before it have run.

    Parameters
    ----------
    frames : Frames
        The stack.

    Raises
    ------
    ValueError
        If a frame of an in-memory stack holds NaN or inf, or has one value
        everywhere (every channel).
    """
    if not frames.in_memory:
        return
    other = tuple(a for a in range(frames.ndim) if a != frames.axis)
    per_frame = max(1, frames.data.nbytes // max(frames.n, 1))
    step = max(1, FINITE_CHUNK_BYTES // per_frame)
    for start in range(0, frames.n, step):
        block = frames.data[frames.index(start, min(frames.n, start + step))]
        if np.issubdtype(frames.dtype, np.inexact) and not np.isfinite(block).all():
            index = start + int(np.argmax(~np.isfinite(block).all(axis=other)))
            raise ValueError(
                f'stack frame {index} has NaN or infinite values: replace them '
                '(e.g. np.nan_to_num) or drop the frame before registering'
            )
        constant = block.min(axis=other) == block.max(axis=other)
        if constant.any():
            local = int(np.argmax(constant))
            value = np.take(block, local, axis=frames.axis).flat[0]
            raise ValueError(
                f'stack frame {start + local} is constant (all {value}): it has '
                'no structure to register; drop it from the stack'
            )
