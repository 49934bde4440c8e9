"""Transform files: our JSON and ITK .tfm (round trips through SimpleITK)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage

from napari_coreg import TransformFile, load_transform, register, save_transform
from napari_coreg.transforms import apply_matrix, homogeneous

sitk = pytest.importorskip('SimpleITK')


def _rotation3(a, b, c) -> np.ndarray:
    a, b, c = np.deg2rad([a, b, c])
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return rz @ ry @ rx


def _rotation2(degrees) -> np.ndarray:
    a = np.deg2rad(degrees)
    return np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])


MATRICES = {
    ('translation', 2): homogeneous(np.eye(2), [3.5, -120.25]),
    ('rigid', 2): homogeneous(_rotation2(17.0), [40.0, -7.5]),
    ('similarity', 2): homogeneous(0.8 * _rotation2(-33.0), [-3.0, 250.0]),
    ('affine', 2): homogeneous([[1.1, 0.2], [-0.3, 0.9]], [5.0, 6.0]),
    ('translation', 3): homogeneous(np.eye(3), [1.0, -2.0, 1300.0]),
    ('rigid', 3): homogeneous(_rotation3(4, -3, 6), [-54.6, -93.0, 12.2]),
    ('similarity', 3): homogeneous(1.2 * _rotation3(-10, 20, 5), [1.0, 2.0, 3.0]),
    ('affine', 3): homogeneous(
        [[1.0, 0.1, 0.0], [0.05, 0.9, -0.2], [0.0, 0.3, 1.1]], [7.0, -8.0, 9.0]
    ),
}


@pytest.mark.parametrize(('model', 'ndim'), list(MATRICES))
def test_tfm_round_trip_through_simpleitk(tmp_path, model, ndim):
    """SimpleITK reads our .tfm and maps points as our matrix does (x, y, z)."""
    matrix = MATRICES[model, ndim]
    path = save_transform(tmp_path / 'transform.tfm', matrix, model=model)
    itk = sitk.ReadTransform(str(path))
    expected_type = {
        'translation': 'TranslationTransform',
        'rigid': f'Euler{ndim}DTransform',
        'similarity': f'Similarity{ndim}DTransform',
        'affine': 'AffineTransform',
    }[model]
    assert itk.Downcast().GetName() == expected_type
    points = np.random.default_rng(ndim).uniform(-300, 300, (20, ndim))  # numpy order
    ours = apply_matrix(matrix, points)
    theirs = np.array([itk.TransformPoint(p[::-1].tolist()) for p in points])[:, ::-1]
    np.testing.assert_allclose(theirs, ours, atol=1e-6)
    loaded = load_transform(path)
    np.testing.assert_allclose(loaded.moving_from_fixed, matrix, atol=1e-9)
    assert loaded.model == model and loaded.format == 'itk'
    assert loaded.metadata['itk_type'] == expected_type


def test_tfm_falls_back_to_affine_when_the_model_does_not_fit(tmp_path):
    matrix = MATRICES['affine', 2]
    path = save_transform(tmp_path / 't.tfm', matrix, model='rigid')
    assert sitk.ReadTransform(str(path)).Downcast().GetName() == 'AffineTransform'
    loaded = load_transform(path)
    np.testing.assert_allclose(loaded.moving_from_fixed, matrix, atol=1e-9)


def test_reads_the_shared_ground_truth_tfm(shared_data):
    folder = shared_data / 'ct_lung_3d_synthetic_rigid'
    truth = json.loads((folder / 'ground_truth.json').read_text())
    loaded = load_transform(folder / 'gt_fixed_to_moving.tfm')
    from napari_coreg import reverse_axes

    np.testing.assert_allclose(
        loaded.moving_from_fixed, reverse_axes(truth['homogeneous_4x4']), atol=1e-6
    )
    assert loaded.model == 'rigid'


def test_composite_itk_transforms_are_folded(tmp_path):
    first = sitk.Euler3DTransform((1.0, 2.0, 3.0), 0.1, -0.2, 0.3, (4.0, 5.0, 6.0))
    second = sitk.AffineTransform(3)
    second.SetMatrix([1.1, 0.1, 0, 0, 0.9, 0.05, 0, 0, 1.2])
    second.SetTranslation((-1.0, 0.5, 2.0))
    composite = sitk.CompositeTransform([first, second])
    path = tmp_path / 'composite.tfm'
    sitk.WriteTransform(composite, str(path))
    loaded = load_transform(path)
    for point in np.random.default_rng(0).uniform(-50, 50, (5, 3)):
        expected = np.array(composite.TransformPoint(point.tolist()))
        ours = apply_matrix(loaded.moving_from_fixed, point[::-1])[0][::-1]
        np.testing.assert_allclose(ours, expected, atol=1e-9)


def test_json_round_trip_of_a_result(tmp_path):
    rng = np.random.default_rng(0)
    fixed = ndimage.gaussian_filter(rng.random((40, 48)), 2).astype(np.float32)
    moving = np.roll(fixed, (2, -3), axis=(0, 1))
    res = register(fixed, moving, model='translation', metric='ncc', backend='sitk')
    path = save_transform(tmp_path / 'result.json', res, metadata={'note': 'hi'})
    document = json.loads(path.read_text())
    assert document['format'] == 'napari-coreg transform'
    assert set(document['conventions']) >= {'direction', 'axes', 'units'}
    assert document['backend'] == 'sitk' and document['metric'] == 'ncc'
    assert document['metadata'] == {'note': 'hi'}
    np.testing.assert_allclose(
        np.array(document['fixed_from_moving']) @ res.moving_from_fixed,
        np.eye(3),
        atol=1e-12,
    )
    loaded = load_transform(path)
    np.testing.assert_array_equal(loaded.moving_from_fixed, res.moving_from_fixed)
    assert loaded.model == 'translation' and loaded.format == 'json'
    assert loaded.metadata['fixed_grid']['shape'] == [40, 48]
    np.testing.assert_allclose(loaded.fixed_from_moving, res.fixed_from_moving)
    # a loaded file saves again unchanged, to either format
    again = load_transform(save_transform(tmp_path / 'again.json', loaded))
    np.testing.assert_array_equal(again.moving_from_fixed, res.moving_from_fixed)
    itk = load_transform(save_transform(tmp_path / 'again.tfm', loaded))
    np.testing.assert_allclose(itk.moving_from_fixed, res.moving_from_fixed, atol=1e-9)


def test_json_holds_homographies_and_stacks(tmp_path):
    homography = np.array([[1.0, 0.1, 3.0], [0.0, 1.1, -2.0], [1e-4, 2e-4, 1.0]])
    loaded = load_transform(save_transform(tmp_path / 'h.json', homography))
    assert loaded.model == 'homography'
    np.testing.assert_array_equal(loaded.moving_from_fixed, homography)
    stack = np.stack([MATRICES['rigid', 2], MATRICES['affine', 2]])
    loaded = load_transform(save_transform(tmp_path / 's.json', stack))
    assert loaded.moving_from_fixed.shape == (2, 3, 3)
    assert loaded.ndim == 2


def test_refusals(tmp_path):
    homography = np.array([[1.0, 0.1, 3.0], [0.0, 1.1, -2.0], [1e-4, 2e-4, 1.0]])
    with pytest.raises(ValueError, match='json'):
        save_transform(tmp_path / 'h.tfm', homography)
    with pytest.raises(ValueError, match='json'):
        save_transform(tmp_path / 's.tfm', np.stack([np.eye(3)] * 2))
    with pytest.raises(ValueError, match='unknown transform file type'):
        save_transform(tmp_path / 'x.csv', np.eye(3))
    with pytest.raises(ValueError, match='singular'):
        save_transform(tmp_path / 'x.json', np.zeros((3, 3)))
    with pytest.raises(ValueError, match='3x3'):
        save_transform(tmp_path / 'x.json', np.eye(5))
    bad = tmp_path / 'bad.json'
    bad.write_text('{"hello": 1}')
    with pytest.raises(ValueError, match='no transform'):
        load_transform(bad)
    bad.write_text('not json')
    with pytest.raises(ValueError, match='not valid JSON'):
        load_transform(bad)
    with pytest.raises(FileNotFoundError):
        load_transform(tmp_path / 'missing.json')


def test_transform_file_is_frozen():
    loaded = TransformFile(moving_from_fixed=np.eye(3), model='affine')
    with pytest.raises(AttributeError):
        loaded.model = 'rigid'
    with pytest.raises(ValueError):
        loaded.moving_from_fixed[0, 0] = 2.0
