"""What a new user meets in *Register images* (issue 13, "The widget").

Run under xvfb-run; every test here failed before its fix.
"""

from __future__ import annotations

import time

import numpy as np
from scipy import ndimage

from napari_coreg._napari import _widget
from napari_coreg._napari._records import METADATA_KEY
from napari_coreg._napari._widget import RegistrationWidget
from napari_coreg.engines import available_backends
from napari_coreg.result import Progress


def smooth(seed, shape=(40, 50)):
    rng = np.random.default_rng(seed)
    return ndimage.gaussian_filter(rng.random(shape), 2).astype(np.float32)


def docked(viewer):
    widget = RegistrationWidget(viewer)
    viewer.window.add_dock_widget(widget, name='Register images')
    return widget


def test_volumes_opened_before_the_widget_register_in_3d(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.add_image(smooth(0, (12, 20, 24)), name='ct')
    viewer.add_image(smooth(1, (12, 20, 24)), name='mr')
    widget = docked(viewer)
    assert widget._dims.value == 3
    assert not widget._slice_note.visible
    widget._dims.value = 2  # a slice of each volume: the hint says so
    assert 'slice shown now' in widget._slice_note.value
    assert 'time series' not in widget._slice_note.value


def test_output_choice_does_not_stick_after_homography(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.add_image(smooth(0), name='fixed')
    viewer.add_image(smooth(1), name='moving')
    widget = docked(viewer)
    assert widget._write_back.value == 'affine'
    widget._model.value = 'homography'
    assert widget._write_back.value == 'resample'
    widget._model.value = 'rigid'
    assert widget._write_back.value == 'affine'
    # a choice the user made is kept
    widget._write_back.value = 'resample'
    widget._model.value = 'affine'
    assert widget._write_back.value == 'resample'


def test_switching_backend_keeps_the_model_or_says_why(make_napari_viewer):
    if 'sitk' not in available_backends():
        return
    viewer = make_napari_viewer()
    viewer.add_image(smooth(0), name='fixed')
    viewer.add_image(smooth(1), name='moving')
    widget = docked(viewer)
    widget._model.value = 'similarity'
    widget._backend.value = 'sitk'
    assert widget._model.value == 'similarity'
    widget._backend.value = 'torch'
    widget._model.value = 'homography'
    widget._backend.value = 'sitk'
    assert widget._model.value != 'homography'
    assert 'SimpleITK has no model' in widget._status.value
    assert 'homography' in widget._status.value


def test_controls_locked_while_running(make_napari_viewer, qtbot, monkeypatch):
    def slow(request):
        for step in range(300):
            yield Progress(step, 300, 0, 1, step, 1.0)
            time.sleep(0.01)

    monkeypatch.setattr(_widget, 'run_request', slow)
    viewer = make_napari_viewer()
    viewer.add_image(smooth(0), name='fixed')
    viewer.add_image(smooth(1), name='moving')
    viewer.add_labels(np.ones((40, 50), np.uint8), name='mask')
    widget = docked(viewer)
    widget._start()
    locked = [
        widget._metric,
        widget._levels,
        widget._shrink,
        widget._iterations,
        widget._fixed_mask,
        widget._moving_mask,
        widget._mi_bins,
        widget._optimizer,
        widget._write_back,
    ]
    assert widget.running and not any(w.enabled for w in locked)
    widget._stop()
    qtbot.waitUntil(lambda: not widget.running, timeout=10_000)
    assert all(w.enabled for w in locked)


def test_status_cleared_when_new_layers_are_picked(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    f = viewer.add_image(smooth(0), name='fixed')
    viewer.add_image(smooth(1), name='moving')
    other = viewer.add_image(smooth(2), name='other')
    widget = docked(viewer)
    widget._status.value = 'Done: an old pair.'
    widget._fixed.value = f
    widget._moving.value = other
    assert not widget._status.value.startswith('Done')


def test_progress_reaches_100_percent(make_napari_viewer, qtbot, rigid_pair):
    viewer = make_napari_viewer()
    fixed, moving, _, _ = rigid_pair
    f = viewer.add_image(fixed, name='fixed')
    m = viewer.add_image(moving, name='moving')
    widget = docked(viewer)
    widget._fixed.value, widget._moving.value = f, m
    widget._levels.value = 2
    widget._start()
    qtbot.waitUntil(lambda: not widget.running, timeout=60_000)
    assert widget.last_error is None, widget.last_error
    done, total = widget.last_progress
    assert done == total > 0


def test_labels_and_tooltips(make_napari_viewer):
    viewer = make_napari_viewer()
    widget = docked(viewer)
    assert widget._levels.value == 0 and widget._levels.current_choice == 'auto'
    for name in (
        'backend',
        'device',
        'dims',
        'optimizer',
        'mi_bins',
        'live',
        'run',
        'cancel',
    ):
        assert getattr(widget, f'_{name}').tooltip, name


def test_sample_suggested_metric_is_applied(make_napari_viewer):
    from napari_coreg._napari._sample_data import make_multimodal_pair

    viewer = make_napari_viewer()
    for data, kwargs, _ in make_multimodal_pair():
        viewer.add_image(data, **kwargs)
    widget = docked(viewer)
    assert widget._metric.value == 'mi'


def test_sample_hint_the_backend_lacks_is_skipped(make_napari_viewer):
    from napari_coreg._napari._sample_data import make_homography_pair

    if 'sitk' not in available_backends():
        return
    viewer = make_napari_viewer()
    widget = docked(viewer)
    widget._backend.value = 'sitk'  # no homography
    for data, kwargs, _ in make_homography_pair():
        viewer.add_image(data, **kwargs)
    assert widget._model.value != 'homography'
    assert widget._fixed.value is viewer.layers[0]


def test_resampled_homography_layer_is_not_opaque(make_napari_viewer, qtbot, helpers):
    from napari_coreg._napari._request import request_from_layers
    from napari_coreg._napari._writeback import Outcome, apply_result

    viewer = make_napari_viewer()
    rgb = (np.random.default_rng(0).random((30, 40, 3)) * 255).astype(np.uint8)
    f = viewer.add_image(rgb, name='fixed', rgb=True)
    m = viewer.add_image(rgb, name='moving', rgb=True)
    request = request_from_layers(f, m, 'homography', 'ncc')
    grid = request.fixed.grid
    result = helpers.fake_result(np.eye(3), grid, request.moving.grid, 'homography')
    out = apply_result(viewer.layers, request, Outcome(result, None))
    assert out.opacity < 1 and out.blending != 'opaque'
    assert METADATA_KEY in out.metadata


def test_panel_fits_in_600_px(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.add_image(smooth(0), name='fixed')
    viewer.add_image(smooth(1), name='moving')
    widget = docked(viewer)
    assert widget.native.sizeHint().height() <= 600


def test_checkerboard_and_difference_views(make_napari_viewer, qtbot, rigid_pair):
    """Issue 9: toggles for a checkerboard and a difference view of the result."""
    viewer = make_napari_viewer()
    fixed, moving, _, _ = rigid_pair
    f = viewer.add_image(fixed, name='fixed', scale=(2.0, 2.0))
    m = viewer.add_image(moving, name='moving', scale=(2.0, 2.0))
    widget = docked(viewer)
    widget._fixed.value, widget._moving.value = f, m
    assert not widget._checker.enabled  # nothing to compare yet
    widget._levels.value = 2
    widget._start()
    qtbot.waitUntil(lambda: not widget.running, timeout=60_000)
    assert widget.last_error is None, widget.last_error
    widget._checker.value = True
    widget._difference.value = True
    board = viewer.layers['moving checkerboard']
    diff = viewer.layers['moving difference']
    assert board.data.shape == diff.data.shape == fixed.shape
    np.testing.assert_allclose(board.scale, f.scale)
    # registered: the images agree where both are defined (centre crop)
    centre = (slice(10, -10), slice(10, -10))
    assert np.median(diff.data[centre]) < 0.1
    widget._difference.value = False
    assert 'moving difference' not in [layer.name for layer in viewer.layers]
    widget._undo.clicked.emit()
    assert 'moving checkerboard' not in [layer.name for layer in viewer.layers]
    assert not widget._checker.value and not widget._checker.enabled
