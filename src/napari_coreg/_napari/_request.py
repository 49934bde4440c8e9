"""From two napari image layers to a registration run (no Qt).

:func:`request_from_layers` checks the user's choices and snapshots the
layers on the GUI thread (cheap: only references to the data);
:func:`run_request` loads the arrays and registers, and may run in a worker
thread. The result goes back to the layers through :mod:`._writeback`.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..api import iter_register
from ..method import resolve
from ..options import MODEL_SPECS
from ..result import Progress, RegistrationResult
from ..transforms import Grid
from ..warp import resample
from ._geometry import LayerFrame, embed_block, layer_frame, physical2world
from ._masks import MaskSource, mask_source, nodata_value, rasterise, with_nodata

__all__ = [
    'Outcome',
    'Request',
    'gray_image',
    'request_from_layers',
    'resample_like',
    'run_request',
    'world_from_moving_physical',
]

#: Luminance weights (ITU-R BT.709), as the core and scikit-image use.
_LUMINANCE = np.array([0.2125, 0.7154, 0.0721], dtype=np.float32)

WRITE_BACK = ('affine', 'resample')


@dataclass(eq=False)
class Request:
    """Everything a registration of two layers needs, read on the GUI thread.

    Only references to the layers' data are kept; arrays are loaded (and
    dask arrays computed) by :func:`run_request`, which may run in a worker
    thread.
    """

    fixed_name: str
    moving_name: str
    fixed_data: Any
    moving_data: Any
    fixed: LayerFrame
    moving: LayerFrame
    ndim: int
    model: str
    metric: str
    backend: str
    settings: dict[str, Any]
    write_back: str = 'affine'
    fixed_mask: MaskSource | None = None
    moving_mask: MaskSource | None = None
    initial: NDArray[np.float64] | None = None
    moving_affine_before: NDArray[np.float64] = field(default=None)
    moving_is_labels: bool = False
    fixed_nodata: float | None = None
    moving_nodata: float | None = None

    def preview_affine(self, moving_from_fixed: NDArray) -> NDArray[np.float64]:
        """The moving layer's full ``affine`` for a (current) transform."""
        return embed_block(
            self.moving_affine_before,
            world_from_moving_physical(
                self.fixed.world_from_reg,
                moving_from_fixed,
                self.moving.reg_from_physical,
            ),
        )


def world_from_moving_physical(
    world_from_fixed_reg: NDArray,
    moving_from_fixed: NDArray,
    moving_reg_from_physical: NDArray,
) -> NDArray[np.float64]:
    """``A_m' = A_f inv(Q_f) inv(T) Q_m`` (see the module notes)."""
    return (
        np.asarray(world_from_fixed_reg)
        @ np.linalg.inv(moving_from_fixed)
        @ np.asarray(moving_reg_from_physical)
    )


def _is_image(layer) -> bool:
    return type(layer).__name__ == 'Image'


def request_from_layers(
    fixed,
    moving,
    model: str = 'rigid',
    metric: str = 'ncc',
    backend: str = 'torch',
    *,
    ndim: int | None = None,
    write_back: str | None = None,
    fixed_mask=None,
    moving_mask=None,
    init: str = 'auto',
    world_point=None,
    **settings,
) -> Request:
    """Check the choices and snapshot two image layers for a registration.

    Parameters
    ----------
    fixed, moving : napari.layers.Image
        Two different image layers (grey or RGB, plain or multiscale).
    model, metric, backend : str
        As in :func:`napari_coreg.register`.
    ndim : {2, 3}, optional
        Spatial dimensions registered: the layers' last ``ndim`` axes. Default
        3 when both layers have at least 3 dimensions, else 2. Leading axes
        are sliced at ``world_point``.
    write_back : {'affine', 'resample'}, optional
        Default ``'affine'``, and ``'resample'`` for a homography.
    fixed_mask, moving_mask : napari.layers.Labels or napari.layers.Shapes, optional
        Pixels that count. A layer's nodata value (georeferenced layers,
        ``metadata['geo']['nodata']``) is masked out as well, always.
    init : str
        ``'current'`` starts from the layers' current overlay in the world;
        anything else is the core's ``init`` setting.
    world_point : sequence of float, optional
        Viewer position (``viewer.dims.point``) selecting leading-axis slices.
    **settings
        Pyramid and optimiser settings of :class:`napari_coreg.Settings`.

    Raises
    ------
    ValueError
        Same layer twice, a layer that is not an image, an unsupported
        combination, bad settings: before any work starts.
    """
    for role, layer in (('fixed', fixed), ('moving', moving)):
        if layer is None or not _is_image(layer):
            raise ValueError(
                f'choose an Image layer as the {role} image '
                f'(got {type(layer).__name__ if layer is not None else "none"})'
            )
    if fixed is moving:
        raise ValueError(
            f'fixed and moving are the same layer ({fixed.name!r}): choose two '
            'different image layers'
        )
    if ndim is None:
        ndim = 3 if min(fixed.ndim, moving.ndim) >= 3 else 2
    if init != 'current':
        settings['init'] = init
    # validate every choice now, on the caller's thread
    method = resolve(model, metric, backend, ndim=ndim, **settings)
    model_ = method.model
    if write_back is None:
        write_back = 'resample' if MODEL_SPECS[model_].projective else 'affine'
    if write_back not in WRITE_BACK:
        raise ValueError(f'write_back must be one of {WRITE_BACK}, got {write_back!r}')
    if write_back == 'affine' and MODEL_SPECS[model_].projective:
        raise ValueError(
            "a homography cannot be shown through a layer's affine: use "
            "write_back='resample'"
        )
    fixed_frame = layer_frame(fixed, ndim, world_point)
    moving_frame = layer_frame(moving, ndim, world_point)
    initial = None
    if init == 'current':
        # moving_from_fixed implied by where both layers are shown now
        initial = (
            moving_frame.reg_from_physical
            @ np.linalg.inv(moving_frame.world_from_physical)
            @ fixed_frame.world_from_reg
        )
    masks = {}
    for role, layer in (
        ('fixed', fixed_mask),
        ('moving', moving_mask),
    ):
        masks[role] = None if layer is None else mask_source(layer, ndim, world_point)
    return Request(
        fixed_name=fixed.name,
        moving_name=moving.name,
        fixed_data=fixed.data,
        moving_data=moving.data,
        fixed=fixed_frame,
        moving=moving_frame,
        ndim=ndim,
        model=model_.value,
        metric=method.metric.value,
        backend=method.backend.value,
        settings=settings,
        write_back=write_back,
        fixed_mask=masks['fixed'],
        moving_mask=masks['moving'],
        initial=initial,
        moving_affine_before=physical2world(moving),
        fixed_nodata=nodata_value(fixed),
        moving_nodata=nodata_value(moving),
    )


