"""The command line: register two files, the demo, and refusing to overwrite."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
from scipy import ndimage
from skimage import data

from napari_coreg.cli import main


@pytest.fixture
def pair_files(tmp_path):
    fixed = data.camera()[100:260, 80:280].astype(np.uint16) * 100
    moving = ndimage.shift(fixed.astype(np.float32), (4.0, -3.0), order=1)
    tifffile.imwrite(tmp_path / 'fixed.tif', fixed)
    tifffile.imwrite(tmp_path / 'moving.tif', moving.astype(np.uint16))
    return tmp_path


def test_register_writes_aligned_image_and_json(pair_files) -> None:
    out, transform = pair_files / 'aligned.tif', pair_files / 'transform.json'
    code = main([
        'register', str(pair_files / 'fixed.tif'), str(pair_files / 'moving.tif'),
        '--model', 'translation', '--metric', 'ncc', '--out', str(out),
        '--transform', str(transform), '--quiet',
    ])
    assert code == 0
    aligned = tifffile.imread(out)
    assert aligned.shape == (160, 200) and aligned.dtype == np.uint16
    saved = json.loads(transform.read_text())
    matrix = np.array(saved['moving_from_fixed'])
    np.testing.assert_allclose(matrix[:2, 2], (4.0, -3.0), atol=0.05)


def test_register_refuses_to_overwrite(pair_files) -> None:
    existing = pair_files / 'fixed.tif'
    before = existing.read_bytes()
    with pytest.raises(SystemExit, match='already exist'):
        main(['register', str(existing), str(pair_files / 'moving.tif'),
              '--out', str(existing)])
    assert existing.read_bytes() == before


def test_register_reports_bad_input(pair_files) -> None:
    with pytest.raises(SystemExit, match='homography'):
        main(['register', str(pair_files / 'fixed.tif'), str(pair_files / 'moving.tif'),
              '--model', 'homography', '--backend', 'sitk', '--quiet'])


def test_demo_writes_results(tmp_path, capsys) -> None:
    assert main(['demo', '--out', str(tmp_path / 'demo')]) == 0
    folder = tmp_path / 'demo'
    for name in ('aligned.tif', 'transform.json', 'before_after.png', 'report.html'):
        assert (folder / name).stat().st_size > 0
    assert 'verdict: ok' in (folder / 'report.html').read_text()
    printed = capsys.readouterr().out
    error = float(printed.split('corner error against the ground truth:')[1].split()[0])
    assert error < 0.1
    assert 'verdict: ok' in printed


def test_register_writes_a_report(pair_files) -> None:
    report = pair_files / 'report.html'
    code = main([
        'register', str(pair_files / 'fixed.tif'), str(pair_files / 'moving.tif'),
        '--model', 'translation', '--report', str(report), '--quiet',
    ])
    assert code == 0
    text = report.read_text()
    assert 'verdict: ok' in text and '<svg' in text
    with pytest.raises(SystemExit, match='already exist'):
        main(['register', str(pair_files / 'fixed.tif'), str(pair_files / 'moving.tif'),
              '--report', str(report), '--quiet'])


def test_a_failed_result_is_never_a_silent_success(tmp_path, capsys) -> None:
    """Unrelated images: files are written, but the exit status is 3 and
    stderr says why, even with --quiet."""
    rng = np.random.default_rng(3)
    for name in ('a.tif', 'b.tif'):
        noise = ndimage.gaussian_filter(rng.random((96, 96)), 2)
        tifffile.imwrite(tmp_path / name, (noise * 1000).astype(np.uint16))
    out = tmp_path / 'aligned.tif'
    code = main([
        'register', str(tmp_path / 'a.tif'), str(tmp_path / 'b.tif'),
        '--model', 'rigid', '--out', str(out), '--quiet',
    ])
    assert code == 3
    assert out.exists()
    assert 'did not pass the quality check' in capsys.readouterr().err
