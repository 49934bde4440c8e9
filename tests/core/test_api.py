"""The public API: streaming, callbacks, the result object and its figures."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
from _cases import about_centre, make_case, rotation, source_image, warp_source

from napari_coreg import (
    Progress,
    RegistrationResult,
    corner_error,
    iter_register,
    register,
)

SHAPE = (96, 128)


@pytest.fixture(scope='module')
def case():
    """Rigid: 4 degrees and (3.5, -5.25) px, moving gamma-changed and noisy."""
    truth = about_centre(rotation(4.0), (np.array(SHAPE) - 1) / 2, (3.5, -5.25))
    return make_case(truth, SHAPE, seed=1)


@pytest.fixture(scope='module')
def result(case) -> RegistrationResult:
    return register(case.fixed, case.moving, model='rigid', metric='ncc')


def _drain(generator):
    events = []
    while True:
        try:
            events.append(next(generator))
        except StopIteration as done:
            return events, done.value


def test_register_recovers_the_case(case, result) -> None:
    assert corner_error(result.moving_from_fixed, case.truth, SHAPE) < 0.1
    np.testing.assert_allclose(
        result.fixed_from_moving @ result.moving_from_fixed, np.eye(3), atol=1e-12
    )
    assert result.moving_from_fixed.dtype == np.float64
    assert result.moving_from_fixed.shape == (3, 3)
    assert (result.model, result.metric, result.backend) == ('rigid', 'ncc', 'torch')


def test_result_matrix_is_read_only(result) -> None:
    with pytest.raises(ValueError):
        result.moving_from_fixed[0, 0] = 2.0


def test_iter_register_streams_progress(case) -> None:
    events, result = _drain(
        iter_register(case.fixed, case.moving, model='rigid', metric='ncc')
    )
    assert isinstance(result, RegistrationResult)
    assert events and all(isinstance(e, Progress) for e in events)
    assert [e.step for e in events] == list(range(len(events)))
    n_levels = len(result.levels)
    assert all(e.n_levels == n_levels for e in events)
    assert all(0 <= e.level < n_levels for e in events)
    assert [e.level for e in events] == sorted(e.level for e in events)
    assert {e.level for e in events} == set(range(n_levels))
    assert all(e.step < e.total for e in events)
    assert all(np.isfinite(e.loss) for e in events)
    # the streamed losses are the result's loss history, level by level
    for level, history in enumerate(result.loss_history):
        streamed = [e for e in events if e.level == level]
        assert [e.iteration for e in streamed] == list(range(len(streamed)))
        assert tuple(e.loss for e in streamed) == history


def test_iter_register_validates_on_call() -> None:
    """Bad input raises when iter_register is called, before the first next()."""
    with pytest.raises(ValueError):
        iter_register(np.zeros(10), np.zeros(10))
    with pytest.raises(ValueError):
        iter_register(np.ones((64, 64)), np.ones((64, 64)))
    with pytest.raises(ValueError, match='metric'):
        iter_register(np.eye(64), np.eye(64), metric='nope')


def test_closing_the_generator_early_stops_cleanly(case) -> None:
    threads = set(threading.enumerate())
    steps = iter_register(case.fixed, case.moving, model='rigid', metric='ncc')
    first = next(steps)
    second = next(steps)
    assert (first.step, second.step) == (0, 1)
    steps.close()
    with pytest.raises(StopIteration):
        next(steps)
    assert set(threading.enumerate()) <= threads


def test_abandoning_the_generator_leaves_no_threads(case) -> None:
    threads = set(threading.enumerate())
    for progress in iter_register(case.fixed, case.moving, model='rigid', metric='ncc'):
        if progress.step == 2:
            break
    assert set(threading.enumerate()) <= threads


def test_callback_sees_every_event(case) -> None:
    seen: list[Progress] = []
    result = register(
        case.fixed, case.moving, model='rigid', metric='ncc', callback=seen.append
    )
    events, _ = _drain(
        iter_register(case.fixed, case.moving, model='rigid', metric='ncc')
    )
    assert len(seen) == len(events) == sum(len(h) for h in result.loss_history)
    assert [p.step for p in seen] == [p.step for p in events]
    assert [p.loss for p in seen] == [p.loss for p in events]


def test_callback_exception_propagates(case) -> None:
    def stop(progress):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        register(case.fixed, case.moving, model='rigid', callback=stop)


@pytest.mark.parametrize('moving_shape', [SHAPE, (120, 110)])
def test_aligned_of_a_gray_image_has_the_fixed_shape(moving_shape) -> None:
    truth = about_centre(rotation(-3.0), (np.array(SHAPE) - 1) / 2, (6.0, -4.0))
    c = make_case(truth, SHAPE, moving_shape=moving_shape, seed=2)
    result = register(
        c.fixed, c.moving, model='translation', levels=1, iterations=2, init='identity'
    )
    assert result.aligned.shape == SHAPE


def test_aligned_is_moving_on_the_fixed_grid(case, result) -> None:
    aligned = result.aligned
    assert aligned.shape == case.fixed.shape
    inner = (slice(12, -12), slice(12, -12))
    gamma_fixed = np.clip(case.fixed, 0, 1) ** 1.2  # the case's moving has gamma 1.2
    assert np.corrcoef(aligned[inner].ravel(), gamma_fixed[inner].ravel())[0, 1] > 0.98
    assert np.abs(aligned[inner] - gamma_fixed[inner]).mean() < 0.03


def test_aligned_keeps_rgb_channels() -> None:
    """RGB is registered on luminance; ``aligned`` keeps the channels."""
    from skimage import data

    rgb = data.astronaut().astype(np.float64) / 255
    truth = about_centre(rotation(3.0), (np.array(SHAPE) - 1) / 2, (4.0, -2.5))
    crop = np.eye(3)
    crop[:2, 2] = (60, 180)
    fixed = np.stack([warp_source(rgb[..., c], crop, SHAPE) for c in range(3)], -1)
    moving = np.stack(
        [
            warp_source(rgb[..., c], crop @ np.linalg.inv(truth), SHAPE)
            for c in range(3)
        ],
        -1,
    )
    fixed8, moving8 = (np.round(a * 255).astype(np.uint8) for a in (fixed, moving))
    result = register(fixed8, moving8, model='rigid', metric='ncc')
    assert corner_error(result.moving_from_fixed, truth, SHAPE) < 0.25
    assert result.aligned.shape == (*SHAPE, 3)
    inner = (slice(12, -12), slice(12, -12))
    for c in range(3):  # each channel lands on its own channel
        diff = np.abs(
            result.aligned[inner][..., c] - fixed8[inner][..., c].astype(np.float32)
        )
        assert diff.mean() < 4.0, c


def test_gray_fixed_with_rgb_moving(case) -> None:
    moving_rgb = np.stack([case.moving, case.moving * 0.8, case.moving * 0.6], -1)
    result = register(case.fixed, moving_rgb, model='rigid', metric='ncc')
    assert corner_error(result.moving_from_fixed, case.truth, SHAPE) < 0.25
    assert result.aligned.shape == (*SHAPE, 3)


def test_quality_improves_on_a_misaligned_pair(result) -> None:
    quality = result.quality
    before, after = quality['before'], quality['after']
    for figures in (before, after):
        assert set(figures) >= {'mse', 'ncc', 'ssim'}
    assert after['mse'] < 0.5 * before['mse']
    assert after['ncc'] > before['ncc'] and after['ncc'] > 0.97
    assert after['ssim'] > before['ssim']


def test_metric_before_and_after(result) -> None:
    assert result.metric_after > result.metric_before  # ncc: higher is better
    assert result.metric_after > 0.97


def test_level_reports(result) -> None:
    assert len(result.levels) >= 1
    for report in result.levels:
        assert report.iterations == len(report.losses) > 0
        assert report.seconds >= 0
        assert report.stop_reason
    assert result.levels[-1].shape == SHAPE
    assert result.stop_reason == result.levels[-1].stop_reason
    assert result.elapsed > 0


def test_to_dict_is_json_serialisable(result) -> None:
    as_dict = result.to_dict()
    restored = json.loads(json.dumps(as_dict))
    np.testing.assert_array_equal(
        np.array(restored['moving_from_fixed']), result.moving_from_fixed
    )
    np.testing.assert_allclose(
        np.array(restored['fixed_from_moving']), result.fixed_from_moving
    )
    assert restored['model'] == 'rigid' and restored['metric'] == 'ncc'
    assert restored['stop_reason'] == result.stop_reason
    assert 'direction' in restored['conventions']
    assert restored['fixed_grid']['shape'] == list(SHAPE)


def test_identical_input_returns_identity() -> None:
    image = source_image('camera')[100:196, 200:328].astype(np.float32)
    result = register(image, image.copy(), model='affine', metric='ncc')
    assert corner_error(result.moving_from_fixed, np.eye(3), image.shape) < 0.01
    assert result.stop_reason in {'converged', 'max_iterations'}
    assert all(len(h) > 0 for h in result.loss_history)


@pytest.mark.parametrize('metric', ['ncc', 'mse', 'l1'])
def test_gauss_newton_finest_loss_is_non_increasing(case, metric) -> None:
    """Levenberg-Marquardt accepts only steps that do not raise the loss, so the
    reported loss is non-increasing (tolerance: 1e-9 relative, for rounding)."""
    result = register(
        case.fixed, case.moving, model='rigid', metric=metric, optimizer='gauss-newton'
    )
    losses = np.array(result.loss_history[-1])
    assert losses.size > 0
    assert np.all(np.diff(losses) <= 1e-9 * np.abs(losses[:-1]))


def test_misaligned_shapes_give_aligned_of_fixed_shape() -> None:
    """Fixed and moving of different shapes: ``aligned`` has fixed's shape."""
    shape_f, shape_m = (96, 128), (120, 110)
    truth = about_centre(rotation(-3.0), (np.array(shape_f) - 1) / 2, (6.0, -4.0))
    c = make_case(truth, shape_f, moving_shape=shape_m, seed=2)
    result = register(c.fixed, c.moving, model='rigid', metric='ncc', init='identity')
    assert result.aligned.shape == shape_f
    assert corner_error(result.moving_from_fixed, truth, shape_f) < 0.25
