"""The "Register images" dock widget in a real viewer (run under xvfb-run).

The widget is driven the way a user drives it (choose layers and options, press
Register / Cancel / Undo) and waited for with ``qtbot.waitUntil``.
"""

from __future__ import annotations

import importlib.util
import time

import numpy as np
import pytest

from napari_coreg import corner_error
from napari_coreg._napari import _widget
from napari_coreg._napari._widget import RegistrationWidget
from napari_coreg._napari._writeback import METADATA_KEY, layer_record
from napari_coreg.engines import available_backends
from napari_coreg.result import Progress

FAST = {'levels': 2, 'iterations': '30'}


def make_widget(viewer, fixed, moving, **options):
    widget = RegistrationWidget(viewer)
    viewer.window.add_dock_widget(widget, name='Register images')
    widget._fixed.value, widget._moving.value = fixed, moving
    values = {**FAST, **options}
    for name in ('backend', 'model', 'metric'):
        if name in values:
            getattr(widget, f'_{name}').value = values.pop(name)
    if 'levels' in values:
        widget._levels.value = values.pop('levels')
    for name, value in values.items():
        getattr(widget, f'_{name}').value = value
    return widget


def shown(widget) -> bool:
    """Not hidden by the widget (``visible`` is False while the window is not shown)."""
    return not widget.native.isHidden()


def run(widget, qtbot, timeout=120_000):
    widget._run.clicked.emit() if hasattr(widget._run, 'clicked') else widget._start()
    qtbot.waitUntil(lambda: not widget.running, timeout=timeout)


def add_pair(viewer, pair, fixed_kw=None, moving_kw=None):
    fixed, moving, truth, info = pair
    f = viewer.add_image(fixed, name='fixed', **(fixed_kw or {}))
    m = viewer.add_image(moving, name='moving', **(moving_kw or {}))
    return f, m, truth


def test_register_sample_pair_with_scale_and_translate_then_undo(
    make_napari_viewer, qtbot, rigid_pair, helpers, monkeypatch
):
    monkeypatch.setattr(_widget, 'PREVIEW_INTERVAL', 0.0)
    viewer = make_napari_viewer()
    f, m, truth = add_pair(
        viewer,
        rigid_pair,
        {'scale': (0.5, 0.5), 'translate': (10.0, -5.0)},
        {'scale': (0.5, 0.5), 'translate': (-3.0, 4.0)},
    )
    before = helpers.world_error(f, m, truth)
    widget = make_widget(viewer, f, m, model='rigid', metric='ncc')
    previews = []
    m.events.affine.connect(lambda event: previews.append(widget.running))
    run(widget, qtbot)
    assert widget.last_error is None, widget.last_error
    # the torch backend reports its current transform: the overlay moved live
    assert any(previews), 'no live preview during the run'
    assert helpers.world_error(f, m, truth) < 0.5 < before
    assert widget._status.value.startswith('Done')
    assert 'NCC' in widget._status.value and 'stopped' in widget._status.value
    record = m.metadata[METADATA_KEY]['registration']
    assert record['transform']['metric_after'] > record['transform']['metric_before']
    assert len(viewer.layers) == 2  # affine write-back adds no layer
    # undo gives the previous affine back
    assert widget._undo.enabled
    widget._undo.clicked.emit()
    np.testing.assert_array_equal(m.affine.affine_matrix, np.eye(3))
    assert not widget._undo.enabled


@pytest.mark.skipif(
    'sitk' not in available_backends()
    or importlib.util.find_spec('napari_coreg.engines.sitk.engine') is None,
    reason='SimpleITK backend not installed',
)
def test_register_with_simpleitk(make_napari_viewer, qtbot, rigid_pair, helpers):
    viewer = make_napari_viewer()
    f, m, truth = add_pair(
        viewer,
        rigid_pair,
        {'scale': (2.0, 2.0), 'translate': (5.0, 5.0)},
        {'scale': (2.0, 2.0), 'translate': (-8.0, 3.0)},
    )
    widget = make_widget(
        viewer, f, m, backend='sitk', model='rigid', metric='ncc', iterations='auto'
    )
    assert 'l1' not in widget._metric.choices
    assert 'homography' not in widget._model.choices
    assert not shown(widget._device)
    run(widget, qtbot)
    assert widget.last_error is None, widget.last_error
    assert helpers.world_error(f, m, truth) < 0.5


