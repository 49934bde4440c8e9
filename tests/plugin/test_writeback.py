"""Write-back to layers, on napari.components.ViewerModel (no Qt, no optimiser).

A fake result with a chosen transform stands in for the registration, so these
tests check the geometry exactly: after the write-back the fixed and moving
layers show the same structure at the same world position.
"""

from __future__ import annotations

import numpy as np
import pytest
from napari.components import ViewerModel

from napari_coreg._napari import _geometry
from napari_coreg._napari._masks import rasterise
from napari_coreg._napari._writeback import (
    METADATA_KEY,
    Outcome,
    apply_record,
    apply_result,
    can_undo,
    layer_record,
    record_from_dict,
    request_from_layers,
    undo,
)

RNG = np.random.default_rng(0)
FIXED = RNG.random((37, 53)).astype(np.float32)
MOVING = RNG.random((41, 47)).astype(np.float32)


def rigid_px(angle_deg=7.0, shift=(3.0, -4.0), centre=(18.0, 26.0)):
    a = np.deg2rad(angle_deg)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    c = np.asarray(centre)
    out = np.eye(3)
    out[:2, :2] = rot
    out[:2, 2] = c - rot @ c + np.asarray(shift)
    return out


def write(viewer, fixed, moving, truth_px, helpers, **kwargs):
    """Register with a fake result whose transform is ``truth_px`` in pixels."""
    request = request_from_layers(fixed, moving, 'rigid', 'ncc', 'torch', **kwargs)
    reg = (
        request.moving.grid.phys_from_px
        @ truth_px
        @ np.linalg.inv(request.fixed.grid.phys_from_px)
    )
    result = helpers.fake_result(reg, request.fixed.grid, request.moving.grid)
    resampled = None
    if request.write_back == 'resample':
        from napari_coreg._napari._writeback import _resample_like

        resampled = _resample_like(
            request.moving.array(request.moving_data),
            reg,
            request.fixed.grid,
            request.moving.grid,
        )
    return request, apply_result(viewer.layers, request, Outcome(result, resampled))


LAYOUTS = {
    'scale-translate': (
        {'scale': (0.5, 0.5), 'translate': (10.0, -5.0)},
        {'scale': (0.7, 0.3), 'translate': (-3.0, 4.0)},
    ),
    'rotate-affine': (
        {
            'scale': (2.0, 2.0),
            'affine': np.array([[1, 0.2, 5], [0, 1, -2], [0, 0, 1.0]]),
        },
        {'scale': (1.5, 1.5), 'rotate': 25.0, 'translate': (4.0, 1.0)},
    ),
    'shear-flip': (
        {'scale': (1.0, 2.0), 'shear': [0.3]},
        {'scale': (-1.0, 1.0), 'translate': (40.0, 0.0)},
    ),
}


@pytest.mark.parametrize('layout', LAYOUTS)
def test_affine_write_back_overlays_in_world(layout, helpers):
    viewer = ViewerModel()
    fixed_kw, moving_kw = LAYOUTS[layout]
    fixed = viewer.add_image(FIXED, name='fixed', **fixed_kw)
    moving = viewer.add_image(MOVING, name='moving', **moving_kw)
    data_before = moving.data.copy()
    truth = rigid_px()
    _, shown = write(viewer, fixed, moving, truth, helpers)
    assert shown is moving
    assert helpers.world_error(fixed, moving, truth) < 1e-9
    np.testing.assert_array_equal(moving.data, data_before)  # pixels untouched
    record = layer_record(moving)
    assert record['fixed_layer'] == 'fixed' and record['write_back'] == 'affine'
    assert np.allclose(
        record['transform']['moving_from_fixed'],
        np.linalg.inv(record['transform']['fixed_from_moving']),
    )
    assert 'napari_coreg_version' in record['transform']


def test_affine_matches_design_formula_without_rotate(helpers):
    """moving.affine = fixed.affine @ fixed_from_moving (DESIGN.md)."""
    viewer = ViewerModel()
    fixed_affine = np.array([[1, 0, 3], [0, 2, 1], [0, 0, 1.0]])
    fixed = viewer.add_image(
        FIXED, scale=(0.5, 0.5), translate=(2, 3), affine=fixed_affine
    )
    moving = viewer.add_image(MOVING, scale=(0.5, 0.5), translate=(-1, 0))
    request, _ = write(viewer, fixed, moving, rigid_px(), helpers)
    fixed_from_moving = np.asarray(
        layer_record(moving)['transform']['fixed_from_moving']
    )
    np.testing.assert_allclose(
        moving.affine.affine_matrix, fixed_affine @ fixed_from_moving, atol=1e-12
    )


