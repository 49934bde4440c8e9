"""The SimpleITK backend: recovery, options, progress, cancel, parity with torch."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import replace

import numpy as np
import pytest
from scipy import ndimage
from skimage import data as skdata

sitk = pytest.importorskip('SimpleITK')

from napari_coreg import iter_register, register, reverse_axes  # noqa: E402
from napari_coreg.transforms import (  # noqa: E402
    apply_matrix,
    corner_error,
    grid_points,
    homogeneous,
)

SHAPE = (96, 112)
OFFSET = np.array([150.0, 170.0])


def _rotation(degrees: float) -> np.ndarray:
    a = np.deg2rad(degrees)
    return np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])


def _about_centre(linear, shift=(0.0, 0.0), shape=SHAPE) -> np.ndarray:
    centre = (np.array(shape) - 1) / 2
    linear = np.asarray(linear, dtype=np.float64)
    return homogeneous(linear, centre - linear @ centre + np.asarray(shift))


TRUTHS = {
    'translation': _about_centre(np.eye(2), (2.6, -3.4)),
    'rigid': _about_centre(_rotation(6.0), (2.0, -1.5)),
    'similarity': _about_centre(1.06 * _rotation(-5.0), (-1.5, 2.5)),
    'affine': _about_centre([[1.05, 0.06], [-0.04, 0.96]], (1.5, 2.0)),
}


def _pair(truth: np.ndarray, shape=SHAPE, seed: int = 0):
    """``moving(truth p) = fixed(p)`` exactly, both cut from one photo."""
    source = skdata.camera().astype(np.float64) / 255
    source = ndimage.gaussian_filter(source, 1.0)
    crop = homogeneous(np.eye(2), OFFSET)
    fixed = ndimage.affine_transform(source, crop, output_shape=shape, order=3)
    moving = ndimage.affine_transform(
        source, crop @ np.linalg.inv(truth), output_shape=shape, order=3
    )
    noise = np.random.default_rng(seed).normal(0, 0.005, moving.shape)
    return fixed.astype(np.float32), (moving + noise).astype(np.float32)


# --------------------------------------------------------------------------
# refused before any work


@pytest.mark.parametrize(
    ('model', 'metric', 'ndim', 'extra', 'match'),
    [
        ('rigid', 'l1', 2, {}, "backend='torch'"),
        ('homography', 'ncc', 2, {}, "backend='torch'"),
        ('homography', 'mi', 3, {}, 'torch|2D'),
        ('rigid', 'ncc', 2, {'optimizer': 'adam'}, 'torch'),
        ('rigid', 'ncc', 2, {'optimizer': 'newton'}, 'gradient-descent'),
    ],
)
def test_refused_combinations_raise_on_call(model, metric, ndim, extra, match):
    """Refused by ``iter_register`` itself, before the first step."""
    image = np.random.default_rng(0).random((16,) * ndim)
    with pytest.raises(ValueError, match=match):
        iter_register(image, image, model=model, metric=metric, backend='sitk', **extra)


def test_sitk_optimizer_names_are_refused_by_torch():
    image = np.random.default_rng(0).random((16, 16))
    with pytest.raises(ValueError, match='sitk'):
        iter_register(image, image, model='rigid', backend='torch', optimizer='amoeba')


# --------------------------------------------------------------------------
# recovery and options


@pytest.mark.parametrize('model', list(TRUTHS))
@pytest.mark.parametrize('metric', ['mse', 'ncc', 'mi'])
def test_recovers_known_2d_transform(model, metric):
    truth = TRUTHS[model]
    fixed, moving = _pair(truth)
    res = register(fixed, moving, model=model, metric=metric, backend='sitk')
    assert corner_error(res.moving_from_fixed, truth, SHAPE) < 0.25
    assert res.backend == 'sitk'
    assert res.levels[-1].stop_reason in ('converged', 'max_iterations')
    better = res.metric_after > res.metric_before
    assert better if metric in ('ncc', 'mi') else not better


@pytest.mark.parametrize(
    'optimizer',
    ['gradient-descent-line-search', 'conjugate-gradient', 'amoeba'],
)
def test_other_optimizers(optimizer):
    truth = TRUTHS['rigid']
    fixed, moving = _pair(truth)
    res = register(
        fixed,
        moving,
        model='rigid',
        metric='ncc',
        backend='sitk',
        optimizer=optimizer,
    )
    assert corner_error(res.moving_from_fixed, truth, SHAPE) < 0.25


def test_physical_spacing_and_origin_2d():
    """Anisotropic pixels: the result is rigid in physical units."""
    spacing, origin = np.array([2.0, 0.5]), np.array([-10.0, 40.0])
    phys_from_px = homogeneous(np.diag(spacing), origin)
    centre = apply_matrix(phys_from_px, (np.array(SHAPE) - 1) / 2)[0]
    rot = _rotation(5.0)
    truth = homogeneous(rot, centre - rot @ centre + [3.0, -2.0])  # physical
    truth_px = np.linalg.inv(phys_from_px) @ truth @ phys_from_px
    fixed, moving = _pair(truth_px)
    res = register(
        fixed,
        moving,
        model='rigid',
        metric='ncc',
        backend='sitk',
        fixed_spacing=spacing,
        moving_spacing=spacing,
        fixed_origin=origin,
        moving_origin=origin,
    )
    linear = res.moving_from_fixed[:2, :2]
    np.testing.assert_allclose(linear @ linear.T, np.eye(2), atol=1e-9)
    corners = apply_matrix(phys_from_px, grid_points(SHAPE))
    moved = apply_matrix(res.moving_from_fixed, corners)
    assert np.linalg.norm(moved - apply_matrix(truth, corners), axis=1).mean() < 0.2


@pytest.mark.parametrize('backend', ['torch', 'sitk'])
def test_initial_outside_the_model_is_refused(backend):
    """An affine start with a translation model would return a scaled
    'translation'; a mirror start with a rigid model a reflection labelled
    rigid: both are refused before any work, naming the fix."""
    truth = _about_centre([[1.04, 0.05], [-0.03, 0.97]], (2.0, -1.0))
    fixed, moving = _pair(truth)
    start = truth @ homogeneous(np.eye(2), [1.5, 1.0])
    with pytest.raises(ValueError, match="outside it for the 'translation' model"):
        register(
            fixed, moving, model='translation', backend=backend, initial=start
        )
    mirror = np.diag([-1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="a reflection for the 'rigid' model"):
        register(fixed, moving, model='rigid', backend=backend, initial=mirror)


@pytest.mark.parametrize('init', ['identity', 'center', 'phase', 'auto'])
def test_init_modes(init):
    shifted = _about_centre(np.eye(2), (7.0, -9.0))
    fixed, moving = _pair(shifted)
    truth = homogeneous(np.eye(2), [-5.0, 0.0]) @ shifted  # moving cropped below
    res = register(
        fixed,
        moving[5:, :-3],
        model='translation',
        metric='ncc',
        backend='sitk',
        init=init,
    )
    start = np.array(res.settings['initial_moving_from_fixed'])
    if init == 'identity':
        np.testing.assert_allclose(start, np.eye(3))
    elif init == 'center':  # centres of the two grids aligned
        np.testing.assert_allclose(start[:2, 2], [-2.5, -1.5])
    else:  # phase correlation lands near the truth
        assert corner_error(start, truth, SHAPE) < 3
    assert corner_error(res.moving_from_fixed, truth, SHAPE) < 0.25


def test_sampling_is_reproducible():
    fixed, moving = _pair(TRUTHS['rigid'])
    runs = [
        register(
            fixed,
            moving,
            model='rigid',
            metric='mi',
            backend='sitk',
            sampling=0.2,
            seed=seed,
        ).moving_from_fixed
        for seed in (3, 3, 4)
    ]
    # same samples; only the threads' summation order may differ (~1e-12)
    np.testing.assert_allclose(runs[0], runs[1], atol=1e-8)
    assert np.abs(runs[0] - runs[2]).max() > 1e-6
    assert corner_error(runs[0], TRUTHS['rigid'], SHAPE) < 0.5


def test_masks_exclude_an_occluder():
    truth = TRUTHS['translation']
    fixed, moving = _pair(truth)
    moving = moving.copy()
    moving[20:60, 30:80] = 1.0  # a bright artefact only in moving
    mask = np.ones(SHAPE, bool)
    mask[12:68, 22:88] = False  # a margin: coarse levels blur the artefact
    free = register(fixed, moving, model='translation', metric='ncc', backend='sitk')
    for where in ('moving_mask', 'fixed_mask'):
        masked = register(
            fixed,
            moving,
            model='translation',
            metric='ncc',
            backend='sitk',
            **{where: mask},
        )
        assert corner_error(masked.moving_from_fixed, truth, SHAPE) < 0.05
    assert corner_error(free.moving_from_fixed, truth, SHAPE) > corner_error(
        masked.moving_from_fixed, truth, SHAPE
    )


def test_metrics_in_natural_form():
    fixed, moving = _pair(TRUTHS['rigid'])
    res = register(fixed, moving, model='rigid', metric='ncc', backend='sitk')
    assert -1 <= res.metric_before < res.metric_after <= 1
    # NCC is the Pearson correlation (SimpleITK's Correlation is -ncc**2)
    aligned = res.aligned
    inside = ndimage.binary_erosion(aligned != 0, iterations=2)
    pearson = np.corrcoef(aligned[inside], fixed[inside])[0, 1]
    assert res.metric_after == pytest.approx(pearson, abs=0.01)
    mi = register(fixed, moving, model='rigid', metric='mi', backend='sitk')
    assert 0 < mi.metric_before < mi.metric_after  # nats, higher is better


# --------------------------------------------------------------------------
# progress, batches, cancel


def test_progress_stream_matches_the_level_reports():
    fixed, moving = _pair(TRUTHS['rigid'])
    steps = iter_register(fixed, moving, model='rigid', metric='ncc', backend='sitk')
    seen = []
    while True:
        try:
            seen.append(next(steps))
        except StopIteration as done:
            res = done.value
            break
    assert [p.step for p in seen] == list(range(len(seen)))
    previews = [p.matrix for p in seen if p.matrix is not None]
    assert previews and all(m.shape == (3, 3) for m in previews)
    assert corner_error(previews[-1], res.moving_from_fixed, SHAPE) < 5
    assert {p.level for p in seen} == set(range(len(res.levels)))
    assert all(p.total == seen[0].total and p.n_levels == len(res.levels) for p in seen)
    for index, level in enumerate(res.levels):
        losses = [p.loss for p in seen if p.level == index]
        assert tuple(losses) == level.losses
        iterations = [p.iteration for p in seen if p.level == index]
        assert iterations == list(range(len(losses)))


def test_batch_runs_frame_after_frame():
    from napari_coreg.engines.sitk.engine import run
    from napari_coreg.method import resolve
    from napari_coreg.problem import Problem

    truths = [TRUTHS['rigid'], TRUTHS['translation']]
    pairs = [_pair(t, seed=i) for i, t in enumerate(truths)]
    problem = Problem.from_images(
        pairs[0][0], pairs[0][1], resolve('rigid', 'ncc', 'sitk')
    )[0]
    second = Problem.from_images(
        pairs[1][0], pairs[1][1], resolve('rigid', 'ncc', 'sitk')
    )[0]
    batch = replace(
        problem,
        fixed=np.concatenate([problem.fixed, second.fixed]),
        moving=np.concatenate([problem.moving, second.moving]),
    )
    steps = run(batch)
    progress = []
    while True:
        try:
            progress.append(next(steps))
        except StopIteration as done:
            outcome = done.value
            break
    assert outcome.moving_from_fixed.shape == (2, 3, 3)
    assert outcome.metric_after.shape == (2,)
    for matrix, truth in zip(outcome.moving_from_fixed, truths, strict=True):
        assert corner_error(matrix, truth, SHAPE) < 0.25
    assert len(outcome.levels) == len(problem.schedule)
    assert progress[-1].step == len(progress) - 1


def _sitk_threads() -> int:
    return sum(t.name == 'napari-coreg-sitk' for t in threading.enumerate())


@pytest.mark.parametrize('optimizer', ['gradient-descent', 'amoeba'])
def test_cancel_within_a_level(optimizer, capfd):
    """Closing the stream stops the running level at its next iteration:
    StopRegistration() for ITKv4 optimisers, a swallowed exception for the
    vnl ones (Amoeba); no thread is left behind and nothing is printed."""
    fixed, moving = _pair(TRUTHS['rigid'], shape=(160, 192))
    steps = iter_register(
        fixed,
        moving,
        model='rigid',
        metric='ncc',
        backend='sitk',
        optimizer=optimizer,
        levels=1,
        iterations=100000,
        tolerance=1e-12,
    )
    for _ in range(3):
        next(steps)
    started = time.perf_counter()
    steps.close()
    assert time.perf_counter() - started < 2.0
    assert _sitk_threads() == 0
    err = capfd.readouterr().err
    assert 'Traceback' not in err and '_Cancelled' not in err


def test_cancel_between_levels():
    fixed, moving = _pair(TRUTHS['rigid'])
    steps = iter_register(fixed, moving, model='rigid', metric='ncc', backend='sitk')
    first = next(steps)
    while True:  # run to the first item of level 1
        progress = next(steps)
        if progress.level == 1:
            break
    steps.close()
    assert first.level == 0 and progress.level == 1
    assert _sitk_threads() == 0


def _method(optimizer: str):
    fixed, moving = _pair(TRUTHS['rigid'])
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMeanSquares()
    method.SetInterpolator(sitk.sitkLinear)
    transform = sitk.Euler2DTransform()
    transform.SetCenter([55.5, 47.5])
    method.SetInitialTransform(transform, inPlace=True)
    if optimizer == 'rsgd':
        method.SetOptimizerAsRegularStepGradientDescent(0.5, 1e-12, 40, 0.999, 1e-12)
    else:
        method.SetOptimizerAsLBFGSB(1e-30, 40, 5, 100000, 0.0)
    return method, sitk.GetImageFromArray(fixed), sitk.GetImageFromArray(moving)


@pytest.mark.parametrize(
    ('optimizer', 'call', 'stops'),
    [
        ('rsgd', 'Abort', False),  # ImageRegistrationMethod ignores Abort()
        ('rsgd', 'StopRegistration', True),
        ('lbfgsb', 'StopRegistration', False),  # vnl optimisers ignore it
    ],
)
def test_simpleitk_stop_semantics(optimizer, call, stops):
    """What the engine's cancel relies on, checked on SimpleITK itself."""
    method, fixed, moving = _method(optimizer)
    iterations = []

    def on_iteration():
        iterations.append(method.GetOptimizerIteration())
        if len(iterations) == 3:
            getattr(method, call)()

    method.AddCommand(sitk.sitkIterationEvent, on_iteration)
    method.Execute(fixed, moving)
    method.RemoveAllCommands()
    assert (len(iterations) == 3) is stops


