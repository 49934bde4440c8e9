"""The "Register images" dock widget.

A magicgui ``Container``: choose two image layers, a transform model, a
metric and a backend, press *Register*. The registration runs in a worker
thread (``napari.qt.threading.create_worker``) with progress in napari's
activity dock; *Cancel* stops it at the next step and leaves every layer as
it was. While it runs, the moving layer's overlay follows the optimiser (a
live preview, at most a few updates per second, whenever the backend reports
the current transform). The result is written back only when the run
finishes (see :mod:`._writeback`); *Undo* restores the previous state.
"""

from __future__ import annotations

import time
import weakref
from contextlib import suppress
from functools import partial
from typing import Any

import napari
import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    Label,
    LineEdit,
    PushButton,
    SpinBox,
)

from ..engines import CAPABILITIES, available_backends
from ..options import MODEL_SPECS, Backend, Metric, Model
from ._writeback import (
    Outcome,
    Request,
    apply_result,
    can_undo,
    request_from_layers,
    run_request,
    undo,
)

__all__ = ['RegistrationWidget']

def _optimizers(backend: str) -> list[str]:
    """Optimisers offered for a backend, ``'auto'`` first."""
    return ['auto', *CAPABILITIES[Backend.parse(backend, 'backend')].optimizers]


#: Seconds between two live-preview / status updates.
PREVIEW_INTERVAL = 0.25

_MODEL_TIPS = {
    'translation': 'shift only',
    'rigid': 'rotation + shift (distances kept)',
    'similarity': 'rotation + shift + uniform scale',
    'affine': 'any linear map + shift',
    'homography': 'perspective (2D only); written as a resampled layer',
}
_METRIC_LABELS = {
    'ncc': 'NCC (same modality)',
    'mi': 'mutual information (multimodal)',
    'mse': 'mean squared error',
    'l1': 'L1 (robust, same modality)',
}
_BACKEND_LABELS = {'torch': 'PyTorch', 'sitk': 'SimpleITK'}
_WRITE_BACK = [
    ('Move the moving layer (affine)', 'affine'),
    ('New resampled layer', 'resample'),
]
_STACK_HINT = (
    'Registers the slice shown now. To align every frame of a time series, '
    'use Plugins > napari-coreg > Register stack.'
)


def _devices() -> list[tuple[str, str]]:
    """'auto' plus the torch devices present (torch is imported here)."""
    choices = [('auto (GPU if present)', 'auto'), ('cpu', 'cpu')]
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return choices
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            choices.append((f'cuda:{i} ({torch.cuda.get_device_name(i)})', f'cuda:{i}'))
    mps = getattr(torch.backends, 'mps', None)
    if mps is not None and mps.is_available():
        choices.append(('mps', 'mps'))
    return choices


def _parse_numbers(text: str, what: str, kind=int) -> Any:
    """'auto' / '' -> None, '3' -> 3, '4, 2, 1' -> (4, 2, 1)."""
    text = str(text).strip().lower()
    if text in ('', 'auto', 'all', 'none'):
        return None
    try:
        values = [
            kind(v) for v in text.replace(';', ',').replace(' ', ',').split(',') if v
        ]
    except ValueError:
        raise ValueError(
            f'{what}: expected "auto", a number or numbers separated by commas '
            f'(coarse to fine), got {text!r}'
        ) from None
    return values[0] if len(values) == 1 else tuple(values)


def _format_metric(metric: str, value: float) -> str:
    return f'{value:.4g}' if abs(value) < 1e4 else f'{value:.3e}'