def test_undo_restores_previous_affine(helpers):
    viewer = ViewerModel()
    fixed = viewer.add_image(FIXED, name='fixed', scale=(2, 2))
    original = np.array([[1, 0, 7], [0, 1, -3], [0, 0, 1.0]])
    moving = viewer.add_image(MOVING, name='moving', affine=original)
    write(viewer, fixed, moving, rigid_px(), helpers)
    write(viewer, fixed, moving, rigid_px(3.0), helpers)
    assert can_undo(moving)
    undo(viewer.layers, moving)
    undo(viewer.layers, moving)
    np.testing.assert_allclose(moving.affine.affine_matrix, original)
    assert not can_undo(moving)
    assert layer_record(moving) is None
    with pytest.raises(ValueError, match='nothing to undo'):
        undo(viewer.layers, moving)


def test_resampled_layer_is_updated_in_place_and_undone(helpers):
    viewer = ViewerModel()
    fixed = viewer.add_image(FIXED, name='fixed', scale=(0.5, 0.5), translate=(1, 2))
    moving = viewer.add_image(MOVING, name='moving', scale=(0.5, 0.5))
    user = viewer.add_image(
        np.ones((5, 5)), name='moving registered'
    )  # the user's own layer
    truth = rigid_px()
    _, out = write(viewer, fixed, moving, truth, helpers, write_back='resample')
    assert out is not user and out.name != 'moving registered'
    np.testing.assert_array_equal(user.data, np.ones((5, 5)))
    assert out.data.shape == FIXED.shape
    np.testing.assert_allclose(out.scale, fixed.scale)
    np.testing.assert_allclose(out.translate, fixed.translate)
    # a fixed pixel shows what the moving image has at truth @ p
    from scipy import ndimage

    p = np.array([20.0, 30.0])
    q = (truth @ np.r_[p, 1])[:2]
    expected = ndimage.map_coordinates(MOVING, q[:, None], order=1)[0]
    assert out.data[20, 30] == pytest.approx(expected, abs=1e-5)
    np.testing.assert_array_equal(moving.affine.affine_matrix, np.eye(3))
    n_layers = len(viewer.layers)
    _, again = write(
        viewer, fixed, moving, rigid_px(2.0), helpers, write_back='resample'
    )
    assert again is out and len(viewer.layers) == n_layers
    undo(viewer.layers, moving)
    assert out not in viewer.layers
    assert user in viewer.layers


def test_labels_and_points_follow_the_moving_image(helpers):
    viewer = ViewerModel()
    fixed = viewer.add_image(FIXED, name='fixed', scale=(0.5, 0.5), translate=(10, -5))
    moving = viewer.add_image(
        MOVING, name='moving', scale=(0.5, 0.5), translate=(-3, 4)
    )
    labels_data = np.zeros(MOVING.shape, dtype=np.uint8)
    labels_data[10:20, 15:30] = 3
    labels = viewer.add_labels(
        labels_data, name='cells', scale=(0.5, 0.5), translate=(-3, 4)
    )
    q = np.array([[12.0, 20.0], [30.0, 5.0]])  # moving pixel coordinates
    points = viewer.add_points(q * 0.5 + [-3, 4], name='spots')  # world = physical
    truth = rigid_px()
    write(viewer, fixed, moving, truth, helpers)
    record = layer_record(moving)
    apply_record(viewer.layers, record, labels, 'affine')
    # points were placed with scale 1: they are not in the moving frame, so
    # give them the moving layer's scale/translate first (as if drawn on it)
    points.scale, points.translate = (0.5, 0.5), (-3, 4)
    points.data = q
    apply_record(viewer.layers, record, points, 'affine')
    p_fixed = np.array([[0.0, 0.0], [20.0, 30.0]])
    for p in p_fixed:
        qq = (truth @ np.r_[p, 1])[:2]
        world_fixed = np.asarray(fixed.data_to_world(p))
        np.testing.assert_allclose(labels.data_to_world(qq), world_fixed, atol=1e-9)
        np.testing.assert_allclose(points.data_to_world(qq), world_fixed, atol=1e-9)
    # resampled labels: nearest neighbour, on the fixed grid, values kept
    out = apply_record(viewer.layers, record, labels, 'resample', fixed_layer=fixed)
    assert type(out).__name__ == 'Labels' and out.data.shape == FIXED.shape
    assert set(np.unique(out.data)) <= {0, 3}
    inside = np.argwhere(out.data == 3)
    mapped = (truth @ np.c_[inside, np.ones(len(inside))].T)[:2].T
    assert np.all(
        (mapped[:, 0] > 9)
        & (mapped[:, 0] < 20)
        & (mapped[:, 1] > 14)
        & (mapped[:, 1] < 30)
    )
    # point-by-point mapping into a new layer lands on the same world points
    mapped_points = apply_record(viewer.layers, record, points, 'resample')
    np.testing.assert_allclose(
        [mapped_points.data_to_world(d) for d in mapped_points.data],
        [points.data_to_world(d) for d in points.data],
        atol=1e-9,
    )


