"""Save / Load / Apply transform widgets: clear messages, sensible defaults."""

from __future__ import annotations

import numpy as np
import pytest

from napari_coreg._napari._transform_io import (
    apply_transform_widget,
    load_transform_widget,
    save_transform_widget,
)


@pytest.fixture
def errors(monkeypatch):
    shown = []
    monkeypatch.setattr(
        'napari.utils.notifications.show_error', lambda message: shown.append(message)
    )
    return shown


def registered(viewer, helpers):
    from napari_coreg._napari._request import request_from_layers
    from napari_coreg._napari._writeback import Outcome, apply_result

    rng = np.random.default_rng(0)
    f = viewer.add_image(rng.random((30, 40)), name='fixed')
    m = viewer.add_image(rng.random((30, 40)), name='moving')
    request = request_from_layers(f, m)
    shift = np.eye(3)
    shift[:2, 2] = [2.0, -1.0]
    result = helpers.fake_result(shift, request.fixed.grid, request.moving.grid)
    apply_result(viewer.layers, request, Outcome(result, None))
    return f, m


def test_save_defaults_to_the_layer_holding_a_transform(make_napari_viewer, helpers):
    viewer = make_napari_viewer()
    f, m = registered(viewer, helpers)
    widget = save_transform_widget()
    viewer.window.add_dock_widget(widget, name='Save transform')
    assert widget.layer.value is m


def test_save_without_transform_shows_a_message(make_napari_viewer, tmp_path, errors):
    viewer = make_napari_viewer()
    plain = viewer.add_image(np.zeros((8, 8)), name='plain')
    widget = save_transform_widget()
    viewer.window.add_dock_widget(widget, name='Save transform')
    widget.path.value = tmp_path / 'x.json'
    widget.call_button.clicked.emit()  # the user's click: no traceback
    assert widget.layer.value is plain
    assert len(errors) == 1 and 'holds no transform' in errors[0]
    assert errors[0].startswith('Save transform')
    assert not (tmp_path / 'x.json').exists()


def test_load_of_a_missing_or_bad_file_shows_a_message(
    make_napari_viewer, tmp_path, errors
):
    viewer = make_napari_viewer()
    plain = viewer.add_image(np.zeros((8, 8)), name='plain')
    widget = load_transform_widget()
    viewer.window.add_dock_widget(widget, name='Load transform')
    widget.target.value = plain
    widget.path.value = tmp_path / 'missing.json'
    widget.call_button.clicked.emit()
    bad = tmp_path / 'bad.json'
    bad.write_text('{"a": 1}')
    widget.path.value = bad
    widget.call_button.clicked.emit()
    assert len(errors) == 2
    assert all(message.startswith('Load transform') for message in errors)
    assert 'missing.json' in errors[0]
    assert 'moving_from_fixed' in errors[1]
    np.testing.assert_array_equal(plain.affine.affine_matrix, np.eye(3))


def test_apply_from_a_layer_without_transform_shows_a_message(
    make_napari_viewer, errors
):
    viewer = make_napari_viewer()
    a = viewer.add_image(np.zeros((8, 8)), name='a')
    b = viewer.add_image(np.zeros((8, 8)), name='b')
    widget = apply_transform_widget()
    viewer.window.add_dock_widget(widget, name='Apply transform')
    widget(viewer=viewer, source=a, target=b, mode='affine')
    assert len(errors) == 1 and 'holds no transform' in errors[0]
    np.testing.assert_array_equal(b.affine.affine_matrix, np.eye(3))