# --------------------------------------------------------------------------
# real data: parity with torch, multimodal MR in physical space


PD = 'BrainProtonDensitySlice'


def _brain(folder, name):
    from skimage.io import imread

    return imread(folder / 'itk_brain_2d' / name)  # some are RGB: luminance


@pytest.mark.slow
@pytest.mark.parametrize(
    ('moving_name', 'fixed_name', 'model', 'metrics'),
    [
        (f'{PD}R10X13Y17.png', f'{PD}Border20.png', 'rigid', ('ncc', 'mi')),
        (f'{PD}R10X13Y17S12.png', f'{PD}Border20.png', 'similarity', ('ncc', 'mi')),
        (f'{PD}Shifted13x17y.png', 'BrainT1SliceBorder20.png', 'translation', ('mi',)),
    ],
)
def test_parity_with_torch_on_itk_brain(
    shared_data, moving_name, fixed_name, model, metrics
):
    fixed = _brain(shared_data, fixed_name)
    moving = _brain(shared_data, moving_name)
    truths = json.loads(
        (shared_data / 'itk_brain_2d' / 'ground_truth.json').read_text()
    )
    key = (
        moving_name
        if fixed_name.startswith('BrainProton')
        else next(k for k in truths['pairs'] if k.startswith(fixed_name))
    )
    entry = truths['pairs'][key]
    measured = entry.get('fixed_to_moving_3x3_measured')
    truth = reverse_axes(np.array(measured or entry['fixed_to_moving_3x3']))
    shape = fixed.shape[:2]
    for metric in metrics:
        ours = {
            backend: register(
                fixed, moving, model=model, metric=metric, backend=backend
            )
            for backend in ('sitk', 'torch')
        }
        gap = corner_error(
            ours['sitk'].moving_from_fixed, ours['torch'].moving_from_fixed, shape
        )
        assert gap < 0.5, (metric, gap)
        for res in ours.values():
            assert corner_error(res.moving_from_fixed, truth, shape) < 0.5


