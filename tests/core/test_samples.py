"""Sample pairs: the ground truth really maps fixed onto moving."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from napari_coreg.samples import SAMPLES, sample_pair
from napari_coreg.transforms import apply_matrix


def _gray(image):
    image = np.asarray(image, dtype=np.float64)
    return image if image.ndim == 2 else image[..., :3].mean(axis=-1)


@pytest.mark.parametrize('name', list(SAMPLES))
def test_truth_aligns_the_pair(name):
    fixed, moving, truth, info = sample_pair(name)
    assert fixed.shape == moving.shape and truth.shape == (3, 3)
    assert info['name'] == name and info['license'] and info['source']
    f, m = _gray(fixed), _gray(moving)
    pixels = np.indices(f.shape).reshape(2, -1).T.astype(np.float64)
    coords = apply_matrix(truth, pixels).T
    warped = ndimage.map_coordinates(m, coords, order=1, cval=np.nan).reshape(f.shape)
    valid = np.isfinite(warped) & (warped > 0) & (f > 0)
    before = np.corrcoef(f.ravel(), m.ravel())[0, 1]
    after = np.corrcoef(f[valid], warped[valid])[0, 1]
    assert after > 0.8 and after > before + 0.1


def test_multimodal_truth_is_exact_and_rigid_is_deterministic():
    fixed, moving, truth, info = sample_pair('multimodal')
    np.testing.assert_array_equal(truth[:2, 2], [17, 13])
    assert info['metric'] == 'mi'
    a = sample_pair('rigid')
    b = sample_pair('rigid')
    np.testing.assert_array_equal(a[1], b[1])
    assert a[0].dtype == np.float32


def test_unknown_sample_is_refused():
    with pytest.raises(ValueError, match="choose one of 'rigid'"):
        sample_pair('graf')


def test_samples_import_no_napari():
    import subprocess
    import sys

    code = (
        'import sys, napari_coreg.samples; '
        "bad = {'napari', 'qtpy', 'magicgui', 'torch', 'SimpleITK'} "
        '& set(sys.modules); '
        'assert not bad, bad'
    )
    subprocess.run([sys.executable, '-c', code], check=True)
