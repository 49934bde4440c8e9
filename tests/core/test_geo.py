"""Georeferenced rasters on small GeoTIFFs written here: reading, geometry,
registration in map coordinates, corrected output."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

rasterio = pytest.importorskip('rasterio')

from _geo_cases import shifted_pair, texture, write_geotiff  # noqa: E402
from affine import Affine  # noqa: E402

from napari_coreg import geo  # noqa: E402
from napari_coreg.transforms import apply_matrix  # noqa: E402


@pytest.mark.parametrize('crs', ['EPSG:32633', 'EPSG:4326', 'EPSG:3035'])
def test_read_north_up_geometry(tmp_path, crs):
    size = 10.0 if crs != 'EPSG:4326' else 1e-4
    transform = Affine(size, 0, 500000.0, 0, -size, 5800000.0)
    data = texture((40, 60))
    path = write_geotiff(tmp_path / 'a.tif', data, transform, crs=crs, nodata=0)
    raster = geo.read_raster(path)
    g = raster.georef
    np.testing.assert_array_equal(raster.data, data)
    assert g.epsg == int(crs.split(':')[1])
    assert g.crs_wkt and g.nodata == 0 and g.band_names == ('band 1',)
    assert g.path == str(path) and g.shape == (40, 60)
    # pixel (0, 0)'s centre is half a pixel inside the corner
    np.testing.assert_allclose(
        apply_matrix(g.world_from_px, [[0, 0]])[0],
        [5800000.0 - size / 2, 500000.0 + size / 2],
    )
    napari = g.napari_geometry()
    assert napari['scale'] == (-size, size)
    grid = g.grid
    np.testing.assert_allclose(grid.spacing, (size, size))
    np.testing.assert_allclose(grid.direction, np.diag([-1.0, 1.0]))
    np.testing.assert_allclose(grid.phys_from_px, g.world_from_px)
    ymin, xmin, ymax, xmax = g.bounds()
    assert (xmin, ymax) == pytest.approx((500000.0, 5800000.0))
    assert (xmax, ymin) == pytest.approx((500000.0 + 60 * size, 5800000.0 - 40 * size))
    # the geotransform round-trips through the matrix
    assert geo.geotransform_from_matrix(g.world_from_px) == pytest.approx(
        g.geotransform
    )


def test_read_rotated_geotransform(tmp_path):
    angle = np.deg2rad(20)
    transform = Affine(
        10 * np.cos(angle), -10 * np.sin(angle), 400000.0,
        -10 * np.sin(angle), -10 * np.cos(angle), 5000000.0,
    )  # fmt: skip
    path = write_geotiff(tmp_path / 'rot.tif', texture((30, 30)), transform)
    g = geo.read_georef(path)
    assert not g.north_up
    affine = g.napari_geometry()['affine']
    # every pixel lands where GDAL puts its centre
    for r, c in [(0, 0), (5, 17), (29, 29)]:
        x, y = transform @ (c + 0.5, r + 0.5)
        np.testing.assert_allclose(apply_matrix(affine, [[r, c]])[0], [y, x])
    np.testing.assert_allclose(g.grid.phys_from_px, g.world_from_px, atol=1e-6)


def test_sheared_geotransform_refused_for_grids(tmp_path):
    transform = Affine(10, 3, 400000.0, 0, -10, 5000000.0)
    path = write_geotiff(tmp_path / 'shear.tif', texture((20, 20)), transform)
    g = geo.read_georef(path)
    assert 'affine' in g.napari_geometry()
    with pytest.raises(ValueError, match='sheared'):
        _ = g.grid


def test_multiband_names_nodata_mask_and_windows(tmp_path):
    data = np.stack([texture((50, 40), s) for s in range(3)])
    data[:, :5] = 0
    transform = Affine(20, 0, 300000.0, 0, -20, 6000000.0)
    path = write_geotiff(
        tmp_path / 'mb.tif', data, transform, nodata=0, names=['red', 'green', 'nir']
    )
    raster = geo.read_raster(path)
    assert raster.data.shape == (3, 50, 40)
    assert raster.georef.band_names == ('red', 'green', 'nir')
    assert not raster.mask[:5].any() and raster.mask[5:].all()
    part = geo.read_raster(path, bands=[3], window=(slice(10, 20), slice(4, 30)))
    assert part.data.shape == (1, 10, 26)
    assert part.georef.band_names == ('nir',)
    np.testing.assert_array_equal(part.data[0], data[2, 10:20, 4:30])
    # the window's georef puts its pixels where they were
    np.testing.assert_allclose(
        apply_matrix(part.georef.world_from_px, [[0, 0]]),
        apply_matrix(raster.georef.world_from_px, [[10, 4]]),
    )
    with pytest.raises(ValueError, match='band index'):
        geo.read_raster(path, bands=[4])
    with pytest.raises(ValueError, match='does not exist'):
        geo.read_raster(tmp_path / 'missing.tif')


def test_lazy_levels_read_windows_only(tmp_path):
    data = texture((600, 500))
    path = write_geotiff(tmp_path / 'big.tif', data, Affine(10, 0, 0, 0, -10, 0))
    with rasterio.open(path, 'r+') as ds:
        ds.build_overviews([2, 4])
    levels, factors, georef = geo.open_levels(path, min_size=100)
    assert [lv.shape for lv in levels] == [(600, 500), (300, 250), (150, 125)]
    assert factors == [1.0, 2.0, 4.0]
    np.testing.assert_array_equal(levels[0][100:110, 7:300:3], data[100:110, 7:300:3])
    assert levels[1][5, 6].shape == ()
    assert np.asarray(levels[2]).shape == (150, 125)


def test_plain_tiff_is_not_georeferenced(tmp_path):
    import tifffile

    tifffile.imwrite(tmp_path / 'plain.tif', texture((20, 20)))
    assert not geo.is_georeferenced(tmp_path / 'plain.tif')
    path = write_geotiff(
        tmp_path / 'geo.tif', texture((20, 20)), Affine(1, 0, 5, 0, -1, 9)
    )
    assert geo.is_georeferenced(path)


def test_known_shift_recovered_and_translation_keeps_pixels(tmp_path):
    truth = np.array([1.3, -0.7])
    ref_path, tgt_path = shifted_pair(tmp_path, truth)
    reg = geo.register_rasters(ref_path, tgt_path, window=128, refine=True)
    np.testing.assert_allclose(reg.shift_px, truth, atol=0.05)
    # map units: rows run south, so +1.3 rows is -13 m in y
    np.testing.assert_allclose(reg.shift_map, [-13.0, -7.0], atol=0.5)
    assert reg.tie_points.n_valid >= 4
    out = reg.write(tmp_path / 'corrected.tif')
    with rasterio.open(tgt_path) as a, rasterio.open(out) as b:
        pixels_in, pixels_out = a.read(), b.read()
        assert b.crs == a.crs and b.nodata == a.nodata
        moved = np.array(b.transform.to_gdal()) - np.array(a.transform.to_gdal())
    assert hashlib.sha256(pixels_in).digest() == hashlib.sha256(pixels_out).digest()
    np.testing.assert_allclose(moved[[0, 3]], reg.shift_map[::-1])
    np.testing.assert_allclose(moved[[1, 2, 4, 5]], 0)
    # files are never overwritten, and never the input
    with pytest.raises(ValueError, match='exists'):
        reg.write(out)
    with pytest.raises(ValueError, match='input'):
        reg.write(tgt_path, overwrite=True)


def test_affine_model_resamples_onto_the_reference_grid(tmp_path):
    truth = np.array([0.6, 0.9])
    ref_path, tgt_path = shifted_pair(tmp_path, truth)
    reg = geo.register_rasters(ref_path, tgt_path, model='affine', window=128)
    out = reg.write(tmp_path / 'affine.tif')
    with rasterio.open(ref_path) as r, rasterio.open(out) as o:
        assert o.shape == r.shape and o.transform == r.transform and o.crs == r.crs
        assert o.nodata == 0 and o.overviews(1) == [2]
        assert o.compression is not None
        ref, res = r.read(1).astype(float), o.read(1).astype(float)
    valid = res > 0
    assert valid.mean() > 0.7
    assert np.corrcoef(ref[valid], res[valid])[0, 1] > 0.99


def test_different_crs_refused_or_reprojected(tmp_path):
    ref_path, tgt_path = shifted_pair(tmp_path, (0.0, 0.0), shape=(300, 300))
    with rasterio.open(tgt_path) as ds:
        data = ds.read(1)
        bounds = ds.bounds
    from rasterio.warp import Resampling, calculate_default_transform, reproject

    dst_crs = 'EPSG:32632'
    transform, width, height = calculate_default_transform(
        'EPSG:32633', dst_crs, data.shape[1], data.shape[0], *bounds
    )
    out = np.zeros((height, width), np.uint16)
    reproject(
        data, out, src_transform=rasterio.open(tgt_path).transform,
        src_crs='EPSG:32633', dst_transform=transform, dst_crs=dst_crs,
        resampling=Resampling.cubic, src_nodata=0, dst_nodata=0,
    )  # fmt: skip
    other = write_geotiff(tmp_path / 'utm32.tif', out, transform, crs=dst_crs, nodata=0)
    with pytest.raises(ValueError, match='reproject=True'):
        geo.register_rasters(ref_path, other)
    reg = geo.register_rasters(ref_path, other, reproject=True, window=128)
    # two bilinear/cubic resamplings: the georeferencing itself was right
    np.testing.assert_allclose(reg.shift_px, [0, 0], atol=0.2)


def test_scenes_that_do_not_overlap_are_refused(tmp_path):
    a = write_geotiff(
        tmp_path / 'a.tif', texture((50, 50)), Affine(10, 0, 0, 0, -10, 0)
    )
    b = write_geotiff(
        tmp_path / 'b.tif', texture((50, 50)), Affine(10, 0, 1e5, 0, -10, 0)
    )
    with pytest.raises(ValueError, match='do not overlap'):
        geo.register_rasters(a, b)


def test_tie_point_export_csv_geojson(tmp_path):
    ref_path, tgt_path = shifted_pair(tmp_path, (0.5, 0.25))
    reg = geo.register_rasters(ref_path, tgt_path, window=96, spacing=96)
    tie = reg.tie_points
    csv_path = tie.write(tmp_path / 'tie.csv')
    lines = csv_path.read_text().splitlines()
    assert lines[0].startswith('id,row,col,y,x,d_row,d_col,dy,dx')
    assert len(lines) == len(tie) + 1
    gj = json.loads(tie.write(tmp_path / 'tie.geojson').read_text())
    assert gj['crs']['properties']['name'].endswith('32633')
    assert len(gj['features']) == len(tie)
    first = gj['features'][0]
    assert first['geometry']['coordinates'] == [
        first['properties']['x'],
        first['properties']['y'],
    ]
    with pytest.raises(ValueError, match='exists'):
        tie.write(csv_path)
    with pytest.raises(ValueError, match='.csv or .geojson'):
        tie.write(tmp_path / 'tie.txt')


def test_fit_matrix_models():
    rng = np.random.default_rng(1)
    q = rng.uniform(0, 1000, size=(30, 2))
    angle = np.deg2rad(3)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    for model, linear in [
        ('translation', np.eye(2)),
        ('rigid', rot),
        ('similarity', 1.02 * rot),
        ('affine', np.array([[1.01, 0.02], [-0.01, 0.98]])),
    ]:
        p = q @ linear.T + [5.0, -3.0]
        m = geo.fit_matrix(q, p, model)
        np.testing.assert_allclose(apply_matrix(m, q), p, atol=1e-6)


def test_windows_read_from_files_give_the_same_shift(tmp_path, monkeypatch):
    from napari_coreg.geo import align

    truth = np.array([-0.4, 1.2])
    ref_path, tgt_path = shifted_pair(tmp_path, truth)
    in_memory = geo.register_rasters(ref_path, tgt_path, window=128)
    monkeypatch.setattr(align, 'LAZY_PIXELS', 0)
    from_files = geo.register_rasters(ref_path, tgt_path, window=128)
    assert from_files.extra['windows_from_files']
    assert not in_memory.extra['windows_from_files']
    np.testing.assert_allclose(from_files.shift_px, in_memory.shift_px, atol=1e-9)
    np.testing.assert_allclose(from_files.shift_px, truth, atol=0.05)


def test_engine_refines_in_map_units(tmp_path):
    truth = np.array([0.7, -0.3])
    ref_path, tgt_path = shifted_pair(tmp_path, truth, shape=(256, 256))
    reg = geo.register_rasters(ref_path, tgt_path, window=96, engine=True)
    assert reg.engine is not None
    # the engine ran in map units: its grid has the 10 m pixels
    assert reg.engine.fixed_grid.spacing == (10.0, 10.0)
    np.testing.assert_allclose(reg.shift_px, truth, atol=0.1)


def test_local_correction_after_a_coarse_start(tmp_path):
    # georeferencing 30 px off: the coarse start finds it, the field follows
    truth = np.array([30.4, -25.7])
    ref_path, tgt_path = shifted_pair(tmp_path, truth, shape=(500, 520))
    reg = geo.register_rasters(ref_path, tgt_path, window=128, spacing=96)
    assert np.any(reg.extra['coarse_shift_map'])
    np.testing.assert_allclose(reg.shift_px, truth, atol=0.05)
    field = geo.fit_shift_model(reg.tie_points, 'field')
    out = reg.write(tmp_path / 'local.tif', local=field)
    with rasterio.open(ref_path) as r, rasterio.open(out) as o:
        a, b = r.read(1).astype(float), o.read(1).astype(float)
    valid = b > 0
    assert valid.mean() > 0.5
    assert np.corrcoef(a[valid], b[valid])[0, 1] > 0.99


def test_resampled_onto_the_targets_own_grid(tmp_path):
    truth = np.array([0.5, -0.75])
    ref_path, tgt_path = shifted_pair(tmp_path, truth)
    reg = geo.register_rasters(ref_path, tgt_path, model='affine', window=128)
    out = reg.write(tmp_path / 'own.tif', grid='target', order=3)
    with (
        rasterio.open(tgt_path) as t,
        rasterio.open(out) as o,
        rasterio.open(ref_path) as r,
    ):
        assert o.shape == t.shape and o.transform == t.transform
        # the corrected target lines up with the reference where they overlap
        window = rasterio.windows.from_bounds(*o.bounds, transform=r.transform)
        ref = r.read(1, window=window, boundless=True).astype(float)
        res = o.read(1).astype(float)
    valid = (res > 0) & (ref > 0)
    assert np.corrcoef(ref[valid], res[valid])[0, 1] > 0.99
    with pytest.raises(ValueError, match='grid'):
        reg.write(tmp_path / 'x.tif', grid='mine')


def test_arrays_with_georef_and_bad_input(tmp_path):
    ref_path, tgt_path = shifted_pair(tmp_path, (0.3, 0.2))
    ref, tgt = geo.read_raster(ref_path), geo.read_raster(tgt_path)
    reg = geo.register_rasters(
        (ref.data, ref.georef), (tgt.data, tgt.georef), window=128
    )
    np.testing.assert_allclose(reg.shift_px, [0.3, 0.2], atol=0.05)
    with pytest.raises(ValueError, match='homography'):
        geo.register_rasters(ref_path, tgt_path, model='homography')
    with pytest.raises(ValueError, match='matching Georef'):
        geo.register_rasters((ref.data[:10], ref.georef), tgt_path)
    with pytest.raises(ValueError, match='raster file path'):
        geo.register_rasters(42, tgt_path)


def test_tie_points_on_a_dask_client_equal_the_threaded_ones(tmp_path):
    distributed = pytest.importorskip(
        'distributed', reason='dask.distributed is not installed'
    )
    truth = np.array([0.9, -0.4])
    ref_path, tgt_path = shifted_pair(tmp_path, truth, shape=(480, 500))
    threaded = geo.register_rasters(ref_path, tgt_path, window=96, spacing=64)
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False,
            dashboard_address=None,
        ) as cluster,
        distributed.Client(cluster) as client,
    ):  # fmt: skip
        on_dask = geo.register_rasters(
            ref_path, tgt_path, window=96, spacing=64, client=client
        )
    tie, dask_tie = threaded.tie_points, on_dask.tie_points
    assert len(tie) >= 16 and dask_tie.n_valid == tie.n_valid
    np.testing.assert_array_equal(dask_tie.valid, tie.valid)
    np.testing.assert_allclose(dask_tie.shift_px, tie.shift_px, atol=1e-12)
    np.testing.assert_allclose(on_dask.shift_px, truth, atol=0.05)
    with pytest.raises(ValueError, match='dask.distributed Client'):
        geo.register_rasters(ref_path, tgt_path, window=96, client='cluster')


def test_tie_points_on_a_local_cluster(tmp_path):
    pytest.importorskip('distributed', reason='dask.distributed is not installed')
    truth = np.array([-0.6, 0.8])
    ref_path, tgt_path = shifted_pair(tmp_path, truth)
    reg = geo.register_rasters(ref_path, tgt_path, window=128, client='local')
    np.testing.assert_allclose(reg.shift_px, truth, atol=0.05)