class RegistrationWidget(Container):
    """Dock widget: register a moving image layer onto a fixed one.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
        The viewer whose layers are registered (a public proxy when the
        widget is opened from the plugin menu).
    """

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(labels=False)
        self._viewer = viewer
        self._worker = None
        self._running = False
        self._request: Request | None = None
        self._outcome: Outcome | None = None
        self._previewed = False
        self._live_run = False
        self._last_update = 0.0
        self._level_shown = -1
        self.last_error: str | None = None

        # -- images
        self._fixed = ComboBox(label='Fixed', choices=self._image_choices)
        self._moving = ComboBox(label='Moving', choices=self._image_choices)
        self._fixed.tooltip = 'The reference image: it stays where it is.'
        self._moving.tooltip = 'The image that is moved onto the fixed one.'
        self._dims = ComboBox(
            label='Register in', choices=[('2D', 2), ('3D', 3)], value=2
        )
        self._slice_note = Label(value=_STACK_HINT)

        # -- method
        backends = available_backends()
        self._model = ComboBox(
            label='Transform', choices=[m.value for m in Model], value='rigid'
        )
        self._metric = ComboBox(
            label='Metric', choices=[m.value for m in Metric], value='ncc'
        )
        self._backend = ComboBox(
            label='Backend',
            choices=[(_BACKEND_LABELS.get(b, b), b) for b in backends],
            value=backends[0] if backends else None,
        )
        self._device = ComboBox(label='Device', choices=_devices(), value='auto')
        self._metric.tooltip = (
            'NCC for images of the same kind, mutual information across modalities.'
        )

        # -- pyramid
        self._levels = SpinBox(label='Levels', min=0, max=8, value=0)
        self._levels.tooltip = '0 = automatic (the coarsest level is about 48 px).'
        self._shrink = LineEdit(label='Shrink factors', value='auto')
        self._shrink.tooltip = (
            'One per level, coarse to fine, e.g. 4,2,1 ("auto": powers of two).'
        )
        self._smoothing = LineEdit(label='Smoothing (px)', value='auto')
        self._smoothing.tooltip = (
            "Gaussian sigma per level, in that level's pixels, e.g. 2,1,0."
        )
        self._iterations = LineEdit(label='Iterations', value='auto')
        self._iterations.tooltip = (
            'Most iterations per level: one number, or one per level.'
        )

        # -- masks
        self._fixed_mask = ComboBox(label='Fixed mask', choices=self._mask_choices)
        self._moving_mask = ComboBox(label='Moving mask', choices=self._mask_choices)
        for mask in (self._fixed_mask, self._moving_mask):
            mask.tooltip = (
                'A Labels (non-zero pixels) or Shapes (inside) layer: '
                'the pixels that count.'
            )

        # -- advanced
        self._advanced = CheckBox(text='Advanced settings', value=False)
        self._optimizer = ComboBox(
            label='Optimizer', choices=_optimizers('torch'), value='auto'
        )
        self._learning_rate = LineEdit(label='Learning rate', value='auto')
        self._learning_rate.tooltip = (
            'Step size of Adam and of the SimpleITK gradient optimisers.'
        )
        self._init = ComboBox(
            label='Start from',
            choices=[
                ('auto (best guess)', 'auto'),
                ('identity', 'identity'),
                ('centres aligned', 'center'),
                ('phase correlation', 'phase'),
                ('current overlay', 'current'),
            ],
            value='auto',
        )
        self._init.tooltip = (
            'auto: the best of centre alignment and phase correlation (with a coarse '
            'rotation search). "current overlay" refines where the layers are '
            'shown now.'
        )
        self._sampling = LineEdit(label='Sampling', value='all')
        self._sampling.tooltip = (
            'Fraction of pixels per metric evaluation, in (0, 1], or "all".'
        )
        self._mi_bins = SpinBox(label='MI bins', min=4, max=256, value=32)

        # -- output and actions
        self._write_back = ComboBox(label='Output', choices=_WRITE_BACK, value='affine')
        self._write_back.tooltip = (
            'Move the moving layer: its affine is set, its pixels are untouched. '
            'New resampled layer: "<moving> registered" on the fixed grid.'
        )
        self._live = CheckBox(text='Live preview while registering', value=True)
        self._run = PushButton(text='Register')
        self._cancel = PushButton(text='Cancel', enabled=False)
        self._undo = PushButton(text='Undo', enabled=False)
        self._undo.tooltip = (
            'Restore the moving layer as it was before the last registration.'
        )
        buttons = Container(
            widgets=[self._run, self._cancel, self._undo],
            layout='horizontal',
            labels=False,
        )
        buttons.margins = (0, 0, 0, 0)
        self._status = Label(
            value='Choose a fixed and a moving image, then press Register.'
        )

        self._advanced_box = _section(
            None,
            [
                self._optimizer,
                self._learning_rate,
                self._init,
                self._sampling,
                self._mi_bins,
            ],
        )
        sections = [
            _section('Images', [self._fixed, self._moving, self._dims]),
            self._slice_note,
            _section(
                'Method', [self._model, self._metric, self._backend, self._device]
            ),
            _section(
                'Pyramid (coarse to fine)',
                [
                    self._levels,
                    self._shrink,
                    self._smoothing,
                    self._iterations,
                ],
            ),
            _section('Masks (optional)', [self._fixed_mask, self._moving_mask]),
            self._advanced,
            self._advanced_box,
            _section('Result', [self._write_back]),
            self._live,
            buttons,
            self._status,
        ]
        self.extend(sections)
        _align_labels(
            [w for w in sections if isinstance(w, Container) and w is not buttons]
        )
        for label in (self._slice_note, self._status):
            with suppress(AttributeError):
                label.native.setWordWrap(True)

        self._run.changed.connect(self._start)
        self._cancel.changed.connect(self._stop)
        self._undo.changed.connect(self._undo_last)
        self._advanced.changed.connect(self._update_visibility)
        self._backend.changed.connect(self._update_choices)
        self._model.changed.connect(self._update_choices)
        self._metric.changed.connect(self._update_visibility)
        self._dims.changed.connect(self._update_choices)
        self._fixed.changed.connect(self._on_layers_chosen)
        self._moving.changed.connect(self._on_layers_chosen)

        events = viewer.layers.events
        for name in ('inserted', 'removed', 'reordered'):
            getattr(events, name).connect(self._refresh_layers)
        self.native.destroyed.connect(partial(_quit_worker, weakref.ref(self)))

        self._refresh_layers()
        self._update_choices()

    # ------------------------------------------------------------ choices

    def _image_choices(self, widget=None) -> list[tuple[str, Any]]:
        return [
            (layer.name, layer)
            for layer in self._viewer.layers
            if type(layer).__name__ == 'Image'
        ]

    def _mask_choices(self, widget=None) -> list[tuple[str, Any]]:
        return [('none', None)] + [
            (layer.name, layer)
            for layer in self._viewer.layers
            if type(layer).__name__ in ('Labels', 'Shapes')
        ]

    def reset_choices(self, *_: Any) -> None:
        """Refresh the layer lists (napari calls this when layers change).

        Only the layer choices are reset: the other combo boxes depend on the
        backend and the model, and keep the user's choices.
        """
        self._refresh_layers()

    def _refresh_layers(self, event=None) -> None:
        for combo in (self._fixed, self._moving, self._fixed_mask, self._moving_mask):
            combo.reset_choices()
        self._pick_default_layers()
        self._on_layers_chosen()

    def _pick_default_layers(self) -> None:
        """Never offer the same layer twice: first image fixed, the next moving."""
        images = [value for _, value in self._image_choices()]
        if len(images) >= 2 and self._fixed.value is self._moving.value:
            self._moving.value = next(
                layer for layer in images if layer is not self._fixed.value
            )

    def _layer_ndim(self) -> int:
        layers = [
            layer
            for layer in (self._fixed.value, self._moving.value)
            if layer is not None
        ]
        return min((layer.ndim for layer in layers), default=2)

    def _on_layers_chosen(self, event=None) -> None:
        ndim = self._layer_ndim()
        wanted = [('2D', 2)] if ndim < 3 else [('2D (current slice)', 2), ('3D', 3)]
        if ndim >= 3:
            # a 3D+t layer registers its current volume
            wanted[1] = ('3D' if ndim == 3 else '3D (current volume)', 3)
        previous = self._dims.value
        had_3d = 3 in self._dims.choices
        self._dims.choices = wanted
        values = [value for _, value in wanted]
        # volumes default to 3D; a choice the user made is kept
        self._dims.value = previous if had_3d and previous in values else values[-1]
        self._update_choices()
        self._update_undo()

    def _update_choices(self, event=None) -> None:
        backend = Backend.parse(self._backend.value or 'torch', 'backend')
        caps = CAPABILITIES[backend]
        ndim = self._dims.value or 2
        models = [
            m.value
            for m in Model
            if m in caps.models and ndim in MODEL_SPECS[m].ndims
        ]
        metrics = [m.value for m in Metric if m in caps.metrics]
        _set_choices(self._model, models, 'rigid')
        _set_choices(
            self._metric, [(_METRIC_LABELS.get(m, m), m) for m in metrics], 'ncc'
        )
        _set_choices(self._optimizer, _optimizers(backend.value), 'auto')
        homography = self._model.value == Model.HOMOGRAPHY.value
        _set_choices(
            self._write_back,
            _WRITE_BACK[1:] if homography else _WRITE_BACK,
            'resample' if homography else 'affine',
        )
        self._model.tooltip = _MODEL_TIPS.get(self._model.value, '')
        self._update_visibility()

    def _update_visibility(self, event=None) -> None:
        backend = self._backend.value or 'torch'
        caps = CAPABILITIES[Backend.parse(backend, 'backend')]
        self._device.visible = caps.uses_device
        self._advanced_box.visible = bool(self._advanced.value)
        self._sampling.visible = backend == 'sitk' or self._metric.value == 'mi'
        self._mi_bins.visible = self._metric.value == 'mi'
        self._dims.visible = self._layer_ndim() >= 3
        layers = [
            layer
            for layer in (self._fixed.value, self._moving.value)
            if layer is not None
        ]
        self._slice_note.visible = any(
            layer.ndim > (self._dims.value or 2) for layer in layers
        )

    # ------------------------------------------------------------ running

    @property
    def running(self) -> bool:
        """Whether a registration is in progress (for the UI and tests)."""
        return self._running

    def _settings(self) -> dict[str, Any]:
        settings: dict[str, Any] = {}
        if self._levels.value:
            settings['levels'] = int(self._levels.value)
        for key, widget, kind in (
            ('shrink_factors', self._shrink, int),
            ('smoothing_sigmas', self._smoothing, float),
            ('iterations', self._iterations, int),
        ):
            value = _parse_numbers(widget.value, widget.label, kind)
            if value is not None:
                settings[key] = (
                    (value,)
                    if key == 'shrink_factors' and isinstance(value, int)
                    else value
                )
        settings['optimizer'] = self._optimizer.value or 'auto'
        learning_rate = _parse_numbers(
            self._learning_rate.value, 'Learning rate', float
        )
        if isinstance(learning_rate, tuple):
            raise ValueError('Learning rate: give one number (or "auto")')
        if learning_rate is not None:
            settings['learning_rate'] = learning_rate
        if self._sampling.visible:
            sampling = _parse_numbers(self._sampling.value, 'Sampling', float)
            if isinstance(sampling, tuple):
                raise ValueError('Sampling: give one fraction in (0, 1] (or "all")')
            if sampling is not None:
                settings['sampling'] = sampling
        if self._metric.value == 'mi':
            settings['mi_bins'] = int(self._mi_bins.value)
        backend = Backend.parse(self._backend.value or 'torch', 'backend')
        if CAPABILITIES[backend].uses_device and self._device.value not in (
            None,
            'auto',
        ):
            settings['device'] = self._device.value
        return settings

    def _make_request(self) -> Request:
        fixed, moving = self._fixed.value, self._moving.value
        if fixed is None or moving is None:
            raise ValueError('Choose a fixed and a moving image layer.')
        return request_from_layers(
            fixed,
            moving,
            self._model.value,
            self._metric.value,
            self._backend.value,
            ndim=self._dims.value,
            write_back=self._write_back.value,
            fixed_mask=self._fixed_mask.value,
            moving_mask=self._moving_mask.value,
            init=self._init.value,
            world_point=self._viewer.dims.point,
            **self._settings(),
        )

    def _start(self, event=None) -> None:
        from napari.qt.threading import create_worker

        if self._running:
            return
        try:
            request = self._make_request()
        except (ValueError, TypeError) as exc:
            self._fail(exc)
            return
        self._request, self._outcome, self._previewed = request, None, False
        self.last_error = None
        self._last_update, self._level_shown = 0.0, -1
        worker = create_worker(
            run_request,
            request,
            _progress={'desc': 'Registering images'},
            _ignore_errors=True,
        )
        worker.yielded.connect(self._on_progress)
        worker.returned.connect(self._on_returned)
        worker.errored.connect(self._on_error)
        worker.finished.connect(self._on_finished)
        self._worker = worker
        self._live_run = True
        self._set_running(True)
        self._status.value = (
            f'Registering {request.moving_name!r} onto {request.fixed_name!r} '
            f'({request.model}, {request.metric}, '
            f'{_BACKEND_LABELS.get(request.backend, request.backend)})...'
        )
        worker.start()

    def _stop(self, event=None) -> None:
        """Cancel: honoured at the next step; no layer is changed."""
        if self._worker is not None and self._running:
            self._status.value = 'Cancelling...'
            self._worker.quit()

    def _set_running(self, running: bool) -> None:
        self._running = running
        self._run.enabled = not running
        self._cancel.enabled = running
        for widget in (
            self._fixed,
            self._moving,
            self._backend,
            self._model,
            self._dims,
        ):
            widget.enabled = not running
        self._update_undo()

    def _moving_layer(self):
        request = self._request
        if request is None:
            return None
        for layer in self._viewer.layers:
            if layer.name == request.moving_name:
                return layer
        return None

    def _on_progress(self, progress) -> None:
        # updating napari's progress bar can process pending Qt events, so
        # this handler may be re-entered, even after `finished`: every step
        # checks that the run is still live
        if not self._live_run:
            return
        pbar = getattr(self._worker, 'pbar', None)
        if pbar is not None:
            if pbar.total != progress.total:
                pbar.total = progress.total
            if progress.step + 1 > pbar.n:
                pbar.update(progress.step + 1 - pbar.n)
            if progress.level != self._level_shown:
                self._level_shown = progress.level
                pbar.set_description(
                    f'Registering: level {progress.level + 1}/{progress.n_levels}'
                )
        now = time.monotonic()
        if not self._live_run or now - self._last_update < PREVIEW_INTERVAL:
            return
        self._last_update = now
        self._status.value = (
            f'Level {progress.level + 1}/{progress.n_levels}, iteration '
            f'{progress.iteration + 1}: loss {progress.loss:.5g}'
        )
        self._preview(progress.matrix)

    def _preview(self, matrix) -> None:
        request = self._request
        if (
            matrix is None
            or request is None
            or not self._live.value
            or not self._live_run
        ):
            return
        matrix = np.asarray(matrix, dtype=np.float64)
        if matrix.ndim == 3:
            matrix = matrix[0]
        size = request.ndim + 1
        if matrix.shape != (size, size) or not np.allclose(matrix[-1, :-1], 0):
            return  # projective: cannot be shown through an affine
        moving = self._moving_layer()
        if moving is None:
            return
        try:
            moving.affine = request.preview_affine(matrix)
        except (ValueError, np.linalg.LinAlgError):
            return
        self._previewed = True

    def _restore_preview(self) -> None:
        if self._previewed and self._request is not None:
            moving = self._moving_layer()
            if moving is not None:
                moving.affine = self._request.moving_affine_before
        self._previewed = False

    def _on_returned(self, outcome: Outcome) -> None:
        self._outcome = outcome

    def _on_error(self, exc: Exception) -> None:
        self._live_run = False
        self._restore_preview()
        self._fail(exc)

    def _on_finished(self) -> None:
        self._live_run = False
        request, outcome = self._request, self._outcome
        self._restore_preview()
        try:
            if outcome is not None and request is not None:
                apply_result(self._viewer.layers, request, outcome)
                self._status.value = _summary(outcome, request)
            elif self.last_error is None:
                self._status.value = 'Cancelled: no layer was changed.'
        except (ValueError, TypeError) as exc:
            self._fail(exc)
        finally:
            self._worker = None
            self._outcome = None
            self._set_running(False)

    def _fail(self, exc: Exception | str) -> None:
        from napari.utils.notifications import show_error

        message = str(exc)
        self.last_error = message
        self._status.value = f'Error: {message}'
        show_error(f'Registration failed: {message}')

    # ---------------------------------------------------------------- undo

    def _update_undo(self, event=None) -> None:
        layer = self._moving.value
        self._undo.enabled = (
            (not self._running) and layer is not None and can_undo(layer)
        )

    def _undo_last(self, event=None) -> None:
        layer = self._moving.value
        if layer is None or not can_undo(layer):
            return
        try:
            self._status.value = f'Undo: {undo(self._viewer.layers, layer)}.'
        except ValueError as exc:
            self._fail(exc)
        self._update_undo()


