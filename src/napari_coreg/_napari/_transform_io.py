"""Save, load and apply transforms: small widgets and the functions behind them.

A registration stores its transform on the moving layer
(``layer.metadata['napari_coreg']``). From there it can be saved to a file,
or applied to other layers - other channels, labels, points, shapes, vectors
drawn on the moving image - through their ``affine`` or, for a homography or
on request, by resampling (images linear, labels nearest neighbour) or by
mapping coordinates (points, shapes, vectors) into a new layer.

Files: ``.json`` (lossless: matrix, direction, axes, units, model, settings,
metrics, version; the format of ``RegistrationResult.to_dict()``) and ITK
``.tfm``, both through the core :mod:`napari_coreg.io`.
"""

# no `from __future__ import annotations`: magicgui resolves the widget
# annotations at run time (STYLE B6)
from functools import wraps
from pathlib import Path
from typing import Any

import napari
import numpy as np
from magicgui import magic_factory
from napari.layers import Image, Layer

from .. import io
from ._writeback import (
    apply_record,
    layer_record,
    record_from_dict,
)

__all__ = [
    'apply_transform_widget',
    'load_transform',
    'load_transform_widget',
    'save_layer_transform',
    'save_transform_widget',
]

_FILTER = 'Transform (*.json *.tfm *.txt *.h5 *.mat)'
_MODES = ['affine', 'resample']


def _reported(function):
    """Show a widget's errors as a notification instead of a traceback.

    Bad input (``ValueError``, ``TypeError``) and files that cannot be read
    or written (``OSError``) end in one clear message; the function then
    returns ``None``.
    """

    @wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except (ValueError, TypeError, OSError) as exc:
            from napari.utils.notifications import show_error

            show_error(f'{_TITLES.get(function.__name__, "Transform")}: {exc}')
            return None

    return wrapper


_TITLES = {
    'save_transform_widget': 'Save transform',
    'load_transform_widget': 'Load transform',
    'apply_transform_widget': 'Apply transform',
}


def _registered_first(widget=None) -> list[tuple[str, Any]]:
    """The viewer's layers, those holding a transform first (the default)."""
    viewer = napari.current_viewer()
    if viewer is None:
        return []
    layers = list(viewer.layers)
    ordered = [layer for layer in layers if layer_record(layer) is not None]
    ordered += [layer for layer in layers if layer_record(layer) is None]
    return [(layer.name, layer) for layer in ordered]


def _prefer_registered(widget) -> None:
    """Keep the Save widget on a layer that holds a transform when one does."""
    reset = widget.reset_choices

    def reset_choices(*args):
        reset(*args)
        combo = widget.layer
        if combo.value is not None and layer_record(combo.value) is not None:
            return
        for layer in combo.choices:
            if layer_record(layer) is not None:
                combo.value = layer
                return

    widget.reset_choices = reset_choices
    widget.native_parent_changed.connect(lambda *_: reset_choices())


#: Entries of a layer's record that place the transform in the viewer; saved
#: under ``metadata.napari`` so that loading restores the placement.
_NAPARI_KEYS = (
    'fixed_layer',
    'moving_layer',
    'ndim',
    'world_from_fixed_reg',
    'moving_reg_from_physical',
    'fixed_grid',
    'write_back',
)
_MATRIX_KEYS = ('moving_from_fixed', 'fixed_from_moving', 'model')


def save_layer_transform(layer, path: str | Path) -> Path:
    """Save the transform stored on ``layer`` by a registration.

    Parameters
    ----------
    layer : napari layer
        A registered moving layer (or any layer a transform was applied to).
    path : str or Path
        ``.json`` (lossless) or an ITK file (``.tfm``, ...) through
        :func:`napari_coreg.io.save_transform`.

    Raises
    ------
    ValueError
        If the layer holds no transform, or the file type cannot hold it.
    """
    record = layer_record(layer)
    if record is None:
        raise ValueError(
            f'layer {layer.name!r} holds no transform: register it first (or '
            'choose the registered moving layer)'
        )
    path = Path(path)
    transform = dict(record['transform'])
    napari_extra = {key: record.get(key) for key in _NAPARI_KEYS}
    loaded = io.TransformFile(
        moving_from_fixed=transform['moving_from_fixed'],
        model=transform.get('model'),
        metadata={k: v for k, v in transform.items() if k not in _MATRIX_KEYS},
    )
    return io.save_transform(  # the file dialog asked before replacing
        path, loaded, metadata={'napari': napari_extra}, overwrite=True
    )