def gray_image(frame: LayerFrame, data) -> NDArray:
    """The registered (grey) image of a layer: RGB becomes its luminance."""
    return _gray(frame.array(data), frame.rgb)


def _gray(array: NDArray, rgb: bool) -> NDArray:
    if not rgb:
        return array
    return np.asarray(array[..., :3], dtype=np.float32) @ _LUMINANCE


@dataclass(frozen=True, eq=False)
class Outcome:
    """What :func:`run_request` returns: the result and any resampled image."""

    result: RegistrationResult
    resampled: NDArray | None


def run_request(request: Request) -> Generator[Progress, None, Outcome]:
    """Load the arrays, register, and resample if asked (a generator).

    Yields the core's :class:`~napari_coreg.Progress`; returns an
    :class:`Outcome`. Closing the generator cancels the run.
    """
    fixed_full = request.fixed.array(request.fixed_data)
    fixed = _gray(fixed_full, request.fixed.rgb)
    moving_full = request.moving.array(request.moving_data)
    moving = _gray(moving_full, request.moving.rgb)
    masks = {
        role: with_nodata(
            None if source is None else rasterise(source, frame),
            array,
            nodata,
            request.ndim,
        )
        for role, source, frame, array, nodata in (
            (
                'fixed_mask',
                request.fixed_mask,
                request.fixed,
                fixed_full,
                request.fixed_nodata,
            ),
            (
                'moving_mask',
                request.moving_mask,
                request.moving,
                moving_full,
                request.moving_nodata,
            ),
        )
    }
    steps = iter_register(
        fixed,
        moving,
        request.model,
        request.metric,
        request.backend,
        fixed_spacing=request.fixed.grid.spacing,
        fixed_origin=request.fixed.grid.origin,
        moving_spacing=request.moving.grid.spacing,
        moving_origin=request.moving.grid.origin,
        initial=request.initial,
        **masks,
        **request.settings,
    )
    result = yield from steps
    resampled = None
    if request.write_back == 'resample':
        resampled = resample_like(
            moving_full,
            result.moving_from_fixed,
            request.fixed.grid,
            request.moving.grid,
        )
    return Outcome(result=result, resampled=resampled)


def resample_like(
    array: NDArray,
    moving_from_fixed: NDArray,
    fixed_grid: Grid,
    moving_grid: Grid,
    *,
    labels: bool = False,
) -> NDArray:
    """Resample ``array`` onto the fixed grid, keeping its dtype.

    Parameters
    ----------
    array : ndarray
        Moving image (grey, RGB or labels) on ``moving_grid``.
    moving_from_fixed : ndarray
        The transform, physical units.
    fixed_grid, moving_grid : Grid
        Output grid and the array's grid.
    labels : bool
        Nearest neighbour (labels keep their values); else linear, and
        integer images are rounded back to their dtype (RGB uint8 stays uint8).

    Returns
    -------
    ndarray
        ``array`` resampled onto ``fixed_grid``.
    """
    order = 0 if labels else 1
    out = resample(array, moving_from_fixed, fixed_grid, moving_grid, order=order)
    if not labels and np.issubdtype(array.dtype, np.integer):
        info = np.iinfo(array.dtype)
        out = np.clip(np.round(out), info.min, info.max).astype(array.dtype)
    return out
