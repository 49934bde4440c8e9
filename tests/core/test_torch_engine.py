"""The torch backend: known-transform recovery on real images for every model x
metric, optimisers, initialisation, physical spacing, masks and devices.

Cases (see ``_cases.py``) are made from scikit-image's bundled photos by
warping a larger source with a known ``moving_from_fixed``, so that
``moving(T p) = fixed(p)`` exactly, then changing the moving image's gamma
(1.2) and adding noise (sigma 0.01); MI cases instead remap the moving
intensities non-monotonically (``0.5 + 0.5 cos(1.5 pi x)``).

Accuracy is the corner error (mean distance of the fixed image's corners and
centre mapped by the estimate and by the truth). The success threshold is
0.5 px at 128 x 160 px, the issue's success criterion; the errors actually
reached are far smaller for ncc and mi (about 0.01-0.06 px), while l1 and mse
are biased by the gamma change (0.1-0.4 px; about 0.02 px without it).
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip('torch')

from _cases import (  # noqa: E402
    METRICS,
    MODELS,
    about_centre,
    make_case,
    random_case,
    rotation,
    source_image,
    translation,
    warp_source,
)

from napari_coreg import apply_matrix, corner_error, register  # noqa: E402
from napari_coreg.transforms import grid_points  # noqa: E402

SHAPE = (128, 160)
SUCCESS_PX = 0.5
CENTRE = (np.array(SHAPE) - 1) / 2


# --------------------------------------------------------------------------
# known-transform recovery, every model x metric


@pytest.mark.parametrize('metric', METRICS)
@pytest.mark.parametrize('model', MODELS)
def test_recovers_known_transform(model, metric) -> None:
    seed = 10 * MODELS.index(model) + METRICS.index(metric)
    case = random_case(model, metric, shape=SHAPE, seed=seed)
    assert corner_error(np.eye(3), case.truth, SHAPE) > 2.0  # a real misalignment
    result = register(case.fixed, case.moving, model=model, metric=metric)
    error = corner_error(result.moving_from_fixed, case.truth, SHAPE)
    print(f'{model:>11} {metric:>3}: corner error {error:.4f} px')
    assert error < SUCCESS_PX


@pytest.mark.parametrize('source', ['astronaut', 'coins', 'moon'])
def test_recovers_affine_on_other_images(source) -> None:
    rng = np.random.default_rng(7)
    from _cases import random_transform

    truth = random_transform('affine', SHAPE, rng)
    case = make_case(truth, SHAPE, source=source, crop=(100, 120), seed=7)
    result = register(case.fixed, case.moving, model='affine', metric='ncc')
    assert corner_error(result.moving_from_fixed, truth, SHAPE) < SUCCESS_PX


def test_identical_images_give_identity_for_every_model() -> None:
    image = source_image('camera')[120:248, 150:310].astype(np.float32)
    for model in MODELS:
        result = register(image, image.copy(), model=model, metric='ncc')
        assert corner_error(result.moving_from_fixed, np.eye(3), SHAPE) < 0.01, model


# --------------------------------------------------------------------------
# optimisers


@pytest.fixture(scope='module')
def rigid_case():
    truth = about_centre(rotation(5.0), CENTRE, (4.25, -6.5))
    return make_case(truth, SHAPE, seed=3)


@pytest.mark.parametrize(
    'optimizer, extra',
    [
        ('gauss-newton', {}),
        ('bfgs', {}),
        # Adam needs its default budget (300 iterations per level, rate 1e-3
        # times the level's shrink factor); it stops earlier on a plateau.
        ('adam', {}),
    ],
)
def test_optimizers_recover_a_rigid_case(rigid_case, optimizer, extra) -> None:
    result = register(
        rigid_case.fixed,
        rigid_case.moving,
        model='rigid',
        metric='ncc',
        optimizer=optimizer,
        **extra,
    )
    assert corner_error(result.moving_from_fixed, rigid_case.truth, SHAPE) < SUCCESS_PX
    assert result.settings['optimizer'] == optimizer


@pytest.mark.parametrize('optimizer', ['bfgs', 'adam'])
def test_optimizers_with_mutual_information(rigid_case, optimizer) -> None:
    moving = 0.5 + 0.5 * np.cos(1.5 * np.pi * np.clip(rigid_case.moving, 0, 1))
    result = register(
        rigid_case.fixed, moving, model='rigid', metric='mi', optimizer=optimizer
    )
    assert corner_error(result.moving_from_fixed, rigid_case.truth, SHAPE) < SUCCESS_PX


def test_gauss_newton_refuses_mutual_information(rigid_case) -> None:
    with pytest.raises(ValueError, match='bfgs|adam'):
        register(
            rigid_case.fixed,
            rigid_case.moving,
            model='rigid',
            metric='mi',
            optimizer='gauss-newton',
        )


def test_unknown_optimizer_raises(rigid_case) -> None:
    with pytest.raises(ValueError, match='optimizer'):
        register(rigid_case.fixed, rigid_case.moving, optimizer='newton')


# --------------------------------------------------------------------------
# initialisation


@pytest.mark.parametrize('init', ['identity', 'center', 'phase', 'auto'])
def test_every_init_recovers_a_small_misalignment(rigid_case, init) -> None:
    result = register(
        rigid_case.fixed, rigid_case.moving, model='rigid', metric='ncc', init=init
    )
    assert corner_error(result.moving_from_fixed, rigid_case.truth, SHAPE) < SUCCESS_PX
    assert result.settings['init'] == init


def test_center_init_aligns_image_centres() -> None:
    """Moving is larger; its centre shows the fixed centre."""
    shape_m = (176, 208)
    offset = (np.array(shape_m) - np.array(SHAPE)) / 2  # (24, 24)
    truth = about_centre(rotation(2.0), CENTRE, offset)
    case = make_case(truth, SHAPE, moving_shape=shape_m, crop=(110, 140), seed=4)
    result = register(
        case.fixed, case.moving, model='rigid', metric='ncc', init='center'
    )
    np.testing.assert_allclose(
        np.array(result.settings['initial_moving_from_fixed']),
        translation(offset),
        atol=1e-9,
    )
    assert corner_error(result.moving_from_fixed, truth, SHAPE) < SUCCESS_PX


def test_phase_init_finds_a_large_translation() -> None:
    """A 20% shift. Phase correlation runs on the coarsest level (2 px pixels
    here, 1/4 pixel upsampling) and only has to land in the capture range:
    within 2 level pixels (4 px); the optimiser does the rest."""
    truth = translation((0.2 * SHAPE[0], -0.2 * SHAPE[1]))
    case = make_case(truth, SHAPE, seed=5)
    result = register(
        case.fixed, case.moving, model='translation', metric='ncc', init='phase'
    )
    initial = np.array(result.settings['initial_moving_from_fixed'])
    assert corner_error(initial, truth, SHAPE) < 4.0
    assert corner_error(result.moving_from_fixed, truth, SHAPE) < SUCCESS_PX


@pytest.mark.parametrize(
    'angle, shift, metric',
    [
        (28.0, (0.15, -0.15), 'ncc'),
        (-25.0, (-0.15, 0.12), 'ncc'),
        (27.0, (-0.15, -0.15), 'mi'),
    ],
)
def test_auto_init_recovers_a_large_rotation_and_shift(angle, shift, metric) -> None:
    truth = about_centre(rotation(angle), CENTRE, np.array(shift) * SHAPE)
    case = make_case(truth, SHAPE, seed=6, multimodal=(metric == 'mi'))
    result = register(
        case.fixed, case.moving, model='rigid', metric=metric, init='auto'
    )
    assert corner_error(result.moving_from_fixed, truth, SHAPE) < SUCCESS_PX


def test_user_initial_matrix_is_honoured() -> None:
    """A 28 degree case, started from a nearby user matrix with init='identity'."""
    truth = about_centre(rotation(28.0), CENTRE, (12.0, -15.0))
    case = make_case(truth, SHAPE, seed=6)
    initial = about_centre(rotation(26.0), CENTRE, (10.0, -13.0))
    result = register(
        case.fixed,
        case.moving,
        model='rigid',
        metric='ncc',
        init='identity',
        initial=initial,
    )
    np.testing.assert_array_equal(
        np.array(result.settings['initial_moving_from_fixed']), initial
    )
    assert corner_error(result.moving_from_fixed, truth, SHAPE) < SUCCESS_PX


def test_initial_matrix_is_the_start_point() -> None:
    """With one iteration on one level the result stays near the given start."""
    truth = about_centre(rotation(3.0), CENTRE, (2.0, 3.0))
    case = make_case(truth, SHAPE, seed=8)
    far = translation((30.0, -30.0))
    result = register(
        case.fixed,
        case.moving,
        model='translation',
        metric='ncc',
        initial=far,
        levels=1,
        iterations=1,
    )
    assert corner_error(result.moving_from_fixed, far, SHAPE) < 2.0


# --------------------------------------------------------------------------
# physical spacing and origin


def _physical_case(
    spacing_f,
    spacing_m,
    origin_f=(0.0, 0.0),
    origin_m=(0.0, 0.0),
    shape_f=(64, 160),
    shape_m=(128, 160),
):
    """The scene is the camera photo (1 unit = 1 source pixel), blurred so the
    coarser grid does not alias; the truth is a rigid map in physical units."""
    from scipy import ndimage

    scene = ndimage.gaussian_filter(source_image('camera'), 1.0)
    crop = translation((150.0, 150.0))
    phys_f = translation(origin_f) @ np.diag([*spacing_f, 1.0])
    phys_m = translation(origin_m) @ np.diag([*spacing_m, 1.0])
    extent_f = (np.array(shape_f) - 1) * spacing_f
    centre_phys = np.array(origin_f) + extent_f / 2
    truth = about_centre(rotation(6.0), centre_phys, (3.0, -4.0))  # physical
    fixed = warp_source(scene, crop @ phys_f, shape_f)
    moving = warp_source(scene, crop @ np.linalg.inv(truth) @ phys_m, shape_m)
    return fixed.astype(np.float32), moving.astype(np.float32), truth, phys_f


def _physical_error(estimate, truth, phys_from_px, shape) -> float:
    points = apply_matrix(phys_from_px, grid_points(shape))
    return float(
        np.linalg.norm(
            apply_matrix(estimate, points) - apply_matrix(truth, points), axis=1
        ).mean()
    )


def test_spacing_result_is_in_physical_units() -> None:
    fixed, moving, truth, phys_f = _physical_case((2.0, 1.0), (1.0, 1.0))
    result = register(
        fixed,
        moving,
        model='rigid',
        metric='ncc',
        fixed_spacing=(2.0, 1.0),
        moving_spacing=(1.0, 1.0),
    )
    assert (
        _physical_error(result.moving_from_fixed, truth, phys_f, fixed.shape)
        < SUCCESS_PX
    )
    linear = result.moving_from_fixed[:2, :2]
    np.testing.assert_allclose(
        linear @ linear.T, np.eye(2), atol=1e-9
    )  # rigid in physical units
    assert result.aligned.shape == fixed.shape


def test_spacing_and_origin_on_both_images() -> None:
    fixed, moving, truth, phys_f = _physical_case(
        (2.0, 1.0),
        (1.0, 1.5),
        origin_f=(10.0, -5.0),
        origin_m=(-3.0, 7.0),
        shape_m=(128, 107),
    )
    result = register(
        fixed,
        moving,
        model='rigid',
        metric='ncc',
        fixed_spacing=(2.0, 1.0),
        moving_spacing=(1.0, 1.5),
        fixed_origin=(10.0, -5.0),
        moving_origin=(-3.0, 7.0),
    )
    assert (
        _physical_error(result.moving_from_fixed, truth, phys_f, fixed.shape)
        < SUCCESS_PX
    )
    assert result.fixed_grid.spacing == (2.0, 1.0)
    assert result.moving_grid.origin == (-3.0, 7.0)


def test_ignoring_spacing_gives_a_different_answer() -> None:
    """Sanity check of the case: in pixel units the same pair is not rigid."""
    fixed, moving, truth, phys_f = _physical_case((2.0, 1.0), (1.0, 1.0))
    truth_px = truth @ phys_f  # moving px (spacing 1, origin 0) from fixed px
    result = register(fixed, moving, model='affine', metric='ncc')
    assert corner_error(result.moving_from_fixed, truth_px, fixed.shape) < SUCCESS_PX
    linear = result.moving_from_fixed[:2, :2]
    assert not np.allclose(linear @ linear.T, np.eye(2), atol=1e-2)


@pytest.mark.parametrize('model', ['rigid', 'affine'])
def test_direction_matrix_is_honoured(model) -> None:
    """Moving is fixed's pixels rotated by 90 degrees, with a direction and origin
    that put them back where they were: the physical transform is the identity."""
    from scipy import ndimage

    fixed = ndimage.gaussian_filter(source_image('camera')[100:196, 200:328], 1.0)
    fixed = fixed.astype(np.float32)
    width = fixed.shape[1]
    moving = np.rot90(fixed).copy()  # moving[i, j] = fixed[j, width - 1 - i]
    result = register(
        fixed,
        moving,
        model=model,
        metric='ncc',
        moving_direction=[[0.0, 1.0], [-1.0, 0.0]],
        moving_origin=(0.0, width - 1.0),
    )
    assert corner_error(result.moving_from_fixed, np.eye(3), fixed.shape) < 0.01
    assert result.aligned.shape == fixed.shape
    inner = (slice(4, -4), slice(4, -4))
    np.testing.assert_allclose(result.aligned[inner], fixed[inner], atol=1e-3)


# --------------------------------------------------------------------------
# masks


def _corrupted_case():
    """Fixed gets a bright textured patch (from another photo) that moving lacks."""
    truth = about_centre(rotation(4.0), CENTRE, (5.0, -7.0))
    case = make_case(truth, SHAPE, seed=9)
    patch = source_image('coins')[60:124, 80:160].astype(np.float32)
    corrupted = case.fixed.copy()
    corrupted[8:72, 70:150] = patch
    mask = np.ones(SHAPE, bool)
    mask[4:76, 66:154] = False
    return case, corrupted, mask


def test_fixed_mask_excludes_a_corrupted_region() -> None:
    case, corrupted, mask = _corrupted_case()
    masked = register(
        corrupted, case.moving, model='affine', metric='ncc', fixed_mask=mask
    )
    unmasked = register(corrupted, case.moving, model='affine', metric='ncc')
    masked_error = corner_error(masked.moving_from_fixed, case.truth, SHAPE)
    unmasked_error = corner_error(unmasked.moving_from_fixed, case.truth, SHAPE)
    assert masked_error < 0.1
    assert unmasked_error > 2 * masked_error


def test_moving_mask_excludes_a_corrupted_region() -> None:
    truth = about_centre(rotation(4.0), CENTRE, (5.0, -7.0))
    case = make_case(truth, SHAPE, seed=9)
    moving = case.moving.copy()
    moving[20:84, 10:90] = source_image('coins')[60:124, 80:160]
    mask = np.ones(SHAPE, bool)
    mask[16:88, 6:94] = False
    masked = register(
        case.fixed, moving, model='affine', metric='ncc', moving_mask=mask
    )
    unmasked = register(case.fixed, moving, model='affine', metric='ncc')
    masked_error = corner_error(masked.moving_from_fixed, truth, SHAPE)
    assert masked_error < 0.1
    assert corner_error(unmasked.moving_from_fixed, truth, SHAPE) > 2 * masked_error


# --------------------------------------------------------------------------
# devices


def test_runs_on_the_device(device, rigid_case) -> None:
    result = register(
        rigid_case.fixed, rigid_case.moving, model='rigid', metric='ncc', device=device
    )
    assert corner_error(result.moving_from_fixed, rigid_case.truth, SHAPE) < SUCCESS_PX
    assert result.settings['device'] == device


def test_default_device_is_cpu_without_accelerators(rigid_case) -> None:
    from napari_coreg.engines.torch.engine import pick_device

    if torch.cuda.is_available() or torch.backends.mps.is_available():
        pytest.skip('an accelerator is present')
    assert pick_device(None) == torch.device('cpu')
    result = register(
        rigid_case.fixed,
        rigid_case.moving,
        model='rigid',
        metric='ncc',
        device=None,
        levels=1,
        iterations=3,
    )
    assert result.settings['device'] is None


# --------------------------------------------------------------------------
# conventions end to end, dtypes, 3D


def test_translation_sign_and_axis_order() -> None:
    """scipy's shift by (+2.5 rows, -6.25 cols) makes moving(p + s) = fixed(p):
    moving_from_fixed is a translation by +s, in (row, col) order."""
    from scipy import ndimage

    fixed = ndimage.gaussian_filter(
        source_image('camera')[100:196, 200:328], 1.0
    ).astype(np.float32)
    moving = ndimage.shift(fixed, (2.5, -6.25), order=3, mode='nearest')
    result = register(fixed, moving, model='translation', metric='ncc')
    np.testing.assert_allclose(result.moving_from_fixed[:2, 2], [2.5, -6.25], atol=0.05)
    np.testing.assert_allclose(result.fixed_from_moving[:2, 2], [-2.5, 6.25], atol=0.05)


def test_integer_and_float_inputs_agree(rigid_case) -> None:
    """Intensities are normalised: uint16 and float64 versions give the same answer."""
    as_uint16 = [
        np.round(np.clip(a, 0, 1) * 60000).astype(np.uint16)
        for a in (rigid_case.fixed, rigid_case.moving)
    ]
    as_float = [a.astype(np.float64) / 60000 for a in as_uint16]
    a = register(*as_uint16, model='rigid', metric='ncc').moving_from_fixed
    b = register(*as_float, model='rigid', metric='ncc').moving_from_fixed
    assert corner_error(a, b, SHAPE) < 1e-3


@pytest.mark.slow
@pytest.mark.parametrize('model', ['rigid', 'affine'])
def test_recovers_a_3d_rigid_transform(model) -> None:
    from scipy import ndimage

    rng = np.random.default_rng(0)
    volume = ndimage.gaussian_filter(rng.random((40, 72, 88)), 3)
    volume = (volume - volume.min()) / (volume.max() - volume.min())
    shape = (24, 48, 56)
    linear = np.eye(3)
    linear[1:, 1:] = rotation(4.0)  # about the plane axis
    centre = (np.array(shape) - 1) / 2
    truth = np.eye(4)
    truth[:3, :3] = linear
    truth[:3, 3] = centre - linear @ centre + (1.5, -2.0, 2.5)
    crop = translation((8.0, 12.0, 16.0))
    fixed = warp_source(volume, crop, shape).astype(np.float32)
    moving = warp_source(volume, crop @ np.linalg.inv(truth), shape).astype(np.float32)
    result = register(fixed, moving, model=model, metric='ncc')
    assert corner_error(result.moving_from_fixed, truth, shape) < SUCCESS_PX


# --------------------------------------------------------------------------
# the engine's analytic derivative (image gradient x point Jacobian) against
# autograd through the bilinear sampler (internal API: engines.torch.optim)


@pytest.mark.parametrize('metric', ['mse', 'ncc', 'mi'])
@pytest.mark.parametrize('model', MODELS)
def test_objective_gradient_matches_autograd_through_the_sampler(model, metric) -> None:
    from scipy import ndimage

    from napari_coreg import Grid
    from napari_coreg.engines.torch.levels import build_level, normalised_frame, sample
    from napari_coreg.engines.torch.metrics import loss
    from napari_coreg.engines.torch.models import param_model
    from napari_coreg.engines.torch.optim import Objective
    from napari_coreg.options import Metric, Model
    from napari_coreg.pyramid import Level

    shape = (48, 64)
    scene = ndimage.gaussian_filter(source_image('camera'), 3.0)
    truth = about_centre(rotation(3.0), (np.array(shape) - 1) / 2, (1.3, -0.7))
    fixed = warp_source(scene, translation((200, 200)), shape).astype(np.float32)
    moving = warp_source(scene, translation((200, 200)) @ np.linalg.inv(truth), shape)
    if metric == 'mi':
        moving = 0.5 + 0.5 * np.cos(1.5 * np.pi * moving)
    grid = Grid(shape, spacing=(1.5, 0.8))  # anisotropic: axis mix-ups show
    norm = normalised_frame(grid)
    data = build_level(
        fixed[None],
        moving.astype(np.float32)[None],
        grid,
        grid,
        None,
        None,
        Level(1, 0.0, 1),
        norm,
        torch.device('cpu'),
        max_points=10**6,
    )
    corners = None
    if model == 'homography':
        corners = torch.as_tensor(
            apply_matrix(norm, apply_matrix(grid.phys_from_px, grid_points(shape)[:-1]))
        )
    params_model = param_model(Model(model), 2, corners)
    base = torch.eye(3, dtype=torch.float64)[None]
    objective = Objective(
        data, params_model, base, Metric(metric), 16, torch.zeros(1, dtype=torch.long)
    )
    params = torch.as_tensor(
        np.random.default_rng(1).normal(0, 0.004, (1, params_model.n_params))
    )
    _, analytic = objective.gradient(params, torch.tensor([0]))

    leaf = params.clone().requires_grad_(True)
    s = sample(
        data, params_model.matrices(leaf, base), torch.zeros(1, dtype=torch.long)
    )
    value = loss(Metric(metric), s.values, data.fixed_values, s.weights.detach(), 16)
    (expected,) = torch.autograd.grad(value.sum(), leaf)
    # the engine differentiates the smoothed image by central differences,
    # autograd the bilinear interpolant: they agree to a few percent
    relative = torch.linalg.norm(analytic - expected) / torch.linalg.norm(expected)
    assert relative < 0.05, (analytic, expected)
