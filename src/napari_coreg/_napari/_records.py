"""What the plugin stores on layers: registration records, history and undo.

Everything goes into ``layer.metadata[METADATA_KEY]`` (a plain, JSON-able
dict):

- ``'registration'``: the record of the last pair registration written to
  (or applied to) the layer; ``'stack'``: the record of a stack registration;
- ``'output_of'``: on a layer written by the plugin, the id of the layer it
  was made from (so a rerun updates it in place);
- ``'history'``: one entry per write-back, enough for :func:`undo` to put
  the layer (and the viewer's layer list) back as it was.

Pure functions on layers and a layer list: they run in a real viewer or in
``napari.components.ViewerModel``.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .. import __version__
from ..transforms import Grid
from ._geometry import layer_frame, physical2world, reg_from_physical, spatial_block

__all__ = [
    'METADATA_KEY',
    'STACK_KEY',
    'can_undo',
    'find_output',
    'layer_record',
    'make_record',
    'output_id',
    'push_history',
    'sample_suggestion',
    'record_from_dict',
    'undo',
]

#: Key of everything this plugin writes into ``layer.metadata``.
METADATA_KEY = 'napari_coreg'
#: Entry of ``metadata[METADATA_KEY]`` that holds a stack registration.
STACK_KEY = 'stack'
#: Entry of ``metadata[METADATA_KEY]`` that holds a pair registration.
PAIR_KEY = 'registration'


def make_record(
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
    """JSON-able description of a transform and where it is shown.

    Parameters
    ----------
    result_dict : dict
        ``RegistrationResult.to_dict()`` (or a loaded file's dict).
    fixed_name, moving_name : str or None
        Layers the transform was estimated between.
    ndim : int
        Spatial dimensions of the transform.
    world_from_fixed_reg, moving_reg_from_physical : ndarray
        Placement of the fixed registration frame in the world, and of the
        moving registration frame in the moving layer's physical frame.
    fixed_grid : Grid
        Grid the moving image is resampled onto.
    source : str
        ``'registration'`` or ``'file'``.

    Returns
    -------
    dict
        The record stored under ``metadata[METADATA_KEY]['registration']``.
    """
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


def _is_image(layer) -> bool:
    return type(layer).__name__ == 'Image'


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

    Returns
    -------
    dict
        A record as :func:`make_record` builds it.
    """
    matrix = np.asarray(transform['moving_from_fixed'], dtype=np.float64)
    ndim = matrix.shape[0] - 1
    grid = transform.get('fixed_grid')
    if grid is not None:
        fixed_grid = Grid.from_dict(grid)
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
    return make_record(
        dict(transform),
        fixed_name=None if reference is None else reference.name,
        moving_name=None,
        ndim=ndim,
        world_from_fixed_reg=world_from_fixed_reg,
        moving_reg_from_physical=moving_q,
        fixed_grid=fixed_grid,
        source='file',
    )


def _entry(layer) -> dict | None:
    meta = layer.metadata.get(METADATA_KEY) if hasattr(layer, 'metadata') else None
    return meta if isinstance(meta, dict) else None


def layer_record(layer, key: str = PAIR_KEY) -> dict[str, Any] | None:
    """Return the registration stored on a layer, or ``None``.

    ``key`` is ``'registration'`` (a pair) or ``'stack'``.
    """
    entry = _entry(layer)
    return None if entry is None else entry.get(key)


def sample_suggestion(layer) -> dict[str, str]:
    """The model and metric a sample layer suggests (``{}`` for other layers)."""
    entry = _entry(layer) or {}
    truth = entry.get('ground_truth')
    if not isinstance(truth, dict):
        return {}
    found = {'model': truth.get('model'), 'metric': truth.get('suggested_metric')}
    return {key: value for key, value in found.items() if isinstance(value, str)}


def output_id(source_name: str, kind: str = 'registered') -> str:
    """Id stored on the layer written for ``source_name`` (``'output_of'``)."""
    return f'{kind}:{source_name}'


def find_output(layers, source_name: str, output: str | None = None):
    """The layer the plugin wrote for ``source_name`` (by id), or ``None``."""
    output = output or output_id(source_name)
    for layer in layers:
        entry = _entry(layer)
        if entry is not None and entry.get('output_of') == output:
            return layer
    return None


def push_history(layer, action: dict, record: dict | None, key: str = PAIR_KEY) -> None:
    """Store ``record`` on ``layer`` under ``key`` and remember how to undo it.

    Parameters
    ----------
    layer : napari layer
        The layer written to, or the source of a written layer.
    action : dict
        ``{'action': 'affine', 'previous_affine': ...}`` or
        ``{'action': 'resample', 'output_id': ..., 'output_name': ...}``.
    record : dict or None
        The new record (``None``: keep the current one).
    key : str
        ``'registration'`` or ``'stack'``.
    """
    meta = copy.deepcopy(_entry(layer) or {})
    history = list(meta.get('history', []))
    history.append({**action, 'record_key': key, 'previous_record': meta.get(key)})
    meta['history'] = history
    if record is not None:
        meta[key] = record
    layer.metadata = {**layer.metadata, METADATA_KEY: meta}


def can_undo(layer) -> bool:
    """Whether :func:`undo` has something to restore on ``layer``."""
    meta = _entry(layer) if layer is not None else None
    return meta is not None and bool(meta.get('history'))


def undo(layers, layer) -> str:
    """Undo the last write-back on ``layer``; return what was done.

    An affine write-back gets the previous ``affine`` back; a layer written
    for ``layer`` (resampled pair or stack) is removed from ``layers`` (a
    napari ``LayerList``).

    Raises
    ------
    ValueError
        If ``layer`` has nothing to undo.
    """
    if not can_undo(layer):
        raise ValueError(f'layer {layer.name!r} has nothing to undo')
    meta = copy.deepcopy(layer.metadata[METADATA_KEY])
    entry = meta['history'].pop()
    if entry['action'] == 'affine':
        layer.affine = np.asarray(entry['previous_affine'])
        done = f'restored the previous affine of {layer.name!r}'
    else:
        output = find_output(layers, layer.name, entry.get('output_id'))
        if output is not None:
            layers.remove(output)
        done = f'removed {entry.get("output_name", "the resampled layer")!r}'
    key = entry.get('record_key', PAIR_KEY)
    if entry.get('previous_record') is None:
        meta.pop(key, None)
    else:
        meta[key] = entry['previous_record']
    layer.metadata = {**layer.metadata, METADATA_KEY: meta}
    return done
