"""Where the aligned stack goes: check ``out`` before work, open it after."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .frames import OUT_SUFFIXES, Frames

__all__ = ['check_out', 'open_out']


def check_out(out: Any, data: Any, frames: Frames, overwrite: bool) -> None:
    """Raise ValueError, before any work, if ``out`` cannot take the stack.

    Parameters
    ----------
    out : path, array or None
        Where the aligned stack is to be written.
    data : array-like
        The input stack (never overwritten).
    frames : Frames
        The input seen as frames (its shape).
    overwrite : bool
        Whether an existing ``out`` file may be replaced.

    Raises
    ------
    ValueError
        For a path with another suffix, in a missing folder, equal to the
        input or existing without ``overwrite``; an array of another shape,
        sharing memory with the input or read-only.
    """
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


def open_out(out: Any, frames: Frames, overwrite: bool) -> Any:
    """Open a writable array of the input's shape and dtype for ``out``.

    Parameters
    ----------
    out : path or array
        Checked by :func:`check_out`; an array is returned as it is.
    frames : Frames
        The input seen as frames (shape, dtype, stack axis).
    overwrite : bool
        Remove an existing file first.

    Returns
    -------
    array-like
        A numpy memory map (``.npy``), a tifffile memory map (``.tif``), a
        zarr array chunked one frame per chunk (``.zarr``) or ``out``.
    """
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
