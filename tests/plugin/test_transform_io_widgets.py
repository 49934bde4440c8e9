"""Save / load / apply transforms, and register_layers from a script."""

from __future__ import annotations

import json

import numpy as np
import pytest
from napari.components import ViewerModel

from napari_coreg._napari._transform_io import (
    apply_transform_widget,
    load_transform,
    load_transform_widget,
    save_layer_transform,
    save_transform_widget,
)
from napari_coreg._napari._writeback import METADATA_KEY, layer_record


def registered_viewer(rigid_pair, viewer=None):
    """Register the small rigid pair with register_layers (real optimiser)."""
    from napari_coreg import register_layers

    viewer = viewer if viewer is not None else ViewerModel()
    fixed, moving, truth, _ = rigid_pair
    f = viewer.add_image(fixed, name='fixed', scale=(0.5, 0.5), translate=(10.0, -5.0))
    m = viewer.add_image(moving, name='moving', scale=(0.5, 0.5), translate=(-3.0, 4.0))
    steps = []
    result = register_layers(
        viewer,
        'fixed',
        'moving',
        model='rigid',
        metric='ncc',
        levels=2,
        iterations=30,
        callback=steps.append,
    )
    return viewer, f, m, truth, result, steps


def test_register_layers_in_a_script(rigid_pair, helpers):
    viewer, f, m, truth, result, steps = registered_viewer(rigid_pair)
    assert steps and steps[-1].step >= steps[0].step
    assert helpers.world_error(f, m, truth) < 0.5
    assert result.metric_after > result.metric_before
    assert (
        layer_record(m)['transform']['moving_from_fixed']
        == result.moving_from_fixed.tolist()
    )
    with pytest.raises(ValueError, match="no layer named 'nope'"):
        from napari_coreg import register_layers

        register_layers(viewer, 'fixed', 'nope')


def test_save_load_and_apply_to_labels_and_points(
    rigid_pair, helpers, tmp_path, make_napari_viewer
):
    napari_viewer = make_napari_viewer()
    viewer, f, m, truth, result, _ = registered_viewer(rigid_pair, napari_viewer)
    # a labels layer and points drawn on the moving image (same scale/translate)
    labels_data = np.zeros(m.data.shape, dtype=np.uint16)
    labels_data[20:30, 25:40] = 7
    labels = viewer.add_labels(
        labels_data, name='nuclei', scale=m.scale, translate=m.translate
    )
    points = viewer.add_points(
        np.array([[22.0, 30.0], [40.0, 10.0]]),
        name='spots',
        scale=m.scale,
        translate=m.translate,
    )

    # save through the widget
    save = save_transform_widget()
    path = tmp_path / 'moving.json'
    save(layer=m, path=path)
    data = json.loads(path.read_text())
    assert data['model'] == 'rigid' and 'conventions' in data
    np.testing.assert_allclose(data['moving_from_fixed'], result.moving_from_fixed)
    assert load_transform(path)['napari']['fixed_layer'] == 'fixed'

    # load it onto the labels layer (the fixed layer as reference)
    load = load_transform_widget()
    load(viewer=viewer, path=path, target=labels, reference=f, mode='affine')
    np.testing.assert_allclose(
        labels.affine.affine_matrix, m.affine.affine_matrix, atol=1e-9
    )
    # the labels now overlay the fixed image where the moving image does
    p = np.array([25.0, 32.0])  # fixed pixel
    q = (truth @ np.r_[p, 1])[:2]  # the same structure in the moving pixels
    np.testing.assert_allclose(labels.data_to_world(q), f.data_to_world(p), atol=0.25)

    # apply from the registered layer to the points, through the widget
    apply = apply_transform_widget()
    apply(viewer=viewer, source=m, target=points, mode='affine')
    for q_point in points.data:
        np.testing.assert_allclose(
            points.data_to_world(q_point), m.data_to_world(q_point), atol=1e-9
        )
    # resampled labels on the fixed grid: nearest neighbour keeps the values
    apply(viewer=viewer, source=m, target=labels, mode='resample')
    out = viewer.layers['nuclei registered']
    assert out.data.shape == f.data.shape and out.data.dtype == np.uint16
    assert set(np.unique(out.data)) == {0, 7}
    assert METADATA_KEY in out.metadata


def test_itk_tfm_round_trip_onto_another_channel(rigid_pair, tmp_path):
    pytest.importorskip('SimpleITK')
    pytest.importorskip('napari_coreg.io')
    viewer, f, m, truth, result, _ = registered_viewer(rigid_pair)
    path = save_layer_transform(m, tmp_path / 'moving.tfm')
    other = viewer.add_image(
        m.data, name='channel 2', scale=m.scale, translate=m.translate
    )
    load = load_transform_widget()
    load(viewer=viewer, path=path, target=other, reference=f, mode='affine')
    np.testing.assert_allclose(
        other.affine.affine_matrix, m.affine.affine_matrix, atol=1e-6
    )


def test_saving_a_layer_without_transform_is_refused(tmp_path):
    viewer = ViewerModel()
    layer = viewer.add_image(np.zeros((4, 4)), name='plain')
    with pytest.raises(ValueError, match='holds no transform'):
        save_layer_transform(layer, tmp_path / 'x.json')
    (tmp_path / 'bad.json').write_text('{"a": 1}')
    with pytest.raises(ValueError, match='moving_from_fixed'):
        load_transform(tmp_path / 'bad.json')


@pytest.mark.filterwarnings('ignore:Non-orthogonal slicing:UserWarning')
def test_register_layers_3d_volumes_with_anisotropic_scale():
    from scipy import ndimage

    from napari_coreg import register_layers

    rng = np.random.default_rng(0)
    volume = ndimage.gaussian_filter(rng.random((28, 32, 36)), 2).astype(np.float32)
    shift = np.array([1.5, -2.0, 2.5])  # moving pixels of a fixed pixel's structure
    moving = ndimage.shift(volume, shift, order=3, mode='nearest')
    viewer = ViewerModel()
    f = viewer.add_image(volume, name='f', scale=(2, 1, 1))
    m = viewer.add_image(moving, name='m', scale=(2, 1, 1), translate=(0, 3, 0))
    result = register_layers(viewer, 'f', 'm', model='rigid', metric='ncc', levels=2)
    assert result.ndim == 3
    p = np.array([10.0, 12.0, 14.0])
    np.testing.assert_allclose(m.data_to_world(p + shift), f.data_to_world(p), atol=0.1)
