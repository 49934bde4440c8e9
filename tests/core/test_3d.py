"""Volumes and physical space on both backends (spacing, origin, direction)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage

sitk = pytest.importorskip('SimpleITK')
pytest.importorskip('torch')

from napari_coreg import register, reverse_axes  # noqa: E402
from napari_coreg.inputs import as_image  # noqa: E402
from napari_coreg.transforms import apply_matrix, grid_points, homogeneous  # noqa: E402

BACKENDS = ['sitk', 'torch']
SHAPE = (32, 40, 48)


def _rotation(angles_deg) -> np.ndarray:
    """Rotation about the three numpy axes (plane, row, col), degrees."""
    a, b, c = np.deg2rad(angles_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return rz @ ry @ rx


def _about(linear, centre, shift) -> np.ndarray:
    linear = np.asarray(linear, dtype=np.float64)
    return homogeneous(linear, centre - linear @ centre + np.asarray(shift, float))


def _volume_pair(truth_px: np.ndarray, shape=SHAPE, seed: int = 0):
    """``moving(truth p) = fixed(p)`` in pixels, cut from one smooth volume."""
    rng = np.random.default_rng(seed)
    big = tuple(2 * n for n in shape)
    source = ndimage.gaussian_filter(rng.random(big), 2.5)
    source = (source - source.min()) / np.ptp(source)
    crop = homogeneous(np.eye(3), np.array(shape) / 2)
    fixed = ndimage.affine_transform(source, crop, output_shape=shape, order=1)
    moving = ndimage.affine_transform(
        source, crop @ np.linalg.inv(truth_px), output_shape=shape, order=1
    )
    return fixed.astype(np.float32), moving.astype(np.float32)


def _mean_corner_error(matrix, truth, phys_from_px, shape) -> float:
    points = apply_matrix(phys_from_px, grid_points(shape))
    moved = apply_matrix(matrix, points) - apply_matrix(truth, points)
    return float(np.linalg.norm(moved, axis=1).mean())


CENTRE = (np.array(SHAPE) - 1) / 2
TRUTHS_3D = {
    'translation': _about(np.eye(3), CENTRE, (1.5, -2.0, 2.5)),
    'rigid': _about(_rotation((4.0, -3.0, 5.0)), CENTRE, (1.0, 1.5, -2.0)),
    'similarity': _about(1.05 * _rotation((-3.0, 2.0, 4.0)), CENTRE, (-1.0, 1.0, 1.5)),
    'affine': _about(
        [[1.04, 0.03, -0.02], [0.02, 0.97, 0.04], [-0.03, 0.02, 1.02]],
        CENTRE,
        (1.0, -1.0, 0.5),
    ),
}


@pytest.mark.parametrize('backend', BACKENDS)
@pytest.mark.parametrize('model', list(TRUTHS_3D))
def test_3d_models(backend, model):
    truth = TRUTHS_3D[model]
    fixed, moving = _volume_pair(truth)
    res = register(fixed, moving, model=model, metric='ncc', backend=backend, levels=2)
    assert res.moving_from_fixed.shape == (4, 4)
    assert _mean_corner_error(res.moving_from_fixed, truth, np.eye(4), SHAPE) < 0.25


@pytest.mark.parametrize('backend', BACKENDS)
def test_anisotropic_voxels_rigid_stays_rigid(backend):
    """Spacing (3, 1, 1): the truth is a rotation in millimetres, which is not
    a rotation of voxel indices; the result must be rigid in millimetres."""
    shape, spacing = (16, 48, 48), np.array([3.0, 1.0, 1.0])
    phys_from_px = homogeneous(np.diag(spacing), (-20.0, 5.0, 7.0))
    centre = apply_matrix(phys_from_px, (np.array(shape) - 1) / 2)[0]
    truth = _about(_rotation((3.0, 4.0, -5.0)), centre, (2.0, -1.5, 1.0))
    truth_px = np.linalg.inv(phys_from_px) @ truth @ phys_from_px
    assert not np.allclose(truth_px[:3, :3] @ truth_px[:3, :3].T, np.eye(3), atol=1e-3)
    fixed, moving = _volume_pair(truth_px, shape=shape, seed=1)
    res = register(
        fixed,
        moving,
        model='rigid',
        metric='ncc',
        backend=backend,
        levels=2,
        fixed_spacing=spacing,
        moving_spacing=spacing,
        fixed_origin=phys_from_px[:3, 3],
        moving_origin=phys_from_px[:3, 3],
    )
    linear = res.moving_from_fixed[:3, :3]
    np.testing.assert_allclose(linear @ linear.T, np.eye(3), atol=1e-9)
    assert np.linalg.det(linear) == pytest.approx(1.0, abs=1e-9)
    assert _mean_corner_error(res.moving_from_fixed, truth, phys_from_px, shape) < 0.5


def _sitk_image(array, spacing_xyz, origin_xyz, direction_xyz):
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing_xyz)
    image.SetOrigin(origin_xyz)
    image.SetDirection(np.asarray(direction_xyz, float).ravel().tolist())
    return image


@pytest.mark.parametrize('ndim', [2, 3])
def test_simpleitk_image_geometry_is_kept(ndim):
    """as_image: numpy-order grid whose phys_from_px is ITK's index->point."""
    rng = np.random.default_rng(ndim)
    q, _ = np.linalg.qr(rng.normal(size=(ndim, ndim)))
    q[:, 0] *= -1 if np.linalg.det(q) > 0 else 1  # a reflection is allowed too
    spacing = rng.uniform(0.3, 3.0, ndim)
    origin = rng.uniform(-100, 100, ndim)
    shape = tuple(int(n) for n in rng.integers(6, 12, ndim))
    image = _sitk_image(rng.random(shape).astype(np.float32), spacing, origin, q)
    grid = as_image(image, 'fixed').grid
    assert grid.shape == shape
    np.testing.assert_allclose(grid.spacing, spacing[::-1])
    np.testing.assert_allclose(grid.origin, origin[::-1])
    for index_xyz in rng.integers(0, 5, (5, ndim)):
        expected = image.TransformIndexToPhysicalPoint([int(i) for i in index_xyz])
        ours = apply_matrix(grid.phys_from_px, index_xyz[::-1].astype(float))[0]
        np.testing.assert_allclose(ours[::-1], expected, atol=1e-9)


