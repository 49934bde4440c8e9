"""The "Co-register georeferenced rasters" dock widget.

Pick a reference and a target layer opened by the georeferenced reader
(``metadata['geo']``), a model, the tie-point window and spacing, and press
*Register*: :func:`napari_coreg.geo.register_rasters` runs in a worker
thread (see :mod:`._runner`: errors, *Cancel* and closing the dock are
handled there), starting where the georeferencing puts the scenes. The result is
written back without touching pixels: the target layer's ``affine`` is
composed with the map-coordinate correction (for a translation, the layer
simply moves), and the tie points are added as a Points layer coloured by
reliability (invalid points in grey). *Save corrected GeoTIFF* writes the
corrected target as a new file (pixels unchanged for a translation,
resampled onto the reference grid otherwise, or through a smooth
displacement field with *local*): never over an input, and never over an
existing file (a free name is picked and shown). A result the quality check
holds (:func:`~napari_coreg.quality.hold_reasons`: a ``'failed'`` verdict)
moves no layer and is not offered for saving; the status line says why. A
target moved otherwise (e.g. by *Register images*) is saved where it is
shown, pixels unchanged (:func:`._geo_save.write_layer_geotiff`). *Open
dropped .tif / .jp2 here* sets napari's reader preference for those
extensions (see :func:`._geo_io.prefer_for_drops`).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    PushButton,
    SpinBox,
)
from napari.utils.notifications import show_warning

from ..quality.hold import hold_reasons
from ._geo_io import METADATA_KEY, prefer_for_drops, preferred_for_drops
from ._geo_save import (
    free_path,
    layer_moved,
    suggested_path,
    why_renamed,
    write_layer_geotiff,
)
from ._runner import RunnerWidget

__all__ = [
    'GeoRegistrationWidget',
    'apply_to_layer',
    'register_geo_layers',
    'tie_points_layer',
]

RESULT_KEY = 'napari_coreg_geo'


def _source(layer):
    """What register_rasters takes for a layer: its file, or its pixels."""
    from napari_coreg.geo import GeoRaster, Georef

    meta = layer.metadata[METADATA_KEY]
    if meta.get('path') and Path(meta['path']).exists():
        return meta['path']
    data = layer.data[0] if getattr(layer, 'multiscale', False) else layer.data
    return GeoRaster(np.asarray(data), Georef.from_metadata(meta))


def apply_to_layer(layer, registration) -> None:
    """Move a target layer onto the reference (non-destructive: its affine).

    World coordinates are map coordinates, so the map-coordinate
    ``fixed_from_moving`` composes onto the layer's world transform.
    """
    base = np.asarray(layer.affine.affine_matrix, dtype=np.float64)
    meta = dict(layer.metadata)
    meta.setdefault(RESULT_KEY, {})['affine_before'] = base.tolist()
    meta[RESULT_KEY]['fixed_from_moving'] = registration.fixed_from_moving.tolist()
    meta[RESULT_KEY]['summary'] = registration.summary()
    layer.affine = registration.fixed_from_moving @ base
    layer.metadata = meta


def tie_points_layer(tie, name: str = 'tie points') -> tuple:
    """LayerDataTuple of a Points layer of tie points coloured by reliability."""
    features = {
        'd_row': tie.shift_px[:, 0],
        'd_col': tie.shift_px[:, 1],
        'reliability': tie.reliability,
        'valid': tie.valid,
        'reason': list(tie.reason),
    }
    from napari.utils.colormaps import ensure_colormap

    colors = np.asarray(
        ensure_colormap('viridis').map(np.clip(tie.reliability, 0, 1)), dtype=float
    )
    colors[~tie.valid] = (0.5, 0.5, 0.5, 0.6)
    size = max(tie.georef.pixel_size) * tie.window / 8
    return (
        tie.map_points,
        {
            'name': name,
            'features': features,
            'face_color': colors,
            'size': size,
            'metadata': {RESULT_KEY: {'window': tie.window}},
        },
        'points',
    )


def register_geo_layers(
    reference, target, viewer=None, *, apply_anyway: bool = False, **kwargs
):
    """Co-register two georeferenced image layers from a script.

    Runs :func:`napari_coreg.geo.register_rasters` on the layers' files (or
    pixels), moves ``target`` onto ``reference`` (its ``affine``; pixels
    untouched) and, given a ``viewer``, adds the tie points as a Points
    layer.

    Parameters
    ----------
    reference, target : napari.layers.Image
        Layers opened by the georeferenced reader (``metadata['geo']``).
    viewer : napari.Viewer or napari.components.ViewerModel, optional
        Where the tie points are shown.
    apply_anyway : bool
        Move ``target`` even when the quality check holds the result
        (:func:`~napari_coreg.quality.hold_reasons`: a ``'failed'``
        verdict); otherwise a held result only warns.
    **kwargs
        Passed to :func:`~napari_coreg.geo.register_rasters` (``model``,
        ``window``, ``spacing``, ``similarity``, ...).

    Returns
    -------
    GeoRegistration
    """
    from napari_coreg.geo import register_rasters

    for layer in (reference, target):
        if METADATA_KEY not in (layer.metadata or {}):
            raise ValueError(
                f'layer {layer.name!r} has no georeferencing: open GeoTIFF or '
                'JPEG 2000 files with the napari-coreg reader'
            )
    registration = register_rasters(_source(reference), _source(target), **kwargs)
    held = [] if apply_anyway else hold_reasons(registration)
    if held:
        warnings.warn(
            f'the result was not applied: {"; ".join(held)} (pass '
            'apply_anyway=True to apply it all the same)',
            UserWarning,
            stacklevel=2,
        )
    else:
        apply_to_layer(target, registration)
    if viewer is not None:
        data, layer_kwargs, _ = tie_points_layer(
            registration.tie_points, name=f'{target.name} tie points'
        )
        viewer.add_points(data, **layer_kwargs)
    return registration


class GeoRegistrationWidget(RunnerWidget):
    """Dock widget: co-register two georeferenced image layers."""

    def __init__(self, napari_viewer) -> None:
        super().__init__(napari_viewer, 'Register', 'Geo registration failed')
        self._result = None
        self._target_layer = None
        self._reference = ComboBox(label='reference', choices=self._geo_layers)
        self._target = ComboBox(label='target', choices=self._geo_layers)
        self._model = ComboBox(
            label='model',
            choices=['translation', 'rigid', 'similarity', 'affine'],
            value='translation',
        )
        self._similarity = ComboBox(
            label='similarity',
            choices=[
                ('intensity (same sensor)', 'intensity'),
                ('gradient (other sensor)', 'gradient'),
            ],
            value='intensity',
        )
        self._window = SpinBox(label='window (px)', value=256, min=32, max=2048)
        self._spacing = SpinBox(label='grid spacing (px)', value=192, min=8, max=8192)
        self._local = CheckBox(text='local correction (displacement field)')
        self._out = FileEdit(label='corrected GeoTIFF', mode='w', filter='*.tif')
        self._drops = CheckBox(
            text='open dropped .tif / .jp2 here',
            value=preferred_for_drops(),
            tooltip='Open GeoTIFF and JPEG 2000 files dropped on napari with '
            'napari-coreg (georeferenced ones at map coordinates, others as '
            "before, through napari's reader); a napari preference, "
            'Preferences > Plugins',
        )
        self._save = PushButton(text='Save corrected GeoTIFF')
        self._placed = None  # the target's affine right after our registration
        buttons = Container(
            widgets=[self._run, self._cancel], layout='horizontal', labels=False
        )
        buttons.margins = (0, 0, 0, 0)
        self.extend(
            [
                self._reference,
                self._target,
                self._model,
                self._similarity,
                self._window,
                self._spacing,
                self._local,
                buttons,
                self._out,
                self._save,
                self._status,
                self._drops,
            ]
        )
        self._save.changed.connect(self.save)
        self._drops.changed.connect(prefer_for_drops)
        for event in (
            napari_viewer.layers.events.inserted,
            napari_viewer.layers.events.removed,
        ):
            self._listen(event, self._refresh)
        self._refresh()

    def _locked_controls(self) -> list:
        return [
            self._reference,
            self._target,
            self._model,
            self._similarity,
            self._window,
            self._spacing,
            self._local,
            self._out,
        ]

    def _after_set_running(self) -> None:
        self._save.enabled = not self._running

    def _geo_layers(self, *_) -> list:
        return [
            layer
            for layer in self._viewer.layers
            if type(layer).__name__ == 'Image'
            and METADATA_KEY in (layer.metadata or {})
        ]

    def _refresh(self, *_) -> None:
        self._reference.reset_choices()
        self._target.reset_choices()
        layers = self._geo_layers()
        if len(layers) >= 2 and self._reference.value is self._target.value:
            self._reference.value, self._target.value = layers[0], layers[1]

    def _job(self) -> dict[str, Any]:
        reference, target = self._reference.value, self._target.value
        if reference is None or target is None or reference is target:
            raise ValueError(
                'choose two different georeferenced layers (open GeoTIFF or '
                'JPEG 2000 files with the napari-coreg reader)'
            )
        return {
            'reference': _source(reference),
            'target': _source(target),
            'model': self._model.value,
            'similarity': self._similarity.value,
            'window': int(self._window.value),
            'spacing': int(self._spacing.value),
            'layer': target,
        }

    def run(self, *_) -> None:
        """Start the registration in a worker thread."""
        self._start()

    def _start(self, event=None) -> None:
        if self._running:
            return
        try:
            job = self._job()
        except (ValueError, TypeError) as error:
            self._fail(error)
            return
        self._target_layer = job.pop('layer')
        self._launch(_register, job, desc='Co-registering rasters')
        self._status.value = 'registering...'

    def _on_done(self, registration) -> None:
        layer = self._target_layer
        data, kwargs, _ = tie_points_layer(
            registration.tie_points, name=f'{layer.name} tie points'
        )
        self._viewer.add_points(data, **kwargs)
        held = hold_reasons(registration)
        if held:  # neither moved nor saved; the tie points show why
            self._result = None
            self._status.value = (
                f'Not applied (no layer moved, nothing to save): {"; ".join(held)}'
            )
            show_warning(f'Geo registration not applied: {"; ".join(held)}')
            return
        self._result = registration
        apply_to_layer(layer, registration)
        self._placed = np.array(layer.affine.affine_matrix)
        if str(self._out.value) in ('', '.'):
            self._out.value = suggested_path(layer)
        self._status.value = registration.summary()

    def _registration_of(self, layer):
        """The registration of ``layer`` run here, if the layer still shows it."""
        if (
            self._result is None
            or layer is not self._target_layer
            or not np.allclose(
                layer.affine.affine_matrix, self._placed, rtol=1e-12, atol=0.0
            )
        ):
            return None
        return self._result

    def save(self, *_) -> Path | None:
        """Write the corrected target as a new GeoTIFF (a free name if taken).

        The target registered here is written by
        :func:`~napari_coreg.geo.write_corrected` (its model, or the local
        field); a target moved otherwise is written where it is shown,
        pixels unchanged. Returns the file written, or None (the status line
        says why).
        """
        from napari_coreg.geo import fit_shift_model

        layer = self._target.value
        if layer is None:
            self._status.value = 'choose the target layer to save'
            return None
        registration = self._registration_of(layer)
        chosen = Path(str(self._out.value))
        if str(chosen) in ('', '.'):
            chosen = suggested_path(layer)
        path = free_path(chosen)
        try:
            if registration is not None:
                local = (
                    fit_shift_model(registration.tie_points, 'field')
                    if self._local.value
                    else None
                )
                written = registration.write(path, local=local)
            elif layer_moved(layer):
                written = write_layer_geotiff(layer, path)
            else:
                raise ValueError(
                    f'{layer.name!r} lies where its file puts it: register it '
                    'first (here, or with Register images)'
                )
        except ValueError as error:
            self._status.value = str(error)
            return None
        self._out.value = written
        note = '' if path == chosen else f' (not {chosen.name}: {why_renamed(chosen)})'
        self._status.value = f'wrote {written}{note}'
        return written


def _register(job: dict[str, Any]):
    from napari_coreg.geo import register_rasters

    return register_rasters(**job)
