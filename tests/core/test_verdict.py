"""The verdict on real registrations (issue 9): good pairs pass, failures do not.

A fast subset of ``benchmarks/bench_verdict.py``: each verdict path is
asserted on the outcome of an actual registration, not on made-up evidence.
"""

from __future__ import annotations

import numpy as np
import pytest
from _cases import random_case

from napari_coreg import register
from napari_coreg.quality import VERDICTS, assess
from napari_coreg.transforms import corner_error


def _photo(shape=(128, 160), at=(120, 150)) -> np.ndarray:
    from _cases import source_image

    image = source_image('camera')
    return image[at[0] : at[0] + shape[0], at[1] : at[1] + shape[1]].astype(np.float32)


@pytest.mark.parametrize(
    ('model', 'metric', 'backend'),
    [
        ('rigid', 'ncc', 'torch'),
        ('affine', 'mi', 'torch'),
        ('homography', 'mse', 'torch'),
        ('rigid', 'ncc', 'sitk'),
    ],
)
def test_good_pair_is_ok_and_within_uncertainty(model, metric, backend) -> None:
    if backend == 'sitk':
        pytest.importorskip('SimpleITK')
    case = random_case(model, metric, seed=1)
    res = register(case.fixed, case.moving, model=model, metric=metric, backend=backend)
    error = corner_error(res.moving_from_fixed, case.truth, case.fixed.shape)
    assert error < 0.5
    assert res.verdict == 'ok', res.verdict_reasons
    assert len(res.verdict_reasons) == 1  # the summary of the evidence
    assert res.uncertainty_px is not None and error < res.uncertainty_px < 2.0


@pytest.mark.parametrize('seed', [0, 1])
def test_noise_pair_fails(seed) -> None:
    rng = np.random.default_rng(seed)
    fixed, moving = rng.random((2, 96, 112)).astype(np.float32)
    res = register(fixed, moving, model='rigid')
    assert res.verdict == 'failed'
    assert any('random placement' in r for r in res.verdict_reasons)


def test_unrelated_pair_fails() -> None:
    fixed = _photo()
    moving = _photo(at=(300, 20))[:, ::-1].copy()
    res = register(fixed, moving, model='affine')
    assert res.verdict != 'ok'


def test_start_outside_capture_range_is_flagged() -> None:
    from _cases import about_centre, make_case, rotation

    shape = (128, 160)
    truth = about_centre(rotation(150.0), (np.array(shape) - 1) / 2)
    case = make_case(truth, shape)
    res = register(case.fixed, case.moving, model='rigid', init='identity')
    assert corner_error(res.moving_from_fixed, case.truth, shape) > 2
    assert res.verdict != 'ok'


def test_reflection_is_flagged() -> None:
    """A mirrored moving image, started at the mirror: the overlay is right,
    but the transform is a reflection and the verdict says so."""
    fixed = _photo()
    moving = fixed[:, ::-1].copy()
    flip = np.eye(3)
    flip[1, 1], flip[1, 2] = -1.0, fixed.shape[1] - 1
    res = register(fixed, moving, model='affine', initial=flip)
    assert np.linalg.det(res.moving_from_fixed[:2, :2]) < 0
    assert res.verdict == 'failed'
    assert any('mirrors' in r for r in res.verdict_reasons)


def test_tiny_image_fails() -> None:
    fixed = _photo((4, 4))
    moving = _photo((4, 4), at=(120, 153))
    res = register(fixed, moving, model='rigid', levels=1)
    assert res.verdict == 'failed'
    assert res.uncertainty_px is None or res.uncertainty_px > 0


def test_wrong_metric_for_multimodal_pair_is_flagged() -> None:
    case = random_case('rigid', 'mi', seed=2)  # non-monotonic intensity remap
    res = register(case.fixed, case.moving, model='rigid', metric='mse')
    error = corner_error(res.moving_from_fixed, case.truth, case.fixed.shape)
    if error > 2:
        assert res.verdict != 'ok'


def test_landmarks_join_the_evidence() -> None:
    case = random_case('rigid', 'ncc', seed=0)
    res = register(case.fixed, case.moving, model='rigid')
    fixed_points = np.array([[20.0, 30.0], [100.0, 40.0], [60.0, 140.0]])
    homog = np.column_stack([fixed_points, np.ones(3)]) @ case.truth.T
    good = assess(res, fixed_points, homog[:, :2])
    assert good.verdict == 'ok' and good.evidence.landmark_px < 0.5
    bad = assess(res, fixed_points, homog[:, :2] + [5.0, 0.0])
    assert bad.verdict == 'failed'
    assert any('Landmarks' in r for r in bad.reasons)
    with pytest.raises(ValueError, match='same number'):
        assess(res, fixed_points, homog[:2, :2])


