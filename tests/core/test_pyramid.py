"""Pyramid schedules: defaults from the image size, explicit lists, refusals."""

from __future__ import annotations

import pytest

from napari_coreg.pyramid import Level, default_levels, level_schedule, shrink_per_axis


def test_default_256_has_three_levels() -> None:
    schedule = level_schedule((256, 256))
    assert [lv.factor for lv in schedule] == [4, 2, 1]
    assert default_levels((256, 256)) == 3


def test_default_512_has_four_levels() -> None:
    schedule = level_schedule((512, 512))
    assert [lv.factor for lv in schedule] == [8, 4, 2, 1]


def test_default_follows_the_shortest_axis() -> None:
    assert [lv.factor for lv in level_schedule((96, 1024))] == [2, 1]
    assert [lv.factor for lv in level_schedule((40, 53))] == [1]


def test_default_smoothing_and_iterations() -> None:
    schedule = level_schedule((256, 256), default_iterations=77)
    assert all(lv.iterations == 77 for lv in schedule)
    assert [lv.sigma for lv in schedule] == [1.0, 1.0, 0.5]


def test_levels_builds_powers_of_two() -> None:
    schedule = level_schedule((512, 512), levels=2)
    assert [lv.factor for lv in schedule] == [2, 1]


def test_explicit_lists_are_used_as_given() -> None:
    schedule = level_schedule(
        (256, 320),
        shrink_factors=[4, 2, 1],
        smoothing_sigmas=[2.0, 1.0, 0.0],
        iterations=[10, 20, 30],
    )
    assert schedule == (Level(4, 2.0, 10), Level(2, 1.0, 20), Level(1, 0.0, 30))


def test_single_values_apply_to_every_level() -> None:
    schedule = level_schedule(
        (256, 320), shrink_factors=[3, 1], smoothing_sigmas=1.5, iterations=5
    )
    assert schedule == (Level(3, 1.5, 5), Level(1, 1.5, 5))


@pytest.mark.parametrize(
    'kwargs, match',
    [
        (
            {'shrink_factors': [4, 2, 1], 'smoothing_sigmas': [1.0, 1.0]},
            'smoothing_sigmas',
        ),
        ({'shrink_factors': [4, 2, 1], 'iterations': [10, 10, 10, 10]}, 'iterations'),
        ({'levels': 3, 'iterations': [10, 10]}, 'iterations'),
    ],
)
def test_mismatched_lengths_raise(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        level_schedule((256, 256), **kwargs)


@pytest.mark.parametrize('factors', [[1, 2, 4], [2, 4], [4, 1, 2]])
def test_increasing_factors_raise(factors) -> None:
    with pytest.raises(ValueError, match='coarse to fine'):
        level_schedule((256, 256), shrink_factors=factors)


@pytest.mark.parametrize(
    'kwargs',
    [
        {'shrink_factors': [0, 1]},
        {'shrink_factors': [2.5, 1]},
        {'shrink_factors': []},
        {'levels': 0},
        {'shrink_factors': [2, 1], 'smoothing_sigmas': [-1.0, 0.0]},
        {'shrink_factors': [2, 1], 'iterations': [0, 5]},
    ],
)
def test_invalid_values_raise(kwargs) -> None:
    with pytest.raises(ValueError):
        level_schedule((256, 256), **kwargs)


def test_too_small_image_raises_with_a_helpful_message() -> None:
    with pytest.raises(ValueError, match='too small') as info:
        level_schedule((20, 24), shrink_factors=[4, 2, 1])
    message = str(info.value)
    assert '(20, 24)' in message
    assert 'fewer levels' in message or 'smaller shrink_factors' in message


def test_too_many_levels_for_the_image_raise() -> None:
    with pytest.raises(ValueError, match='too small'):
        level_schedule((64, 80), levels=5)


def test_thin_3d_axis_shrinks_less() -> None:
    assert shrink_per_axis((10, 256, 320), 4) == (1, 4, 4)
    assert shrink_per_axis((24, 256, 320), 4) == (3, 4, 4)
    assert shrink_per_axis((256, 320), 4) == (4, 4)
    assert shrink_per_axis((1, 64, 64), 4) == (1, 4, 4)


def test_thin_3d_stack_default_schedule_shrinks_rows_and_cols() -> None:
    """A 10-plane stack keeps its planes while rows and columns shrink."""
    schedule = level_schedule((10, 256, 320))
    assert [lv.factor for lv in schedule] == [4, 2, 1]
    assert shrink_per_axis((10, 256, 320), schedule[0].factor)[0] == 1
