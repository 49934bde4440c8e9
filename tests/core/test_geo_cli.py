"""``napari-coreg register REF TARGET`` on georeferenced rasters."""

from __future__ import annotations

import csv
import hashlib
import json

import numpy as np
import pytest

rasterio = pytest.importorskip('rasterio')

from _geo_cases import shifted_pair  # noqa: E402

from napari_coreg.cli import main  # noqa: E402


def _pixels(path) -> bytes:
    with rasterio.open(path) as ds:
        return hashlib.sha256(ds.read().tobytes()).digest()


def test_cli_translation_moves_the_geotransform(tmp_path, capsys):
    ref, tgt = shifted_pair(tmp_path, (0.8, -1.1))
    out, points, transform = (
        tmp_path / 'corrected.tif',
        tmp_path / 'points.csv',
        tmp_path / 'transform.json',
    )
    code = main([
        'register', str(ref), str(tgt), '--out', str(out), '--window', '128',
        '--tie-points', str(points), '--transform', str(transform),
    ])  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert 'translation: map shift' in printed and 'pixels unchanged' in printed
    assert _pixels(out) == _pixels(tgt)
    with rasterio.open(tgt) as a, rasterio.open(out) as b:
        moved = np.array(b.transform.to_gdal()) - np.array(a.transform.to_gdal())
    # +0.8 rows = -8 m in y, -1.1 cols = -11 m in x
    np.testing.assert_allclose(moved[[0, 3]], [-11.0, -8.0], atol=0.5)
    rows = list(csv.DictReader(points.open()))
    assert rows and {'x', 'y', 'dx', 'dy', 'reliability', 'valid'} <= set(rows[0])
    saved = json.loads(transform.read_text())
    assert saved['metadata']['crs_epsg'] == 32633
    # nothing is overwritten without --force
    before = out.read_bytes()
    with pytest.raises(SystemExit, match='already exist'):
        main(['register', str(ref), str(tgt), '--out', str(out), '--quiet'])
    assert out.read_bytes() == before


def test_cli_local_writes_resampled_geotiff(tmp_path):
    ref, tgt = shifted_pair(tmp_path, (0.5, 0.5))
    out = tmp_path / 'local.tif'
    code = main([
        'register', str(ref), str(tgt), '--local', '64', '--window', '96',
        '--out', str(out), '--tie-points', str(tmp_path / 'p.geojson'), '--quiet',
    ])  # fmt: skip
    assert code == 0
    with rasterio.open(ref) as r, rasterio.open(out) as o:
        assert o.transform == r.transform and o.shape == r.shape
        a, b = r.read(1).astype(float), o.read(1).astype(float)
    valid = b > 0
    assert np.corrcoef(a[valid], b[valid])[0, 1] > 0.99
    features = json.loads((tmp_path / 'p.geojson').read_text())['features']
    assert len(features) >= 9


def test_cli_refuses_the_input_as_output(tmp_path):
    ref, tgt = shifted_pair(tmp_path, (0.0, 0.0))
    with pytest.raises(SystemExit, match='input'):
        main(['register', str(ref), str(tgt), '--out', str(tgt), '--force', '--quiet'])
