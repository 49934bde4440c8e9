"""The "Register stack" dock widget: align every frame of a time-lapse or z-stack.

A magicgui ``Container``: pick an image layer with a stack axis (time, z or
date), the reference (previous frame, first, mean, or the frame shown now)
and, for multichannel layers, the channel axis and the channel to register
on. *Register* runs :func:`napari_coreg.iter_register_stack` in a worker
thread (``napari.qt.threading.create_worker``) with progress in napari's
activity dock; *Cancel* stops it at the next step and changes nothing.

The result is written one of two ways, never touching the layer's pixels:

- ``'resample'``: a layer ``"<layer> registered"`` holding the aligned stack
  (updated in place on a rerun), with the per-frame transforms in its
  ``metadata['napari_coreg']['stack']``;
- ``'follow'`` (non-destructive): the layer keeps its data; its ``affine``
  is rebound to the current frame's transform whenever the time slider
  moves (``viewer.dims.events.current_step``). *Stop following* restores the
  affine it had. The transforms go into the layer's metadata.

Layers listed in *Apply to* (other channels loaded as separate layers, with
the same stack and frame shape) get the same transforms.
"""

from __future__ import annotations

import copy
import weakref
from contextlib import suppress
from functools import partial
from typing import Any

import napari
import numpy as np
from magicgui.widgets import ComboBox, Container, Label, PushButton, Select, SpinBox

from ..engines import CAPABILITIES, available_backends
from ..options import Backend, Metric, Model
from ..stack import StackProgress, StackResult, iter_register_stack

__all__ = ['METADATA_KEY', 'StackRegistrationWidget', 'frame_affine']

#: Key of everything this plugin writes into ``layer.metadata``.
METADATA_KEY = 'napari_coreg'
#: Entry of ``metadata[METADATA_KEY]`` that holds a stack registration.
STACK_KEY = 'stack'

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
_BACKEND_LABELS = {'torch': 'PyTorch', 'sitk': 'SimpleITK'}


def frame_affine(
    base: np.ndarray,
    fixed_from_moving: np.ndarray,
    spatial_axes: tuple[int, ...],
    ndim: int,
) -> np.ndarray:
    """Layer ``affine`` that shows one frame in the reference coordinates.

    ``fixed_from_moving`` ``(D + 1, D + 1)`` acts on the spatial axes of the
    layer's physical coordinates; the other axes (stack, channels) are left
    alone; ``base`` is the layer's own affine, applied after.
    """
    embedded = np.eye(ndim + 1)
    index = [*spatial_axes, ndim]
    embedded[np.ix_(index, index)] = fixed_from_moving
    return np.asarray(base, dtype=np.float64) @ embedded


