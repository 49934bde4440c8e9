"""The "Register stack" dock widget in a real viewer (run under xvfb-run)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from skimage import data

from napari_coreg._napari._stack_widget import (
    METADATA_KEY,
    StackRegistrationWidget,
    frame_affine,
)
from napari_coreg.transforms import homogeneous


def drift(n=6, size=64, seed=0):
    """A small stack shifted by a random walk, and each frame's true shift."""
    image = data.camera()[::4, ::4].astype(np.float32)
    rng = np.random.default_rng(seed)
    shifts = np.cumsum(np.vstack([np.zeros(2), rng.normal(0, 1.5, (n - 1, 2))]), axis=0)
    crop = (slice(32, 32 + size),) * 2
    frames = [ndimage.shift(image, s, order=3)[crop] for s in shifts]
    return np.stack(frames), shifts


def make_widget(viewer, layer, **values):
    widget = StackRegistrationWidget(viewer)
    viewer.window.add_dock_widget(widget, name='Register stack')
    widget._layer.value = layer
    widget._model.value = 'translation'
    for name, value in values.items():
        getattr(widget, f'_{name}').value = value
    return widget


def run(widget, qtbot, timeout=120_000):
    widget._start()
    qtbot.waitUntil(lambda: not widget.running, timeout=timeout)
    assert widget.last_error is None, widget.last_error


def test_registered_layer_written_and_updated_in_place(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    stack, shifts = drift()
    layer = viewer.add_image(stack, name='cells', scale=(1, 0.5, 0.5))
    widget = make_widget(viewer, layer, reference='first')
    run(widget, qtbot)
    out = viewer.layers['cells registered']
    assert out.data.shape == stack.shape
    np.testing.assert_array_equal(out.scale, layer.scale)
    record = out.metadata[METADATA_KEY]['stack']
    matrices = np.array(record['moving_from_fixed'])
    # physical units: shifts of 0.5 per pixel
    expected = 0.5 * (shifts - shifts[0])
    np.testing.assert_allclose(matrices[:, :2, 2], expected, atol=0.05)
    assert widget._status.value.startswith('Done')
    np.testing.assert_array_equal(layer.data, stack)  # source untouched
    # rerun: same layer updated, no new layer
    widget._reference.value = 'previous'
    run(widget, qtbot)
    assert len(viewer.layers) == 2
    assert (
        viewer.layers['cells registered'].metadata[METADATA_KEY]['stack']['reference']
        == 'previous'
    )


def test_follow_mode_rebinds_affine_to_the_current_frame(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    stack, shifts = drift()
    layer = viewer.add_image(stack, name='cells')
    widget = make_widget(viewer, layer, reference='first', mode='follow')
    run(widget, qtbot)
    assert widget.following and len(viewer.layers) == 1
    for frame in (3, 5, 0):
        viewer.dims.set_current_step(0, frame)
        fixed_from_moving = np.linalg.inv(widget.result.moving_from_fixed[frame])
        expected = frame_affine(np.eye(4), fixed_from_moving, (1, 2), 3)
        np.testing.assert_allclose(layer.affine.affine_matrix, expected, atol=1e-9)
        # the structure at frame pixel (shift + p) is shown at world p
        p = np.array([20.0, 30.0])
        world = layer.data_to_world([frame, *(p + shifts[frame] - shifts[0])])
        np.testing.assert_allclose(world[1:], p, atol=0.1)
    assert 'stack' in layer.metadata[METADATA_KEY]
    widget.stop_following()
    np.testing.assert_array_equal(layer.affine.affine_matrix, np.eye(4))
    viewer.dims.set_current_step(0, 2)
    np.testing.assert_array_equal(layer.affine.affine_matrix, np.eye(4))


def test_channels_register_on_one_and_apply_to_all(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    stack, shifts = drift()
    noise = np.random.default_rng(1).random(stack.shape).astype(np.float32)
    both = np.stack([noise, stack])  # C, T, Y, X
    layer = viewer.add_image(both, name='two channels')
    other = viewer.add_image(stack * 2, name='other channel')
    widget = make_widget(viewer, layer, reference='first')
    widget._axis.value = 1
    widget._channel_axis.value = 0
    widget._channel.value = 1
    widget._also.value = [other]
    run(widget, qtbot)
    out = viewer.layers['two channels registered']
    assert out.data.shape == both.shape
    matrices = np.array(out.metadata[METADATA_KEY]['stack']['moving_from_fixed'])
    np.testing.assert_allclose(matrices[:, :2, 2], shifts - shifts[0], atol=0.1)
    np.testing.assert_allclose(
        viewer.layers['other channel registered'].data,
        2 * out.data[1],
        rtol=1e-5,
        atol=1e-4,
    )


def test_cancel_writes_nothing(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    stack, _ = drift(n=12)
    layer = viewer.add_image(stack, name='cells')
    widget = make_widget(viewer, layer, batch=1)
    widget._start()
    widget._stop()
    qtbot.waitUntil(lambda: not widget.running, timeout=30_000)
    assert len(viewer.layers) == 1
    assert METADATA_KEY not in layer.metadata
    assert widget._run.enabled


def test_errors_surface_and_layers_listed(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((16, 16)), name='flat')
    widget = StackRegistrationWidget(viewer)
    assert widget._layer.value is None  # a 2D image is no stack
    widget._start()
    assert widget.last_error and not widget.running
    stack = viewer.add_image(np.zeros((3, 16, 16), np.float32), name='blank')
    widget._layer.value = stack
    widget._start()  # constant frames: ValueError
    qtbot.waitUntil(lambda: not widget.running, timeout=30_000)
    assert 'constant' in widget.last_error


def test_dock_widget_opens_from_manifest(make_napari_viewer):
    pytest.importorskip('npe2')
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget('napari-coreg', 'Register stack')
    assert isinstance(widget, StackRegistrationWidget)


def test_frame_affine_embeds_spatial_block():
    matrix = homogeneous(np.eye(2), [3.0, -2.0])
    affine = frame_affine(np.eye(5), matrix, (2, 3), 4)
    assert affine[2, 4] == 3.0 and affine[3, 4] == -2.0
    assert affine[0, 0] == affine[1, 1] == 1.0 and affine[0, 4] == 0.0