def test_3d_result_has_a_verdict() -> None:
    from scipy import ndimage

    rng = np.random.default_rng(0)
    volume = ndimage.gaussian_filter(rng.random((40, 48, 44)), 2.0).astype(np.float32)
    moving = ndimage.shift(volume, (1.0, -2.0, 1.5), order=1, mode='nearest')
    res = register(volume, moving, model='translation', levels=2)
    assert res.verdict in VERDICTS
    assert res.verdict == 'ok', res.verdict_reasons
    assert res.uncertainty_px is not None


def test_quality_still_works() -> None:
    case = random_case('translation', 'ncc', seed=0)
    res = register(case.fixed, case.moving, model='translation')
    assert res.quality['after']['ncc'] > res.quality['before']['ncc']


@pytest.mark.parametrize('reference', ['previous', 'first', 'mean'])
def test_stack_flags_the_bad_frame(reference) -> None:
    from napari_coreg import register_stack

    base = _photo((96, 112))
    rng = np.random.default_rng(0)
    frames = [ndimage_shift(base, (0.7 * k, -0.5 * k)) for k in range(5)]
    frames[3] = rng.random(base.shape).astype(np.float32)  # a blank, noisy frame
    res = register_stack(np.stack(frames), model='translation', reference=reference)
    assert len(res.verdicts) == 5 and set(res.verdicts) <= set(VERDICTS)
    assert 3 in res.flagged_frames
    assert res.verdicts[0] == 'ok' and res.verdicts[1] == 'ok'
    assert len(res.verdict_reasons) == 5


def ndimage_shift(image: np.ndarray, shift) -> np.ndarray:
    from scipy import ndimage

    return ndimage.shift(image, shift, order=1, mode='nearest')


def test_report_is_written_and_never_overwrites(tmp_path) -> None:
    case = random_case('rigid', 'ncc', seed=0)
    res = register(case.fixed, case.moving, model='rigid')
    path = res.report(tmp_path / 'report.html')
    text = path.read_text()
    assert 'verdict: ok' in text and '<svg' in text and 'data:image/png;base64' in text
    for reason in res.verdict_reasons:
        assert reason.split(',')[0] in text
    with pytest.raises(FileExistsError, match='overwrite=True'):
        res.report(path)
    assert path.read_text() == text
    points = np.array([[20.0, 30.0], [100.0, 40.0], [60.0, 140.0]])
    moved = np.column_stack([points, np.ones(3)]) @ case.truth.T
    res.report(path, overwrite=True, fixed_points=points, moving_points=moved[:, :2])
    assert 'landmark residual' in path.read_text()


def test_report_of_a_failure_and_of_a_volume(tmp_path) -> None:
    rng = np.random.default_rng(3)
    fixed, moving = rng.random((2, 64, 72)).astype(np.float32)
    res = register(fixed, moving, model='translation')
    text = res.report(tmp_path / 'failed.html').read_text()
    assert 'verdict: failed' in text and 'random placement' in text
    volume = rng.random((2, 24, 28, 26)).astype(np.float32)
    res3 = register(volume[0], volume[1], model='translation', levels=1)
    assert '<svg' in res3.report(tmp_path / 'volume.html').read_text()


def test_masks_limit_the_evidence() -> None:
    """Half of the moving image is replaced by noise and masked out: the
    registration ignores it, and so does the verdict."""
    case = random_case('rigid', 'ncc', seed=4)
    moving = case.moving.copy()
    rng = np.random.default_rng(0)
    moving[:, 80:] = rng.random((moving.shape[0], moving.shape[1] - 80))
    mask = np.ones(moving.shape, bool)
    mask[:, 80:] = False
    res = register(case.fixed, moving, model='rigid', moving_mask=mask)
    assert res._moving_mask is not None
    assert corner_error(res.moving_from_fixed, case.truth, case.fixed.shape) < 0.5
    assert res.verdict == 'ok', res.verdict_reasons
    assert res.assessment.evidence.overlap < 0.7  # the masked half does not count