def test_homography_maps_points_and_refuses_affine(helpers):
    viewer = ViewerModel()
    fixed = viewer.add_image(FIXED, name='fixed', scale=(2, 2))
    moving = viewer.add_image(MOVING, name='moving', scale=(2, 2))
    H = rigid_px()
    H[2, :2] = [1e-3, -5e-4]
    request = request_from_layers(fixed, moving, 'homography', 'ncc', 'torch')
    assert request.write_back == 'resample'
    reg = (
        request.moving.grid.phys_from_px
        @ H
        @ np.linalg.inv(request.fixed.grid.phys_from_px)
    )
    result = helpers.fake_result(
        reg, request.fixed.grid, request.moving.grid, model='homography'
    )
    out = apply_result(viewer.layers, request, Outcome(result, None))
    assert out.name == 'moving registered' and out.data.shape == FIXED.shape
    record = layer_record(moving)
    pts = viewer.add_points(
        np.array([[10.0, 12.0], [30.0, 40.0]]), scale=(2, 2), name='pts'
    )
    with pytest.raises(ValueError, match='homography'):
        apply_record(viewer.layers, record, pts, 'affine')
    mapped = apply_record(viewer.layers, record, pts, 'resample')
    worlds = [mapped.data_to_world(d) for d in mapped.data]
    for p_moving, world in zip(pts.data, worlds, strict=True):
        # the fixed pixel that H maps onto this moving pixel
        p_fixed = np.linalg.solve(H, np.r_[p_moving, 1])
        p_fixed = p_fixed[:2] / p_fixed[2]
        np.testing.assert_allclose(world, fixed.data_to_world(p_fixed), atol=1e-9)
    with pytest.raises(ValueError, match='resample'):
        request_from_layers(
            fixed, moving, 'homography', 'ncc', 'torch', write_back='affine'
        )


def test_slice_of_a_time_series(helpers):
    viewer = ViewerModel()
    fixed = viewer.add_image(FIXED, name='fixed', scale=(0.5, 0.5))
    stack = np.stack([MOVING * (i + 1) for i in range(4)])
    moving = viewer.add_image(
        stack, name='movie', scale=(1, 0.5, 0.5), translate=(0, 2, 3)
    )
    viewer.dims.set_point(0, 2)
    request = request_from_layers(
        fixed, moving, 'rigid', 'ncc', 'torch', world_point=viewer.dims.point
    )
    assert request.ndim == 2
    assert request.moving.index[0] == 2
    np.testing.assert_array_equal(request.moving.array(moving.data), stack[2])
    truth = rigid_px()
    write(viewer, fixed, moving, truth, helpers, world_point=viewer.dims.point)
    assert moving.affine.affine_matrix.shape == (4, 4)
    np.testing.assert_allclose(moving.affine.affine_matrix[0], [1, 0, 0, 0])
    p = np.array([20.0, 30.0])
    q = (truth @ np.r_[p, 1])[:2]
    np.testing.assert_allclose(
        np.asarray(moving.data_to_world(np.r_[2, q]))[1:],
        fixed.data_to_world(p),
        atol=1e-9,
    )


def test_multiscale_uses_a_level_and_overlays(helpers, monkeypatch):
    viewer = ViewerModel()
    fixed = viewer.add_image(FIXED, name='fixed', scale=(0.5, 0.5))
    big = np.kron(MOVING, np.ones((2, 2), np.float32))
    moving = viewer.add_image(
        [big, MOVING], name='pyramid', multiscale=True, scale=(0.25, 0.25)
    )
    monkeypatch.setitem(_geometry.MAX_PIXELS, 2, MOVING.size)  # level 0 is "too big"
    request = request_from_layers(fixed, moving, 'rigid', 'ncc', 'torch')
    assert request.moving.level == 1
    assert request.moving.grid.spacing == (0.5, 0.5)
    truth = rigid_px()  # fixed pixels -> level-1 pixels
    write(viewer, fixed, moving, truth, helpers)
    p = np.array([20.0, 30.0])
    q_level1 = (truth @ np.r_[p, 1])[:2]
    np.testing.assert_allclose(
        moving.data_to_world(q_level1 * 2), fixed.data_to_world(p), atol=1e-9
    )