class StackRegistrationWidget(Container):
    """Dock widget: register every frame of an image layer's stack axis.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
    """

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(labels=True)
        self._viewer = viewer
        self._worker = None
        self._running = False
        self._result: StackResult | None = None
        self._aligned: dict = {}
        self._job: dict[str, Any] | None = None
        self._following: dict[str, Any] | None = None
        self.last_error: str | None = None

        self._layer = ComboBox(
            label='Stack layer', choices=self._stack_layers, nullable=True
        )
        self._axis = ComboBox(
            label='Stack axis', choices=self._axis_choices, nullable=True
        )
        self._axis.tooltip = 'The axis along which frames follow (time, z, date).'
        self._channel_axis = ComboBox(
            label='Channel axis', choices=self._channel_axis_choices, nullable=True
        )
        self._channel = SpinBox(label='Register on channel', min=-1, max=0, value=-1)
        self._channel.tooltip = '-1: the mean (luminance for RGB) of all channels.'
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
            choices=[(_BACKEND_LABELS.get(b, b), b) for b in backends],
            value=backends[0] if backends else None,
        )
        self._model = ComboBox(
            label='Transform', choices=self._model_choices, value='rigid'
        )
        self._metric = ComboBox(
            label='Metric', choices=self._metric_choices, value='ncc'
        )
        self._batch = SpinBox(label='Batch size', min=0, max=1024, value=0)
        self._batch.tooltip = 'Frames optimised together (0: what fits in memory).'
        self._also = Select(label='Apply to', choices=self._companion_layers)
        self._also.tooltip = 'Layers of the same stack shape (e.g. other channels).'
        self._mode = ComboBox(label='Result', choices=_MODES, value='resample')
        self._run = PushButton(text='Register stack')
        self._cancel = PushButton(text='Cancel', enabled=False)
        self._unfollow = PushButton(text='Stop following', enabled=False)
        buttons = Container(
            widgets=[self._run, self._cancel, self._unfollow],
            layout='horizontal',
            labels=False,
        )
        buttons.margins = (0, 0, 0, 0)
        self._status = Label(value='Choose a stack layer, then Register stack.')
        self.extend(
            [
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
                buttons,
                self._status,
            ]
        )
        with suppress(AttributeError):
            self._status.native.setWordWrap(True)
        self._status.label = ''

        self._run.changed.connect(self._start)
        self._cancel.changed.connect(self._stop)
        self._unfollow.changed.connect(self.stop_following)
        self._layer.changed.connect(self._on_layer)
        self._axis.changed.connect(self._on_axes)
        self._channel_axis.changed.connect(self._on_axes)
        self._backend.changed.connect(self._update_methods)
        events = viewer.layers.events
        for name in ('inserted', 'removed', 'reordered'):
            getattr(events, name).connect(self._refresh_layers)
        viewer.dims.events.current_step.connect(self._on_step)
        self.native.destroyed.connect(partial(_cleanup, weakref.ref(self)))
        self._update_methods()
        self._refresh_layers()

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
            and self._layout_of(other) is not None
        ]

    def _layout_of(self, other, axis: int | None = None, channel_axis: Any = '?'):
        """``(axis, channel_axis, spatial_axes)`` of a layer that shares the
        chosen layer's frames: the same shape, or the same shape without
        its channel axis (another channel held as its own layer); else None.
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
        if self._following is not None and self._following['layers'][0] not in list(
            self._viewer.layers
        ):
            self._following = None
            self._unfollow.enabled = False

    def _axis_choices(self, widget=None) -> list[tuple[str, int]]:
        layer = self._layer.value if hasattr(self, '_layer') else None
        if layer is None:
            return []
        ndim = layer.data.ndim
        labels = list(self._viewer.dims.axis_labels)[-ndim:]
        labels = [''] * (ndim - len(labels)) + labels
        return [
            (f'{a}: {labels[a]} ({layer.data.shape[a]})', a)
            for a in range(ndim - (1 if layer.rgb else 0))
        ]

    def _channel_axis_choices(self, widget=None) -> list[tuple[str, int | None]]:
        layer = self._layer.value if hasattr(self, '_layer') else None
        choices: list[tuple[str, int | None]] = [('none', None)]
        if layer is None or layer.rgb or layer.data.ndim < 4:
            return choices
        axis = self._axis.value
        return choices + [
            (f'{a} ({layer.data.shape[a]})', a)
            for a in range(layer.data.ndim)
            if a != axis
        ]

    def _backend_value(self) -> Backend:
        backend = self._backend.value if hasattr(self, '_backend') else None
        return Backend.parse(backend or 'torch', 'backend')

    def _model_choices(self, widget=None) -> list[str]:
        caps = CAPABILITIES[self._backend_value()]
        return [
            m.value for m in Model if m in caps.models and m is not Model.HOMOGRAPHY
        ]

    def _metric_choices(self, widget=None) -> list[str]:
        caps = CAPABILITIES[self._backend_value()]
        return [m.value for m in Metric if m in caps.metrics]

    def _on_layer(self, event=None) -> None:
        self._axis.reset_choices()
        if self._axis.value is None and self._layer.value is not None:
            self._axis.value = 0
        self._on_axes()

    def _on_axes(self, event=None) -> None:
        self._channel_axis.reset_choices()
        layer = self._layer.value
        if layer is None:
            self._also.reset_choices()
            return
        channel_axis = self._channel_axis.value
        channels = (
            3
            if layer.rgb
            else (layer.data.shape[channel_axis] if channel_axis is not None else 0)
        )
        self._channel.max = max(channels - 1, 0)
        self._channel.visible = channels > 1
        if self._channel.value > self._channel.max:
            self._channel.value = -1
        self._also.reset_choices()

    def _update_methods(self, event=None) -> None:
        for combo, default in ((self._model, 'rigid'), (self._metric, 'ncc')):
            previous = combo.value
            combo.reset_choices()
            if combo.value != previous:
                combo.value = default

    # ------------------------------------------------------------ running

    @property
    def running(self) -> bool:
        """Whether a registration is in progress (for the UI and tests)."""
        return self._running

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
        point = self._viewer.dims.point[-layer.ndim :]
        index = layer.world_to_data(point)[axis]
        return int(np.clip(np.round(index), 0, layer.data.shape[axis] - 1))

    def _start(self, event=None) -> None:
        from napari.qt.threading import create_worker

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
        self._result, self.last_error = None, None
        # resampled stacks are computed in the worker too (lazily for
        # out-of-core data), never in the GUI thread
        resample = (
            [(other.name, other.data, *layouts[other.name][:2]) for other in also]
            if self._mode.value == 'resample'
            else None
        )
        worker = create_worker(
            _drive,
            steps,
            resample,
            _progress={'desc': 'Registering stack'},
            _ignore_errors=True,
        )
        worker.yielded.connect(self._on_progress)
        worker.returned.connect(self._on_returned)
        worker.errored.connect(self._fail)
        worker.finished.connect(self._on_finished)
        self._worker = worker
        self._set_running(True)
        self._status.value = f'Registering the frames of {layer.name!r}...'
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
        for widget in (self._layer, self._axis, self._channel_axis, self._backend):
            widget.enabled = not running

    def _on_progress(self, progress: StackProgress) -> None:
        if not self._running:
            return  # a late event after the run finished
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
        # last: napari's progress bar processes Qt events when it updates,
        # so the run may finish (and write its status) inside this call
        pbar = getattr(self._worker, 'pbar', None)
        if pbar is not None:
            if pbar.total != progress.total:
                pbar.total = progress.total
            if progress.step > pbar.n:
                pbar.update(progress.step - pbar.n)

    def _on_returned(self, returned: tuple[StackResult, dict]) -> None:
        self._result, self._aligned = returned

    def _on_finished(self) -> None:
        result, job = self._result, self._job
        try:
            if result is not None and job is not None:
                self._write(result, job)
            elif self.last_error is None:
                self._status.value = 'Cancelled: no layer was changed.'
        except (ValueError, TypeError) as exc:
            self._fail(exc)
        finally:
            self._worker = None
            self._aligned = {}
            self._set_running(False)

    def _fail(self, exc: Exception | str) -> None:
        from napari.utils.notifications import show_error

        message = str(exc)
        self.last_error = message
        self._status.value = f'Error: {message}'
        show_error(f'Stack registration failed: {message}')

    # ------------------------------------------------------------ writing

    def _write(self, result: StackResult, job: dict[str, Any]) -> None:
        record = result.to_dict()
        layers = [job['layer'], *job['also']]
        layouts = [job['layouts'][layer.name] for layer in layers]
        if job['mode'] == 'follow':
            self._following = {
                'layers': layers,
                'layouts': layouts,
                'matrices': result.fixed_from_moving,
                'affines': [np.array(layer.affine.affine_matrix) for layer in layers],
            }
            for layer in layers:
                before = layer.affine.affine_matrix.tolist()
                entry = {**record, 'mode': 'follow', 'affine_before': before}
                _set_record(layer, entry)
            self._unfollow.enabled = True
            self._on_step()
            where = 'follows the time slider (Stop following restores it)'
        else:
            names = []
            for layer in layers:
                key = None if layer is job['layer'] else layer.name
                aligned = self._aligned[key]
                names.append(self._output_layer(layer, aligned, record).name)
            where = 'written to ' + ', '.join(repr(n) for n in names)
        better = 'higher' if result.metric in ('ncc', 'mi') else 'lower'
        registered = np.isfinite(result.metric_after)
        self._status.value = (
            f'Done: {result.n_frames} frames, {job["layer"].name!r} {where}. '
            f'Median {result.metric.upper()} '
            f'{np.median(result.metric_before[registered]):.4g} -> '
            f'{np.median(result.metric_after[registered]):.4g} ({better} is better), '
            f'{result.elapsed:.1f} s.'
        )

    def _output_layer(self, layer, aligned, record: dict):
        name = f'{layer.name} registered'
        output_id = f'stack-registered:{layer.name}'
        meta = {METADATA_KEY: {STACK_KEY: record, 'output_of': output_id}}
        for existing in self._viewer.layers:
            info = existing.metadata.get(METADATA_KEY)
            if isinstance(info, dict) and info.get('output_of') == output_id:
                existing.data = aligned
                existing.metadata = {**existing.metadata, **meta}
                return existing
        look = (
            {'rgb': True}
            if layer.rgb
            else {
                'colormap': layer.colormap,
                'contrast_limits': layer.contrast_limits,
            }
        )
        return self._viewer.add_image(
            aligned,
            name=name,
            metadata=meta,
            scale=layer.scale,
            translate=layer.translate,
            rotate=layer.rotate,
            shear=layer.shear,
            affine=layer.affine,
            blending=layer.blending,
            **look,
        )

    # ------------------------------------------------------------ follow mode

    @property
    def following(self) -> bool:
        """Whether layers follow the slider with their frame's transform."""
        return self._following is not None

    def _on_step(self, event=None) -> None:
        state = self._following
        if state is None:
            return
        layers = list(self._viewer.layers)
        for layer, base, (axis, _, spatial) in zip(
            state['layers'], state['affines'], state['layouts'], strict=True
        ):
            if layer not in layers:
                continue
            frame = self._current_frame(layer, axis)
            layer.affine = frame_affine(
                base, state['matrices'][frame], spatial, layer.ndim
            )

    def stop_following(self, event=None) -> None:
        """Give the following layers back the affine they had."""
        state, self._following = self._following, None
        self._unfollow.enabled = False
        if state is None:
            return
        layers = list(self._viewer.layers)
        for layer, base in zip(state['layers'], state['affines'], strict=True):
            if layer in layers:
                layer.affine = base


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


def _set_record(layer, record: dict) -> None:
    meta = copy.copy(layer.metadata)
    entry = dict(meta.get(METADATA_KEY) or {})
    entry[STACK_KEY] = record
    meta[METADATA_KEY] = entry
    layer.metadata = meta


def _cleanup(ref: weakref.ref, *args) -> None:
    """Stop a running worker and the slider binding when the widget goes."""
    widget = ref()
    if widget is None:
        return
    worker = getattr(widget, '_worker', None)
    if worker is not None:
        with suppress(RuntimeError):
            worker.quit()
    with suppress(RuntimeError, AttributeError, ValueError):
        widget._viewer.dims.events.current_step.disconnect(widget._on_step)
