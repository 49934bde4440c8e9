"""*Save corrected GeoTIFF* driven in a real viewer, files read back with rasterio.

Never over an input or an existing file; a translation keeps every pixel
(hash) and moves the geotransform; other models are resampled onto the
reference grid with its CRS and the target's nodata; a layer moved by the
*Register images* widget is saved where it is shown.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np
import pytest

rasterio = pytest.importorskip('rasterio')
pytest.importorskip('napari')

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'core'))

from _geo_cases import shifted_pair  # noqa: E402

PLUGIN = 'napari-coreg'
SHIFT = (0.8, -1.1)  # target -> reference, pixels (10 m): dy = -8 m, dx = -11 m


@pytest.fixture(autouse=True, scope='module')
def _plugins_discovered():
    """npe2 finds our manifest (the reader) when a test runs on its own."""
    from npe2 import PluginManager

    PluginManager.instance().discover()


def _hash(path) -> str:
    with rasterio.open(path) as ds:
        return hashlib.sha256(ds.read().tobytes()).hexdigest()


def _open_pair(viewer, tmp_path):
    ref, tgt = shifted_pair(tmp_path, SHIFT)
    (ref_layer,) = viewer.open(str(ref), plugin=PLUGIN)
    (tgt_layer,) = viewer.open(str(tgt), plugin=PLUGIN)
    return ref, tgt, ref_layer, tgt_layer


def _geo_widget(viewer, reference, target):
    from napari_coreg._napari._geo_widget import GeoRegistrationWidget

    widget = GeoRegistrationWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget._reference.value, widget._target.value = reference, target
    return widget


def test_resampled_model_is_written_on_the_reference_grid(
    make_napari_viewer, qtbot, tmp_path
):
    viewer = make_napari_viewer()
    ref, tgt, ref_layer, tgt_layer = _open_pair(viewer, tmp_path)
    widget = _geo_widget(viewer, ref_layer, tgt_layer)
    widget._save.clicked.emit()  # nothing to save yet: said so, nothing written
    assert 'lies where its file puts it' in widget._status.value
    widget._model.value = 'rigid'
    widget._window.value = 128
    widget._run.clicked.emit()
    qtbot.waitUntil(lambda: not widget.running, timeout=300_000)
    assert widget._result is not None, widget._status.value
    before = _hash(tgt)
    widget._out.value = tgt  # the user picks the input by mistake
    widget._save.clicked.emit()
    written = tmp_path / 'tgt_2.tif'
    assert widget._status.value == (
        f'wrote {written} (not tgt.tif: it exists; inputs and existing files '
        'are never overwritten)'
    )
    assert _hash(tgt) == before
    with rasterio.open(ref) as r, rasterio.open(written) as o:
        assert o.crs == r.crs and o.transform == r.transform and o.shape == r.shape
        assert o.nodata == 0
        a, b = r.read(1).astype(float), o.read(1).astype(float)
    valid = b != 0
    assert valid.mean() > 0.7
    assert np.corrcoef(a[valid], b[valid])[0, 1] > 0.99


def test_layer_moved_by_the_main_widget_is_saved_in_place(
    make_napari_viewer, qtbot, tmp_path
):
    from napari_coreg._napari._widget import RegistrationWidget

    viewer = make_napari_viewer()
    ref, tgt, ref_layer, tgt_layer = _open_pair(viewer, tmp_path)
    main = RegistrationWidget(viewer)
    viewer.window.add_dock_widget(main)
    main._fixed.value, main._moving.value = ref_layer, tgt_layer
    main._model.value = 'translation'
    main._start()
    qtbot.waitUntil(lambda: not main.running, timeout=300_000)
    assert main._last is not None, main._status.value
    widget = _geo_widget(viewer, ref_layer, tgt_layer)
    widget._out.value = tmp_path / 'moved.tif'
    widget._save.clicked.emit()
    assert widget._status.value == f'wrote {tmp_path / "moved.tif"}'
    assert _hash(tmp_path / 'moved.tif') == _hash(tgt)  # pixels unchanged
    with rasterio.open(tgt) as a, rasterio.open(tmp_path / 'moved.tif') as b:
        moved = np.subtract(b.transform.to_gdal(), a.transform.to_gdal())
        assert b.crs == a.crs and b.nodata == 0
    np.testing.assert_allclose(moved[[3, 0]], [-8.0, -11.0], atol=0.5)
    np.testing.assert_allclose(moved[[1, 2, 4, 5]], 0.0, atol=1e-6)


def test_one_band_of_a_multiband_file_is_saved_where_it_is_shown(tmp_path):
    from _geo_cases import texture, write_geotiff
    from affine import Affine
    from napari.components import ViewerModel

    from napari_coreg._napari._geo_save import layer_moved, write_layer_geotiff

    data = np.stack([texture((30, 40), s) for s in range(2)])
    transform = Affine(20, 0, 300000.0, 0, -20, 6000000.0)
    path = write_geotiff(
        tmp_path / 'mb.tif', data, transform, nodata=0, names=['red', 'nir']
    )
    _, nir = ViewerModel().open(str(path), plugin=PLUGIN)
    assert not layer_moved(nir)
    nir.affine = [[1, 0, 7.0], [0, 1, -3.0], [0, 0, 1]]  # a registration moved it
    assert layer_moved(nir)
    with pytest.raises(ValueError, match='input file'):
        write_layer_geotiff(nir, path)
    out = write_layer_geotiff(nir, tmp_path / 'nir.tif')
    with rasterio.open(out) as ds:
        np.testing.assert_array_equal(ds.read(), data[1:])
        assert ds.descriptions == (None,) and ds.nodata == 0
        assert ds.transform.to_gdal() == (300000.0 - 3, 20, 0, 6000000.0 + 7, 0, -20)