def _section(title: str | None, widgets: list) -> Container:
    """A titled group of labelled widgets."""
    box = Container(widgets=widgets, labels=True)
    box.margins = (0, 0, 0, 0)
    if title:
        heading = Label(value=f'<b>{title}</b>')
        outer = Container(widgets=[heading, box], labels=False)
        outer.margins = (0, 6, 0, 0)
        outer.inner = box
        return outer
    return box


def _align_labels(sections: list[Container]) -> None:
    """Give every labelled row of every section the same label width."""
    rows = []
    for section in sections:
        inner = getattr(section, 'inner', section)
        rows.extend(inner)
    try:
        from magicgui.application import use_app

        measure = use_app().get_obj('get_text_width')
        width = max(measure(w.label) for w in rows) + 12  # room for the font's bearings
        for w in rows:
            labeled = w._labeled_widget()  # magicgui's row (label + widget)
            if labeled is not None:
                labeled.label_width = width
    except (AttributeError, ValueError, TypeError):  # pragma: no cover - cosmetic
        pass


def _set_choices(combo: ComboBox, choices: list, default) -> None:
    values = [c[1] if isinstance(c, tuple) else c for c in choices]
    previous = combo.value
    combo.choices = choices
    combo.value = (
        previous
        if previous in values
        else (default if default in values else values[0])
    )


def _summary(outcome: Outcome, request: Request) -> str:
    result = outcome.result
    better = 'higher' if result.metric in ('ncc', 'mi') else 'lower'
    where = (
        f'{request.moving_name!r} moved onto {request.fixed_name!r}'
        if request.write_back == 'affine'
        else f'new layer {request.moving_name + " registered"!r}'
    )
    return (
        f'Done: {where}. {result.metric.upper()} '
        f'{_format_metric(result.metric, result.metric_before)} \u2192 '
        f'{_format_metric(result.metric, result.metric_after)} ({better} is better), '
        f'{result.elapsed:.1f} s, {sum(level.iterations for level in result.levels)} '
        f'iterations, stopped: {result.stop_reason}.'
    )


def _quit_worker(ref: weakref.ref, *args) -> None:
    """Stop a running worker when the widget is destroyed."""
    widget = ref()
    worker = getattr(widget, '_worker', None)
    if worker is not None:
        with suppress(RuntimeError):
            worker.quit()