@pytest.mark.skipif(
    'sitk' not in available_backends(), reason='SimpleITK not installed'
)
def test_multimodal_brain_pair_with_mutual_information(
    make_napari_viewer, qtbot, multimodal_pair, helpers
):
    """Real MR slices (T1 vs PD), exact ground truth, SimpleITK + MI."""
    viewer = make_napari_viewer()
    f, m, truth = add_pair(
        viewer,
        multimodal_pair,
        {'scale': (0.8, 0.8), 'translate': (0.0, 12.0)},
        {'scale': (0.8, 0.8), 'translate': (-6.0, 0.0)},
    )
    widget = make_widget(
        viewer,
        f,
        m,
        backend='sitk',
        model='rigid',
        metric='mi',
        levels=0,
        iterations='auto',
    )
    assert shown(widget._mi_bins) and shown(widget._sampling)
    run(widget, qtbot)
    assert widget.last_error is None, widget.last_error
    assert helpers.world_error(f, m, truth) < 0.5
    assert 'MI' in widget._status.value


def test_cancel_leaves_every_layer_unchanged(make_napari_viewer, qtbot):
    from napari_coreg.samples import sample_pair

    viewer = make_napari_viewer()
    fixed, moving, _, _ = sample_pair('rigid')
    f = viewer.add_image(fixed, name='fixed', scale=(2, 2))
    affine = np.array([[1, 0, 3.0], [0, 1, -2.0], [0, 0, 1]])
    m = viewer.add_image(moving, name='moving', affine=affine)
    widget = make_widget(viewer, f, m, levels=1, iterations='2000')
    widget._start()
    widget._worker.yielded.connect(
        lambda *_: widget._stop()
    )  # cancel at the first step
    qtbot.waitUntil(lambda: not widget.running, timeout=120_000)
    assert widget._status.value.startswith('Cancelled')
    np.testing.assert_array_equal(m.affine.affine_matrix, affine)
    np.testing.assert_array_equal(f.affine.affine_matrix, np.eye(3))
    assert [layer.name for layer in viewer.layers] == ['fixed', 'moving']
    assert METADATA_KEY not in m.metadata and METADATA_KEY not in f.metadata
    assert widget._run.enabled and not widget._cancel.enabled


def test_live_preview_follows_progress_and_cancel_restores(
    make_napari_viewer, qtbot, monkeypatch
):
    """With Progress.matrix reported, the overlay moves during the run."""
    viewer = make_napari_viewer()
    f = viewer.add_image(np.random.default_rng(0).random((40, 50)), name='fixed')
    m = viewer.add_image(np.random.default_rng(1).random((40, 50)), name='moving')

    def fake_run(request):
        for step in range(400):
            matrix = np.eye(3)
            matrix[:2, 2] = [step * 0.01, -step * 0.02]
            yield Progress(step, 400, 0, 1, step, 1.0 / (step + 1), matrix)
            time.sleep(0.01)

    monkeypatch.setattr(_widget, 'run_request', fake_run)
    monkeypatch.setattr(_widget, 'PREVIEW_INTERVAL', 0.0)
    widget = make_widget(viewer, f, m)
    widget._start()
    qtbot.waitUntil(
        lambda: not np.allclose(m.affine.affine_matrix, np.eye(3)), timeout=20_000
    )
    # the preview shows the inverse of the current moving_from_fixed
    shift = m.affine.affine_matrix[:2, 2]
    assert shift[0] < 0 < shift[1]
    widget._stop()
    qtbot.waitUntil(lambda: not widget.running, timeout=20_000)
    np.testing.assert_array_equal(m.affine.affine_matrix, np.eye(3))


