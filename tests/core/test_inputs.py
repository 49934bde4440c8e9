"""Input validation through ``register()``: bad input raises a helpful ValueError
before any work starts, and inputs are never modified."""

from __future__ import annotations

import numpy as np
import pytest

from napari_coreg import iter_register, register

SHAPE = (64, 80)
#: A fast schedule for the tests that do run (they check inputs, not accuracy).
FAST = {'levels': 1, 'iterations': 3, 'init': 'identity'}


@pytest.fixture
def pair(rng) -> tuple[np.ndarray, np.ndarray]:
    from scipy import ndimage

    fixed = ndimage.gaussian_filter(rng.random(SHAPE), 2).astype(np.float32)
    moving = np.roll(fixed, (2, -3), axis=(0, 1))
    return fixed, moving


def test_no_engine_fixture_is_live(pair, no_engine) -> None:
    """Valid input does reach the patched loader, so the refusals below are real."""
    with pytest.raises(AssertionError, match='engine'):
        register(*pair)
    assert len(no_engine) == 1


def test_1d_raises(pair, no_engine) -> None:
    fixed, _ = pair
    with pytest.raises(ValueError, match='2D or 3D'):
        register(np.arange(100.0), fixed)
    with pytest.raises(ValueError, match='2D or 3D'):
        register(fixed, np.arange(100.0))


def test_4d_raises(rng, no_engine) -> None:
    volume = rng.random((6, 8, 10, 12))
    with pytest.raises(ValueError, match='2D or 3D'):
        register(volume, volume)


def test_mismatched_ndim_raises(pair, rng, no_engine) -> None:
    fixed, _ = pair
    with pytest.raises(ValueError, match='same number of spatial dimensions'):
        register(fixed, rng.random((12, 64, 80)))