def test_rgb_layers_register_luminance(helpers):
    viewer = ViewerModel()
    rgb = (RNG.random((37, 53, 3)) * 255).astype(np.uint8)
    fixed = viewer.add_image(FIXED, name='fixed')
    moving = viewer.add_image(rgb, name='rgb', rgb=True)
    request = request_from_layers(fixed, moving, 'rigid', 'ncc', 'torch')
    assert request.moving.rgb and request.moving.grid.shape == (37, 53)
    _, out = write(viewer, fixed, moving, rigid_px(), helpers, write_back='resample')
    assert out.rgb and out.data.dtype == np.uint8 and out.data.shape == (37, 53, 3)


def test_masks_from_labels_and_shapes_on_the_image_grid():
    viewer = ViewerModel()
    image = viewer.add_image(FIXED, name='img', scale=(2, 2), translate=(10, 10))
    labels_data = np.zeros((74, 106), np.uint8)
    labels_data[20:40, 20:60] = 1  # world rows 30..50 (scale 1, translate 10)
    labels = viewer.add_labels(labels_data, translate=(10, 10))
    shapes = viewer.add_shapes(
        [np.array([[10, 10], [10, 50], [50, 50], [50, 10.0]])], shape_type='ellipse'
    )
    frame = _geometry.layer_frame(image, 2)
    from napari_coreg._napari._masks import mask_source

    mask = rasterise(mask_source(labels, 2), frame)
    assert mask.shape == FIXED.shape
    assert mask[15, 15] and mask[15, 29] and not mask[5, 5] and not mask[15, 31]
    ellipse = rasterise(mask_source(shapes, 2), frame)
    # ellipse centred at world (30, 30) = image pixel (10, 10), radius 10 px
    assert (
        ellipse[10, 10]
        and ellipse[10, 19]
        and not ellipse[10, 21]
        and not ellipse[1, 1]
    )


def test_current_overlay_is_the_initial_transform(helpers):
    viewer = ViewerModel()
    fixed = viewer.add_image(FIXED, name='fixed', scale=(0.5, 0.5), translate=(3, 1))
    moving = viewer.add_image(MOVING, name='moving', scale=(0.5, 0.5))
    truth = rigid_px()
    request, _ = write(viewer, fixed, moving, truth, helpers)
    again = request_from_layers(fixed, moving, 'rigid', 'ncc', 'torch', init='current')
    reg = (
        request.moving.grid.phys_from_px
        @ truth
        @ np.linalg.inv(request.fixed.grid.phys_from_px)
    )
    np.testing.assert_allclose(again.initial, reg, atol=1e-9)
    assert 'init' not in again.settings


def test_bad_requests_fail_before_any_work():
    viewer = ViewerModel()
    fixed = viewer.add_image(FIXED, name='fixed')
    labels = viewer.add_labels(np.zeros((5, 5), int))
    with pytest.raises(ValueError, match='same layer'):
        request_from_layers(fixed, fixed)
    with pytest.raises(ValueError, match='Image layer'):
        request_from_layers(fixed, labels)
    moving = viewer.add_image(MOVING, name='moving')
    with pytest.raises(ValueError, match="no 'l1' metric"):
        request_from_layers(fixed, moving, 'rigid', 'l1', 'sitk')
    with pytest.raises(ValueError, match='learning_rate'):
        request_from_layers(fixed, moving, learning_rate=-1)


def test_record_from_file_dict_applies_like_the_original(helpers):
    viewer = ViewerModel()
    fixed = viewer.add_image(FIXED, name='fixed', scale=(0.5, 0.5), translate=(10, -5))
    moving = viewer.add_image(MOVING, name='moving', scale=(0.5, 0.5))
    write(viewer, fixed, moving, rigid_px(), helpers)
    other = viewer.add_image(MOVING, name='other channel', scale=(0.5, 0.5))
    record = record_from_dict(
        layer_record(moving)['transform'], reference=fixed, target=other
    )
    apply_record(viewer.layers, record, other, 'affine')
    np.testing.assert_allclose(
        other.affine.affine_matrix, moving.affine.affine_matrix, atol=1e-12
    )
    assert METADATA_KEY in other.metadata
