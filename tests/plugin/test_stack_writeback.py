"""Stack write-back as pure functions on ``ViewerModel`` (no Qt), with undo."""

from __future__ import annotations

import numpy as np
from napari.components import ViewerModel

from napari_coreg._napari._records import METADATA_KEY, can_undo
from napari_coreg._napari._stack_writeback import (
    frame_affine,
    frame_index,
    show_frames,
    start_following,
    stop_following,
    undo_stack,
    write_stack_layers,
)
from napari_coreg.transforms import homogeneous

RECORD = {'moving_from_fixed': [np.eye(3).tolist()] * 4, 'reference': 'first'}


def shifts(n=4):
    return np.stack([homogeneous(np.eye(2), [i, -2.0 * i]) for i in range(n)])


def test_written_layers_update_in_place_and_undo_removes_them():
    viewer = ViewerModel()
    stack = np.random.default_rng(0).random((4, 10, 12)).astype(np.float32)
    layer = viewer.add_image(stack, name='cells', scale=(1, 0.5, 0.5))
    other = viewer.add_image(stack * 2, name='dna', scale=(1, 0.5, 0.5))
    (out, out2) = write_stack_layers(
        viewer.layers, [layer, other], [stack + 1, stack + 2], RECORD
    )
    assert [lyr.name for lyr in viewer.layers] == [
        'cells',
        'dna',
        'cells registered',
        'dna registered',
    ]
    np.testing.assert_array_equal(out.scale, layer.scale)
    assert out.metadata[METADATA_KEY]['stack']['reference'] == 'first'
    np.testing.assert_array_equal(layer.data, stack)  # source untouched
    again = write_stack_layers(viewer.layers, [layer], [stack + 3], RECORD)[0]
    assert again is out and len(viewer.layers) == 4
    np.testing.assert_array_equal(out.data, stack + 3)
    assert can_undo(layer) and can_undo(other)
    done = undo_stack(viewer.layers, [layer, other])
    assert len(done) == 2
    done = undo_stack(viewer.layers, [layer])
    assert [lyr.name for lyr in viewer.layers] == ['cells', 'dna']


def test_following_rebinds_the_affine_and_undo_restores_it():
    viewer = ViewerModel()
    stack = np.zeros((4, 10, 12), np.float32)
    base = np.diag([1.0, 2.0, 2.0, 1.0])
    layer = viewer.add_image(stack, name='cells', affine=base)
    matrices = shifts()
    state = start_following([layer], [(0, None, (1, 2))], RECORD, matrices)
    assert layer.metadata[METADATA_KEY]['stack']['mode'] == 'follow'
    for frame in (2, 3):
        show_frames(state, viewer.layers, lambda lyr, axis, f=frame: f)
        expected = frame_affine(base, matrices[frame], (1, 2), 3)
        np.testing.assert_allclose(layer.affine.affine_matrix, expected)
    stop_following(state, viewer.layers)
    np.testing.assert_allclose(layer.affine.affine_matrix, base)
    show_frames(state, viewer.layers, lambda lyr, axis: 3)
    undo_stack(viewer.layers, [layer])
    np.testing.assert_allclose(layer.affine.affine_matrix, base)
    assert 'stack' not in layer.metadata[METADATA_KEY]
    assert not can_undo(layer)


def test_frame_index_reads_the_world_point():
    viewer = ViewerModel()
    layer = viewer.add_image(
        np.zeros((5, 8, 8)), scale=(2.0, 1, 1), translate=(1, 0, 0)
    )
    assert frame_index(layer, (7.0, 0, 0), 0) == 3
    assert frame_index(layer, (100.0, 0, 0), 0) == 4
