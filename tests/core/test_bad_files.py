"""Bad-input catalogue of transform files and the command line.

Per case: a clear error (type and message fragment) before any work, or a
correct result. Files handed to the library are hashed before and after. The
command line must stop with one line (``SystemExit`` with a message, no
traceback) before it registers anything (``no_engine``).
"""

from __future__ import annotations

import json
import pickle
import re

import numpy as np
import pytest
import tifffile
from _bad_inputs import fingerprint, pair

from napari_coreg import load_transform, save_transform
from napari_coreg.cli import main

AFFINE = np.array([[1.1, 0.1, 3.0], [0.0, 0.9, -2.0], [0.0, 0.0, 1.0]])
HOMOGRAPHY = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1e-3, 0.0, 1.0]])


def _tfm_text(tmp_path) -> str:
    path = save_transform(tmp_path / 'good.tfm', AFFINE, model='affine')
    return path.read_text()


def _cut(text: str, marker: str, extra: int = 0) -> str:
    return text[: text.index(marker) + extra]


# --------------------------------------------------------------------------
# loading: (file name, content maker (tmp_path -> bytes or str), error, fragment)

LOAD_ERRORS = [
    (
        'cut-mid-parameters.tfm',
        lambda t: _cut(_tfm_text(t), 'Parameters:', 20),
        ValueError,
        'truncated',
    ),
    (
        'no-fixed-parameters.tfm',
        lambda t: _cut(_tfm_text(t), 'FixedParameters'),
        ValueError,
        'truncated',
    ),
    (
        'one-number-short.tfm',
        lambda t: _tfm_text(t).replace(' 3 -2\n', ' 3\n').replace(' -2 3\n', ' -2\n'),
        ValueError,
        'cannot read',
    ),
    ('header-only.tfm', lambda t: _cut(_tfm_text(t), 'Parameters:'), ValueError, ''),
    ('empty.tfm', lambda t: '', ValueError, 'SimpleITK cannot read'),
    ('garbage.tfm', lambda t: 'hello world\n', ValueError, 'SimpleITK cannot read'),
    ('binary.tfm', lambda t: bytes(range(256)), ValueError, 'cannot read'),
    ('letters.tfm', lambda t: _tfm_text(t).replace('0.9', 'abc'), ValueError, ''),
    ('nested.json', lambda t: '[' * 100_000 + ']' * 100_000, ValueError, 'nested'),
    (
        'nested-dict.json',
        lambda t: '{"a":' * 50_000 + '1' + '}' * 50_000,
        ValueError,
        'nested',
    ),
    (
        'pickle.json',
        lambda t: pickle.dumps({'moving_from_fixed': AFFINE}),
        ValueError,
        'pickle',
    ),
    ('pickle0.json', lambda t: pickle.dumps([1, 2], protocol=0), ValueError, 'pickle'),
    ('binary.json', lambda t: b'\xff\xfe\x00garbage', ValueError, 'binary'),
    ('empty.json', lambda t: '', ValueError, 'not valid JSON'),
    (
        'truncated.json',
        lambda t: '{"moving_from_fixed": [[1, 0',
        ValueError,
        'not valid JSON',
    ),
    ('list.json', lambda t: '[1, 2, 3]', ValueError, 'holds no transform'),
    ('number.json', lambda t: '42', ValueError, 'holds no transform'),
    (
        'no-matrix.json',
        lambda t: '{"model": "rigid"}',
        ValueError,
        'holds no transform',
    ),
    (
        'string-matrix.json',
        lambda t: '{"moving_from_fixed": "eye"}',
        ValueError,
        'matrix',
    ),
    ('null-matrix.json', lambda t: '{"moving_from_fixed": null}', ValueError, 'matrix'),
    (
        'ragged.json',
        lambda t: '{"moving_from_fixed": [[1, 0], [0]]}',
        ValueError,
        'matrix of numbers',
    ),
    (
        'nan.json',
        lambda t: '{"moving_from_fixed": [[NaN,0,0],[0,1,0],[0,0,1]]}',
        ValueError,
        'NaN',
    ),
    (
        'singular.json',
        lambda t: json.dumps({'moving_from_fixed': [[0] * 3] * 3}),
        ValueError,
        'singular',
    ),
    (
        'five.json',
        lambda t: json.dumps({'moving_from_fixed': np.eye(5).tolist()}),
        ValueError,
        '3x3 (2D) or 4x4',
    ),
    (
        'inverse-singular.json',
        lambda t: json.dumps({'fixed_from_moving': np.zeros((3, 3)).tolist()}),
        ValueError,
        'singular',
    ),
    (
        'matrix.csv',
        lambda t: '1,0,0\n0,1,0\n0,0,1\n',
        ValueError,
        'unknown transform file type',
    ),
    ('noext', lambda t: '{}', ValueError, 'unknown transform file type'),
]


