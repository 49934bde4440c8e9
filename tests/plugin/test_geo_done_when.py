"""Issue 10's "done when", in one real viewer, as a user does it.

Drop the two Sentinel-2 files on napari (answer napari's reader question
once), see them overlaid where their georeferencing puts them, register them
from the *Co-register georeferenced rasters* dock widget, save the corrected
GeoTIFF, then run the same pair from the command line with ``--local``.

The reference is the data README's measured shift, target -> reference:
d_row = +1.75, d_col = -0.55 px (+- about 0.1 px).
"""

from __future__ import annotations

import csv
import hashlib
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

rasterio = pytest.importorskip('rasterio')
pytest.importorskip('napari')

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _geo_viewer import REF, TGT, DialogAnswers, drop, world_box  # noqa: E402

#: Measured residual shift of the README, target pixels (d_row, d_col).
REFERENCE_PX = np.array([1.75, -0.55])
#: Whole pixels between the grids: ref_row = tgt_row - 449, ref_col = tgt_col + 544.
OFFSET = np.array([-449, 544])
#: Where the screenshot of the overlay is kept for a person to look at.
SCREENSHOT = Path(os.environ.get('NAPARI_COREG_SCREENSHOTS', '/tmp')) / (
    'napari_coreg_s2_overlay.png'
)

# napari settings of each test only (the drop preference is written there)
pytestmark = pytest.mark.usefixtures('private_napari_settings')


def _pixels_hash(path) -> str:
    with rasterio.open(path) as ds:
        return hashlib.sha256(ds.read().tobytes()).hexdigest()


def _ncc(a, b, valid) -> float:
    a, b = a[valid].astype(float), b[valid].astype(float)
    return float(np.corrcoef(a, b)[0, 1])


def _screenshots(viewer, ref, tgt, qtbot) -> np.ndarray:
    """The overlay as a user compares it: reference green, target magenta.

    Saves the whole overlap and a 2 km close-up (``*_zoom.png``); returns
    the whole view.
    """
    import imageio.v3 as iio

    ref.colormap, tgt.colormap = 'green', 'magenta'
    tgt.blending = 'additive'
    viewer.window.resize(1200, 1000)
    qtbot.wait(50)
    viewer.reset_view()
    image = viewer.screenshot(canvas_only=True, flash=False)
    iio.imwrite(SCREENSHOT, image)
    camera = getattr(viewer, 'scene', viewer).camera
    camera.center = tuple(ref.data_to_world((1500, 1300)))
    camera.zoom = 0.4  # screen pixels per metre: 2.5 km across
    iio.imwrite(
        SCREENSHOT.with_name(SCREENSHOT.stem + '_zoom.png'),
        viewer.screenshot(canvas_only=True, flash=False),
    )
    return image


