"""What a new user meets in *Register stack* (issues 13 and 9); run under xvfb-run."""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage import data

from napari_coreg._napari import _stack_widget
from napari_coreg._napari._stack_widget import METADATA_KEY, StackRegistrationWidget


def drift(n=5):
    image = data.camera()[::4, ::4].astype(np.float32)
    return np.stack([ndimage.shift(image, (i, -i))[20:70, 20:70] for i in range(n)])


def shown(widget) -> bool:
    return not widget.native.isHidden()


def docked(viewer, layer=None):
    widget = StackRegistrationWidget(viewer)
    viewer.window.add_dock_widget(widget, name='Register stack')
    if layer is not None:
        widget._layer.value = layer
    widget._model.value = 'translation'
    return widget


def run(widget, qtbot):
    widget._start()
    qtbot.waitUntil(lambda: not widget.running, timeout=60_000)
    assert widget.last_error is None, widget.last_error


def test_labels_are_readable(make_napari_viewer):
    viewer = make_napari_viewer()
    layer = viewer.add_image(np.zeros((5, 3, 16, 16), np.float32), name='cells')
    widget = docked(viewer, layer)
    assert widget._axis.current_choice == 'axis 0 (5 frames)'
    widget._channel_axis.value = 1
    assert '(3 channels)' in widget._channel_axis.current_choice
    assert widget._channel.current_choice == 'all (mean)'
    assert widget._batch.current_choice == 'auto'
    assert 'NCC (same modality)' in [
        widget._metric.native.itemText(i) for i in range(widget._metric.native.count())
    ]
    # the status line spans the panel, outside the labelled form
    assert widget._status not in list(widget._form)


def test_apply_to_offers_neither_the_output_nor_an_empty_list(
    make_napari_viewer, qtbot
):
    viewer = make_napari_viewer()
    layer = viewer.add_image(drift(), name='cells')
    widget = docked(viewer, layer)
    assert not shown(widget._also)  # nothing to apply to: no list
    run(widget, qtbot)
    assert 'cells registered' in [lyr.name for lyr in viewer.layers]
    widget._layer.value = layer
    assert not widget._also.choices  # the output layer is not offered
    other = viewer.add_image(drift() * 2, name='other channel')
    assert widget._also.choices == (other,)
    assert shown(widget._also) and widget._also.native.maximumHeight() < 120


def test_undo_takes_the_stack_registration_back(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    layer = viewer.add_image(drift(), name='cells')
    widget = docked(viewer, layer)
    run(widget, qtbot)
    assert len(viewer.layers) == 2 and widget._undo.enabled
    assert 'NCC per frame: ' in widget._status.value  # a per-frame metric plot
    widget._undo.clicked.emit()
    assert [lyr.name for lyr in viewer.layers] == ['cells']
    assert not widget._undo.enabled
    widget._mode.value = 'follow'
    run(widget, qtbot)
    viewer.dims.set_current_step(0, 3)
    assert not np.allclose(layer.affine.affine_matrix, np.eye(4))
    widget._undo.clicked.emit()
    np.testing.assert_array_equal(layer.affine.affine_matrix, np.eye(4))
    assert not widget.following and 'stack' not in layer.metadata[METADATA_KEY]


class Flagged:
    """A stack result with per-frame verdicts (the issue 9 contract)."""

    def __init__(self, result, flagged):
        self._result = result
        self.flagged_frames = tuple(flagged)
        self.verdicts = tuple(
            'failed' if i in flagged else 'ok' for i in range(result.n_frames)
        )

    def __getattr__(self, name):
        return getattr(self._result, name)


def test_flagged_frames_are_listed_and_shown(make_napari_viewer, qtbot, monkeypatch):
    real = _stack_widget._drive

    def flagging(steps, resample):
        result, aligned = yield from real(steps, resample)
        return Flagged(result, (1, 3)), aligned

    monkeypatch.setattr(_stack_widget, '_drive', flagging)
    warnings = []
    monkeypatch.setattr(
        'napari.utils.notifications.show_warning', lambda m: warnings.append(m)
    )
    viewer = make_napari_viewer()
    layer = viewer.add_image(drift(), name='cells', scale=(2.0, 1, 1))
    widget = docked(viewer, layer)
    run(widget, qtbot)
    assert shown(widget._flagged_row)
    assert widget._flagged.choices == (None, 1, 3) and widget._flagged.value is None
    texts = [widget._flagged.native.itemText(i) for i in range(3)]
    assert texts[2].startswith('frame 3: failed (NCC ')
    assert '2 frame(s) flagged: 1, 3' in widget._status.value and warnings
    widget._flagged.value = 3
    assert viewer.dims.current_step[0] == 3
    widget._flagged.value = 1
    assert viewer.dims.current_step[0] == 1
