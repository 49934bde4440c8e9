"""Drag and drop of georeferenced rasters onto a real napari viewer.

napari's own reader claims ``.tif`` and ``.jp2`` as well, so a drop either
asks which reader to use (napari's dialog, with "remember this choice") or
follows the user's reader preference, which the geo widget can set. These
tests drop files through the viewer's real drop handler (``dropEvent`` of
the Qt viewer) and answer napari's real dialog as a user would.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip('rasterio')
pytest.importorskip('napari')

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'core'))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _geo_cases import texture, write_geotiff  # noqa: E402
from _geo_viewer import REF, TGT, DialogAnswers, drop, world_box  # noqa: E402
from affine import Affine  # noqa: E402

from napari_coreg._napari._geo_io import (  # noqa: E402
    DROP_PATTERNS,
    METADATA_KEY,
    prefer_for_drops,
)

# napari settings of each test only (the drop preference is written there)
pytestmark = pytest.mark.usefixtures('private_napari_settings')


def test_dropping_the_sentinel2_pair_asks_once_then_remembers(
    make_napari_viewer, monkeypatch, s2
):
    import json

    from napari.settings import get_settings

    viewer = make_napari_viewer()
    dialog = DialogAnswers(monkeypatch)
    drop(viewer, [s2 / REF])  # first drop: napari asks, the user picks us
    assert dialog.offered == [['napari builtins', 'napari-coreg']]
    assert get_settings().plugins.extension2reader['*.jp2'] == 'napari-coreg'
    drop(viewer, [s2 / TGT])  # remembered: no second question
    assert len(dialog.offered) == 1
    ref, tgt = viewer.layers
    assert type(ref).__name__ == type(tgt).__name__ == 'Image'
    assert ref.data.shape == (3200, 2400) and tgt.data.shape == (3152, 2074)
    np.testing.assert_allclose(ref.scale, [-10.0, 10.0])
    np.testing.assert_allclose(tgt.translate, [5866490.0 - 5, 335440.0 + 5])
    # overlaid where the georeferencing puts them (README's geotransforms)
    info = json.loads((s2 / 'georef_and_shift.json').read_text())
    boxes = {}
    for key, layer in (('ref', ref), ('tgt', tgt)):
        x0, dx, _, y0, _, dy = info[key]['geotransform_gdal']
        h, w = info[key]['height'], info[key]['width']
        expected = [[y0 + h * dy, x0], [y0, x0 + w * dx]]
        boxes[key] = world_box(layer)
        np.testing.assert_allclose(boxes[key], expected)
    overlap = np.array(
        [
            np.maximum(boxes['ref'][0], boxes['tgt'][0]),
            np.minimum(boxes['ref'][1], boxes['tgt'][1]),
        ]
    )
    np.testing.assert_allclose(overlap, [[5834970.0, 335440.0], [5862000.0, 354000.0]])
    # the same ground point is the same world point in both layers
    np.testing.assert_allclose(
        tgt.data_to_world((1000, 700)), ref.data_to_world((1000 - 449, 700 + 544))
    )
    camera = getattr(viewer, 'scene', viewer).camera
    assert camera.orientation2d[0] == 'up'  # north up on screen
    # contrast: the typical land pixel is mid-grey, not black under the
    # target's bright clouds (a quarter of its pixels), nor saturated
    for layer in (ref, tgt):
        low, high = layer.contrast_limits
        land = np.median(layer.data[layer.data > 0])
        assert 0.2 < (land - low) / (high - low) < 0.6, (layer.name, low, high)


def test_widget_checkbox_makes_drops_open_without_asking(
    make_napari_viewer, monkeypatch, tmp_path
):
    from napari.settings import get_settings

    from napari_coreg._napari._geo_widget import GeoRegistrationWidget

    viewer = make_napari_viewer()
    widget = GeoRegistrationWidget(viewer)
    assert widget._drops.value is False
    get_settings().plugins.extension2reader = {'*.tiff': 'someone-else'}
    widget._drops.value = True  # the user ticks "open dropped .tif / .jp2 here"
    prefs = get_settings().plugins.extension2reader
    assert prefs == {
        '*.tif': 'napari-coreg',
        '*.tiff': 'someone-else',
        '*.jp2': 'napari-coreg',
        '*.j2k': 'napari-coreg',
    }
    dialog = DialogAnswers(monkeypatch)
    geo = write_geotiff(
        tmp_path / 'geo.tif',
        texture((40, 50)),
        Affine(30, 0, 4e5, 0, -30, 5e6),
        nodata=0,
    )
    plain = tmp_path / 'plain.tif'
    import tifffile

    tifffile.imwrite(plain, texture((40, 50), seed=1))
    drop(viewer, [geo, plain])
    assert dialog.offered == []  # no question asked
    geo_layer, plain_layer = viewer.layers
    assert geo_layer.metadata[METADATA_KEY]['nodata'] == 0
    np.testing.assert_allclose(geo_layer.scale, [-30, 30])
    # a TIFF without georeferencing opens as napari's own reader opens it
    assert METADATA_KEY not in plain_layer.metadata
    np.testing.assert_array_equal(plain_layer.data, texture((40, 50), seed=1))
    np.testing.assert_allclose(plain_layer.scale, [1, 1])
    widget._drops.value = False
    assert get_settings().plugins.extension2reader == {'*.tiff': 'someone-else'}
    assert prefer_for_drops() == [p for p in DROP_PATTERNS if p != '*.tiff']