@pytest.mark.parametrize(
    ('name', 'content', 'exc', 'fragment'),
    [pytest.param(*case, id=case[0]) for case in LOAD_ERRORS],
)
def test_load_refuses(tmp_path, name, content, exc, fragment):
    data = content(tmp_path)
    path = tmp_path / name
    (path.write_bytes if isinstance(data, bytes) else path.write_text)(data)
    before = fingerprint(path)
    with pytest.raises(exc, match=re.escape(fragment)):
        load_transform(path)
    assert fingerprint(path) == before


def test_load_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match='no transform file'):
        load_transform(tmp_path / 'absent.json')


@pytest.mark.parametrize(
    ('name', 'matrix', 'model'),
    [
        ('affine.tfm', AFFINE, 'affine'),
        ('affine.txt', AFFINE, None),
        ('affine.json', AFFINE, 'affine'),
        ('shift.tfm', np.array([[1.0, 0, 3], [0, 1, -2], [0, 0, 1]]), 'translation'),
        ('homography.json', HOMOGRAPHY, None),
        ('volume.tfm', np.diag([1.0, 2.0, 0.5, 1.0]), 'affine'),
    ],
)
def test_round_trip(tmp_path, name, matrix, model):
    """A file written by save_transform reads back to the same matrix."""
    before = fingerprint(matrix)
    loaded = load_transform(save_transform(tmp_path / name, matrix, model=model))
    np.testing.assert_allclose(loaded.moving_from_fixed, matrix, atol=1e-9)
    assert fingerprint(matrix) == before


def test_fixed_from_moving_only(tmp_path):
    path = tmp_path / 'inverse.json'
    path.write_text(json.dumps({'fixed_from_moving': np.linalg.inv(AFFINE).tolist()}))
    np.testing.assert_allclose(load_transform(path).moving_from_fixed, AFFINE)


# --------------------------------------------------------------------------
# saving: (file name, matrix, keywords, error, fragment); 'exists.json' exists

SAVE_ERRORS = [
    ('exists.json', AFFINE, {}, ValueError, 'already exists'),
    ('exists.json', AFFINE, {'overwrite': 'yes'}, TypeError, 'overwrite'),
    ('missing/t.json', AFFINE, {}, ValueError, 'does not exist'),
    ('h.tfm', HOMOGRAPHY, {}, ValueError, 'homography'),
    ('h2.tfm', AFFINE, {'model': 'homography'}, ValueError, 'homography'),
    ('stack.tfm', np.stack([AFFINE] * 2), {}, ValueError, 'per-frame'),
    ('t.csv', AFFINE, {}, ValueError, 'unknown transform file type'),
    ('t', AFFINE, {}, ValueError, 'unknown transform file type'),
    ('z.json', np.zeros((3, 3)), {}, ValueError, 'singular'),
    ('n.json', np.full((3, 3), np.nan), {}, ValueError, 'NaN'),
    ('five.json', np.eye(5), {}, ValueError, '3x3 (2D) or 4x4'),
    ('s.json', 'identity', {}, ValueError, 'matrix of numbers'),
    ('sub', AFFINE, {}, ValueError, 'unknown transform file type'),
]


@pytest.mark.parametrize(
    ('name', 'matrix', 'kwargs', 'exc', 'fragment'),
    [pytest.param(*case, id=f'{case[0]}-{i}') for i, case in enumerate(SAVE_ERRORS)],
)
def test_save_refuses(tmp_path, name, matrix, kwargs, exc, fragment):
    existing = tmp_path / 'exists.json'
    existing.write_text('{"keep": true}')
    (tmp_path / 'sub.json').mkdir()
    before = fingerprint(existing, matrix, kwargs)
    with pytest.raises(exc, match=re.escape(fragment)):
        save_transform(tmp_path / name, matrix, **kwargs)
    assert fingerprint(existing, matrix, kwargs) == before
    assert not (tmp_path / name).is_file() or name == 'exists.json'