@pytest.mark.slow
def test_drop_register_save_and_cli_local_on_sentinel2(
    make_napari_viewer, qtbot, monkeypatch, s2, tmp_path
):
    scenes = tmp_path / 'scenes'  # the user's copy (never write into shared data)
    scenes.mkdir()
    for name in (REF, TGT):
        shutil.copyfile(s2 / name, scenes / name)
    s2 = scenes
    viewer = make_napari_viewer(show=True)
    dialog = DialogAnswers(monkeypatch)

    # 1. drop both files: napari asks once which reader, the user picks ours
    drop(viewer, [s2 / REF, s2 / TGT])
    assert dialog.offered == [['napari builtins', 'napari-coreg']]
    ref, tgt = viewer.layers
    assert (ref.name, tgt.name) == (Path(REF).stem, Path(TGT).stem)
    # overlaid by their georeferencing: footprints overlap as the geotransforms say
    low = np.maximum(world_box(ref)[0], world_box(tgt)[0])
    high = np.minimum(world_box(ref)[1], world_box(tgt)[1])
    np.testing.assert_allclose([low, high], [[5834970, 335440], [5862000, 354000]])
    before = np.asarray(tgt.data_to_world((1000, 700)))

    # 2. register from the dock widget, opened from the plugin's menu entry
    _, widget = viewer.window.add_plugin_dock_widget(
        'napari-coreg', 'Co-register georeferenced rasters'
    )
    assert (widget._reference.value, widget._target.value) == (ref, tgt)
    widget._run.clicked.emit()
    qtbot.waitUntil(lambda: not widget.running, timeout=600_000)
    reg = widget._result
    assert reg is not None, widget._status.value
    assert np.all(np.abs(reg.shift_px - REFERENCE_PX) <= 0.1), reg.summary()
    # the target layer moved by the shift: pixel (1000, 700) now lies on the
    # reference pixel the README's measurement gives
    on_ref = np.asarray(ref.world_to_data(tgt.data_to_world((1000, 700))))
    assert np.all(np.abs(on_ref - ([1000, 700] + OFFSET + REFERENCE_PX)) <= 0.1)
    np.testing.assert_allclose(
        np.asarray(tgt.data_to_world((1000, 700))) - before, reg.shift_map, atol=1e-6
    )
    assert viewer.layers[-1].name == f'{tgt.name} tie points'
    image = _screenshots(viewer, ref, tgt, qtbot)
    green, magenta = image[..., 1].astype(float), image[..., 0].astype(float)
    assert green.std() > 10 and magenta.std() > 10  # both scenes visible, not blank

    # 3. save the corrected GeoTIFF (suggested beside the target): pixels
    # byte-identical, geotransform moved
    suggested = scenes / f'{tgt.name}_coreg.tif'
    assert Path(str(widget._out.value)) == suggested
    widget._save.clicked.emit()
    assert widget._status.value == f'wrote {suggested}'
    assert _pixels_hash(suggested) == _pixels_hash(s2 / TGT)
    with rasterio.open(s2 / TGT) as src, rasterio.open(suggested) as out:
        assert out.crs.to_epsg() == 32633 and out.nodata == 0
        moved = np.subtract(out.transform.to_gdal(), src.transform.to_gdal())
    np.testing.assert_allclose(moved[[3, 0]], reg.shift_map, atol=1e-6)
    # saving again never overwrites: a free name, and the status says so
    widget._save.clicked.emit()
    again = scenes / f'{tgt.name}_coreg_2.tif'
    assert again.exists() and 'never overwritten' in widget._status.value

    # 4. the same from the command line, local mode with a 200 px grid
    from napari_coreg.cli import main

    out, points = tmp_path / 'local.tif', tmp_path / 'points.csv'
    code = main([
        'register', str(s2 / REF), str(s2 / TGT), '--local', '200',
        '--out', str(out), '--tie-points', str(points), '--quiet',
    ])  # fmt: skip
    assert code == 0
    rows = [r for r in csv.DictReader(points.open()) if r['valid'] == 'True']
    median = np.median([[float(r['d_row']), float(r['d_col'])] for r in rows], axis=0)
    assert len(rows) >= 81  # AROSICS COREG_LOCAL: 81 valid on its 200 px grid
    assert np.all(np.abs(median - REFERENCE_PX) <= 0.1), median
    with rasterio.open(s2 / REF) as r, rasterio.open(out) as o:
        assert o.transform == r.transform and o.shape == r.shape
        assert o.crs.to_epsg() == 32633 and o.nodata == 0
        reference, corrected = r.read(1), o.read(1)
    # the corrected scene matches the reference better than the georeferenced one
    placed = np.zeros_like(reference)
    with rasterio.open(s2 / TGT) as t:
        target = t.read(1)
    placed[: 3152 - 449, 544:] = target[449:, : 2400 - 544]
    valid = (reference > 0) & (corrected > 0) & (placed > 0)
    assert _ncc(reference, corrected, valid) > _ncc(reference, placed, valid)
