"""Georeferenced rasters in napari: the reader places layers at their map
coordinates (the Sentinel-2 pair, dropped on a real viewer and registered from
the dock widget, is in test_geo_drop.py and test_geo_done_when.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

rasterio = pytest.importorskip('rasterio')
pytest.importorskip('napari')

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'core'))

from _geo_cases import shifted_pair, texture, write_geotiff  # noqa: E402
from affine import Affine  # noqa: E402
from napari.components import ViewerModel  # noqa: E402

from napari_coreg._napari import _geo_io  # noqa: E402
from napari_coreg._napari._geo_io import METADATA_KEY, get_reader  # noqa: E402

PLUGIN = 'napari-coreg'


@pytest.fixture(autouse=True, scope='module')
def _plugins_discovered():
    """npe2 finds our manifest (the reader) when a test runs on its own."""
    from npe2 import PluginManager

    PluginManager.instance().discover()


def test_manifest_offers_the_geo_reader_and_widget():
    from npe2 import PluginManager

    manager = PluginManager.instance()
    manager.discover()
    for name in ('scene.tif', 'scene.jp2', 'mosaic.vrt'):
        readers = [r.command for r in manager.iter_compatible_readers([name])]
        assert 'napari-coreg.get_geo_reader' in readers
    widgets = {w.display_name for w in manager.iter_widgets()}
    assert 'Co-register georeferenced rasters' in widgets


def test_plain_tiffs_are_left_to_napari(tmp_path):
    import tifffile

    tifffile.imwrite(tmp_path / 'plain.tif', texture((20, 20)))
    # napari's own reader, should the user prefer ours for *.tif
    plain = get_reader(str(tmp_path / 'plain.tif'))
    assert plain is not None and plain is not _geo_io.read_geo
    assert plain.__module__.startswith('napari_builtins')
    assert get_reader(str(tmp_path / 'photo.png')) is None
    assert get_reader(str(tmp_path / 'plain.vrt')) is None
    path = write_geotiff(
        tmp_path / 'geo.tif', texture((20, 20)), Affine(1, 0, 0, 0, -1, 0)
    )
    assert get_reader(str(path)) is not None


def test_layers_sit_at_their_map_coordinates(tmp_path):
    data = np.stack([texture((30, 40), s) for s in range(2)])
    data[:, :3] = 0
    transform = Affine(20, 0, 300000.0, 0, -20, 6000000.0)
    path = write_geotiff(
        tmp_path / 'mb.tif', data, transform, nodata=0, names=['red', 'nir']
    )
    viewer = ViewerModel()
    red, nir = viewer.open(str(path), plugin=PLUGIN)
    assert (red.name, nir.name) == ('mb red', 'mb nir')
    np.testing.assert_array_equal(nir.data, data[1])
    for r, c in [(0, 0), (12, 33)]:
        x, y = transform @ (c + 0.5, r + 0.5)
        np.testing.assert_allclose(red.data_to_world((r, c)), (y, x))
    meta = red.metadata[METADATA_KEY]
    assert meta['epsg'] == 32633 and meta['nodata'] == 0
    assert meta['geotransform'] == list(transform.to_gdal())
    assert meta['band_names'] == ['red', 'nir'] and meta['path'] == str(path)
    assert not _geo_io.nodata_mask(red)[:3].any()


def test_rotated_raster_uses_affine(tmp_path):
    a = np.deg2rad(25)
    transform = Affine(
        10 * np.cos(a),
        -10 * np.sin(a),
        1000.0,
        -10 * np.sin(a),
        -10 * np.cos(a),
        2000.0,
    )
    path = write_geotiff(tmp_path / 'rot.tif', texture((20, 30)), transform)
    (layer,) = ViewerModel().open(str(path), plugin=PLUGIN)
    for r, c in [(0, 0), (19, 29), (7, 3)]:
        x, y = transform @ (c + 0.5, r + 0.5)
        np.testing.assert_allclose(layer.data_to_world((r, c)), (y, x), atol=1e-6)


def test_large_rasters_open_lazily_as_multiscale(tmp_path, monkeypatch):
    monkeypatch.setattr(_geo_io, 'MAX_IN_MEMORY', 100 * 100)
    data = texture((600, 520))
    path = write_geotiff(tmp_path / 'big.tif', data, Affine(10, 0, 0, 0, -10, 0))
    (layer,) = ViewerModel().open(str(path), plugin=PLUGIN)
    assert layer.multiscale
    assert [tuple(s) for s in layer.level_shapes][:3] == [(600, 520), (300, 260)]
    assert not isinstance(layer.data[0], np.ndarray)  # read per tile, on demand
    np.testing.assert_array_equal(
        np.asarray(layer.data[0][10:20, 30:40]), data[10:20, 30:40]
    )


def test_writeback_moves_the_layer_and_shows_tie_points(tmp_path):
    from napari_coreg import geo
    from napari_coreg._napari._geo_widget import apply_to_layer, tie_points_layer

    ref, tgt = shifted_pair(tmp_path, (0.6, -0.9))
    viewer = ViewerModel()
    (ref_layer,) = viewer.open(str(ref), plugin=PLUGIN)
    (tgt_layer,) = viewer.open(str(tgt), plugin=PLUGIN)
    before = np.asarray(tgt_layer.data_to_world((50, 60)))
    reg = geo.register_rasters(ref, tgt, window=128)
    apply_to_layer(tgt_layer, reg)
    after = np.asarray(tgt_layer.data_to_world((50, 60)))
    np.testing.assert_allclose(after - before, reg.shift_map, atol=1e-6)
    np.testing.assert_allclose(after - before, [-6.0, -9.0], atol=0.5)
    data, kwargs, kind = tie_points_layer(reg.tie_points)
    assert kind == 'points'
    # the scripting entry point does the same in one call
    from napari_coreg._napari._geo_widget import register_geo_layers

    (again,) = viewer.open(str(tgt), plugin=PLUGIN)
    scripted = register_geo_layers(ref_layer, again, viewer, window=128)
    np.testing.assert_allclose(
        np.asarray(again.data_to_world((50, 60))) - before, scripted.shift_map
    )
    assert viewer.layers[-1].name == f'{again.name} tie points'
    with pytest.raises(ValueError, match='no georeferencing'):
        register_geo_layers(ref_layer, viewer.layers[-1])
    points = viewer.add_points(data, **kwargs)
    assert kind == 'points' and len(points.data) == len(reg.tie_points)
    assert 'reliability' in points.features


def _noise_target(tmp_path, tgt):
    with rasterio.open(tgt) as ds:
        transform, shape = ds.transform, ds.shape
    noise = np.random.default_rng(5).integers(1, 4000, shape).astype(np.uint16)
    return write_geotiff(tmp_path / 'noise.tif', noise, transform, nodata=0)


def test_held_result_is_not_applied(tmp_path, make_napari_viewer):
    from napari_coreg._napari._geo_widget import (
        GeoRegistrationWidget,
        register_geo_layers,
    )

    ref, tgt = shifted_pair(tmp_path, (0.6, -0.9))
    noise = _noise_target(tmp_path, tgt)
    viewer = make_napari_viewer()
    (ref_layer,) = viewer.open(str(ref), plugin=PLUGIN)
    (noise_layer,) = viewer.open(str(noise), plugin=PLUGIN)
    affine = noise_layer.affine.affine_matrix.copy()
    with pytest.warns(UserWarning, match='not applied: .*clear match'):
        reg = register_geo_layers(ref_layer, noise_layer, viewer, window=128)
    assert reg.verdict == 'failed'
    np.testing.assert_array_equal(noise_layer.affine.affine_matrix, affine)
    # the widget neither moves the layer nor offers to save it
    widget = GeoRegistrationWidget(viewer)
    widget._target_layer = noise_layer
    widget._on_done(reg)
    assert widget._result is None
    assert widget._status.value.startswith('Not applied')
    assert widget.save() is None  # nothing to save: the status line says why
    assert 'register it first' in widget._status.value
    np.testing.assert_array_equal(noise_layer.affine.affine_matrix, affine)
    assert viewer.layers[-1].name.startswith(f'{noise_layer.name} tie points')
    # asked for, it is applied all the same
    register_geo_layers(ref_layer, noise_layer, window=128, apply_anyway=True)
    assert noise_layer.metadata['napari_coreg_geo']['summary'].endswith('failed')
