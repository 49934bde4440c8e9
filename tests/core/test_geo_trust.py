"""Trust in georeferenced results: a real pair passes, noise and unrelated
scenes are held (verdict 'failed' with reasons, CLI exit status 3)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

rasterio = pytest.importorskip('rasterio')

from _geo_cases import shifted_pair, texture, write_geotiff  # noqa: E402

from napari_coreg import geo  # noqa: E402
from napari_coreg.cli import main  # noqa: E402
from napari_coreg.geo.trust import GeoEvidence, judge_geo  # noqa: E402
from napari_coreg.quality import VERDICTS, hold_reasons  # noqa: E402

SHAPE = (640, 660)
WINDOW = 128


def _pair(tmp_path):
    return shifted_pair(tmp_path, (0.7, -1.2), shape=SHAPE)


def _replace_target(tmp_path, tgt, pixels):
    """A target GeoTIFF with ``tgt``'s georeferencing and other pixels."""
    with rasterio.open(tgt) as ds:
        transform = ds.transform
    return write_geotiff(tmp_path / 'other.tif', pixels, transform, nodata=0)


def test_real_match_is_ok_with_an_uncertainty(tmp_path):
    ref, tgt = _pair(tmp_path)
    reg = geo.register_rasters(ref, tgt, window=WINDOW)
    assert reg.verdict == 'ok', reg.verdict_reasons
    assert hold_reasons(reg) == []
    assert 'windows with data match' in reg.verdict_reasons[0]
    assert 0 < reg.uncertainty_px < 0.1
    assert np.all(np.abs(reg.shift_px - [0.7, -1.2]) < 0.1)
    assert reg.metric_after > reg.metric_before
    local = reg.assess_local(geo.fit_shift_model(reg.tie_points, 'field'))
    assert local.verdict == 'ok' and local.assessment.evidence.model == 'field'


@pytest.mark.parametrize('kind', ['white noise', 'smooth noise', 'other scene'])
def test_noise_or_unrelated_target_is_held(tmp_path, kind):
    ref, tgt = _pair(tmp_path)
    with rasterio.open(tgt) as ds:
        shape = ds.shape
    rng = np.random.default_rng(7)
    pixels = {
        'white noise': lambda: rng.integers(1, 4000, shape).astype(np.uint16),
        'smooth noise': lambda: texture(shape, seed=11),
        'other scene': lambda: texture((shape[0] + 90, shape[1]), seed=5)[90:],
    }[kind]()
    other = _replace_target(tmp_path, tgt, pixels)
    reg = geo.register_rasters(ref, other, window=WINDOW)
    assert reg.verdict == 'failed'
    held = hold_reasons(reg)
    assert held and any('match' in reason for reason in held)
    assert reg.uncertainty_px is None


def test_cli_exit_status_3_with_reasons_for_noise(tmp_path, capsys):
    ref, tgt = _pair(tmp_path)
    with rasterio.open(tgt) as ds:
        shape = ds.shape
    noise = np.random.default_rng(3).integers(1, 4000, shape).astype(np.uint16)
    other = _replace_target(tmp_path, tgt, noise)
    for local in ([], ['--local', '96']):
        code = main([
            'register', str(ref), str(other), '--window', str(WINDOW), '--quiet',
            *local,
        ])  # fmt: skip
        assert code == 3
        err = capsys.readouterr().err
        assert 'did not pass the quality check' in err and 'clear match' in err
    code = main(['register', str(ref), str(tgt), '--window', str(WINDOW), '--quiet'])
    assert code == 0


def _evidence(**changes) -> GeoEvidence:
    base = GeoEvidence(
        model='translation', windows=100, measured=90, matched=85, peak=80.0,
        spread_px=0.08, ncc_before=0.5, ncc_after=0.6, overlap=0.8,
    )  # fmt: skip
    return replace(base, **changes)


@pytest.mark.parametrize(
    ('changes', 'verdict', 'words'),
    [
        ({}, 'ok', 'windows with data match'),
        ({'matched': 0, 'spread_px': np.nan, 'peak': np.nan}, 'failed', 'clear match'),
        ({'matched': 5}, 'failed', 'Only 5 of 90'),
        ({'matched': 20}, 'suspect', 'Only 20 of 90'),
        ({'spread_px': 2.5}, 'failed', 'disagree'),
        ({'spread_px': 0.5}, 'suspect', 'disagree'),
        ({'matched': 2, 'spread_px': np.nan, 'measured': 2}, 'suspect', 'too few'),
        ({'peak': 14.0}, 'suspect', 'noise spreads'),
        ({'ncc_after': 0.05}, 'suspect', 'gradient similarity'),
        ({'overlap': 0.05}, 'suspect', 'overlap by only 5%'),
        ({'model': 'field', 'fit_px': 0.9}, 'suspect', 'misses its tie points'),
        ({'model': 'affine', 'matched': 2, 'measured': 2}, 'failed', '3 needed'),
    ],
)
def test_rules(changes, verdict, words):
    assessment = judge_geo(_evidence(**changes))
    assert assessment.verdict == verdict and verdict in VERDICTS
    assert any(words in reason for reason in assessment.reasons)
    assert (assessment.uncertainty_px is None) == (
        verdict == 'failed' or not np.isfinite(assessment.evidence.spread_px)
    )


def test_overlap_fraction_of_the_smaller_scene():
    from napari_coreg.geo.trust import overlap_fraction

    big = geo.Georef(
        shape=(100, 100), geotransform=(0, 10, 0, 1000, 0, -10), crs_wkt=''
    )
    small = geo.Georef(
        shape=(40, 50), geotransform=(0, 20, 0, 1000, 0, -20), crs_wkt=''
    )
    overlap = geo.Georef(
        shape=(20, 100), geotransform=(0, 10, 0, 1000, 0, -10), crs_wkt=''
    )
    # 2000 px of 100 m² over the smaller scene: 2000 px of 400 m²
    assert overlap_fraction(overlap, big, small) == pytest.approx(0.25)
