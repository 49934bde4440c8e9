"""The "Register images" dock widget.

A magicgui ``Container``: choose two image layers, a transform model, a
metric and a backend, press *Register*. The registration runs in a worker
thread (see :mod:`._runner`) with progress in napari's activity dock;
*Cancel* stops it at the next step and leaves every layer as it was. While it
runs, the moving layer's overlay follows the optimiser (a live preview, at
most a few updates per second, whenever the backend reports the current
transform). The result is written back only when the run finishes (see
:mod:`._writeback`), and only when it can be trusted: a result whose verdict
is ``'failed'``, or whose metric got worse, waits for *Apply anyway*; *Undo*
restores the previous state.
"""

from __future__ import annotations

import time
from typing import Any

import napari
from magicgui.widgets import CheckBox, ComboBox, Container, Label, PushButton

from ..engines import CAPABILITIES, available_backends
from ..options import MODEL_SPECS, Backend, Metric, Model
from ..quality.hold import hold_reasons
from ._controls import align_labels, collapsible, devices, section, set_choices
from ._labels import (
    BACKEND_LABELS,
    MODEL_TIPS,
    PAIR_TIPS,
    backend_choices,
    metric_choices,
    pair_summary,
)
from ._landmarks import landmark_reasons, landmarks_world
from ._preview import LivePreview
from ._qc_views import VIEWS, hide_view, show_view
from ._records import sample_suggestion
from ._runner import RunnerWidget, wrap
from ._settings_controls import SettingsControls
from ._verdict import convergence_text, verdict_html, verdict_of
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

#: Seconds between two live-preview / status updates.
PREVIEW_INTERVAL = 0.25

_WRITE_BACK = [
    ('Move the moving layer (affine)', 'affine'),
    ('New resampled layer', 'resample'),
]
_PROMPT = 'Choose a fixed and a moving image, then press Register.'
_SLICE_HINT = (
    'Registers only the slice shown now; choose 3D to register the whole volumes.'
)
_FRAME_HINT = (
    'Registers the frame shown now. To align every frame: Plugins > '
    'napari-coreg > Register stack.'
)


def _optimizers(backend: Backend) -> list[str]:
    return ['auto', *CAPABILITIES[backend].optimizers]


