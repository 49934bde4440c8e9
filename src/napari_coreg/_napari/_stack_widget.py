"""The "Register stack" dock widget: align every frame of a time-lapse or z-stack.

A magicgui ``Container``: pick an image layer with a stack axis (time, z or
date), the reference (previous frame, first, mean, or the frame shown now)
and, for multichannel layers, the channel axis and the channel to register
on. *Register stack* runs :func:`napari_coreg.iter_register_stack` in a
worker thread (see :mod:`._runner`) with progress in napari's activity dock;
*Cancel* stops it at the next step and changes nothing.

The result is written one of two ways, never touching the layer's pixels
(see :mod:`._stack_writeback`): a new layer ``"<layer> registered"``, or the
layer's ``affine`` following the slider. *Undo* takes either back. Layers
listed in *Apply to* (other channels loaded as separate layers, with the
same stack and frame shape) get the same transforms. Frames whose verdict is
not ``'ok'`` are listed under *Flagged frames*; choosing one shows it.
"""

from __future__ import annotations

from contextlib import suppress
from typing import Any

import napari
import numpy as np
from magicgui.widgets import ComboBox, Container, PushButton, Select

from ..engines import CAPABILITIES, available_backends
from ..options import MODEL_SPECS, Backend, Metric, Model
from ..stack import StackProgress, StackResult, iter_register_stack
from ._controls import align_labels, counts
from ._labels import BACKEND_TIP, METRIC_TIP, backend_choices, better, metric_choices
from ._records import METADATA_KEY, can_undo
from ._runner import RunnerWidget
from ._stack_writeback import (
    Following,
    frame_affine,
    frame_index,
    show_frames,
    start_following,
    stop_following,
    undo_stack,
    write_stack_layers,
)
from ._verdict import flagged_frames, sparkline

__all__ = ['METADATA_KEY', 'StackRegistrationWidget', 'frame_affine']

_REFERENCES = [
    ('previous frame (chained)', 'previous'),
    ('first frame', 'first'),
    ('mean of the frames (iterated)', 'mean'),
    ('frame shown now', 'current'),
]
_MODES = [
    ('New layer "<layer> registered"', 'resample'),
    ('Follow the slider (affine, keeps data)', 'follow'),
]
_PROMPT = 'Choose a stack layer, then Register stack.'
_PICK = ('choose one to show it', None)
_BATCHES = [0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024]


def _axis_name(label: str) -> str:
    """A viewer axis label worth showing ('t', 'z'), not napari's '-3' or '0'."""
    return '' if label.lstrip('-').isdigit() else f' {label}'


