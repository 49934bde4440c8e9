"""Global initialisation (``napari_coreg.init``): solvers, Fourier-Mellin,
features + RANSAC, moments, mirrors, and ``init='auto'`` on real images."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _cases import about_centre, make_case, rotation

from napari_coreg import corner_error, register, reverse_axes
from napari_coreg.init.fit import fit, residuals
from napari_coreg.transforms import Grid, homogeneous

pytest.importorskip('torch')

#: Success on synthetic photo cases (issue 8: rotations past 90 degrees and
#: scale 2 recover to better than half a pixel).
SUCCESS_PX = 0.5


def _points(rng: np.random.Generator, n: int = 300) -> np.ndarray:
    return rng.uniform(0, 400, (n, 2))


def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    mapped = points @ matrix[:2, :2].T + matrix[:2, 2]
    return mapped / (points @ matrix[2, :2] + matrix[2, 2])[:, None]


TRUTHS = {
    'similarity': homogeneous(1.7 * rotation(130.0), (40.0, -25.0)),
    'affine': homogeneous([[1.2, 0.3], [-0.4, 0.8]], (12.0, 30.0)),
    'homography': np.array([[0.9, 0.2, 15.0], [-0.1, 1.1, -4.0], [4e-4, -3e-4, 1.0]]),
}


@pytest.mark.parametrize('model', list(TRUTHS))
def test_ransac_recovers_the_model_among_outliers(model) -> None:
    """60% outliers; the minimal solver is batched (ACA for homographies)."""
    from napari_coreg.init.ransac import ransac

    rng = np.random.default_rng(1)
    truth = TRUTHS[model]
    src = _points(rng)
    dst = _apply(truth, src) + rng.normal(0, 0.3, src.shape)
    outliers = rng.random(len(src)) < 0.6
    dst[outliers] = rng.uniform(0, 400, (outliers.sum(), 2))
    found = ransac(src, dst, model, threshold=1.5, seed=0)
    assert found is not None
    assert found.hypotheses >= 1
    assert abs(found.n_inliers - (~outliers).sum()) <= 0.05 * len(src)
    corners = np.array([[0, 0], [0, 400], [400, 0], [400, 400.0]])
    assert np.abs(_apply(found.matrix, corners) - _apply(truth, corners)).max() < 1.0


@pytest.mark.parametrize('model', ['translation', 'rigid', 'similarity', 'affine'])
def test_fits_are_exact_on_exact_points(model) -> None:
    rng = np.random.default_rng(2)
    truth = {
        'translation': homogeneous(np.eye(2), (3.0, -4.0)),
        'rigid': homogeneous(rotation(-70.0), (3.0, -4.0)),
        'similarity': TRUTHS['similarity'],
        'affine': TRUTHS['affine'],
    }[model]
    src = _points(rng, 20)
    np.testing.assert_allclose(fit(model, src, _apply(truth, src)), truth, atol=1e-8)
    assert residuals(truth, src, _apply(truth, src)).max() < 1e-9


def test_homography_fit_is_exact_on_exact_points() -> None:
    rng = np.random.default_rng(3)
    src = _points(rng, 20)
    found = fit('homography', src, _apply(TRUTHS['homography'], src))
    np.testing.assert_allclose(found, TRUTHS['homography'], rtol=1e-6, atol=1e-8)


# --------------------------------------------------------------------------
# large rotations and scales on photos, default settings

SHAPE = (160, 160)
CENTRE = (np.array(SHAPE) - 1) / 2
#: Puts the fixed crop in the middle of the 512 x 512 photos.
CROP = (176, 176)


@pytest.mark.parametrize(
    'source, angle, scale, shift',
    [
        ('camera', 120.0, 1.0, (10.0, -8.0)),
        ('camera', -135.0, 2.0, (5.0, 5.0)),
        ('camera', 170.0, 0.5, (-6.0, 4.0)),
        ('astronaut', -95.0, 1.25, (12.0, 3.0)),
    ],
)
def test_auto_init_recovers_large_rotation_and_scale(source, angle, scale, shift):
    truth = about_centre(scale * rotation(angle), CENTRE, shift)
    case = make_case(truth, SHAPE, source=source, crop=CROP, seed=7)
    result = register(case.fixed, case.moving, model='similarity', metric='ncc')
    report = result.settings['init_report']
    assert corner_error(result.moving_from_fixed, truth, SHAPE) < SUCCESS_PX, report
    assert report['winner'] is not None and report['why']


def test_explicit_fourier_mellin_and_features() -> None:
    truth = about_centre(1.5 * rotation(150.0), CENTRE, (4.0, -3.0))
    case = make_case(truth, SHAPE, crop=CROP, seed=8)
    for init in ('fourier-mellin', 'features'):
        result = register(
            case.fixed, case.moving, model='similarity', metric='ncc', init=init
        )
        report = result.settings['init_report']
        assert report['winner'].startswith(init), report
        assert corner_error(result.moving_from_fixed, truth, SHAPE) < SUCCESS_PX
    features = report['details']['features']
    assert features['inliers'] >= 10
    assert 0 < features['inlier_ratio'] <= 1


def test_easy_pair_stops_after_the_cheap_tier() -> None:
    truth = about_centre(rotation(4.0), CENTRE, (3.0, -2.0))
    case = make_case(truth, SHAPE, crop=CROP, seed=9)
    result = register(case.fixed, case.moving, model='rigid', metric='ncc')
    assert result.settings['init_report']['tiers'] == ['cheap']
    assert corner_error(result.moving_from_fixed, truth, SHAPE) < SUCCESS_PX


# --------------------------------------------------------------------------
# mirror images


@pytest.mark.parametrize('metric', ['ncc', 'mi'])
def test_mirrored_pair_is_refused_for_a_rigid_model(metric) -> None:
    truth = about_centre(rotation(20.0), CENTRE, (5.0, 0.0))
    case = make_case(truth, SHAPE, crop=CROP, seed=10)
    with pytest.raises(ValueError, match='mirror image'):
        register(case.fixed, case.moving[:, ::-1], model='rigid', metric=metric)


def test_mirrored_pair_registers_when_allowed() -> None:
    truth = about_centre(rotation(20.0), CENTRE, (5.0, 0.0))
    case = make_case(truth, SHAPE, crop=CROP, seed=10)
    flip = np.array([[1.0, 0, 0], [0, -1.0, SHAPE[1] - 1], [0, 0, 1]])
    result = register(
        case.fixed,
        case.moving[:, ::-1],
        model='rigid',
        metric='ncc',
        allow_reflection=True,
    )
    assert result.settings['init_report']['reflection']['allowed']
    assert np.linalg.det(result.moving_from_fixed[:2, :2]) < 0
    error = corner_error(result.moving_from_fixed, flip @ truth, SHAPE)
    assert error < SUCCESS_PX


def test_flip_stated_by_the_geometry_is_kept() -> None:
    """A layer that shows its data flipped (napari ``rotate``/``scale`` of -1):
    the placement already aligns it, and the result must not undo the flip."""
    truth = about_centre(rotation(3.0), CENTRE, (2.0, 1.0))
    case = make_case(truth, SHAPE, crop=CROP, seed=11)
    flipped = case.moving[::-1, ::-1]
    direction = -np.eye(2)
    origin = np.array(SHAPE, float) - 1
    result = register(
        case.fixed,
        flipped,
        model='rigid',
        metric='ncc',
        moving_direction=direction,
        moving_origin=origin,
    )
    assert corner_error(result.moving_from_fixed, truth, SHAPE) < SUCCESS_PX


# --------------------------------------------------------------------------
# 3D


def test_moments_start_the_ct_volume(shared_data) -> None:
    sitk = pytest.importorskip('SimpleITK')
    folder = shared_data / 'ct_lung_3d_synthetic_rigid'
    if not folder.is_dir():
        pytest.skip(f'{folder} not found')
    fixed = sitk.ReadImage(str(folder / 'CT_3D_lung_fixed_small.mha'))
    moving = sitk.ReadImage(str(folder / 'CT_3D_lung_moving_synthetic.mha'))
    truth_json = json.loads((folder / 'ground_truth.json').read_text())
    truth = reverse_axes(np.array(truth_json['homogeneous_4x4']))
    result = register(
        fixed, moving, model='rigid', metric='mi', init='moments', levels=2
    )
    report = result.settings['init_report']
    assert report['tiers'] == ['moments']
    grid = result.fixed_grid
    corners = Grid(grid.shape, grid.spacing, grid.origin, grid.direction)
    error = _corner_error_mm(result.moving_from_fixed, truth, corners)
    assert error < 0.5, report


def test_axis_rotation_search_turns_a_volume() -> None:
    """A volume turned by 90 degrees about one axis (and shifted)."""
    rng = np.random.default_rng(12)
    from scipy import ndimage

    volume = ndimage.gaussian_filter(rng.random((40, 48, 44)), 2.0)
    volume[8:30, 10:20, 6:38] += 0.5  # an asymmetric block
    fixed = volume.astype(np.float32)
    moving = np.ascontiguousarray(np.rot90(fixed, 1, axes=(1, 2)))
    result = register(fixed, moving, model='rigid', metric='ncc')
    # moving[p, r, c] = fixed[p, c, W - 1 - r]: fixed (p, r, c) -> moving
    # (p, W - 1 - c, r)
    width = fixed.shape[2]
    truth = np.array(
        [[1, 0, 0, 0], [0, 0, -1, width - 1], [0, 1, 0, 0], [0, 0, 0, 1.0]]
    )
    assert corner_error(result.moving_from_fixed, truth, fixed.shape) < SUCCESS_PX


def _corner_error_mm(estimate, truth, grid: Grid) -> float:
    from napari_coreg.transforms import apply_matrix, grid_points

    corners = apply_matrix(grid.phys_from_px, grid_points(grid.shape))
    diff = apply_matrix(estimate, corners) - apply_matrix(truth, corners)
    return float(np.linalg.norm(diff, axis=1).mean())


def test_kornia_detector_path_matches_on_cpu() -> None:
    """The accelerator path (kornia SIFT), run on the CPU here: same matching
    and RANSAC, so a GPU runs this code unchanged."""
    pytest.importorskip('kornia')
    from napari_coreg.init.features import _kornia_sift, match
    from napari_coreg.init.ransac import ransac

    truth = about_centre(rotation(60.0), CENTRE, (6.0, -4.0))
    case = make_case(truth, SHAPE, crop=CROP, seed=13)
    fixed, moving = _kornia_sift(case.fixed, 'cpu'), _kornia_sift(case.moving, 'cpu')
    pairs = match(fixed, moving, 'cpu')
    found = ransac(
        fixed.points[pairs[:, 0]], moving.points[pairs[:, 1]], 'similarity', 2.0
    )
    assert found is not None and found.n_inliers >= 10
    assert corner_error(found.matrix, truth, SHAPE) < 2.0


def test_sitk_backend_uses_the_shared_starts() -> None:
    pytest.importorskip('SimpleITK')
    truth = about_centre(rotation(-120.0), CENTRE, (8.0, 5.0))
    case = make_case(truth, SHAPE, crop=CROP, seed=14)
    result = register(
        case.fixed, case.moving, model='rigid', metric='ncc', backend='sitk'
    )
    assert result.settings['init_report']['winner'] is not None
    assert corner_error(result.moving_from_fixed, truth, SHAPE) < SUCCESS_PX


def test_init_package_imports_no_torch() -> None:
    """The initialisers are backend-neutral: torch and kornia load lazily."""
    import subprocess
    import sys

    code = (
        'import sys, napari_coreg.init; '
        "print(sorted({'torch', 'kornia', 'SimpleITK', 'cv2'} & set(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, '-c', code], check=True, capture_output=True, text=True
    )
    assert out.stdout.strip() == '[]'


def test_mirrored_volume_is_detected() -> None:
    """A volume mirrored along one axis: refused for a rigid model, found
    with ``allow_reflection``."""
    from scipy import ndimage

    rng = np.random.default_rng(15)
    volume = ndimage.gaussian_filter(rng.random((40, 48, 44)), 1.0)
    for _ in range(12):  # blocks of random sizes, places and brightness
        lo = rng.integers(0, (30, 38, 34))
        hi = lo + rng.integers(4, 12, 3)
        volume[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] += rng.uniform(0.3, 1)
    fixed = volume.astype(np.float32)
    moving = np.ascontiguousarray(fixed[:, :, ::-1])
    with pytest.raises(ValueError, match='mirror image'):
        register(fixed, moving, model='rigid', metric='ncc')
    result = register(fixed, moving, model='rigid', allow_reflection=True)
    truth = np.diag([1.0, 1.0, -1.0, 1.0])
    truth[2, 3] = fixed.shape[2] - 1
    assert corner_error(result.moving_from_fixed, truth, fixed.shape) < SUCCESS_PX


def test_phase_init_does_not_believe_a_shift_that_leaves_no_overlap() -> None:
    from napari_coreg.init.views import overlap_fraction

    grid = Grid((100, 120))
    assert overlap_fraction(np.eye(3), grid, grid) == 1.0
    far = homogeneous(np.eye(2), (90.0, 0.0))
    assert overlap_fraction(far, grid, grid) < 0.2
    rng = np.random.default_rng(16)
    fixed = rng.random((64, 64)).astype(np.float32)  # noise: any peak is chance
    moving = rng.random((64, 64)).astype(np.float32)
    for backend in ('torch', 'sitk'):
        result = register(
            fixed,
            moving,
            model='translation',
            init='phase',
            backend=backend,
            iterations=1,
        )
        start = np.array(result.settings['initial_moving_from_fixed'])
        assert overlap_fraction(start, Grid((64, 64)), Grid((64, 64))) >= 0.5