@pytest.mark.parametrize('backend', BACKENDS)
def test_direction_is_honoured(backend):
    """The moving image holds the fixed content on a grid turned by 90 degrees
    and flipped (direction), so the physical answer is the identity."""
    rng = np.random.default_rng(5)
    array = ndimage.gaussian_filter(rng.random((64, 80)), 2.0).astype(np.float32)
    fixed = _sitk_image(array, (1.0, 1.0), (0.0, 0.0), np.eye(2))
    turned = np.array([[0.0, 1.0], [1.0, 0.0]])  # x along rows, y along cols
    reference = sitk.Image([64, 80], sitk.sitkFloat32)
    reference.SetSpacing((1.0, 1.0))
    reference.SetDirection(turned.ravel().tolist())
    reference.SetOrigin((0.0, 0.0))
    moving = sitk.Resample(fixed, reference, sitk.Transform(), sitk.sitkLinear, 0.0)
    assert sitk.GetArrayFromImage(moving).shape == (80, 64)
    res = register(fixed, moving, model='rigid', metric='ncc', backend=backend)
    np.testing.assert_allclose(res.moving_from_fixed, np.eye(3), atol=0.05)


@pytest.mark.parametrize(
    'backend', ['sitk', pytest.param('torch', marks=pytest.mark.slow)]
)
def test_ct_lung_3d_rigid(shared_data, backend):
    """README section 7: both backends recover the exact 3D rigid transform
    within 0.5 mm mean corner error (Mattes-style MI, physical millimetres)."""
    folder = shared_data / 'ct_lung_3d_synthetic_rigid'
    fixed = sitk.ReadImage(str(folder / 'CT_3D_lung_fixed_small.mha'))
    moving = sitk.ReadImage(str(folder / 'CT_3D_lung_moving_synthetic.mha'))
    truth_json = json.loads((folder / 'ground_truth.json').read_text())
    truth = reverse_axes(np.array(truth_json['homogeneous_4x4']))
    res = register(fixed, moving, model='rigid', metric='mi', backend=backend, levels=2)
    grid = res.fixed_grid
    assert grid.spacing == (5.0, 2.732, 2.732)
    error = _mean_corner_error(
        res.moving_from_fixed, truth, grid.phys_from_px, grid.shape
    )
    assert error < 0.5