def test_save_folder_path_refused(tmp_path):
    (tmp_path / 'dir.json').mkdir()
    with pytest.raises(ValueError, match='is a folder'):
        save_transform(tmp_path / 'dir.json', AFFINE)


def test_save_overwrite_when_asked(tmp_path):
    path = tmp_path / 't.json'
    path.write_text('{}')
    save_transform(path, AFFINE, overwrite=True)
    np.testing.assert_allclose(load_transform(path).moving_from_fixed, AFFINE)


# --------------------------------------------------------------------------
# the command line


@pytest.fixture
def files(tmp_path):
    """fixed/moving as float TIFF, uint8 PNG, uint16 TIFF, and broken files."""
    from skimage import io

    fixed, moving = pair()
    tifffile.imwrite(tmp_path / 'fixed.tif', fixed)
    tifffile.imwrite(tmp_path / 'moving.tif', moving)
    tifffile.imwrite(tmp_path / 'moving16.tif', (moving * 4000).astype(np.uint16))
    io.imsave(tmp_path / 'fixed.png', (fixed * 255).astype(np.uint8))
    io.imsave(tmp_path / 'moving.png', (moving * 255).astype(np.uint8))
    (tmp_path / 'broken.png').write_bytes(b'\x89PNG\r\n\x1a\n' + b'garbage' * 20)
    (tmp_path / 'garbage.tif').write_bytes(b'II*\x00' + b'\x00garbage' * 30)
    (tmp_path / 'empty.png').write_bytes(b'')
    (tmp_path / 'text.tif').write_text('not an image')
    tifffile.imwrite(tmp_path / 'line.tif', fixed[0])
    tifffile.imwrite(tmp_path / 'const.tif', np.zeros((32, 32), np.float32))
    (tmp_path / 'exists.json').write_text('{}')
    tifffile.imwrite(tmp_path / 'rgba.tif', np.stack([fixed] * 4))
    tifffile.imwrite(tmp_path / 'rgba2.tif', np.stack([moving] * 4))
    (tmp_path / 'folder').mkdir()
    return tmp_path


_VALUE_OPTIONS = {
    '--channel-axis',
    '--model',
    '--metric',
    '--backend',
    '--device',
    '--init',
    '--levels',
    '--optimizer',
}


def _args(folder, text):
    """Command-line words, file names made absolute inside ``folder``."""
    words = text.split()
    return [
        word
        if word.startswith('-') or (i and words[i - 1] in _VALUE_OPTIONS)
        else str(folder / word)
        for i, word in enumerate(words)
    ]


CLI_ERRORS = [
    ('fixed.tif moving.tif --out nowhere/a.tif', 'does not exist'),
    ('fixed.tif moving.tif --out a.xyz', 'cannot write images as .xyz'),
    ('fixed.tif moving.tif --out folder', 'already exist'),
    ('fixed.tif moving.tif --out folder --force', 'cannot write images as files'),
    (
        'fixed.tif moving.tif --out a.png',
        'holds 8-bit images but the moving image is float32',
    ),
    ('fixed.tif moving16.tif --out a.jpg', 'holds 8-bit images'),
    ('fixed.tif moving.tif --transform t.xyz', 'unknown transform file type'),
    ('fixed.tif moving.tif --transform nowhere/t.json', 'does not exist'),
    ('fixed.tif moving.tif --model homography --transform t.tfm', 'homography'),
    ('fixed.tif moving.tif --transform exists.json', 'already exist'),
    ('fixed.tif moving.tif --out fixed.tif', 'already exist'),
    ('fixed.tif moving.tif --out same.json --transform same.json', 'same file'),
    ('broken.png moving.png', 'cannot read image'),
    ('fixed.png empty.png', 'cannot read image'),
    ('garbage.tif moving.tif', 'cannot read image'),
    ('text.tif moving.tif', 'cannot read image'),
    ('absent.tif moving.tif', 'no such image file'),
    ('fixed.tif folder', 'no such image file'),
    ('line.tif moving.tif', '2D or 3D'),
    ('const.tif moving.tif', 'constant'),
    ('rgba.tif rgba2.tif', 'ambiguous'),
    ('rgba.tif rgba2.tif --channel-axis 5', 'out of range'),
    ('fixed.tif moving.tif --device banana', 'unknown device'),
    ('fixed.tif moving.tif --init banana', "unknown init 'banana'"),
    ('fixed.tif moving.tif --levels 0', 'levels must be at least 1'),
    ('fixed.tif moving.tif --levels 9 --quiet', 'too small'),
    ('fixed.tif moving.tif --backend sitk --metric l1', "no 'l1' metric"),
    ('fixed.tif moving.tif --backend sitk --optimizer adam', 'adam'),
]