def load_transform(path: str | Path) -> dict[str, Any]:
    """Read a transform file into a dict with at least ``moving_from_fixed``.

    ``.json`` files of napari-coreg and ITK transform files (through
    :func:`napari_coreg.io.load_transform`). The placement saved by
    :func:`save_layer_transform` is under ``'napari'``.
    """
    path = Path(path)
    loaded = io.load_transform(path)
    data = {
        **loaded.metadata,
        'moving_from_fixed': np.asarray(loaded.moving_from_fixed).tolist(),
        'model': loaded.model,
    }
    if 'moving_from_fixed' not in data:
        raise ValueError(
            f'{path} holds no moving_from_fixed matrix: is it a napari-coreg '
            'transform file?'
        )
    if np.ndim(data['moving_from_fixed']) != 2:
        raise ValueError(
            f'{path.name} holds one transform per frame of a stack: apply it '
            'with the Register stack widget'
        )
    extra = data.get('metadata')
    data['napari'] = (extra or {}).get('napari') if isinstance(extra, dict) else None
    return data


def _file_record(data: dict, reference=None, target=None) -> dict:
    extra = data.get('napari') or {}
    if data.get('fixed_grid') is None and extra.get('fixed_grid') is not None:
        data = {**data, 'fixed_grid': extra['fixed_grid']}
    record = record_from_dict(data, reference=reference, target=target)
    if reference is None and extra.get('world_from_fixed_reg') is not None:
        # the fixed layer's placement when the file was saved
        record['world_from_fixed_reg'] = extra['world_from_fixed_reg']
    return record


@magic_factory(
    call_button='Save',
    layer={'label': 'Registered layer', 'choices': _registered_first},
    path={'label': 'File', 'mode': 'w', 'filter': _FILTER},
    widget_init=_prefer_registered,
)
@_reported
def save_transform_widget(layer: Layer, path: Path = Path('transform.json')) -> None:
    """Save the transform of a registered layer.

    Parameters
    ----------
    layer : napari.layers.Layer
        The moving layer of a registration.
    path : Path
        Where to write (.json).
    """
    from napari.utils.notifications import show_info

    written = save_layer_transform(layer, path)
    show_info(f'Saved the transform of {layer.name!r} to {written}')


@magic_factory(
    call_button='Load and apply',
    path={'label': 'File', 'mode': 'r', 'filter': _FILTER},
    target={'label': 'Apply to'},
    reference={'label': 'Fixed (reference)'},
    mode={'label': 'As', 'choices': _MODES},
)
@_reported
def load_transform_widget(
    viewer: napari.viewer.Viewer,
    path: Path = Path('transform.json'),
    target: Layer | None = None,
    reference: Image | None = None,
    mode: str = 'affine',
) -> None:
    """Load a transform file and apply it to a layer.

    Parameters
    ----------
    path : Path
        A transform file (.json).
    target : napari.layers.Layer
        Layer in the moving image's frame (image, labels, points, shapes, ...).
    reference : napari.layers.Image, optional
        The fixed image: its placement in the world (and grid, for
        resampling). Empty: the file's own record.
    mode : str
        'affine' moves the layer; 'resample' adds a new layer on the fixed grid.
    """
    from napari.utils.notifications import show_info

    if target is None:
        raise ValueError('choose a layer to apply the transform to')
    record = _file_record(load_transform(path), reference=reference, target=target)
    output = apply_record(viewer.layers, record, target, mode, fixed_layer=reference)
    show_info(f'Applied {Path(path).name} to {target.name!r} -> {output.name!r}')


@magic_factory(
    call_button='Apply',
    source={'label': 'Transform of'},
    target={'label': 'Apply to'},
    mode={'label': 'As', 'choices': _MODES},
)
@_reported
def apply_transform_widget(
    viewer: napari.viewer.Viewer,
    source: Layer | None = None,
    target: Layer | None = None,
    mode: str = 'affine',
) -> None:
    """Apply the transform of a registered layer to another layer.

    Parameters
    ----------
    source : napari.layers.Layer
        The registered moving layer that holds the transform.
    target : napari.layers.Layer
        A layer in the moving image's frame: another channel, labels, points,
        shapes or vectors drawn on it.
    mode : str
        'affine' moves the layer (not for homographies); 'resample' adds a new
        layer on the fixed grid (labels nearest neighbour, points mapped).
    """
    from napari.utils.notifications import show_info

    if source is None or target is None:
        raise ValueError('choose the registered layer and the layer to apply it to')
    record = layer_record(source)
    if record is None:
        raise ValueError(f'layer {source.name!r} holds no transform: register it first')
    fixed_layer = _find(viewer.layers, record.get('fixed_layer'))
    output = apply_record(viewer.layers, record, target, mode, fixed_layer=fixed_layer)
    show_info(
        f'Applied the transform of {source.name!r} to {target.name!r}'
        f' -> {output.name!r}'
    )


def _find(layers, name):
    for layer in layers:
        if layer.name == name:
            return layer
    return None
