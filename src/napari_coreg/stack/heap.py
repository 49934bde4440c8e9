"""Give freed heap memory back to the system between batches (glibc only).

Batches of a stack vary in size (a chain's short first batch, warm batches
cut to what the motion allows, redone frames), and so do the engine's
buffers. glibc raises its mmap threshold to the size of every large block
freed, after which blocks of those sizes come from the heap instead of
their own mappings; freed, they stay with the process as holes between
live blocks. Over hundreds of batches the holes added up to gigabytes of
resident memory that nothing referenced (a 1 GB stack of 1024^2 frames:
2.8 GiB above the baseline). :func:`release_freed` asks glibc
(``malloc_trim(0)``) to return the free pages once the heap holds more
than :data:`HELD_BYTES` of them: trimming after every batch would also
return the next batch's working memory, which then costs page faults to
take back (a third more time at 512^2). It does nothing on other C
libraries (macOS, Windows, musl), whose allocators return large blocks
themselves.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import platform
from collections.abc import Callable

__all__ = ['HELD_BYTES', 'release_freed']

#: Free heap bytes kept for the next batch (at most a CPU batch's budget,
#: ``batching.MAX_BATCH_BYTES_CPU``); more are returned to the system.
HELD_BYTES = 512 << 20


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            'arena',
            'ordblks',
            'smblks',
            'hblks',
            'hblkhd',
            'usmblks',
            'fsmblks',
            'uordblks',
            'fordblks',
            'keepcost',
        )
    ]


@functools.cache
def _glibc() -> tuple[Callable[[], _MallInfo2], Callable[[int], int]] | None:
    """The C library's ``mallinfo2`` and ``malloc_trim`` on glibc, else ``None``."""
    if platform.system() != 'Linux' or platform.libc_ver()[0] != 'glibc':
        return None
    name = ctypes.util.find_library('c')
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        info, trim = libc.mallinfo2, libc.malloc_trim  # mallinfo2: glibc 2.33+
    except (OSError, AttributeError):
        return None
    info.argtypes, info.restype = [], _MallInfo2
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return info, trim


def release_freed(held: int = HELD_BYTES) -> bool:
    """Return the heap's free pages to the system when it holds over ``held``.

    Parameters
    ----------
    held : int
        Free heap bytes (all arenas) tolerated without trimming.

    Returns
    -------
    bool
        Whether the heap was trimmed (``False`` off glibc or under ``held``).
    """
    calls = _glibc()
    if calls is None:
        return False
    info, trim = calls
    if info().fordblks <= held:
        return False
    trim(0)
    return True
