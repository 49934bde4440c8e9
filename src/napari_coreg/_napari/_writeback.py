"""From napari layers to a registration, and from its result back to layers.

Pure functions on layers and a layer list, so they run in a real viewer or in
``napari.components.ViewerModel`` (no Qt). The dock widget and
:func:`napari_coreg.register_layers` both use them.

Write-back never touches pixel data. ``'affine'`` sets the moving layer's
``affine`` (napari's ``physical2world``) so that it overlays the fixed layer
in world coordinates; ``'resample'`` adds (or updates) a layer
``"<moving> registered"`` holding the moving image resampled onto the fixed
grid. Either way the transform, the settings, the metrics and the previous
state go into ``layer.metadata['napari_coreg']`` so :func:`undo` can restore
them.

Derivation (numpy axis order, spatial blocks, ``a_from_b`` names). Let ``A``
be a layer's ``affine`` and ``Q`` its ``reg_from_physical`` (identity unless
it has rotate/shear). The registration finds ``T = moving_from_fixed``
between the two registration frames. A fixed point ``x`` is shown at world
``A_f Q_f^-1 x``; the moving structure at ``T x`` must be shown there too,
so the moving layer needs ``A_m' Q_m^-1 T x = A_f Q_f^-1 x`` for every ``x``:

    A_m' = A_f @ inv(Q_f) @ inv(T) @ Q_m

which is ``fixed.affine @ result.fixed_from_moving`` for layers without
rotate or shear. Any layer that shares the moving layer's physical frame
(other channels, labels or points drawn on it) is aligned by the same
``A_m'``.
"""

from __future__ import annotations

import copy
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .. import __version__
from ..api import iter_register
from ..method import resolve
from ..options import Model
from ..result import Progress, RegistrationResult
from ..transforms import Grid, apply_matrix
from ..warp import resample
from ._geometry import (
    LayerFrame,
    data2physical,
    embed_block,
    layer_frame,
    physical2world,
    reg_from_physical,
    spatial_block,
)
from ._masks import MaskSource, mask_source, rasterise

__all__ = [
    'METADATA_KEY',
    'Request',
    'apply_record',
    'apply_result',
    'layer_record',
    'record_from_dict',
    'request_from_layers',
    'run_request',
    'undo',
]

