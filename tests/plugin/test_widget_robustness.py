"""The widgets never hang: errors inside a run, closing the dock or the viewer.

Run under xvfb-run. Each test failed before the runner base
(``_napari/_runner.py``): superqt's worker swallows a ``RuntimeError`` raised
by the run and never reports the end of it, and nothing stopped the worker
when the dock was closed.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from pytestqt.qt_compat import qt_api
from scipy import ndimage

from napari_coreg._napari import _request, _widget
from napari_coreg._napari._runner import friendly_message
from napari_coreg._napari._stack_widget import StackRegistrationWidget
from napari_coreg._napari._widget import RegistrationWidget
from napari_coreg.engines import available_backends
from napari_coreg.result import Progress


def smooth(seed, shape=(40, 50)):
    rng = np.random.default_rng(seed)
    return ndimage.gaussian_filter(rng.random(shape), 2).astype(np.float32)


def docked_widget(viewer, **layer_kwargs):
    f = viewer.add_image(smooth(0), name='fixed')
    m = viewer.add_image(smooth(1), name='moving', **layer_kwargs)
    widget = RegistrationWidget(viewer)
    viewer.window.add_dock_widget(widget, name='Register images')
    widget._fixed.value, widget._moving.value = f, m
    return widget, f, m


def endless(request):
    """A run that never ends by itself (cancel or close must stop it)."""
    step = 0
    while True:
        yield Progress(step, 10**9, 0, 1, step, 1.0)
        step += 1
        time.sleep(0.005)


def threads_idle() -> bool:
    return qt_api.QtCore.QThreadPool.globalInstance().activeThreadCount() == 0


@pytest.mark.parametrize('backend', available_backends())
def test_error_inside_a_run_leaves_the_widget_ready(
    make_napari_viewer, qtbot, monkeypatch, backend
):
    """A RuntimeError from the engine mid-run (e.g. CUDA, ITK) of either backend."""
    real = _request.iter_register
    raised_at = []

    def failing(*args, **kwargs):
        steps = real(*args, **kwargs)
        yield next(steps)
        raised_at.append(time.monotonic())
        raise RuntimeError(f'{backend} engine broke down')

    monkeypatch.setattr(_request, 'iter_register', failing)
    errors = []
    monkeypatch.setattr(
        'napari.utils.notifications.show_error', lambda message: errors.append(message)
    )
    viewer = make_napari_viewer()
    widget, f, m = docked_widget(viewer)
    widget._backend.value = backend
    widget._start()
    assert widget.running
    qtbot.waitUntil(lambda: not widget.running, timeout=30_000)
    assert time.monotonic() - raised_at[0] < 1.0
    assert 'engine broke down' in widget.last_error
    assert widget._status.value.startswith('Error')
    assert widget._run.enabled and not widget._cancel.enabled
    assert errors and 'engine broke down' in errors[0]
    np.testing.assert_array_equal(m.affine.affine_matrix, np.eye(3))
    qtbot.waitUntil(threads_idle, timeout=2000)


@pytest.mark.skipif('sitk' not in available_backends(), reason='needs SimpleITK')
def test_simpleitk_mi_on_images_that_do_not_overlap(make_napari_viewer, qtbot):
    """The case of issue 13: the widget is ready again and writes nothing.

    Depending on the engine, ITK refuses (a readable error) or the result
    comes back and its verdict holds it back.
    """
    viewer = make_napari_viewer()
    widget, f, m = docked_widget(viewer, translate=(500, 500))
    widget._backend.value = 'sitk'
    widget._metric.value = 'mi'
    widget._init.value = 'identity'
    widget._start()
    qtbot.waitUntil(lambda: not widget.running, timeout=30_000)
    if widget.last_error is not None:
        assert 'overlap' in widget.last_error
        assert '.hxx' not in widget.last_error
        assert widget._status.value.startswith('Error')
    else:
        assert widget._status.value.startswith('Not applied')
    assert widget._run.enabled and not widget._cancel.enabled
    np.testing.assert_array_equal(m.affine.affine_matrix, np.eye(3))


def test_friendly_message_drops_itk_noise():
    exc = RuntimeError(
        'Exception thrown in SimpleITK ImageRegistrationMethod_Execute: '
        '/src/itkImageToImageMetricv4.hxx:270:\nITK ERROR: '
        'MattesMutualInformationImageToImageMetricv4(0x1): All samples map '
        'outside moving image buffer.'
    )
    text = friendly_message(exc)
    assert text.startswith('All samples map outside')
    assert 'Start from: centres aligned' in text


def test_closing_the_dock_mid_run_stops_the_thread(
    make_napari_viewer, qtbot, monkeypatch
):
    monkeypatch.setattr(_widget, 'run_request', endless)
    viewer = make_napari_viewer()
    widget, f, m = docked_widget(viewer)
    widget._start()
    qtbot.waitUntil(lambda: not threads_idle(), timeout=2000)
    viewer.window.remove_dock_widget(widget.native)
    qtbot.waitUntil(threads_idle, timeout=3000)
    np.testing.assert_array_equal(m.affine.affine_matrix, np.eye(3))
    # the closed widget no longer listens to the viewer
    choices = widget._fixed.choices
    viewer.add_image(smooth(3), name='later')
    assert widget._fixed.choices == choices


def test_closing_the_stack_dock_mid_run_stops_the_thread(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    frames = np.stack([np.roll(smooth(0, (48, 48)), i, axis=1) for i in range(40)])
    layer = viewer.add_image(frames, name='cells')
    widget = StackRegistrationWidget(viewer)
    viewer.window.add_dock_widget(widget, name='Register stack')
    widget._layer.value = layer
    widget._batch.value = 1
    widget._start()
    assert widget.running
    viewer.window.remove_dock_widget(widget.native)
    qtbot.waitUntil(threads_idle, timeout=10_000)
    assert len(viewer.layers) == 1


def test_closing_the_viewer_mid_run_stops_the_thread(
    make_napari_viewer, qtbot, monkeypatch
):
    monkeypatch.setattr(_widget, 'run_request', endless)
    viewer = make_napari_viewer()
    widget, f, m = docked_widget(viewer)
    widget._start()
    qtbot.waitUntil(lambda: not threads_idle(), timeout=2000)
    viewer.close()
    qtbot.waitUntil(threads_idle, timeout=3000)


def test_error_inside_a_stack_run_leaves_the_widget_ready(
    make_napari_viewer, qtbot, monkeypatch
):
    from napari_coreg._napari import _stack_widget

    raised_at = []

    def failing(steps, resample):
        yield next(steps)
        raised_at.append(time.monotonic())
        raise RuntimeError('engine broke down mid-stack')

    monkeypatch.setattr(_stack_widget, '_drive', failing)
    monkeypatch.setattr('napari.utils.notifications.show_error', lambda message: None)
    viewer = make_napari_viewer()
    frames = np.stack([np.roll(smooth(0, (48, 48)), i, axis=1) for i in range(6)])
    layer = viewer.add_image(frames, name='cells')
    widget = StackRegistrationWidget(viewer)
    viewer.window.add_dock_widget(widget, name='Register stack')
    widget._layer.value = layer
    widget._start()
    qtbot.waitUntil(lambda: not widget.running, timeout=30_000)
    assert time.monotonic() - raised_at[0] < 1.0
    assert 'mid-stack' in widget.last_error
    assert widget._run.enabled and not widget._cancel.enabled
    assert len(viewer.layers) == 1
    qtbot.waitUntil(threads_idle, timeout=2000)


def test_error_inside_a_geo_run_leaves_the_widget_ready(
    make_napari_viewer, qtbot, monkeypatch
):
    from napari_coreg._napari import _geo_widget

    def failing(job):
        raise RuntimeError('the raster driver broke down')

    monkeypatch.setattr(_geo_widget, '_register', failing)
    monkeypatch.setattr(
        _geo_widget.GeoRegistrationWidget, '_job', lambda self: {'layer': None}
    )
    monkeypatch.setattr('napari.utils.notifications.show_error', lambda message: None)
    viewer = make_napari_viewer()
    widget = _geo_widget.GeoRegistrationWidget(viewer)
    viewer.window.add_dock_widget(widget, name='Co-register rasters')
    widget.run()
    qtbot.waitUntil(lambda: not widget.running, timeout=5000)
    assert 'driver broke down' in widget.last_error
    assert widget._run.enabled and not widget._cancel.enabled
    # nothing to save: the button says so instead of writing anything
    assert widget.save() is None
    assert widget._status.value == 'choose the target layer to save'
    qtbot.waitUntil(threads_idle, timeout=2000)