@pytest.mark.parametrize('bad', [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize('which', ['fixed', 'moving'])
def test_nan_or_inf_raises(pair, no_engine, bad, which) -> None:
    fixed, moving = (a.copy() for a in pair)
    (fixed if which == 'fixed' else moving)[5, 7] = bad
    with pytest.raises(ValueError, match=f'{which}.*NaN or infinite'):
        register(fixed, moving)


@pytest.mark.parametrize('shape', [(0, 80), (64, 0), (0,), (0, 0, 0)])
def test_empty_raises(pair, no_engine, shape) -> None:
    with pytest.raises(ValueError, match='empty|2D or 3D'):
        register(np.zeros(shape), pair[1])


@pytest.mark.parametrize('which', ['fixed', 'moving'])
def test_constant_image_raises(pair, no_engine, which) -> None:
    fixed, moving = pair
    constant = np.full(SHAPE, 7.0)
    args = (constant, moving) if which == 'fixed' else (fixed, constant)
    with pytest.raises(ValueError, match=f'{which}.*constant'):
        register(*args)


@pytest.mark.parametrize(
    'kwargs, match',
    [
        ({'model': 'projective'}, "unknown model 'projective'.*'homography'"),
        ({'metric': 'nmi'}, "unknown metric 'nmi'.*'mi'"),
        ({'backend': 'elastix'}, "unknown backend 'elastix'.*'sitk'"),
        ({'init': 'random'}, 'unknown init'),
    ],
)
def test_unknown_names_raise(pair, no_engine, kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        register(*pair, **kwargs)


def test_names_are_case_insensitive(pair) -> None:
    result = register(*pair, model='Translation', metric='NCC', **FAST)
    assert result.model == 'translation' and result.metric == 'ncc'


def test_homography_in_3d_raises(rng, no_engine) -> None:
    volume = rng.random((16, 32, 40))
    with pytest.raises(ValueError, match="'homography' is a 2D model"):
        register(volume, volume, model='homography')


@pytest.mark.parametrize(
    'kwargs, match',
    [
        ({'metric': 'l1'}, "sitk.*'l1'"),
        ({'model': 'homography'}, "sitk.*'homography'"),
    ],
)
def test_sitk_refuses_what_it_lacks_before_any_work(
    rng, no_engine, kwargs, match
) -> None:
    """Refused by capability, before any backend is imported or run.

    The images are large so a refusal after any real work would be obvious;
    ``no_engine`` fails the test if the backend is even loaded.
    """
    big = rng.random((1024, 1280)).astype(np.float32)
    with pytest.raises(ValueError, match=match):
        register(big, big, backend='sitk', **kwargs)
    with pytest.raises(ValueError, match=match):
        iter_register(big, big, backend='sitk', **kwargs)
    assert no_engine == []


def test_bad_mask_shape_raises(pair, no_engine) -> None:
    with pytest.raises(ValueError, match='fixed_mask.*shape'):
        register(*pair, fixed_mask=np.ones(SHAPE[::-1], bool))
    with pytest.raises(ValueError, match='moving_mask.*shape'):
        register(*pair, moving_mask=np.ones((10, 10), bool))


def test_nearly_empty_mask_raises(pair, no_engine) -> None:
    mask = np.zeros(SHAPE, bool)
    mask[:2, :2] = True
    with pytest.raises(ValueError, match='fixed_mask'):
        register(*pair, fixed_mask=mask)


@pytest.mark.parametrize(
    'kwargs',
    [
        {'levels': 5},  # 64 px cannot shrink 16x
        {'shrink_factors': [16, 1]},  # 64 / 16 = 4 px < 8
    ],
)
def test_image_too_small_for_the_pyramid_raises(pair, no_engine, kwargs) -> None:
    with pytest.raises(ValueError, match='too small'):
        register(*pair, **kwargs)


def test_moving_too_small_for_the_pyramid_raises(pair, rng, no_engine) -> None:
    fixed, _ = pair
    with pytest.raises(ValueError, match='too small'):
        register(fixed, rng.random((20, 24)), shrink_factors=[4, 1])


def test_tiny_image_raises(no_engine) -> None:
    with pytest.raises(ValueError, match='too small'):
        register(np.eye(3), np.eye(3))


@pytest.mark.parametrize(
    'kwargs',
    [
        {'shrink_factors': [1, 2]},
        {'shrink_factors': [2, 1], 'iterations': [3, 3, 3]},
        {'mi_bins': 2},
        {'sampling': 0.0},
        {'sampling': 1.5},
        {'learning_rate': -1.0},
        {'tolerance': 0.0},
        {'initial': np.eye(4)},
        {'initial': np.full((3, 3), np.nan)},
        {'fixed_spacing': (1.0, 0.0)},
        {'moving_spacing': (1.0,)},
        {'fixed_origin': (np.nan, 0.0)},
    ],
)
def test_bad_settings_raise(pair, no_engine, kwargs) -> None:
    with pytest.raises(ValueError):
        register(*pair, **kwargs)


@pytest.mark.parametrize(
    'kwargs', [{'optimizer': 'newton'}, {'optimizer': 'gauss-newton', 'metric': 'mi'}]
)
def test_bad_optimizer_raises(pair, kwargs) -> None:
    with pytest.raises(ValueError, match='optimizer|least-squares'):
        register(*pair, **kwargs)


@pytest.mark.parametrize(
    'kwargs', [{'optimizer': 'newton'}, {'optimizer': 'gauss-newton', 'metric': 'mi'}]
)
def test_bad_optimizer_raises_on_call_of_iter_register(pair, no_engine, kwargs) -> None:
    with pytest.raises(ValueError, match='optimizer|least-squares'):
        iter_register(*pair, **kwargs)


def test_bool_and_complex_images_raise(pair, no_engine) -> None:
    fixed, _ = pair
    with pytest.raises(ValueError, match='dtype'):
        register(fixed > 0.5, fixed)
    with pytest.raises(ValueError, match='complex'):
        register(fixed.astype(np.complex64), fixed)


# --------------------------------------------------------------------------
# inputs are never modified


def _as_dtype(image: np.ndarray, dtype) -> np.ndarray:
    scaled = (image - image.min()) / (image.max() - image.min())
    if np.issubdtype(dtype, np.integer):
        return (scaled * np.iinfo(dtype).max * 0.9).astype(dtype)
    return scaled.astype(dtype)


@pytest.mark.parametrize(
    'dtype', [np.uint8, np.uint16, np.int16, np.float64, np.float32]
)
def test_inputs_are_never_modified(pair, dtype) -> None:
    fixed, moving = (_as_dtype(a, dtype) for a in pair)
    fixed_mask = np.ones(SHAPE, bool)
    fixed_mask[:5] = False
    initial = np.eye(3)
    copies = [a.copy() for a in (fixed, moving, fixed_mask, initial)]
    result = register(
        fixed, moving, model='rigid', fixed_mask=fixed_mask, initial=initial, **FAST
    )
    _ = result.aligned, result.quality
    for original, copy in zip(
        (fixed, moving, fixed_mask, initial), copies, strict=True
    ):
        assert original.dtype == copy.dtype
        np.testing.assert_array_equal(original, copy)
    assert fixed.flags.writeable and moving.flags.writeable


def test_rgb_inputs_are_never_modified(pair) -> None:
    rgb = [np.stack([_as_dtype(a, np.uint8)] * 3, axis=-1) for a in pair]
    rgb[1][..., 0] //= 2
    copies = [a.copy() for a in rgb]
    result = register(*rgb, model='translation', **FAST)
    _ = result.aligned, result.quality
    for original, copy in zip(rgb, copies, strict=True):
        np.testing.assert_array_equal(original, copy)


def test_result_does_not_alias_the_inputs(pair) -> None:
    """Writing into the user's array after the run does not change the result."""
    fixed, moving = (a.copy() for a in pair)
    result = register(fixed, moving, model='translation', **FAST)
    aligned = result.aligned.copy()
    assert not np.shares_memory(result.aligned, moving)
    moving[:] = 0
    np.testing.assert_array_equal(result.aligned, aligned)


def test_simpleitk_image_keeps_its_geometry_in_numpy_order(pair) -> None:
    sitk = pytest.importorskip('SimpleITK')
    fixed, _ = pair
    image = sitk.GetImageFromArray(fixed)
    image.SetSpacing((0.5, 2.0))  # (x = col, y = row)
    image.SetOrigin((3.0, -4.0))
    result = register(image, image, model='translation', **FAST)
    assert result.fixed_grid.shape == SHAPE
    assert result.fixed_grid.spacing == (2.0, 0.5)  # (row, col)
    assert result.fixed_grid.origin == (-4.0, 3.0)
    assert result.moving_grid.spacing == (2.0, 0.5)


@pytest.mark.parametrize(
    'initial',
    [np.diag([0.0, 0.0, 1.0]), np.array([[1.0, 0, 0], [0, 1.0, 0], [0.5, 0.5, 1.0]])],
    ids=['singular', 'projective'],
)
def test_unusable_initial_matrix_raises(pair, no_engine, initial) -> None:
    with pytest.raises(ValueError, match='initial'):
        register(*pair, model='rigid', initial=initial)


@pytest.mark.parametrize('device', ['nonsense', 'cuda'])
def test_unavailable_device_raises_on_call(pair, device) -> None:
    torch = pytest.importorskip('torch')
    if device == 'cuda' and torch.cuda.is_available():
        pytest.skip('CUDA is available here')
    with pytest.raises(ValueError, match='device'):
        iter_register(*pair, device=device)