@pytest.mark.parametrize(
    ('text', 'fragment'), [pytest.param(*c, id=c[0]) for c in CLI_ERRORS]
)
def test_cli_refuses_before_work(files, text, fragment, no_engine, capsys):
    argv = ['register', *_args(files, text)]
    inputs = sorted(p for p in files.iterdir() if p.is_file())
    before = fingerprint(inputs)
    with pytest.raises(SystemExit) as stop:
        main(argv)
    message = str(stop.value.code)
    assert message.startswith('napari-coreg: ') and fragment in message, message
    assert '\n' not in message.strip() or 'Traceback' not in message
    assert not no_engine, 'the command registered before refusing'
    assert fingerprint(inputs) == before
    assert sorted(p for p in files.iterdir() if p.is_file()) == inputs


@pytest.mark.parametrize(
    'argv',
    [
        ['register', 'a.tif'],
        ['register', 'a.tif', 'b.tif', '--levels', 'two'],
        ['register', 'a.tif', 'b.tif', '--model', 'banana'],
        ['register', 'a.tif', 'b.tif', '--backend', 'itk'],
        ['frobnicate'],
        [],
    ],
    ids=['one-image', 'levels-word', 'model', 'backend', 'command', 'nothing'],
)
def test_cli_usage_errors(argv, no_engine, capsys):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    assert 'usage' in capsys.readouterr().err


def test_cli_version(capsys):
    with pytest.raises(SystemExit) as stop:
        main(['--version'])
    assert stop.value.code == 0
    assert capsys.readouterr().out.startswith('napari-coreg ')


def test_cli_channel_axis(files):
    """--channel-axis names the channels of a (4, H, W) TIFF: a correct result."""
    argv = _args(files, 'rgba.tif rgba2.tif --channel-axis 0 --transform t.json')
    assert main(['register', *argv, '--model', 'translation', '--quiet']) == 0
    shift = load_transform(files / 't.json').moving_from_fixed[:2, 2]
    np.testing.assert_allclose(shift, (2.0, -3.0), atol=0.3)


def test_cli_png_pair_registers(files):
    """uint8 PNGs to a PNG output and an ITK transform: a correct result."""
    argv = _args(files, 'fixed.png moving.png --out aligned.png --transform t.tfm')
    assert main(['register', *argv, '--model', 'translation', '--quiet']) == 0
    shift = load_transform(files / 't.tfm').moving_from_fixed[:2, 2]
    np.testing.assert_allclose(shift, (2.0, -3.0), atol=0.3)


@pytest.mark.parametrize(
    ('prepare', 'fragment'),
    [
        (lambda d: (d / 'transform.json').write_text('{}'), 'already exist'),
        (lambda d: (d / 'aligned.tif').write_text('x'), 'already exist'),
    ],
    ids=['transform', 'aligned'],
)
def test_demo_refuses_to_overwrite(tmp_path, prepare, fragment, no_engine):
    folder = tmp_path / 'demo'
    folder.mkdir()
    prepare(folder)
    before = fingerprint(sorted(folder.iterdir()))
    with pytest.raises(SystemExit, match=fragment):
        main(['demo', '--out', str(folder)])
    assert fingerprint(sorted(folder.iterdir())) == before


def test_demo_out_is_a_file(tmp_path, no_engine):
    target = tmp_path / 'file.txt'
    target.write_text('keep')
    with pytest.raises(SystemExit, match='is a file'):
        main(['demo', '--out', str(target)])
    assert target.read_text() == 'keep'


def test_cli_ctrl_c_is_one_line(files, monkeypatch, capsys):
    import napari_coreg.cli as cli

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, 'iter_register', interrupted)
    assert main(['register', *_args(files, 'fixed.tif moving.tif')]) == 130
    assert capsys.readouterr().err.strip() == 'napari-coreg: interrupted'


def test_py_typed_ships():
    """The README's claim: type hints ship (PEP 561 marker in the package)."""
    from pathlib import Path

    import napari_coreg

    assert (Path(napari_coreg.__file__).parent / 'py.typed').is_file()