#: Key of everything this plugin writes into ``layer.metadata``.
METADATA_KEY = 'napari_coreg'

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
        Pixels that count.
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
        write_back = 'resample' if model_ is Model.HOMOGRAPHY else 'affine'
    if write_back not in WRITE_BACK:
        raise ValueError(f'write_back must be one of {WRITE_BACK}, got {write_back!r}')
    if write_back == 'affine' and model_ is Model.HOMOGRAPHY:
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
    )


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
    fixed = _gray(request.fixed.array(request.fixed_data), request.fixed.rgb)
    moving_full = request.moving.array(request.moving_data)
    moving = _gray(moving_full, request.moving.rgb)
    masks = {
        role: None if source is None else rasterise(source, frame)
        for role, source, frame in (
            ('fixed_mask', request.fixed_mask, request.fixed),
            ('moving_mask', request.moving_mask, request.moving),
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
        resampled = _resample_like(
            moving_full,
            result.moving_from_fixed,
            request.fixed.grid,
            request.moving.grid,
        )
    return Outcome(result=result, resampled=resampled)


def _resample_like(
    array: NDArray,
    moving_from_fixed: NDArray,
    fixed_grid: Grid,
    moving_grid: Grid,
    *,
    labels: bool = False,
) -> NDArray:
    """Resample onto the fixed grid, keeping integer dtypes (RGB uint8 stays uint8)."""
    order = 0 if labels else 1
    out = resample(array, moving_from_fixed, fixed_grid, moving_grid, order=order)
    if not labels and np.issubdtype(array.dtype, np.integer):
        info = np.iinfo(array.dtype)
        out = np.clip(np.round(out), info.min, info.max).astype(array.dtype)
    return out


# --------------------------------------------------------------- records


def _record(
    result_dict: dict,
    *,
    fixed_name: str | None,
    moving_name: str | None,
    ndim: int,
    world_from_fixed_reg: NDArray,
    moving_reg_from_physical: NDArray,
    fixed_grid: Grid,
    source: str,
) -> dict[str, Any]:
    return {
        'transform': result_dict,
        'fixed_layer': fixed_name,
        'moving_layer': moving_name,
        'ndim': ndim,
        'world_from_fixed_reg': np.asarray(world_from_fixed_reg).tolist(),
        'moving_reg_from_physical': np.asarray(moving_reg_from_physical).tolist(),
        'fixed_grid': fixed_grid.to_dict(),
        'source': source,
        'napari_coreg_version': __version__,
    }


def record_from_result(result: RegistrationResult, request: Request) -> dict[str, Any]:
    """JSON-able description of a registration of two layers."""
    return _record(
        result.to_dict(),
        fixed_name=request.fixed_name,
        moving_name=request.moving_name,
        ndim=request.ndim,
        world_from_fixed_reg=request.fixed.world_from_reg,
        moving_reg_from_physical=request.moving.reg_from_physical,
        fixed_grid=request.fixed.grid,
        source='registration',
    )


def record_from_dict(transform: dict, reference=None, target=None) -> dict[str, Any]:
    """A record for a transform loaded from a file (``result.to_dict()`` form).

    Parameters
    ----------
    transform : dict
        Needs ``moving_from_fixed``; ``fixed_grid`` (shape, spacing, origin)
        is used for resampling.
    reference : napari layer, optional
        The layer the transform's fixed frame is shown by (its world
        placement is used); default: fixed physical = world.
    target : napari layer, optional
        A layer in the moving frame whose rotate/shear define it.
    """
    matrix = np.asarray(transform['moving_from_fixed'], dtype=np.float64)
    ndim = matrix.shape[0] - 1
    grid_dict = transform.get('fixed_grid')
    if grid_dict is not None:
        fixed_grid = Grid(
            tuple(grid_dict['shape']),
            tuple(grid_dict['spacing']),
            tuple(grid_dict['origin']),
        )
    elif reference is not None and _is_image(reference):
        fixed_grid = layer_frame(reference, ndim).grid
    else:
        fixed_grid = Grid((1,) * ndim)
    if reference is not None:
        world_from_fixed_reg = spatial_block(
            physical2world(reference), ndim
        ) @ np.linalg.inv(reg_from_physical(reference, ndim))
    else:
        world_from_fixed_reg = np.eye(ndim + 1)
    moving_q = np.eye(ndim + 1) if target is None else reg_from_physical(target, ndim)
    return _record(
        dict(transform),
        fixed_name=None if reference is None else reference.name,
        moving_name=None,
        ndim=ndim,
        world_from_fixed_reg=world_from_fixed_reg,
        moving_reg_from_physical=moving_q,
        fixed_grid=fixed_grid,
        source='file',
    )


def layer_record(layer) -> dict[str, Any] | None:
    """The registration stored on a layer, or ``None``."""
    meta = layer.metadata.get(METADATA_KEY) if hasattr(layer, 'metadata') else None
    if not isinstance(meta, dict):
        return None
    return meta.get('registration')


def _moving_from_fixed(record: dict) -> NDArray[np.float64]:
    return np.asarray(record['transform']['moving_from_fixed'], dtype=np.float64)


def _is_projective(record: dict) -> bool:
    matrix = _moving_from_fixed(record)
    last = np.zeros(matrix.shape[0])
    last[-1] = 1
    return not np.allclose(matrix[-1], last, atol=1e-12)


def _push(layer, entry: dict, record: dict | None) -> None:
    """Store ``record`` on ``layer`` and remember how to undo it."""
    meta = copy.deepcopy(layer.metadata.get(METADATA_KEY) or {})
    history = list(meta.get('history', []))
    entry = {**entry, 'registration': meta.get('registration')}
    history.append(entry)
    meta['history'] = history
    if record is not None:
        meta['registration'] = record
    layer.metadata = {**layer.metadata, METADATA_KEY: meta}


def can_undo(layer) -> bool:
    """Whether :func:`undo` has something to restore on ``layer``."""
    meta = layer.metadata.get(METADATA_KEY) if layer is not None else None
    return isinstance(meta, dict) and bool(meta.get('history'))


def undo(layers, layer) -> str:
    """Undo the last write-back on ``layer``; return what was done.

    An affine write-back gets the previous ``affine`` back; a resampled layer
    written for ``layer`` is removed from ``layers`` (a napari ``LayerList``).
    """
    if not can_undo(layer):
        raise ValueError(f'layer {layer.name!r} has nothing to undo')
    meta = copy.deepcopy(layer.metadata[METADATA_KEY])
    entry = meta['history'].pop()
    if entry['action'] == 'affine':
        layer.affine = np.asarray(entry['previous_affine'])
        done = f'restored the previous affine of {layer.name!r}'
    else:
        output = _find_output(layers, layer.name, entry.get('output_id'))
        if output is not None:
            layers.remove(output)
        done = f'removed {entry.get("output_name", "the resampled layer")!r}'
    if entry.get('registration') is None:
        meta.pop('registration', None)
    else:
        meta['registration'] = entry['registration']
    layer.metadata = {**layer.metadata, METADATA_KEY: meta}
    return done


# ------------------------------------------------------------ write-back


def apply_result(layers, request: Request, outcome: Outcome) -> Any:
    """Write a finished registration back to the viewer's layers.

    Returns the layer that shows the result (the moving layer for
    ``'affine'``, the resampled layer for ``'resample'``).

    Raises
    ------
    ValueError
        If the fixed or moving layer was removed (or renamed) meanwhile.
    """
    fixed = _layer_named(layers, request.fixed_name, 'fixed')
    moving = _layer_named(layers, request.moving_name, 'moving')
    result = outcome.result
    record = record_from_result(result, request)
    if request.write_back == 'affine':
        new = request.preview_affine(result.moving_from_fixed)
        _push(
            moving,
            {
                'action': 'affine',
                'previous_affine': request.moving_affine_before.tolist(),
            },
            {**record, 'write_back': 'affine'},
        )
        moving.affine = new
        return moving
    data = outcome.resampled
    if data is None:
        data = _resample_like(
            request.moving.array(request.moving_data),
            result.moving_from_fixed,
            request.fixed.grid,
            request.moving.grid,
        )
    output = _write_output(
        layers, moving, data, request.fixed, fixed, record, labels=False
    )
    _push(
        moving,
        {
            'action': 'resample',
            'output_name': output.name,
            'output_id': _output_id(moving.name),
        },
        {**record, 'write_back': 'resample', 'output_layer': output.name},
    )
    return output


def _layer_named(layers, name: str, role: str):
    for layer in layers:
        if layer.name == name:
            return layer
    raise ValueError(
        f'the {role} layer {name!r} is no longer in the viewer: nothing was '
        'written; run the registration again'
    )


def _output_id(source_name: str) -> str:
    return f'registered:{source_name}'


def _find_output(layers, source_name: str, output_id: str | None = None):
    output_id = output_id or _output_id(source_name)
    for layer in layers:
        meta = layer.metadata.get(METADATA_KEY)
        if isinstance(meta, dict) and meta.get('output_of') == output_id:
            return layer
    return None


def _placement(
    fixed_frame_world_from_px: NDArray, fixed_layer, fixed_frame: LayerFrame | None
):
    """Layer keyword arguments that put a fixed-grid array where fixed is."""
    if (
        fixed_layer is not None
        and fixed_frame is not None
        and fixed_layer.ndim == fixed_frame.grid.ndim
        and fixed_frame.level in (None, 0)
    ):
        return {
            'scale': np.asarray(fixed_layer.scale),
            'translate': np.asarray(fixed_layer.translate),
            'rotate': np.asarray(fixed_layer.rotate),
            'shear': np.asarray(fixed_layer.shear),
            'affine': physical2world(fixed_layer),
        }
    ndim = fixed_frame_world_from_px.shape[0] - 1
    return {
        'scale': np.ones(ndim),
        'translate': np.zeros(ndim),
        'rotate': np.eye(ndim),
        'shear': np.zeros(ndim * (ndim - 1) // 2),
        'affine': fixed_frame_world_from_px,
    }


def _write_output(
    layers,
    source,
    data: NDArray,
    fixed_frame: LayerFrame | None,
    fixed_layer,
    record: dict,
    *,
    labels: bool,
    world_from_px: NDArray | None = None,
):
    """Add or update (in place) the layer ``"<source> registered"``."""
    from napari.layers import Image, Labels

    if world_from_px is None:
        world_from_px = fixed_frame.world_from_px
    placement = _placement(world_from_px, fixed_layer, fixed_frame)
    output_id = _output_id(source.name)
    meta = {METADATA_KEY: {'output_of': output_id, 'registration': record}}
    existing = _find_output(layers, source.name)
    if (
        existing is not None
        and type(existing).__name__ == ('Labels' if labels else 'Image')
        and (getattr(existing, 'rgb', False) == getattr(source, 'rgb', False))
    ):
        existing.data = data
        for key, value in placement.items():
            setattr(existing, key, value)
        existing.metadata = {**existing.metadata, **meta}
        if not labels and not getattr(source, 'rgb', False):
            existing.contrast_limits = source.contrast_limits
        return existing
    if existing is not None:
        layers.remove(existing)
    kwargs = {'name': f'{source.name} registered', 'metadata': meta, **placement}
    if labels:
        output = Labels(data, **kwargs)
    else:
        kwargs['rgb'] = bool(getattr(source, 'rgb', False))
        if not kwargs['rgb']:
            kwargs['colormap'] = source.colormap.name
            kwargs['contrast_limits'] = source.contrast_limits
        kwargs['blending'] = source.blending
        output = Image(data, **kwargs)
    layers.append(output)
    return output


def apply_record(layers, record: dict, layer, mode: str = 'affine', fixed_layer=None):
    """Apply a stored transform to another layer.

    Parameters
    ----------
    layers : napari LayerList
        Where a resampled / mapped layer is added.
    record : dict
        A record from :func:`layer_record` or :func:`record_from_dict`.
    layer : napari layer
        Image, Labels, Points, Shapes, Vectors (or any layer for
        ``'affine'``) in the *moving* image's physical frame: same scale
        and translate as the registered moving layer, or drawn on it.
    mode : {'affine', 'resample'}
        ``'affine'``: set ``layer.affine`` (pixels untouched; not for
        homographies). ``'resample'``: a new layer ``"<name> registered"`` on
        the fixed grid - images linear, labels nearest neighbour; points,
        shapes and vectors are mapped point by point.
    fixed_layer : napari layer, optional
        The fixed layer, to copy its placement to a resampled layer.

    Returns
    -------
    napari layer
        The layer that shows the result.
    """
    ndim = int(record['ndim'])
    matrix = _moving_from_fixed(record)
    projective = _is_projective(record)
    world_from_fixed_reg = np.asarray(record['world_from_fixed_reg'], dtype=np.float64)
    moving_q = np.asarray(record['moving_reg_from_physical'], dtype=np.float64)
    kind = type(layer).__name__
    if mode == 'affine':
        if projective:
            raise ValueError(
                "a homography cannot be shown through a layer's affine: apply it "
                "with mode='resample'"
            )
        block = world_from_moving_physical(world_from_fixed_reg, matrix, moving_q)
        new = embed_block(physical2world(layer), block)
        _push(
            layer,
            {'action': 'affine', 'previous_affine': physical2world(layer).tolist()},
            {**record, 'write_back': 'affine', 'applied_to': layer.name},
        )
        layer.affine = new
        return layer
    if mode != 'resample':
        raise ValueError(f"mode must be 'affine' or 'resample', got {mode!r}")
    grid_dict = record['fixed_grid']
    fixed_grid = Grid(
        tuple(grid_dict['shape']),
        tuple(grid_dict['spacing']),
        tuple(grid_dict['origin']),
    )
    world_from_px = world_from_fixed_reg @ fixed_grid.phys_from_px
    if kind in ('Image', 'Labels'):
        if fixed_grid.shape == (1,) * ndim:
            raise ValueError(
                'this transform has no fixed grid to resample onto: choose a '
                'reference (fixed) image layer'
            )
        frame = layer_frame(layer, ndim)
        # layer registration frame <- moving registration frame <- fixed
        layer_from_fixed = frame.reg_from_physical @ np.linalg.inv(moving_q) @ matrix
        data = _resample_like(
            frame.array(layer.data),
            layer_from_fixed,
            fixed_grid,
            frame.grid,
            labels=kind == 'Labels',
        )
        output = _write_output(
            layers,
            layer,
            data,
            None,
            None,
            {**record, 'write_back': 'resample', 'applied_to': layer.name},
            labels=kind == 'Labels',
            world_from_px=world_from_px,
        )
        if fixed_layer is not None and fixed_layer.ndim == ndim:
            frame_f = layer_frame(fixed_layer, ndim)
            if frame_f.grid.shape == fixed_grid.shape and frame_f.level in (None, 0):
                for key, value in _placement(
                    world_from_px, fixed_layer, frame_f
                ).items():
                    setattr(output, key, value)
    elif kind in ('Points', 'Shapes', 'Vectors'):
        output = _map_coordinates_layer(
            layers, record, layer, matrix, moving_q, world_from_fixed_reg
        )
    else:
        raise ValueError(f'cannot resample a {kind} layer: use mode="affine" for it')
    _push(
        layer,
        {
            'action': 'resample',
            'output_name': output.name,
            'output_id': _output_id(layer.name),
        },
        None,
    )
    return output


def _map_coordinates_layer(
    layers, record, layer, matrix, moving_q, world_from_fixed_reg
):
    """Map a points/shapes/vectors layer point by point into the fixed frame."""
    from napari.layers import Points, Shapes, Vectors

    ndim = matrix.shape[0] - 1
    if layer.ndim != ndim:
        raise ValueError(
            f'layer {layer.name!r} has {layer.ndim} dimensions: point-by-point '
            f'mapping needs a {ndim}D layer'
        )
    # layer data -> napari physical (= moving physical) -> moving reg -> fixed reg
    fixed_from_data = np.linalg.inv(matrix) @ moving_q @ data2physical(layer)

    def to_fixed(points):
        return apply_matrix(fixed_from_data, np.asarray(points, dtype=np.float64))

    kind = type(layer).__name__
    placement = {'affine': world_from_fixed_reg}
    name = f'{layer.name} registered'
    meta = {
        METADATA_KEY: {
            'output_of': _output_id(layer.name),
            'registration': {**record, 'applied_to': layer.name},
        }
    }
    existing = _find_output(layers, layer.name)
    if existing is not None:
        layers.remove(existing)
    if kind == 'Points':
        output = Points(
            to_fixed(layer.data),
            name=name,
            metadata=meta,
            size=layer.size,
            face_color=layer.face_color,
            **placement,
        )
    elif kind == 'Shapes':
        output = Shapes(
            [to_fixed(v) for v in layer.data],
            shape_type=list(layer.shape_type),
            name=name,
            metadata=meta,
            edge_color=layer.edge_color,
            face_color=layer.face_color,
            **placement,
        )
    else:
        vectors = np.asarray(layer.data, dtype=np.float64)
        start = to_fixed(vectors[:, 0])
        end = to_fixed(vectors[:, 0] + vectors[:, 1])
        output = Vectors(
            np.stack([start, end - start], axis=1),
            name=name,
            metadata=meta,
            edge_color=layer.edge_color,
            **placement,
        )
    layers.append(output)
    return output