class RegistrationWidget(RunnerWidget):
    """Dock widget: register a moving image layer onto a fixed one.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
        The viewer whose layers are registered (a public proxy when the
        widget is opened from the plugin menu).
    """

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(viewer, 'Register', 'Registration failed', labels=False)
        self._request: Request | None = None
        self._held: tuple[Request, Outcome] | None = None
        self._preview: LivePreview | None = None
        self._last_update = 0.0
        self._pair: tuple[Any, Any] | None = None
        self._write_back_choice = 'affine'
        self._last: tuple[Request, Any] | None = None
        self._landmarks: tuple[Any, Any] | None = None
        self._build()
        self._connect()
        self._refresh_layers()
        self._update_choices()

    # ------------------------------------------------------------ building

    def _build(self) -> None:
        self._fixed = ComboBox(label='Fixed', choices=self._image_choices)
        self._moving = ComboBox(label='Moving', choices=self._image_choices)
        # 3D is offered (and chosen) once volumes are picked
        self._dims = ComboBox(label='Register in', choices=[('2D', 2)], value=2)
        self._slice_note = Label(value=_SLICE_HINT)

        backends = available_backends()
        self._model = ComboBox(
            label='Transform', choices=[m.value for m in Model], value='rigid'
        )
        self._metric = ComboBox(
            label='Metric', choices=metric_choices([m.value for m in Metric])
        )
        self._metric.value = 'ncc'
        self._backend = ComboBox(
            label='Backend',
            choices=backend_choices(backends),
            value=backends[0] if backends else None,
        )
        self._device = ComboBox(label='Device', choices=devices(), value='auto')

        controls = SettingsControls()
        self._settings_controls = controls
        self._levels, self._shrink = controls.levels, controls.shrink
        self._smoothing, self._iterations = controls.smoothing, controls.iterations
        self._optimizer, self._learning_rate = (
            controls.optimizer,
            controls.learning_rate,
        )
        self._init, self._sampling = controls.init, controls.sampling
        self._mi_bins = controls.mi_bins
        self._fixed_mask = ComboBox(label='Fixed mask', choices=self._mask_choices)
        self._moving_mask = ComboBox(label='Moving mask', choices=self._mask_choices)
        self._fixed_points = ComboBox(
            label='Fixed landmarks', choices=self._points_choices
        )
        self._moving_points = ComboBox(
            label='Moving landmarks', choices=self._points_choices
        )

        self._write_back = ComboBox(label='Output', choices=_WRITE_BACK, value='affine')
        self._checker = CheckBox(text='Checkerboard', value=False, enabled=False)
        self._difference = CheckBox(text='Difference', value=False, enabled=False)
        self._views = Container(
            widgets=[self._checker, self._difference],
            layout='horizontal',
            labels=False,
            label='Compare',
        )
        self._views.margins = (0, 0, 0, 0)
        self._live = CheckBox(text='Live preview while registering', value=True)
        self._undo = PushButton(text='Undo', enabled=False)
        self._apply_anyway = PushButton(text='Apply anyway', visible=False)
        buttons = Container(
            widgets=[self._run, self._cancel, self._undo, self._apply_anyway],
            layout='horizontal',
            labels=False,
        )
        buttons.margins = (0, 0, 0, 0)
        self._status.value = _PROMPT
        self._verdict = Label(value='')
        for name, tip in PAIR_TIPS.items():
            getattr(self, f'_{name}').tooltip = tip
        self._verdict.visible = False

        self._pyramid_box = collapsible('Pyramid (coarse to fine)', controls.pyramid)
        self._masks_box = collapsible(
            'Masks and landmarks (optional)',
            [
                self._fixed_mask,
                self._moving_mask,
                self._fixed_points,
                self._moving_points,
                self._fixed_points,
                self._moving_points,
            ],
        )
        self._advanced_box = collapsible('Optimiser and start', controls.optimiser)
        sections = [
            section('Images', [self._fixed, self._moving, self._dims]),
            self._slice_note,
            section('Method', [self._model, self._metric, self._backend, self._device]),
            self._pyramid_box,
            self._masks_box,
            self._advanced_box,
            section('Result', [self._write_back, self._views]),
            self._live,
            buttons,
            self._status,
            self._verdict,
        ]
        self.extend(sections)
        align_labels(
            [w for w in sections if isinstance(w, Container) and w is not buttons]
        )
        for label in (self._slice_note, self._verdict):
            wrap(label)

    def _connect(self) -> None:
        self._undo.changed.connect(self._undo_last)
        self._checker.changed.connect(self._show_views)
        self._difference.changed.connect(self._show_views)
        self._apply_anyway.changed.connect(self._apply_held)
        self._advanced_box.toggle.changed.connect(self._update_visibility)
        self._backend.changed.connect(self._on_backend)
        self._model.changed.connect(self._update_choices)
        self._metric.changed.connect(self._update_visibility)
        self._dims.changed.connect(self._update_choices)
        self._write_back.changed.connect(self._on_write_back)
        self._fixed.changed.connect(self._on_layers_chosen)
        self._moving.changed.connect(self._on_layers_chosen)
        events = self._viewer.layers.events
        for name in ('inserted', 'removed', 'reordered'):
            self._listen(getattr(events, name), self._refresh_layers)

    def _locked_controls(self) -> list:
        return [
            self._fixed,
            self._moving,
            self._dims,
            self._model,
            self._metric,
            self._backend,
            self._device,
            self._levels,
            self._shrink,
            self._smoothing,
            self._iterations,
            self._fixed_mask,
            self._moving_mask,
            self._optimizer,
            self._learning_rate,
            self._init,
            self._sampling,
            self._mi_bins,
            self._write_back,
        ]

    # ------------------------------------------------------------ choices

    def _image_choices(self, widget=None) -> list[tuple[str, Any]]:
        return [
            (layer.name, layer)
            for layer in self._viewer.layers
            if type(layer).__name__ == 'Image'
        ]

    def _mask_choices(self, widget=None, kinds=('Labels', 'Shapes')) -> list:
        return [('none', None)] + [
            (layer.name, layer)
            for layer in self._viewer.layers
            if type(layer).__name__ in kinds
        ]

    def _points_choices(self, widget=None) -> list[tuple[str, Any]]:
        return self._mask_choices(widget, ('Points',))

    def reset_choices(self, *_: Any) -> None:
        """Refresh the layer lists (napari calls this when layers change).

        Only the layer choices are reset: the other combo boxes depend on the
        backend and the model, and keep the user's choices.
        """
        if not self._closed:
            self._refresh_layers()

    def _refresh_layers(self, event=None) -> None:
        for combo in (
            self._fixed,
            self._moving,
            self._fixed_mask,
            self._moving_mask,
            self._fixed_points,
            self._moving_points,
        ):
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

    def _layers(self) -> list:
        return [
            layer
            for layer in (self._fixed.value, self._moving.value)
            if layer is not None
        ]

    def _layer_ndim(self) -> int:
        return min((layer.ndim for layer in self._layers()), default=2)

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
        pair = (self._fixed.value, self._moving.value)
        if pair != self._pair and not self.running:
            self._pair = pair
            self._new_pair()
        self._update_choices()
        self._update_undo()

    def _new_pair(self) -> None:
        """New layers picked: forget the last pair's status; use a sample's hints."""
        fixed, moving = self._fixed.value, self._moving.value
        self._status.value = (
            f'Press Register to align {moving.name!r} onto {fixed.name!r}.'
            if fixed is not None and moving is not None and fixed is not moving
            else _PROMPT
        )
        self._forget_views()
        self._show_verdict()
        suggestion = {}
        for layer in self._layers():
            suggestion.update(sample_suggestion(layer))
        for name in ('model', 'metric'):  # only what the backend offers
            self._update_choices()
            combo = getattr(self, f'_{name}')
            if suggestion.get(name) in combo.choices:
                combo.value = suggestion[name]

    def _on_backend(self, event=None) -> None:
        model, metric = self._model.value, self._metric.value
        self._update_choices()
        lost = [
            f'no {what} {value!r}'
            for what, value, combo in (
                ('model', model, self._model),
                ('metric', metric, self._metric),
            )
            if value is not None and combo.value != value
        ]
        if lost:
            label = BACKEND_LABELS.get(self._backend.value, self._backend.value)
            self._status.value = (
                f'{label} has {" and ".join(lost)}'
                f'{" in 3D" if self._dims.value == 3 else ""}: using '
                f'{self._model.value!r} and {self._metric.value!r} instead.'
            )

    def _on_write_back(self, event=None) -> None:
        if self._model.value != Model.HOMOGRAPHY.value and self._write_back.value:
            self._write_back_choice = self._write_back.value

    def _update_choices(self, event=None) -> None:
        backend = Backend.parse(self._backend.value or 'torch', 'backend')
        caps = CAPABILITIES[backend]
        ndim = self._dims.value or 2
        models = [
            m.value for m in Model if m in caps.models and ndim in MODEL_SPECS[m].ndims
        ]
        metrics = [m.value for m in Metric if m in caps.metrics]
        set_choices(self._model, models, 'rigid')
        set_choices(self._metric, metric_choices(metrics), 'ncc')
        set_choices(self._optimizer, _optimizers(backend), 'auto')
        if self._model.value == Model.HOMOGRAPHY.value:
            set_choices(self._write_back, _WRITE_BACK[1:], 'resample')
        else:
            choice = self._write_back_choice
            self._write_back.choices = _WRITE_BACK
            self._write_back.value = choice
        self._model.tooltip = MODEL_TIPS.get(self._model.value, '')
        self._update_visibility()

    def _update_visibility(self, event=None) -> None:
        backend = self._backend.value or 'torch'
        caps = CAPABILITIES[Backend.parse(backend, 'backend')]
        self._device.visible = caps.uses_device
        self._sampling.visible = backend == 'sitk' or self._metric.value == 'mi'
        self._mi_bins.visible = self._metric.value == 'mi'
        self._dims.visible = self._layer_ndim() >= 3
        layers = self._layers()
        dims = self._dims.value or 2
        self._slice_note.visible = any(layer.ndim > dims for layer in layers)
        volumes = dims == 2 and all(layer.ndim == 3 for layer in layers)
        self._slice_note.value = _SLICE_HINT if volumes else _FRAME_HINT

    # ------------------------------------------------------------ running

    def _settings(self) -> dict[str, Any]:
        settings = self._settings_controls.settings(self._metric.value)
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
        if self._running:
            return
        try:
            request = self._make_request()
            self._landmarks = landmarks_world(
                self._fixed_points.value, self._moving_points.value, request.ndim
            )
        except (ValueError, TypeError) as exc:
            self._fail(exc)
            return
        self._request = request
        self._preview = LivePreview(self._viewer.layers, request)
        self._last_update = 0.0
        self._show_verdict()
        self._launch(run_request, request, desc='Registering images')
        self._status.value = (
            f'Registering {request.moving_name!r} onto {request.fixed_name!r} '
            f'({request.model}, {request.metric}, '
            f'{BACKEND_LABELS.get(request.backend, request.backend)})...'
        )

    def _progress_count(self, progress) -> tuple[int, int]:
        return progress.step + 1, progress.total

    def _progress_description(self, progress) -> str:
        return f'Registering: level {progress.level + 1}/{progress.n_levels}'

    def _show_progress(self, progress) -> None:
        now = time.monotonic()
        if now - self._last_update < PREVIEW_INTERVAL:
            return
        self._last_update = now
        self._status.value = (
            f'Level {progress.level + 1}/{progress.n_levels}, iteration '
            f'{progress.iteration + 1}: loss {progress.loss:.5g}'
        )
        if self._live.value:
            self._preview.show(progress.matrix)

    def _restore_preview(self) -> None:
        if self._preview is not None:
            self._preview.restore()

    def _on_run_error(self, exc: Exception) -> None:
        self._restore_preview()

    def _on_cancelled(self) -> None:
        self._restore_preview()
        super()._on_cancelled()

    def _on_done(self, outcome: Outcome) -> None:
        from napari.utils.notifications import show_warning

        self._restore_preview()
        request, result = self._request, outcome.result
        held = hold_reasons(result)
        if held:
            self._held = (request, outcome)
            self._status.value = (
                'Not applied: the result looks wrong (see below). No layer was '
                'changed; press "Apply anyway" to write it.'
            )
            self._show_verdict(result, held)
            show_warning(f'Registration result not applied: {"; ".join(held)}')
            return
        self._write(request, outcome)

    def _write(self, request: Request, outcome: Outcome) -> None:
        from napari.utils.notifications import show_warning

        apply_result(self._viewer.layers, request, outcome)
        self._last = (request, outcome.result)
        self._show_views()
        self._status.value = pair_summary(outcome.result, request)
        verdict, reasons = verdict_of(outcome.result)
        self._show_verdict(outcome.result)
        if verdict == 'suspect':
            show_warning(
                'Registration written, but it may be wrong: '
                + ('; '.join(reasons) or 'check the overlay')
            )

    def _apply_held(self, event=None) -> None:
        held, self._held = self._held, None
        self._apply_anyway.visible = False
        if held is None or self._running:
            return
        try:
            self._write(*held)
        except (ValueError, TypeError) as exc:
            self._fail(exc)
            return
        self._status.value += ' (applied anyway)'
        self._update_undo()

    def _show_verdict(self, result=None, held: list[str] | None = None) -> None:
        """Show a result's verdict in colour with its reasons (none: clear).

        ``held``: why the result was not written; *Apply anyway* is offered.
        """
        verdict, reasons = verdict_of(result) if result is not None else (None, ())
        if held:
            verdict = 'failed' if verdict in (None, 'failed') else 'suspect'
            reasons = tuple(held)
        else:
            self._held = None
        reasons = (*reasons, *landmark_reasons(self._request, result, self._landmarks))
        self._apply_anyway.visible = bool(held)
        curve = convergence_text(result) if result is not None else ''
        text = verdict_html(verdict, reasons, curve)
        self._verdict.value = text
        self._verdict.visible = bool(text)

    def _after_set_running(self) -> None:
        self._update_undo()
        for box in (self._checker, self._difference):
            box.enabled = self._last is not None and not self._running

    # --------------------------------------------------------------- views

    def _show_views(self, event=None) -> None:
        """Add or remove the checkerboard and difference layers of the result."""
        if self._last is None:
            return
        request, result = self._last
        try:
            for kind, box in (
                ('checkerboard', self._checker),
                ('difference', self._difference),
            ):
                if box.value:
                    show_view(self._viewer.layers, request, result, kind)
                else:
                    hide_view(self._viewer.layers, request.moving_name, kind)
        except ValueError as exc:
            self._fail(exc)

    def _forget_views(self, remove: bool = False) -> None:
        """No result to compare any more (new layers, undo)."""
        last, self._last = self._last, None
        if remove and last is not None:
            for kind in VIEWS:
                hide_view(self._viewer.layers, last[0].moving_name, kind)
        for box in (self._checker, self._difference):
            box.value = False
            box.enabled = False

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
        self._show_verdict()
        self._forget_views(remove=True)
        self._update_undo()