def test_errors_are_shown_and_the_widget_recovers(
    make_napari_viewer, qtbot, monkeypatch
):
    viewer = make_napari_viewer()
    f = viewer.add_image(np.random.default_rng(0).random((40, 50)), name='fixed')
    flat = viewer.add_image(np.ones((40, 50)), name='flat')
    shown = []
    monkeypatch.setattr(
        'napari.utils.notifications.show_error', lambda message: shown.append(message)
    )
    widget = make_widget(viewer, f, f)
    widget._start()  # same layer twice: refused before any work
    assert not widget.running and 'same layer' in widget.last_error
    # an error inside the worker (constant image): notification, widget ready
    widget._moving.value = flat
    run(widget, qtbot)
    assert 'constant' in widget.last_error
    assert widget._status.value.startswith('Error')
    assert widget._run.enabled and not widget._cancel.enabled
    assert len(shown) == 2
    np.testing.assert_array_equal(flat.affine.affine_matrix, np.eye(3))


def test_unsupported_combination_is_hidden_or_refused(
    make_napari_viewer, qtbot, monkeypatch
):
    viewer = make_napari_viewer()
    f = viewer.add_image(np.random.default_rng(0).random((40, 50)), name='fixed')
    m = viewer.add_image(np.random.default_rng(1).random((40, 50)), name='moving')
    widget = make_widget(viewer, f, m)
    if 'sitk' in available_backends():
        widget._backend.value = 'sitk'
        assert 'l1' not in widget._metric.choices
        assert 'homography' not in widget._model.choices
        # a capability table that offers too much is still refused up front
        from dataclasses import replace

        from napari_coreg.engines import CAPABILITIES
        from napari_coreg.options import Backend, Metric

        lying = dict(CAPABILITIES)
        lying[Backend.SITK] = replace(
            CAPABILITIES[Backend.SITK], metrics=frozenset(Metric)
        )
        monkeypatch.setattr(_widget, 'CAPABILITIES', lying)
        widget._update_choices()
        widget._metric.value = 'l1'
        widget._start()
        assert not widget.running
        assert "no 'l1' metric" in widget.last_error
        assert widget._run.enabled
    # 3D layers: no homography
    vol_f = viewer.add_image(np.random.default_rng(2).random((12, 20, 24)), name='vf')
    vol_m = viewer.add_image(np.random.default_rng(3).random((12, 20, 24)), name='vm')
    widget._backend.value = 'torch'
    widget._fixed.value, widget._moving.value = vol_f, vol_m
    assert widget._dims.value == 3 and shown(widget._dims)
    assert 'homography' not in widget._model.choices
    widget._dims.value = 2  # a slice of each volume
    assert 'homography' in widget._model.choices
    assert shown(widget._slice_note)


def test_homography_writes_a_resampled_layer(
    make_napari_viewer, qtbot, homography_pair
):
    viewer = make_napari_viewer()
    fixed, moving, truth, _ = homography_pair
    f = viewer.add_image(fixed, name='fixed', rgb=True, scale=(1.5, 1.5))
    m = viewer.add_image(
        moving, name='moving', rgb=True, scale=(1.5, 1.5), translate=(4, 4)
    )
    widget = make_widget(viewer, f, m, model='homography', metric='ncc')
    assert widget._write_back.choices == ('resample',)
    run(widget, qtbot)
    assert widget.last_error is None, widget.last_error
    out = viewer.layers['moving registered']
    assert out.rgb and out.data.shape == fixed.shape and out.data.dtype == np.uint8
    np.testing.assert_allclose(out.scale, f.scale)
    np.testing.assert_array_equal(m.affine.affine_matrix, np.eye(3))  # moving untouched
    record = layer_record(m)
    reg = np.asarray(record['transform']['moving_from_fixed'])
    fixed_grid = np.diag([1.5, 1.5, 1.0])
    moving_grid = np.array([[1.5, 0, 4], [0, 1.5, 4], [0, 0, 1.0]])
    px = np.linalg.inv(moving_grid) @ reg @ fixed_grid
    assert corner_error(px, truth, fixed.shape[:2]) < 0.5
    # a second run updates the same layer
    n_layers = len(viewer.layers)
    run(widget, qtbot)
    assert len(viewer.layers) == n_layers and viewer.layers['moving registered'] is out
