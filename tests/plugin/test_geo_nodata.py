"""A georeferenced layer's nodata masks the registration in the main widget
and in ``register_layers``: a swath edge (nodata 0 against bright land) does
not pull a translation off the content."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

pytest.importorskip('rasterio')
pytest.importorskip('napari')

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'core'))

from _geo_cases import write_geotiff  # noqa: E402
from affine import Affine  # noqa: E402

#: Content shift of the moving scene, pixels (row, col): moving(q) = fixed(q + SHIFT).
SHIFT = np.array([3.4, -2.2])
SIZE = 192
TRANSFORM = Affine(10, 0, 500000.0, 0, -10, 5800000.0)


def swath_pair() -> tuple[np.ndarray, np.ndarray]:
    """Low-contrast land cut by diagonal swath edges 12 px apart.

    Aligning the edges (what a metric sees first: 0 against ~1000) is
    about 3 px away from aligning the land.
    """
    rng = np.random.default_rng(1)
    big = ndimage.gaussian_filter(rng.normal(size=(400, 400)), 3)
    big = (1000 + 60 * (big - big.min()) / np.ptp(big)).astype(np.float32)
    rows, cols = np.indices((SIZE, SIZE), dtype=np.float64)
    fixed = big[100 : 100 + SIZE, 100 : 100 + SIZE]
    moving = ndimage.map_coordinates(
        big, [rows + 100 + SHIFT[0], cols + 100 + SHIFT[1]], order=3
    )
    fixed, moving = (np.rint(a).astype(np.uint16) for a in (fixed, moving))
    fixed[cols > rows + 40] = 0
    moving[cols > rows + 52] = 0
    return fixed, moving


def content_error_px(fixed_layer, moving_layer) -> float:
    """Largest distance (fixed pixels) between where both layers show the same land."""
    worst = 0.0
    for q in [(20.0, 30.0), (150.0, 60.0), (100.0, 100.0)]:
        a = np.asarray(moving_layer.data_to_world(q))
        b = np.asarray(fixed_layer.data_to_world(np.add(q, SHIFT)))
        worst = max(worst, float(np.linalg.norm(a - b)) / 10.0)
    return worst


def test_register_layers_masks_nodata_of_geo_layers():
    from napari.components import ViewerModel

    from napari_coreg import register_layers

    fixed, moving = swath_pair()
    errors = {}
    for masked in (True, False):
        viewer = ViewerModel()
        meta = {'geo': {'nodata': 0}} if masked else {}
        kw = {'scale': (-10, 10), 'translate': (5799995.0, 500005.0), 'metadata': meta}
        f = viewer.add_image(fixed, name='fixed', **kw)
        m = viewer.add_image(moving, name='moving', **kw)
        register_layers(
            viewer, f, m, model='translation', metric='ncc', apply_anyway=True
        )
        errors[masked] = content_error_px(f, m)
    assert errors[True] < 0.1
    assert errors[False] > 2.0  # the edge wins without the nodata mask


def test_main_widget_masks_nodata_of_files_opened_by_the_reader(
    make_napari_viewer, qtbot, tmp_path
):
    from napari_coreg._napari._widget import RegistrationWidget

    fixed, moving = swath_pair()
    paths = [
        write_geotiff(tmp_path / f'{name}.tif', data, TRANSFORM, nodata=0)
        for name, data in (('fixed', fixed), ('moving', moving))
    ]
    viewer = make_napari_viewer()
    (f,) = viewer.open(str(paths[0]), plugin='napari-coreg')
    (m,) = viewer.open(str(paths[1]), plugin='napari-coreg')
    widget = RegistrationWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget._fixed.value, widget._moving.value = f, m
    widget._model.value = 'translation'
    widget._metric.value = 'ncc'
    widget._start()
    qtbot.waitUntil(lambda: not widget.running, timeout=120_000)
    assert widget._last is not None, widget._status.value
    assert content_error_px(f, m) < 0.1
