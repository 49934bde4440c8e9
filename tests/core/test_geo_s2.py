"""The Sentinel-2 pair (../shared/data/arosics_s2_inter1): reading, the global
shift against the README's reference, tie points against AROSICS' count, a
known smooth displacement field on real pixels, and corrected GeoTIFFs."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

rasterio = pytest.importorskip('rasterio')

from scipy import ndimage  # noqa: E402

from napari_coreg import geo  # noqa: E402

REF = 'ref_S2A_20160608T153121_T33UUU_sub.jp2'
TGT = 'tgt_S2A_20160529T153631_T33UUU_sub.jp2'
#: data README: target -> reference, target pixels, +- about 0.1 px
REFERENCE_SHIFT = np.array([1.75, -0.55])
#: AROSICS COREG_LOCAL on a 200 px grid: 81 valid of 114 tie points
AROSICS_VALID = 81


@pytest.fixture(scope='module')
def s2():
    import os
    from pathlib import Path

    data = Path(__file__).resolve().parents[3] / 'shared' / 'data'
    folder = Path(os.environ.get('NAPARI_COREG_DATA', data)) / 'arosics_s2_inter1'
    if not folder.is_dir():
        pytest.skip(
            f'Sentinel-2 test pair not found at {folder} (a plain clone has no '
            '../shared/data; set NAPARI_COREG_DATA to its location)'
        )
    return folder


@pytest.fixture(scope='module')
def registration(s2):
    return geo.register_rasters(s2 / REF, s2 / TGT, spacing=200, window=256)


def test_reads_the_jpeg2000_pair(s2):
    ref = geo.read_georef(s2 / REF)
    tgt = geo.read_georef(s2 / TGT)
    assert ref.shape == (3200, 2400) and tgt.shape == (3152, 2074)
    assert ref.epsg == tgt.epsg == 32633
    assert ref.geotransform == (330000.0, 10.0, 0.0, 5862000.0, 0.0, -10.0)
    assert ref.napari_geometry() == {
        'scale': (-10.0, 10.0),
        'translate': (5861995.0, 330005.0),
    }
    # the README: ref_col = tgt_col + 544, ref_row = tgt_row - 449
    ref_px = np.linalg.inv(ref.world_from_px) @ tgt.world_from_px
    np.testing.assert_allclose(ref_px[:2, 2], [-449, 544])
    levels, factors, _ = geo.open_levels(s2 / REF)
    assert factors[:3] == [1.0, 2.0, 4.0]
    assert levels[1].shape == (1600, 1200)


def test_global_shift_matches_the_reference(registration):
    reg = registration
    error = np.abs(reg.shift_px - REFERENCE_SHIFT)
    assert np.all(error <= 0.1), (reg.summary(), error)
    # map units: about (-17.5 m, -5.5 m) in (y, x)
    np.testing.assert_allclose(reg.shift_map, [-17.5, -5.5], atol=1.0)
    assert reg.tie_points.n_valid >= AROSICS_VALID
    assert reg.extra['overlap_exact']


def test_verdict_ok_on_the_pair_and_its_local_correction(registration):
    from napari_coreg.quality import hold_reasons

    reg = registration
    assert reg.verdict == 'ok' and hold_reasons(reg) == [], reg.verdict_reasons
    assert reg.uncertainty_px < 0.1
    local = reg.assess_local(geo.fit_shift_model(reg.tie_points, 'field'))
    assert local.verdict == 'ok', local.verdict_reasons


def test_another_region_of_the_scene_is_held(s2):
    from napari_coreg.quality import hold_reasons

    target = geo.read_raster(s2 / TGT)
    # the target's own pixels, 1000 rows and 900 columns from where they belong
    moved = geo.GeoRaster(np.roll(target.data, (1000, 900), (0, 1)), target.georef)
    reg = geo.register_rasters(s2 / REF, moved, spacing=200, window=256)
    assert reg.verdict == 'failed'
    assert any('windows with data match' in r for r in hold_reasons(reg))


def test_translation_output_keeps_every_pixel(registration, s2, tmp_path):
    out = registration.write(tmp_path / 'corrected.tif')
    with rasterio.open(s2 / TGT) as src, rasterio.open(out) as dst:
        a, b = src.read(), dst.read()
        assert dst.crs == src.crs and dst.dtypes == src.dtypes
        gt = np.array(dst.transform.to_gdal()) - np.array(src.transform.to_gdal())
        assert dst.overviews(1)
    assert hashlib.sha256(a.tobytes()).digest() == hashlib.sha256(b.tobytes()).digest()
    np.testing.assert_allclose(gt[[0, 3]], registration.shift_map[::-1])


def test_tie_points_export(registration, tmp_path):
    tie = registration.tie_points
    assert len(tie) >= 100
    median = np.median(tie.shift_px[tie.valid], axis=0)
    assert np.all(np.abs(median - REFERENCE_SHIFT) <= 0.1)
    assert tie.write(tmp_path / 'tie.geojson').stat().st_size > 1000


def _field(rows, cols):
    """A smooth displacement field (pixels), target -> reference."""
    return np.stack(
        [
            1.2 * np.sin(2 * np.pi * cols / 3000 + 0.5) + 0.3,
            -0.8 * np.cos(2 * np.pi * rows / 2500)
            + 0.2 * np.sin(2 * np.pi * cols / 2000),
        ]
    )


def test_known_smooth_field_on_real_pixels(s2, tmp_path):
    ref = geo.read_raster(s2 / REF, window=(slice(1200, 2736), slice(300, 1836)))
    image = ref.data.astype(np.float32)
    rows, cols = np.indices(image.shape, dtype=np.float64)
    field = _field(rows, cols)
    # target pixel q shows what the reference shows at q + u(q)
    warped = ndimage.map_coordinates(image, [rows + field[0], cols + field[1]], order=3)
    warped = np.clip(np.rint(warped), 1, 65535).astype(np.uint16)
    warped[image == 0] = 0
    target = geo.GeoRaster(warped, ref.georef)
    reg = geo.register_rasters(ref, target, spacing=96, window=128)
    model = geo.fit_shift_model(reg.tie_points, 'field')
    estimate = model.dense(image.shape)
    # a reference pixel p holds target content from q with q + u(q) = p
    truth = _field(rows - field[0], cols - field[1])
    inside = ndimage.binary_erosion(image > 0, iterations=64)
    error = np.sqrt(((estimate - truth) ** 2).sum(axis=0))[inside]
    rmse = float(np.sqrt((error**2).mean()))
    assert rmse <= 0.1, rmse
    # resampled through the field, the target lines up with the reference
    out = reg.write(tmp_path / 'local.tif', local=model, order=3)
    with rasterio.open(out) as ds:
        corrected = ds.read(1).astype(np.float32)
    core = ndimage.binary_erosion(image > 0, iterations=8) & (corrected > 0)
    before = np.abs(warped.astype(np.float32) - image)[core].mean()
    after = np.abs(corrected - image)[core].mean()
    assert after < 0.5 * before


def test_known_shift_on_real_pixels(s2):
    ref = geo.read_raster(s2 / REF, window=(slice(1000, 2200), slice(400, 1600)))
    image = ref.data.astype(np.float32)
    truth = np.array([1.3, -0.6])
    rows, cols = np.indices(image.shape, dtype=np.float64)
    # target pixel q shows what the reference shows at q + truth
    moved = ndimage.map_coordinates(image, [rows + truth[0], cols + truth[1]], order=3)
    moved = np.clip(np.rint(moved), 1, 65535).astype(np.uint16)
    moved[image == 0] = 0
    reg = geo.register_rasters(ref, geo.GeoRaster(moved, ref.georef), window=256)
    np.testing.assert_allclose(reg.shift_px, truth, atol=0.05)


def test_far_off_georeferencing_found_from_a_coarse_start(s2, registration):
    target = geo.read_raster(s2 / TGT)
    wrong = geo.GeoRaster(target.data, target.georef.moved((300.0, -200.0)))
    reg = geo.register_rasters(s2 / REF, wrong, spacing=200, window=256)
    assert np.any(reg.extra['coarse_shift_map'])
    # the georeferencing is 30 rows north and 20 columns west of the truth
    np.testing.assert_allclose(
        reg.shift_map, registration.shift_map + [-300.0, 200.0], atol=1.0
    )
    assert np.all(np.abs(reg.shift_px - (REFERENCE_SHIFT + [30, 20])) <= 0.1)


def test_gradient_similarity_matches_another_sensor(s2):
    """A non-monotone intensity relation with speckle (radar-like) on real
    pixels: gradient orientations find the shift where intensities fail."""
    ref = geo.read_raster(s2 / REF, window=(slice(1000, 2200), slice(400, 1600)))
    image = ref.data.astype(np.float32)
    truth = np.array([1.3, -0.6])
    rows, cols = np.indices(image.shape, dtype=np.float64)
    moved = ndimage.map_coordinates(image, [rows + truth[0], cols + truth[1]], order=3)
    speckle = np.random.default_rng(0).gamma(4.0, 0.25, moved.shape)
    other = np.abs(moved - np.median(moved)) * speckle + 1
    other[image == 0] = 0
    target = geo.GeoRaster(other.astype(np.float32), ref.georef)
    reg = geo.register_rasters(ref, target, window=256, similarity='gradient')
    np.testing.assert_allclose(reg.shift_px, truth, atol=0.1)
    plain = geo.register_rasters(ref, target, window=256, coarse=False)
    tie, plain_tie = reg.tie_points, plain.tie_points
    assert tie.n_valid > plain_tie.n_valid
    # every valid gradient tie point is right; intensity windows are not
    assert np.all(np.abs(tie.shift_px[tie.valid] - truth) < 0.25)
    with pytest.raises(ValueError, match='similarity'):
        geo.register_rasters(ref, target, similarity='ngf')
