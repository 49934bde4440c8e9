"""The stack package: checks before work, settings, histogram matching, layout."""

from __future__ import annotations

import ast
import dataclasses
import inspect
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage
from skimage import data

import napari_coreg.stack as stack_package
from napari_coreg import Settings, iter_register_stack, register_stack
from napari_coreg.stack import open_stack

FAST = {'init': 'center', 'model': 'translation', 'iterations': 20}


@pytest.fixture(scope='module')
def shifted():
    """Five 64^2 frames shifted by known amounts, and the shifts."""
    image = data.camera()[::4, ::4].astype(np.float32)[32:96, 32:96]
    shifts = np.array([[0, 0], [1.5, -1.0], [-2.0, 0.5], [0.5, 2.0], [-1.0, -1.5]])
    frames = np.stack(
        [ndimage.shift(image, s, order=3, mode='nearest') for s in shifts]
    )
    return frames, shifts


# --------------------------------------------------------------------------
# everything checked before work


def test_unknown_optimizer_is_a_value_error_before_work(shifted):
    frames, _ = shifted
    with pytest.raises(ValueError, match="no optimizer 'banana'"):
        iter_register_stack(frames, optimizer='banana')  # not a single step run


def test_sitk_optimizer_on_torch_names_the_backend(shifted):
    frames, _ = shifted
    with pytest.raises(ValueError, match="use backend='sitk'"):
        iter_register_stack(frames, optimizer='lbfgsb')


def test_absent_device_is_a_value_error_before_work(shifted):
    torch = pytest.importorskip('torch')
    if torch.cuda.is_available():
        pytest.skip('CUDA is present here')
    frames, _ = shifted
    with pytest.raises(ValueError, match="device 'cuda' is not available"):
        iter_register_stack(frames, device='cuda')


@pytest.mark.parametrize('bad', [np.nan, np.inf, -np.inf])
def test_nan_frame_in_memory_named_before_work(shifted, bad):
    frames = shifted[0].copy()
    frames[3, 10, 20] = bad
    before = frames.copy()
    with pytest.raises(ValueError, match='stack frame 3 has NaN or infinite'):
        iter_register_stack(frames, batch_size=1, axis=0)
    np.testing.assert_array_equal(frames, before)  # input untouched


def test_nan_frame_on_other_axis_is_named(shifted):
    frames = np.moveaxis(shifted[0].copy(), 0, 2)  # (rows, cols, frames)
    frames[5, 5, 2] = np.nan
    with pytest.raises(ValueError, match='stack frame 2'):
        iter_register_stack(frames, axis=2)


def test_constant_frame_in_memory_named_before_work(shifted):
    frames = shifted[0].copy()
    frames[2] = 7.0
    with pytest.raises(ValueError, match=r'stack frame 2 is constant \(all 7.0\)'):
        iter_register_stack(frames, batch_size=1)


def test_nan_frame_out_of_core_found_when_its_batch_is_read(shifted, tmp_path):
    frames = shifted[0].copy()
    frames[3, 10, 20] = np.nan
    np.save(tmp_path / 's.npy', frames)
    steps = iter_register_stack(open_stack(tmp_path / 's.npy'), batch_size=1, **FAST)
    with pytest.raises(ValueError, match='stack frame 3'):
        for _ in steps:
            pass


@pytest.mark.parametrize('channel', [True, 1.0, 2, -3])
def test_register_channel_must_be_a_channel_index(shifted, channel):
    rgb = np.repeat(shifted[0][..., None], 2, axis=-1)
    with pytest.raises(ValueError, match=f'register_channel={channel!r} is not one'):
        iter_register_stack(rgb, channel_axis=3, register_channel=channel)


def test_every_argument_is_checked_before_the_backend_loads(shifted, monkeypatch):
    import napari_coreg.method as method_module

    def refuse(backend):
        raise AssertionError(f'backend {backend} loaded although the input is bad')

    monkeypatch.setattr(method_module, 'load_engine', refuse)
    frames = shifted[0].copy()
    for kwargs, match in [
        ({'reference': 'banana'}, "unknown reference 'banana'"),
        ({'batch_size': 0}, 'batch_size must be a positive integer'),
        ({'rounds': 0}, 'rounds must be a positive integer'),
        ({'client': 'remote'}, 'client must be'),
        ({'out': 'aligned.png'}, 'give a path ending in'),
    ]:
        with pytest.raises(ValueError, match=match):
            iter_register_stack(frames, **kwargs)
    frames[1] = 0.0
    with pytest.raises(ValueError, match='stack frame 1 is constant'):
        iter_register_stack(frames)


def test_overwrite_must_be_a_bool(shifted, tmp_path):
    with pytest.raises(TypeError, match='overwrite must be True or False'):
        iter_register_stack(shifted[0], out=tmp_path / 'a.npy', overwrite='no')


# --------------------------------------------------------------------------
# explicit keywords and settings=


@pytest.mark.parametrize('function', [register_stack, iter_register_stack])
def test_every_setting_is_an_explicit_keyword(function):
    parameters = inspect.signature(function).parameters
    assert not any(p.kind is p.VAR_KEYWORD for p in parameters.values())
    for field in dataclasses.fields(Settings):
        assert parameters[field.name].kind is inspect.Parameter.KEYWORD_ONLY
    assert parameters['settings'].default is None