class StackRegistrationWidget(RunnerWidget):
    """Dock widget: register every frame of an image layer's stack axis.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
        The viewer whose layer is registered.
    """

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(
            viewer, 'Register stack', 'Stack registration failed', labels=False
        )
        self._result: StackResult | None = None
        self._job: dict[str, Any] | None = None
        self._following: Following | None = None
        self._written: list = []
        self._build()
        self._connect()
        self._update_methods()
        self._refresh_layers()

    def _build(self) -> None:
        self._layer = ComboBox(
            label='Stack layer', choices=self._stack_layers, nullable=True
        )
        self._layer.tooltip = 'An image layer with frames along one axis.'
        self._axis = ComboBox(
            label='Stack axis', choices=self._axis_choices, nullable=True
        )
        self._axis.tooltip = 'The axis along which frames follow (time, z, date).'
        self._channel_axis = ComboBox(
            label='Channel axis', choices=self._channel_axis_choices
        )
        self._channel_axis.tooltip = 'The axis of colour channels, if any.'
        self._channel = ComboBox(
            label='Register on channel', choices=counts('all (mean)', [-1]), value=-1
        )
        self._channel.tooltip = (
            'The channel whose frames are registered; all: their mean (luminance '
            'for RGB). Every channel is moved.'
        )
        self._reference = ComboBox(
            label='Reference', choices=_REFERENCES, value='previous'
        )
        self._reference.tooltip = (
            'previous: each frame to the one before, chained (drift, serial '
            'sections); first / frame shown now: all frames to that frame; '
            'mean: to the mean of the aligned frames, iterated.'
        )
        backends = available_backends()
        self._backend = ComboBox(
            label='Backend',
            choices=backend_choices(backends),
            value=backends[0] if backends else None,
        )
        self._backend.tooltip = BACKEND_TIP
        self._model = ComboBox(
            label='Transform', choices=self._model_choices, value='rigid'
        )
        self._metric = ComboBox(label='Metric', choices=self._metric_choices)
        self._metric.value = 'ncc'
        self._metric.tooltip = METRIC_TIP
        self._batch = ComboBox(
            label='Batch size', choices=counts('auto', _BATCHES), value=0
        )
        self._batch.tooltip = 'Frames optimised together (auto: what fits in memory).'
        self._also = Select(label='Apply to', choices=self._companion_layers)
        self._also.tooltip = (
            'Other layers with the same frames (e.g. other channels): they get '
            'the same transforms.'
        )
        self._mode = ComboBox(label='Result', choices=_MODES, value='resample')
        self._mode.tooltip = (
            'A new aligned layer, or the layer itself follows the slider '
            'with each frame\u2019s transform (no pixels are copied).'
        )
        self._run.tooltip = 'Register every frame onto the reference.'
        self._undo = PushButton(text='Undo', enabled=False)
        self._undo.tooltip = 'Take the last stack registration back.'
        self._unfollow = PushButton(text='Stop following', enabled=False)
        self._flagged = ComboBox(label='Flagged frames', choices=[_PICK])
        self._flagged.tooltip = (
            'Frames whose registration looks wrong: pick one to see it.'
        )
        self._form = Container(
            widgets=[
                self._layer,
                self._axis,
                self._channel_axis,
                self._channel,
                self._reference,
                self._model,
                self._metric,
                self._backend,
                self._batch,
                self._also,
                self._mode,
            ],
            labels=True,
        )
        self._flagged_row = Container(widgets=[self._flagged], labels=True)
        self._flagged_row.visible = False
        buttons = Container(
            widgets=[self._run, self._cancel, self._undo, self._unfollow],
            layout='horizontal',
            labels=False,
        )
        buttons.margins = (0, 0, 0, 0)
        self._status.value = _PROMPT
        self.extend([self._form, buttons, self._status, self._flagged_row])
        align_labels([self._form, self._flagged_row])

    def _connect(self) -> None:
        self._unfollow.changed.connect(self.stop_following)
        self._undo.changed.connect(self._undo_last)
        self._flagged.changed.connect(self._show_flagged)
        self._layer.changed.connect(self._on_layer)
        self._axis.changed.connect(self._on_axes)
        self._channel_axis.changed.connect(self._on_axes)
        self._backend.changed.connect(self._update_methods)
        events = self._viewer.layers.events
        for name in ('inserted', 'removed', 'reordered'):
            self._listen(getattr(events, name), self._refresh_layers)
        self._listen(self._viewer.dims.events.current_step, self._on_step)

    def _locked_controls(self) -> list:
        return list(self._form) + [self._undo, self._unfollow]

    # ------------------------------------------------------------ choices

    def _stack_layers(self, widget=None) -> list[tuple[str, Any]]:
        return [
            (layer.name, layer)
            for layer in self._viewer.layers
            if type(layer).__name__ == 'Image'
            and not layer.multiscale
            and layer.data.ndim - (1 if layer.rgb else 0) >= 3
        ]

    def _companion_layers(self, widget=None) -> list[tuple[str, Any]]:
        layer = self._layer.value if hasattr(self, '_layer') else None
        if layer is None:
            return []
        return [
            (other.name, other)
            for other in self._viewer.layers
            if other is not layer
            and type(other).__name__ == 'Image'
            and not other.multiscale
            and 'output_of' not in (other.metadata.get(METADATA_KEY) or {})
            and self._layout_of(other) is not None
        ]

    def _layout_of(self, other, axis: int | None = None, channel_axis: Any = '?'):
        """Return ``(axis, channel_axis, spatial_axes)`` of a companion layer.

        A companion shares the chosen layer's frames: the same shape, or the
        same shape without its channel axis (another channel held as its own
        layer); for any other layer, None.
        """
        layer = self._layer.value
        axis = self._axis.value if axis is None else axis
        if channel_axis == '?':
            channel_axis = self._channel_axis.value
        if layer is None or axis is None or other.rgb != layer.rgb:
            return None
        shape = tuple(layer.data.shape)
        if tuple(other.data.shape) == shape:
            layout = (axis, channel_axis)
        elif channel_axis is not None and tuple(other.data.shape) == (
            shape[:channel_axis] + shape[channel_axis + 1 :]
        ):
            layout = (axis - (channel_axis < axis), None)
        else:
            return None
        spatial = tuple(
            a
            for a in range(other.data.ndim - (1 if other.rgb else 0))
            if a not in layout
        )
        return (*layout, spatial)

    def _refresh_layers(self, event=None) -> None:
        previous = self._layer.value
        self._layer.reset_choices()
        layers = [value for _, value in self._stack_layers()]
        if previous in layers:
            self._layer.value = previous
        elif layers and self._layer.value is None:
            self._layer.value = layers[-1]
        self._on_layer()
        state = self._following
        if state is not None and state.layers[0] not in list(self._viewer.layers):
            self._following = None
            self._unfollow.enabled = False

    def _axis_labels(self, ndim: int) -> list[str]:
        labels = [str(a) for a in self._viewer.dims.axis_labels][-ndim:]
        return [''] * (ndim - len(labels)) + labels

    def _axis_choices(self, widget=None) -> list[tuple[str, int]]:
        layer = self._layer.value if hasattr(self, '_layer') else None
        if layer is None:
            return []
        labels = self._axis_labels(layer.data.ndim)
        return [
            (f'axis {a}{_axis_name(labels[a])} ({layer.data.shape[a]} frames)', a)
            for a in range(layer.data.ndim - (1 if layer.rgb else 0))
        ]

    def _channel_axis_choices(self, widget=None) -> list[tuple[str, int | None]]:
        layer = self._layer.value if hasattr(self, '_layer') else None
        choices: list[tuple[str, int | None]] = [('none', None)]
        if layer is None or layer.rgb or layer.data.ndim < 4:
            return choices
        axis = self._axis.value
        labels = self._axis_labels(layer.data.ndim)
        return choices + [
            (f'axis {a}{_axis_name(labels[a])} ({layer.data.shape[a]} channels)', a)
            for a in range(layer.data.ndim)
            if a != axis
        ]

    def _backend_value(self) -> Backend:
        backend = self._backend.value if hasattr(self, '_backend') else None
        return Backend.parse(backend or 'torch', 'backend')

    def _model_choices(self, widget=None) -> list[str]:
        caps = CAPABILITIES[self._backend_value()]
        return [
            m.value for m in Model if m in caps.models and not MODEL_SPECS[m].projective
        ]

    def _metric_choices(self, widget=None) -> list[tuple[str, str]]:
        caps = CAPABILITIES[self._backend_value()]
        return metric_choices([m.value for m in Metric if m in caps.metrics])

    def _on_layer(self, event=None) -> None:
        self._axis.reset_choices()
        if self._axis.value is None and self._layer.value is not None:
            self._axis.value = 0
        self._on_axes()
        self._update_undo()

    def _on_axes(self, event=None) -> None:
        self._channel_axis.reset_choices()
        layer = self._layer.value
        if layer is None:
            self._update_companions()
            return
        channel_axis = self._channel_axis.value
        channels = (
            3
            if layer.rgb
            else (layer.data.shape[channel_axis] if channel_axis is not None else 0)
        )
        previous = self._channel.value
        self._channel.choices = counts('all (mean)', [-1, *range(channels)], 'channel ')
        self._channel.value = previous if previous in range(channels) else -1
        self._channel.visible = channels > 1
        self._update_companions()

    def _update_companions(self) -> None:
        """List the companion layers; no list at all when there are none."""
        self._also.reset_choices()
        n = len(self._also.choices)
        self._also.visible = n > 0
        native = self._also.native
        row = max(native.sizeHintForRow(0), 18) if n else 18
        native.setMaximumHeight(min(max(n, 1), 4) * row + 2 * native.frameWidth())

    def _update_methods(self, event=None) -> None:
        for combo, default in ((self._model, 'rigid'), (self._metric, 'ncc')):
            previous = combo.value
            combo.reset_choices()
            if combo.value != previous:
                combo.value = default

    # ------------------------------------------------------------ running

    @property
    def result(self) -> StackResult | None:
        """The last finished registration."""
        return self._result

    def _geometry(self, layer, axis: int, channel_axis: int | None):
        spatial = [
            a
            for a in range(layer.data.ndim - (1 if layer.rgb else 0))
            if a not in (axis, channel_axis)
        ]
        spacing = tuple(float(layer.scale[a]) for a in spatial)
        origin = tuple(float(layer.translate[a]) for a in spatial)
        return tuple(spatial), spacing, origin

    def _current_frame(self, layer, axis: int) -> int:
        return frame_index(layer, self._viewer.dims.point, axis)

    def _start(self, event=None) -> None:
        if self._running:
            return
        layer = self._layer.value
        try:
            if layer is None:
                raise ValueError('Choose an image layer with a stack axis.')
            axis = int(self._axis.value)
            channel_axis = self._channel_axis.value
            reference = self._reference.value
            if reference == 'current':
                reference = self._current_frame(layer, axis)
            spatial, spacing, origin = self._geometry(layer, axis, channel_axis)
            channel = int(self._channel.value)
            register_channel = None if channel < 0 else channel
            if layer.rgb and register_channel is not None:
                channel_axis = layer.data.ndim - 1
            steps = iter_register_stack(
                layer.data,
                axis=axis,
                reference=reference,
                model=self._model.value,
                metric=self._metric.value,
                backend=self._backend.value,
                channel_axis=channel_axis,
                register_channel=register_channel,
                batch_size=int(self._batch.value) or None,
                spacing=spacing,
                origin=origin,
            )
        except (ValueError, TypeError) as exc:
            self._fail(exc)
            return
        self.stop_following()
        also = list(self._also.value)
        layouts = {
            other.name: self._layout_of(other, axis, self._channel_axis.value)
            for other in [layer, *also]
        }
        self._job = {
            'layer': layer,
            'also': also,
            'mode': self._mode.value,
            'layouts': layouts,
        }
        self._result = None
        self._show_flags(None)
        # resampled stacks are computed in the worker too (lazily for
        # out-of-core data), never in the GUI thread
        resample = (
            [(other.name, other.data, *layouts[other.name][:2]) for other in also]
            if self._mode.value == 'resample'
            else None
        )
        self._launch(_drive, steps, resample, desc='Registering stack')
        self._status.value = f'Registering the frames of {layer.name!r}...'

    def _progress_count(self, progress: StackProgress) -> tuple[int, int]:
        return progress.step, progress.total

    def _show_progress(self, progress: StackProgress) -> None:
        what = {'mean': 'Averaging', 'register': 'Registering', 'write': 'Writing'}
        rounds = (
            f' (round {progress.round + 1}/{progress.n_rounds})'
            if progress.n_rounds > 1
            else ''
        )
        self._status.value = (
            f'{what.get(progress.phase, progress.phase)}{rounds}: '
            f'{progress.frames_done}/{progress.n_frames} frames'
        )

    def _on_done(self, returned: tuple[StackResult, dict]) -> None:
        result, aligned = returned
        self._result = result
        if self._job is not None:
            self._write(result, self._job, aligned)

    def _after_set_running(self) -> None:
        self._unfollow.enabled = self._following is not None and not self._running
        self._update_undo()

    # ------------------------------------------------------------ writing

    def _write(self, result: StackResult, job: dict[str, Any], aligned: dict) -> None:
        record = result.to_dict()
        layers = [job['layer'], *job['also']]
        if job['mode'] == 'follow':
            layouts = [job['layouts'][layer.name] for layer in layers]
            self._following = start_following(
                layers, layouts, record, result.fixed_from_moving
            )
            self._on_step()
            where = 'follows the time slider (Stop following restores it)'
        else:
            data = [
                aligned[None if layer is job['layer'] else layer.name]
                for layer in layers
            ]
            outputs = write_stack_layers(self._viewer.layers, layers, data, record)
            where = 'written to ' + ', '.join(repr(out.name) for out in outputs)
        self._written = layers
        registered = np.isfinite(result.metric_after)
        self._status.value = (
            f'Done: {result.n_frames} frames, {job["layer"].name!r} {where}. '
            f'Median {result.metric.upper()} '
            f'{np.median(result.metric_before[registered]):.4g} -> '
            f'{np.median(result.metric_after[registered]):.4g} '
            f'({better(result.metric)} is better), {result.elapsed:.1f} s.'
        )
        curve = sparkline(result.metric_after, width=40)
        if curve:
            self._status.value += f' {result.metric.upper()} per frame: {curve}'
        self._show_flags(result)

    def _show_flags(self, result: StackResult | None) -> None:
        """List the frames whose verdict is not 'ok'."""
        flagged = () if result is None else flagged_frames(result)
        verdicts = tuple(getattr(result, 'verdicts', ()) or ())
        self._flagged.choices = [_PICK] + [
            (_frame_label(result, verdicts, i), i) for i in flagged
        ]
        self._flagged.value = None
        self._flagged_row.visible = bool(flagged)
        if flagged:
            from napari.utils.notifications import show_warning

            frames = ', '.join(str(i) for i in flagged[:10])
            more = ' ...' if len(flagged) > 10 else ''
            self._status.value += f' {len(flagged)} frame(s) flagged: {frames}{more}.'
            show_warning(
                f'Stack registration: {len(flagged)} frame(s) look wrong: '
                f'{frames}{more}'
            )

    def _show_flagged(self, event=None) -> None:
        """Move the slider to the flagged frame chosen."""
        frame, job = self._flagged.value, self._job
        if frame is None or job is None:
            return
        self.show_frame(job['layer'], int(job['layouts'][job['layer'].name][0]), frame)

    def show_frame(self, layer, axis: int, frame: int) -> None:
        """Move the viewer's slider to ``frame`` of ``layer``'s stack ``axis``."""
        point = np.zeros(layer.ndim)
        point[axis] = frame
        world = layer.data_to_world(point)
        world_axis = self._viewer.dims.ndim - layer.ndim + axis
        self._viewer.dims.set_point(world_axis, float(world[axis]))

    def _update_undo(self, event=None) -> None:
        self._undo.enabled = not self._running and any(
            can_undo(layer) for layer in self._written
        )

    def _undo_last(self, event=None) -> None:
        self._following = None  # undo restores the affines itself
        self._unfollow.enabled = False
        done = undo_stack(self._viewer.layers, self._written)
        self._written = []
        self._show_flags(None)
        self._status.value = f'Undo: {"; ".join(done) or "nothing to undo"}.'
        self._update_undo()

    # ------------------------------------------------------------ follow mode

    @property
    def following(self) -> bool:
        """Whether layers follow the slider with their frame's transform."""
        return self._following is not None

    def _on_step(self, event=None) -> None:
        if self._following is not None:
            show_frames(self._following, self._viewer.layers, self._current_frame)

    def stop_following(self, event=None) -> None:
        """Give the following layers back the affine they had."""
        state, self._following = self._following, None
        self._unfollow.enabled = False
        if state is not None:
            stop_following(state, self._viewer.layers)


def _frame_label(result: StackResult, verdicts: tuple, frame: int) -> str:
    """'frame 3: failed (NCC 0.12 -> 0.08)'."""
    label = f'frame {frame}'
    if frame < len(verdicts):
        label += f': {verdicts[frame]}'
    with suppress(AttributeError, IndexError, TypeError, ValueError):
        before = float(result.metric_before[frame])
        after = float(result.metric_after[frame])
        label += f' ({result.metric.upper()} {before:.3g} -> {after:.3g})'
    return label


def _drive(steps, resample: list | None):
    """Run a validated stack registration in the worker thread.

    With ``resample`` (``[(name, data, axis, channel_axis), ...]`` of other
    layers), the aligned stacks are made here as well, off the GUI thread.
    Returns ``(result, {name: aligned})``.
    """
    result = yield from steps
    aligned = {}
    if resample is not None:
        aligned[None] = result.aligned
        for name, data, axis, channel_axis in resample:
            aligned[name] = result.apply(data, channel_axis, axis=axis)
    return result, aligned