@pytest.mark.slow
@pytest.mark.parametrize('backend', ['sitk', 'torch'])
def test_mr_spine_t1_t2_mi_in_physical_space(shared_data, backend):
    """T2 is stored with direction diag(-1, -1) and another spacing: the
    headers place it; MI finds the README's reference to within 1 mm."""
    from napari_coreg._sitk import matrix_from_transform

    folder = shared_data / 'mr_spine_t1_t2'
    t1 = sitk.ReadImage(str(folder / 'DzZ_T1.nrrd'))
    t2 = sitk.ReadImage(str(folder / 'DzZ_T2.nrrd'))
    assert t2.GetDirection() == (-1.0, 0.0, 0.0, -1.0)
    reference = matrix_from_transform(
        sitk.ReadTransform(str(folder / 'reference_T1_to_T2_rigid.tfm'))
    )
    res = register(t1, t2, model='rigid', metric='mi', backend=backend)
    grid = res.fixed_grid
    corners = apply_matrix(grid.phys_from_px, grid_points(grid.shape))
    error = np.linalg.norm(
        apply_matrix(res.moving_from_fixed, corners) - apply_matrix(reference, corners),
        axis=1,
    ).mean()
    assert error < 1.0
    assert res.metric_after > 0.8 > 0.1 > res.metric_before


def test_capabilities_list_the_engine_optimizers():
    """The table the API and the widget read agrees with the engine."""
    from napari_coreg.engines import CAPABILITIES
    from napari_coreg.engines.sitk.engine import OPTIMIZERS
    from napari_coreg.options import Backend

    assert set(CAPABILITIES[Backend.SITK].optimizers) == set(OPTIMIZERS)