def test_settings_object_and_keywords_override_it(shifted):
    frames, _ = shifted
    settings = Settings(iterations=5, init='center', mi_bins=16)
    result = register_stack(
        frames, model='translation', settings=settings, iterations=7
    )
    assert result.settings['iterations'] == 7  # the keyword wins
    assert result.settings['init'] == 'center'
    assert result.settings['mi_bins'] == 16
    assert [lv['iterations'] for lv in result.settings['schedule']] == [7] * len(
        result.settings['schedule']
    )


def test_previous_reference_defaults_to_phase_init_without_settings(shifted):
    frames, _ = shifted
    result = register_stack(frames[:3], model='translation', iterations=2)
    assert result.settings['init'] == 'phase'
    result = register_stack(
        frames[:3], model='translation', init='center', iterations=2
    )
    assert result.settings['init'] == 'center'
    # settings= is taken as given: its init ('auto' by default) is kept
    result = register_stack(frames[:3], model='translation', settings=Settings())
    assert result.settings['init'] == 'auto'


def test_settings_of_the_wrong_type_is_a_type_error(shifted):
    frames, _ = shifted
    with pytest.raises(TypeError, match='settings must be a napari_coreg.Settings'):
        iter_register_stack(frames, settings={'iterations': 3})


# --------------------------------------------------------------------------
# histogram matching, as register does


def test_stack_frames_honour_match_histograms(shifted):
    frames, shifts = shifted
    low, high = frames.min(), frames.max()
    gamma = ((frames - low) / (high - low)) ** np.array([1, 3, 0.3, 2.5, 0.4])[
        :, None, None
    ]
    kwargs = {'reference': 'first', 'metric': 'mse', **FAST}
    matched = register_stack(gamma.astype(np.float32), match_histograms=True, **kwargs)
    plain = register_stack(gamma.astype(np.float32), match_histograms=False, **kwargs)
    # matched frames have the reference's intensities: the residual drops
    assert np.all(matched.metric_after[1:] < 0.5 * plain.metric_after[1:])
    found = matched.moving_from_fixed[:, :2, 2]
    np.testing.assert_allclose(found[1:], shifts[1:], atol=0.15)


# --------------------------------------------------------------------------
# layout


def _imports(path: Path) -> set[str]:
    """Sibling modules of ``napari_coreg.stack`` that ``path`` imports."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 and node.module:
                names.add(node.module.split('.')[0])
            elif node.level == 1:
                names.update(alias.name for alias in node.names)
            elif (node.module or '').startswith('napari_coreg.stack.'):
                names.add(node.module.split('.')[2])
    return names


def test_stack_modules_import_each_other_without_a_cycle():
    folder = Path(stack_package.__file__).parent
    graph = {
        p.stem: _imports(p) & {q.stem for q in folder.glob('*.py')}
        for p in folder.glob('*.py')
        if p.stem != '__init__'
    }
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        assert module not in path, f'import cycle: {" -> ".join((*path, module))}'
        if module in done:
            return
        for other in graph.get(module, ()):
            visit(other, (*path, module))
        done.add(module)

    for module in graph:
        visit(module, ())
    assert len(graph) >= 6  # frames, plan, batching, references, ... exist
    assert all(len(p.read_text().splitlines()) <= 600 for p in folder.glob('*.py'))


# --------------------------------------------------------------------------
# applying the transforms to another stack


@pytest.fixture(scope='module')
def registered(shifted):
    frames, _ = shifted
    return register_stack(frames, reference='first', **FAST)


def test_apply_takes_negative_axes_lists_and_paths(registered, shifted, tmp_path):
    frames, _ = shifted
    expected = registered.aligned
    last = np.moveaxis(frames, 0, -1)  # (rows, cols, frames)
    np.testing.assert_allclose(
        registered.apply(last, axis=-1), np.moveaxis(expected, 0, -1), atol=1e-6
    )
    np.testing.assert_allclose(registered.apply(frames.tolist()), expected, atol=1e-6)
    channels = frames[..., None]
    np.testing.assert_allclose(
        registered.apply(channels, channel_axis=-1)[..., 0], expected, atol=1e-6
    )
    np.save(tmp_path / 'other.npy', frames)
    lazy = registered.apply(tmp_path / 'other.npy')
    np.testing.assert_allclose(np.asarray(lazy), expected, atol=1e-6)


@pytest.mark.parametrize(
    ('kwargs', 'match'),
    [
        ({'channel_axis': 7}, 'channel_axis=7 is out of range'),
        ({'channel_axis': 0}, 'axis and channel_axis are both 0'),
        ({'axis': 0.5}, 'axis must be an integer axis'),
        ({'axis': 1}, 'does not match the registered one'),
    ],
)
def test_apply_refuses_bad_axes_with_a_value_error(registered, shifted, kwargs, match):
    with pytest.raises(ValueError, match=match):
        registered.apply(shifted[0][:, None], **kwargs)


def test_aligned_frame_index_must_be_an_integer(registered):
    with pytest.raises(TypeError, match='frame index must be an integer'):
        registered.aligned_frame(1.5)
    np.testing.assert_allclose(
        registered.aligned_frame(-1), registered.aligned[-1], atol=1e-6
    )
