"""Warm starts along a stack, failed warm starts redone, key frames of 'previous'."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from napari_coreg import register_stack
from napari_coreg.cases import drift_stack, scaled_source
from napari_coreg.stack.references import compose_previous, key_gap
from napari_coreg.stack.warm import FIRST_BATCH, Chain, plan_batch
from napari_coreg.transforms import corner_error


def _errors(result, truth, shape) -> np.ndarray:
    m = result.moving_from_fixed
    return np.array([corner_error(m[i], truth[i], shape) for i in range(len(m))])


@pytest.fixture(scope='module')
def drift():
    return drift_stack(32, 256, seed=3)


@pytest.mark.parametrize('reference', ['first', 'previous'])
def test_warm_frames_land_within_a_tenth_of_a_pixel(drift, reference):
    stack, truth = drift
    result = register_stack(stack, reference=reference)
    warm = result.settings['warm_starts']
    assert warm['frames'] >= 24, warm  # all but the first batches start warm
    assert warm['redone'] <= 2, warm
    errors = _errors(result, truth, stack.shape[1:])
    assert errors.max() < 0.1, errors.round(3)
    if reference == 'previous':
        # warm links (whose prediction error does not grow along the batch)
        # skip coarse levels
        n_levels = len(result.settings['schedule'])
        assert n_levels > 2
        assert min(len(b.levels) for b in result.batches) < n_levels
        assert warm['keys'] == len(range(key_gap(32), 32, key_gap(32)))


def test_a_jump_the_warm_start_cannot_reach_is_registered_again():
    size = 128
    source = scaled_source('camera', size)
    offset = (np.array(source.shape) - size) / 2
    rng = np.random.default_rng(5)
    shifts = np.cumsum(rng.normal(0, 0.7, (16, 2)), axis=0)
    shifts[10:] += (40.0, -36.0)  # the stage jumped between frames 9 and 10
    stack = np.stack(
        [
            ndimage.shift(source, -s, order=3)[
                int(offset[0]) : int(offset[0]) + size,
                int(offset[1]) : int(offset[1]) + size,
            ]
            for s in shifts
        ]
    ).astype(np.float32)
    result = register_stack(stack, reference='first', model='translation')
    found = result.moving_from_fixed[:, :2, 2] - result.moving_from_fixed[0, :2, 2]
    expected = shifts[0] - shifts  # the content moves against the stage
    assert result.settings['warm_starts']['redone'] >= 1
    np.testing.assert_allclose(found, expected, atol=0.1)
    assert result.flagged_frames == ()


def test_key_links_replace_the_chain_from_their_frame_on():
    rng = np.random.default_rng(0)
    pairs = np.repeat(np.eye(3)[None], 9, axis=0)
    pairs[:, :2, 2] = rng.normal(0, 1, (9, 2))
    plain = compose_previous(pairs, 10, 2)
    # a key link equal to the chain's product changes nothing
    same = {6: (3, plain[6] @ np.linalg.inv(plain[3]))}
    np.testing.assert_allclose(compose_previous(pairs, 10, 2, same), plain)
    # a different key link moves frame 6 and every frame after it
    moved = np.eye(3)
    moved[:2, 2] = 5
    keyed = compose_previous(pairs, 10, 2, {6: (3, moved @ same[6][1])})
    np.testing.assert_allclose(keyed[:6], plain[:6])
    np.testing.assert_allclose(keyed[6:], moved @ plain[6:])
    assert key_gap(15) == 0 and key_gap(100) == 10


def test_batches_start_warm_only_within_the_reach_of_their_first_level():
    factors = [8, 4, 2, 1]
    fresh = Chain('pairs', list(range(1, 50)))
    assert plan_batch(fresh, factors, 12) == (FIRST_BATCH, None)
    still = Chain('pairs', list(range(1, 50)), done=2)
    still.links = [np.eye(3)] * 2
    still.errors = {'still': [0.5, 1.0], 'drift': [1.5]}
    # 1.5 x 1 px off: the level of factor 2 pulls it in, at least two levels
    assert plan_batch(still, factors, 12) == (12, 2)
    still.errors['still'] = [30.0, 30.0]
    still.errors['drift'] = [30.0, 30.0]
    assert plan_batch(still, factors, 12) == (12, None)  # beyond every level
    # one frame: the start is further off the further the frame is
    fixed = Chain('fixed', list(range(1, 50)), base=np.eye(3), done=2)
    fixed.links = [np.eye(3)] * 2
    fixed.errors = {'still': [2.0, 2.0], 'drift': [3.0]}
    size, level = plan_batch(fixed, factors, 12)
    assert level is not None and 1 <= size <= 12
    assert size * 1.5 * 2.0 <= 3.0 * factors[level]
