"""``register_stack`` and ``iter_register_stack``: check, plan, run."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Generator, Sequence
from typing import Any

from numpy.typing import ArrayLike

from ..api import drive
from ..options import Settings
from .plan import MEAN_ROUNDS, make_plan
from .result import StackProgress, StackResult
from .run import run

__all__ = ['iter_register_stack', 'register_stack']

#: Keywords of the stack functions that are :class:`Settings` fields.
SETTINGS_KEYWORDS = tuple(field.name for field in dataclasses.fields(Settings))

_STACK_DOC = """
    Parameters
    ----------
    stack : array_like or path
        Frames along ``axis``: 2D frames ``(rows, cols)`` or 3D ``(planes,
        rows, cols)``, plus an optional channel axis. numpy, dask and zarr
        arrays, memory maps (``np.load(..., mmap_mode='r')``,
        ``tifffile.memmap``) or a ``.npy``/``.tif``/``.zarr`` path (see
        :func:`napari_coreg.stack.open_stack`). Out-of-core stacks are read
        batch by batch. The input is never modified.
    axis : int
        The stack (time, z or date) axis.
    reference : {'previous', 'first', 'mean'} or int
        ``'previous'``: each frame is registered to the frame before it and
        the transforms are chained, so every frame lands in the first frame's
        coordinates (best for drift and for serial sections that change
        along the stack); from 16 frames on, every ``sqrt(n)``-th frame is
        also registered to the ``sqrt(n)``-th frame before it, so that the
        chain's small errors do not add up over the whole stack.
        ``'first'`` or a frame index: every frame is registered to that
        frame. ``'mean'``: frames are registered to their
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
        Most frames per engine run (torch optimises them together; a chain
        of frames starts with two, and frames registered to one frame run
        in shorter batches while their starts come from a solved neighbour
        further away, see :mod:`napari_coreg.stack.warm`). Default:
        what fits in a quarter of the available memory, at most 512 MiB and
        16 frames on a CPU (see :func:`napari_coreg.stack.auto_batch_size`).
        SimpleITK registers frames one by one.
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
    levels, shrink_factors, smoothing_sigmas, iterations : optional
        The pyramid (see :class:`napari_coreg.Settings`).
    optimizer, learning_rate, tolerance : optional
        The optimiser (``None``: ``'auto'`` and the backend's defaults).
    init : str, optional
        Start of every registration. Default ``'auto'``, except with
        ``reference='previous'`` (and a metric other than ``'mi'``) when no
        ``settings`` is given: ``'phase'``, since neighbouring frames differ
        by small motions, so the phase-correlation shift is a good start and
        the rotation search of ``'auto'`` is skipped; pass ``init='auto'``
        for frames rotated by more than about 10 degrees from one to the
        next.
    mi_bins, sampling, seed : optional
        Mutual information bins, sampled fraction of pixels, random seed.
    device : str, optional
        torch device (``None``: the best present).
    match_histograms : bool, optional
        For ``'l1'`` and ``'mse'``: map each frame's intensity histogram
        onto that of what it is registered to (the previous frame, the
        reference frame or the mean) first. Default True.
    allow_reflection : bool, optional
        Register a mirrored frame as a mirror image instead of refusing it
        (see :func:`napari_coreg.register`). Default False.
    settings : Settings, optional
        Pyramid and optimiser settings as one object (see
        :class:`napari_coreg.Settings`). The keywords above override its
        fields; a keyword left at ``None`` takes the value of ``settings``,
        or the :class:`~napari_coreg.Settings` default without it.

    Raises
    ------
    ValueError
        For bad input, found before any work: axes, frame shape, a frame
        index out of range, an unsupported model/metric/backend/optimiser
        combination, an absent device, an ``out`` that exists or has the
        wrong shape, a NaN/inf or constant frame of an in-memory stack
        (named by its index). Such a frame of an out-of-core stack (dask,
        zarr, memory-mapped) is found when its batch is read, so that the
        stack is not read twice: the error names the frame, after the
        batches before it have run.
    TypeError
        If ``settings`` is not a :class:`~napari_coreg.Settings`.

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
    levels: int | None = None,
    shrink_factors: Sequence[int] | None = None,
    smoothing_sigmas: float | Sequence[float] | None = None,
    iterations: int | Sequence[int] | None = None,
    optimizer: str | None = None,
    learning_rate: float | None = None,
    init: str | None = None,
    tolerance: float | None = None,
    mi_bins: int | None = None,
    sampling: float | None = None,
    seed: int | None = None,
    device: str | None = None,
    match_histograms: bool | None = None,
    allow_reflection: bool | None = None,
    settings: Settings | None = None,
) -> Generator[StackProgress, None, StackResult]:
    """Register a stack step by step: yield :class:`StackProgress`, return the result.

    The stack is validated when this function is called. Progress is yielded
    after every engine iteration and every batch; stop iterating (or
    ``close()`` the generator) to cancel: dask tasks are cancelled and a
    LocalCluster made for the call is closed. The :class:`StackResult` is
    the generator's return value (``StopIteration.value``).
    """
    arguments = locals()
    given = {name: arguments[name] for name in SETTINGS_KEYWORDS}
    plan = make_plan(
        stack,
        axis=axis,
        reference=reference,
        model=model,
        metric=metric,
        backend=backend,
        channel_axis=channel_axis,
        register_channel=register_channel,
        batch_size=batch_size,
        spacing=spacing,
        origin=origin,
        out=out,
        overwrite=overwrite,
        client=client,
        rounds=rounds,
        settings=settings,
        given=given,
    )
    return run(plan)


def register_stack(
    stack: ArrayLike | str | os.PathLike,
    axis: int = 0,
    reference: str | int = 'previous',
    model: str = 'rigid',
    metric: str = 'ncc',
    backend: str = 'torch',
    *,
    callback: Callable[[StackProgress], None] | None = None,
    channel_axis: int | None = None,
    register_channel: int | None = None,
    batch_size: int | None = None,
    spacing: Sequence[float] | None = None,
    origin: Sequence[float] | None = None,
    out: Any = None,
    overwrite: bool = False,
    client: Any = None,
    rounds: int = MEAN_ROUNDS,
    levels: int | None = None,
    shrink_factors: Sequence[int] | None = None,
    smoothing_sigmas: float | Sequence[float] | None = None,
    iterations: int | Sequence[int] | None = None,
    optimizer: str | None = None,
    learning_rate: float | None = None,
    init: str | None = None,
    tolerance: float | None = None,
    mi_bins: int | None = None,
    sampling: float | None = None,
    seed: int | None = None,
    device: str | None = None,
    match_histograms: bool | None = None,
    allow_reflection: bool | None = None,
    settings: Settings | None = None,
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
    >>> np.round(res.moving_from_fixed[3, :2, 2])
    array([ 3., -3.])
    """
    arguments = dict(locals())
    del arguments['callback']
    return drive(iter_register_stack(**arguments), callback)


register_stack.__doc__ += _STACK_DOC
iter_register_stack.__doc__ += _STACK_DOC
