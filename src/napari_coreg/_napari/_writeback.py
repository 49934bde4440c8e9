"""From a registration's result back to napari layers.

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

from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..result import RegistrationResult
from ..transforms import Grid, apply_matrix
from ._geometry import data2physical, embed_block, layer_frame, physical2world
from ._output import fixed_placement, write_output
from ._records import (
    METADATA_KEY,
    can_undo,
    find_output,
    layer_record,
    make_record,
    output_id,
    push_history,
    record_from_dict,
    undo,
)
from ._request import (
    Outcome,
    Request,
    request_from_layers,
    resample_like,
    run_request,
    world_from_moving_physical,
)

# ``_resample_like``: the name the tests and older callers use
_resample_like = resample_like

__all__ = [
    'METADATA_KEY',
    'Outcome',
    'Request',
    'apply_record',
    'apply_result',
    'can_undo',
    'layer_record',
    'record_from_dict',
    'record_from_result',
    'request_from_layers',
    'run_request',
    'undo',
]


def record_from_result(result: RegistrationResult, request: Request) -> dict[str, Any]:
    """JSON-able description of a registration of two layers.

    Parameters
    ----------
    result : RegistrationResult
        The finished registration.
    request : Request
        What was registered, and where the layers were shown.

    Returns
    -------
    dict
        A record as :func:`._records.make_record` builds it.
    """
    return make_record(
        result.to_dict(),
        fixed_name=request.fixed_name,
        moving_name=request.moving_name,
        ndim=request.ndim,
        world_from_fixed_reg=request.fixed.world_from_reg,
        moving_reg_from_physical=request.moving.reg_from_physical,
        fixed_grid=request.fixed.grid,
        source='registration',
    )


def _moving_from_fixed(record: dict) -> NDArray[np.float64]:
    return np.asarray(record['transform']['moving_from_fixed'], dtype=np.float64)


def _is_projective(record: dict) -> bool:
    matrix = _moving_from_fixed(record)
    last = np.zeros(matrix.shape[0])
    last[-1] = 1
    return not np.allclose(matrix[-1], last, atol=1e-12)


def apply_result(layers, request: Request, outcome: Outcome) -> Any:
    """Write a finished registration back to the viewer's layers.

    Parameters
    ----------
    layers : napari LayerList
        The viewer's layers.
    request : Request
        What was registered.
    outcome : Outcome
        What :func:`run_request` returned.

    Returns
    -------
    napari layer
        The layer that shows the result (the moving layer for ``'affine'``,
        the resampled layer for ``'resample'``).

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
        push_history(
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
        data = resample_like(
            request.moving.array(request.moving_data),
            result.moving_from_fixed,
            request.fixed.grid,
            request.moving.grid,
        )
    output = write_output(
        layers,
        moving,
        data,
        output=output_id(moving.name),
        record=record,
        record_key='registration',
        placement=fixed_placement(request.fixed.world_from_px, fixed, request.fixed),
        overlay=True,
    )
    push_history(
        moving,
        {
            'action': 'resample',
            'output_name': output.name,
            'output_id': output_id(moving.name),
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
        push_history(
            layer,
            {'action': 'affine', 'previous_affine': physical2world(layer).tolist()},
            {**record, 'write_back': 'affine', 'applied_to': layer.name},
        )
        layer.affine = new
        return layer
    if mode != 'resample':
        raise ValueError(f"mode must be 'affine' or 'resample', got {mode!r}")
    fixed_grid = Grid.from_dict(record['fixed_grid'])
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
        data = resample_like(
            frame.array(layer.data),
            layer_from_fixed,
            fixed_grid,
            frame.grid,
            labels=kind == 'Labels',
        )
        frame_f = None
        if fixed_layer is not None and fixed_layer.ndim == ndim:
            frame_f = layer_frame(fixed_layer, ndim)
            if frame_f.grid.shape != fixed_grid.shape:
                frame_f = None
        output = write_output(
            layers,
            layer,
            data,
            output=output_id(layer.name),
            record={**record, 'write_back': 'resample', 'applied_to': layer.name},
            record_key='registration',
            placement=fixed_placement(world_from_px, fixed_layer, frame_f),
            labels=kind == 'Labels',
        )
    elif kind in ('Points', 'Shapes', 'Vectors'):
        output = _map_coordinates_layer(
            layers, record, layer, matrix, moving_q, world_from_fixed_reg
        )
    else:
        raise ValueError(f'cannot resample a {kind} layer: use mode="affine" for it')
    push_history(
        layer,
        {
            'action': 'resample',
            'output_name': output.name,
            'output_id': output_id(layer.name),
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
            'output_of': output_id(layer.name),
            'registration': {**record, 'applied_to': layer.name},
        }
    }
    existing = find_output(layers, layer.name)
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
