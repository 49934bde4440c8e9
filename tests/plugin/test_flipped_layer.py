"""A layer whose geometry states a flip (issue 8): the registration starts
from where the layers are shown and never undoes the flip."""

from __future__ import annotations

import numpy as np
from napari.components import ViewerModel
from scipy import ndimage
from skimage import data


def test_flip_stated_by_a_layer_is_kept(helpers):
    from napari_coreg import register_layers

    camera = data.camera().astype(np.float32)[::4, ::4] / 255  # 128 x 128
    shape = np.array(camera.shape)
    centre = (shape - 1) / 2
    a = np.deg2rad(4.0)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    truth = np.eye(3)  # moving_from_fixed, pixels, before the flip
    truth[:2, :2] = rot
    truth[:2, 2] = centre - rot @ centre + (2.0, -3.0)
    inverse = np.linalg.inv(truth)
    moving = ndimage.affine_transform(
        camera, inverse[:2, :2], inverse[:2, 2], mode='reflect'
    )
    flip = np.array([[-1.0, 0, shape[0] - 1], [0, -1.0, shape[1] - 1], [0, 0, 1]])
    viewer = ViewerModel()
    f = viewer.add_image(camera, name='fixed')
    # stored upside down, shown the right way up by rotate=180
    m = viewer.add_image(
        moving[::-1, ::-1].copy(), name='moving', rotate=180, translate=shape - 1.0
    )
    assert helpers.world_error(f, m, flip @ truth) > 2.0  # misaligned by truth
    result = register_layers(viewer, 'fixed', 'moving', model='rigid')
    assert helpers.world_error(f, m, flip @ truth) < 0.5
    assert np.linalg.det(result.moving_from_fixed[:2, :2]) > 0


def test_register_layers_holds_a_failed_result():
    """Two unrelated images: the verdict fails, so register_layers warns and
    leaves the layer where it was, unless told to apply it anyway."""
    import pytest

    from napari_coreg import register_layers

    rng = np.random.default_rng(3)
    a, b = (
        ndimage.gaussian_filter(rng.random((96, 96)), 2).astype(np.float32)
        for _ in range(2)
    )
    viewer = ViewerModel()
    viewer.add_image(a, name='fixed')
    moving = viewer.add_image(b, name='moving')
    with pytest.warns(UserWarning, match='not applied'):
        result = register_layers(viewer, 'fixed', 'moving', model='rigid')
    assert result.verdict == 'failed'
    np.testing.assert_array_equal(moving.affine.affine_matrix, np.eye(3))
    applied = register_layers(
        viewer, 'fixed', 'moving', model='rigid', apply_anyway=True
    )
    np.testing.assert_allclose(
        moving.affine.affine_matrix, applied.fixed_from_moving, atol=1e-9
    )
