"""Stack registration: drift recovery, real stacks, layouts, out-of-core, dask."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage
from skimage import data

from napari_coreg import StackProgress, StackResult, iter_register_stack, register_stack
from napari_coreg.transforms import corner_error, homogeneous, reverse_axes


def _rotation(angles_deg: np.ndarray) -> np.ndarray:
    """2D rotation, or 3D rotation about the three axes (numpy order)."""
    a = np.deg2rad(angles_deg)
    if a.size == 1:
        c, s = np.cos(a[0]), np.sin(a[0])
        return np.array([[c, -s], [s, c]])
    out = np.eye(3)
    for axis, angle in enumerate(a):
        i, j = [k for k in range(3) if k != axis]
        r = np.eye(3)
        r[i, i] = r[j, j] = np.cos(angle)
        r[i, j], r[j, i] = -np.sin(angle), np.sin(angle)
        out = out @ r
    return out


def drift_stack(
    image: np.ndarray,
    n: int,
    shape: tuple[int, ...],
    seed: int = 1,
    step_deg: float = 1.0,
    step_px: float = 1.5,
):
    """Frames cut from ``image`` by a random walk of rigid motions.

    Returns the stack and ``frame_from_world`` per frame: frame ``i`` shows
    at pixel ``q`` the world point ``inv(truth[i]) @ q``, so frame i's true
    ``moving_from_fixed`` to frame 0 is ``truth[i] @ inv(truth[0])``.
    """
    rng = np.random.default_rng(seed)
    ndim = len(shape)
    centre = (np.array(shape) - 1) / 2
    offset = (np.array(image.shape) - np.array(shape)) / 2
    angles = np.zeros(1 if ndim == 2 else 3)
    shift = np.zeros(ndim)
    frames, truth = [], []
    for i in range(n):
        if i:
            angles += rng.normal(0, step_deg, angles.size)
            shift += rng.normal(0, step_px, ndim)
        rot = _rotation(angles)
        frame_from_world = homogeneous(rot, centre + shift - rot @ centre)
        pull = np.linalg.inv(frame_from_world)
        pull[:ndim, ndim] += offset
        frames.append(
            ndimage.affine_transform(image, pull, output_shape=shape, order=3)
        )
        truth.append(frame_from_world)
    return np.stack(frames).astype(np.float32), np.stack(truth)


def relative_errors(result: StackResult, truth: np.ndarray, shape) -> np.ndarray:
    """Corner error of every frame's transform relative to frame 0 (pixels)."""
    m = result.moving_from_fixed
    inv_m, inv_t = np.linalg.inv(m[0]), np.linalg.inv(truth[0])
    return np.array(
        [corner_error(m[i] @ inv_m, truth[i] @ inv_t, shape) for i in range(len(m))]
    )


def ncc(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


@pytest.fixture(scope='module')
def camera_drift():
    return drift_stack(data.camera().astype(np.float32), 20, (128, 128))


@pytest.fixture(scope='module')
def small_stack():
    image = data.camera()[::4, ::4].astype(np.float32)
    return drift_stack(image, 5, (64, 64), seed=2, step_deg=0.5, step_px=1.0)


FAST = {'init': 'center', 'model': 'rigid'}


# --------------------------------------------------------------------------
# accuracy


@pytest.mark.parametrize('reference', ['first', 'previous', 'mean'])
def test_drift_stack_recovered_within_a_tenth_of_a_pixel(camera_drift, reference):
    stack, truth = camera_drift
    # 'first' keeps the default start (rotation search); the others start
    # from phase correlation, which these small motions need and is faster
    init = {} if reference == 'first' else {'init': 'phase'}
    result = register_stack(stack, reference=reference, model='rigid', rounds=2, **init)
    errors = relative_errors(result, truth, stack.shape[1:])
    assert errors.max() < 0.1, errors.round(3)
    assert result.moving_from_fixed.shape == (20, 3, 3)
    registered = np.isfinite(result.metric_after)
    assert (result.metric_after[registered] > result.metric_before[registered]).all()
    if reference != 'mean':
        np.testing.assert_allclose(result.moving_from_fixed[0], np.eye(3), atol=1e-12)
        assert np.isnan(result.metric_after[0])


def test_integer_reference_lands_in_that_frames_coordinates(small_stack):
    stack, truth = small_stack
    result = register_stack(stack, reference=-2, batch_size=2, **FAST)
    assert result.reference == 3
    np.testing.assert_allclose(result.moving_from_fixed[3], np.eye(3), atol=1e-12)
    for i in range(5):
        expected = truth[i] @ np.linalg.inv(truth[3])
        assert corner_error(result.moving_from_fixed[i], expected, (64, 64)) < 0.1


def test_pc12_agrees_with_imagej_stackreg(shared_data):
    tifffile = pytest.importorskip('tifffile')
    folder = shared_data / 'pystackreg_pc12'
    stack = tifffile.imread(folder / 'pc12-unreg.tif')
    reference = json.loads((folder / 'reference_tmats_stackreg.json').read_text())
    for mode, model in (('translation', 'translation'), ('rigid-body', 'rigid')):
        result = register_stack(stack, reference='previous', model=model)
        tmats = np.array(reference['tmats'][mode])  # frame-0 (x, y) -> frame k (x, y)
        errors = [
            corner_error(
                result.moving_from_fixed[k], reverse_axes(tmats[k]), stack.shape[1:]
            )
            for k in range(len(stack))
        ]
        assert max(errors) < 0.5, (mode, np.round(errors, 3))


def test_lung_sections_neighbours_correlate_after_alignment(shared_data):
    imageio = pytest.importorskip('skimage.io')
    files = sorted((shared_data / 'elastix_lung_sem_stack').glob('*.png'))
    stack = np.stack([imageio.imread(f) for f in files])
    # every other pixel: the sections are 800 x 800; structure is coarse
    stack = stack[:, ::2, ::2]
    result = register_stack(stack, reference='previous', model='rigid')
    aligned = result.aligned.astype(np.float32)
    crop = (slice(100, 300), slice(100, 300))

    def median_ncc(frames):
        return float(
            np.median(
                [
                    ncc(frames[i][crop], frames[i + 1][crop])
                    for i in range(len(frames) - 1)
                ]
            )
        )

    before, after = median_ncc(stack.astype(np.float32)), median_ncc(aligned)
    print(f'lung sections, median NCC between neighbours: {before:.3f} -> {after:.3f}')
    assert before < 0.2
    assert after > 0.55


def test_volume_series_3d(rng):
    volume = ndimage.gaussian_filter(rng.random((40, 56, 56)).astype(np.float32), 2.5)
    stack, truth = drift_stack(
        volume, 4, (24, 32, 32), seed=3, step_deg=1.5, step_px=1.0
    )
    result = register_stack(stack, reference='first', model='rigid')
    assert result.moving_from_fixed.shape == (4, 4, 4)
    errors = relative_errors(result, truth, stack.shape[1:])
    assert errors.max() < 0.2, errors.round(3)
    assert result.aligned.shape == stack.shape


# --------------------------------------------------------------------------
# layouts, channels, out-of-core input and output


@pytest.mark.parametrize('layout', ['TCYX', 'CTYX'])
def test_register_on_one_channel_apply_to_all(small_stack, layout):
    stack, truth = small_stack
    noise = np.random.default_rng(5).random(stack.shape).astype(np.float32)
    channels = np.stack([noise, stack], axis=1)  # T, C, Y, X
    if layout == 'CTYX':
        channels = np.moveaxis(channels, 1, 0)
        kwargs = {'axis': 1, 'channel_axis': 0}
    else:
        kwargs = {'axis': 0, 'channel_axis': 1}
    result = register_stack(
        channels, register_channel=1, batch_size=4, **kwargs, reference='first', **FAST
    )
    alone = register_stack(stack, batch_size=4, reference='first', **FAST)
    np.testing.assert_allclose(
        result.moving_from_fixed, alone.moving_from_fixed, atol=1e-9
    )
    aligned = result.aligned
    assert aligned.shape == channels.shape and aligned.dtype == channels.dtype
    signal = aligned[1] if layout == 'CTYX' else aligned[:, 1]
    np.testing.assert_allclose(signal, alone.aligned, atol=1e-5)
    frame = result.aligned_frame(2)
    expected = aligned[:, 2] if layout == 'CTYX' else aligned[2]
    np.testing.assert_allclose(frame, expected, atol=1e-5)


def test_rgb_frames_are_detected(small_stack):
    stack, _ = small_stack
    rgb = np.repeat(stack[..., None], 3, axis=-1)
    result = register_stack(rgb, reference='first', batch_size=5, **FAST)
    alone = register_stack(stack, reference='first', batch_size=5, **FAST)
    assert result.channel_axis == 3
    np.testing.assert_allclose(
        result.moving_from_fixed, alone.moving_from_fixed, atol=1e-6
    )


def test_out_of_core_stack_streams_and_writes_out(small_stack, tmp_path):
    stack, _ = small_stack
    as_uint16 = np.round(stack / stack.max() * 60000).astype(np.uint16)
    np.save(tmp_path / 'in.npy', as_uint16)
    memmapped = np.load(tmp_path / 'in.npy', mmap_mode='r')
    in_memory = register_stack(as_uint16, reference='first', batch_size=2, **FAST)
    lazy = register_stack(memmapped, reference='first', batch_size=2, **FAST)
    np.testing.assert_array_equal(lazy.moving_from_fixed, in_memory.moving_from_fixed)
    assert type(lazy.aligned).__module__.startswith('dask')
    assert lazy.aligned.chunks[0] == (1,) * len(stack)  # read frame by frame
    np.testing.assert_array_equal(np.asarray(lazy.aligned), in_memory.aligned)
    assert in_memory.aligned.dtype == np.uint16

    for name in ('out.npy', 'out.zarr', 'out.tif'):
        written = register_stack(
            tmp_path / 'in.npy',
            reference='first',
            batch_size=2,
            out=tmp_path / name,
            **FAST,
        )
        np.testing.assert_array_equal(np.asarray(written.aligned[:]), in_memory.aligned)
        with pytest.raises(ValueError, match='exists'):
            register_stack(memmapped, out=tmp_path / name, **FAST)
    target = np.zeros_like(as_uint16)
    register_stack(as_uint16, reference='first', batch_size=2, out=target, **FAST)
    np.testing.assert_array_equal(target, in_memory.aligned)
    np.testing.assert_array_equal(memmapped, as_uint16)  # input untouched


def test_dask_input(small_stack):
    da = pytest.importorskip('dask.array')
    stack, _ = small_stack
    local = register_stack(stack, batch_size=2, **FAST)
    chunked = da.from_array(stack, chunks=(1, 32, 64))
    lazy = register_stack(chunked, batch_size=2, **FAST)
    np.testing.assert_array_equal(lazy.moving_from_fixed, local.moving_from_fixed)
    assert type(lazy.aligned).__module__.startswith('dask')


def test_dask_cluster_run_equals_local_run(small_stack, tmp_path):
    distributed = pytest.importorskip('distributed')
    zarr = pytest.importorskip('zarr')
    stack, _ = small_stack
    z = zarr.open_array(
        tmp_path / 's.zarr', mode='w', shape=stack.shape, dtype=stack.dtype
    )
    z[:] = stack
    local = register_stack(stack, reference='previous', batch_size=2, **FAST)
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        remote = register_stack(
            stack, reference='previous', batch_size=2, client=client, **FAST
        )
        from_zarr = register_stack(
            z, reference='previous', batch_size=2, client=client, **FAST
        )
    np.testing.assert_array_equal(remote.moving_from_fixed, local.moving_from_fixed)
    np.testing.assert_array_equal(from_zarr.moving_from_fixed, local.moving_from_fixed)
    np.testing.assert_array_equal(remote.metric_after, local.metric_after)
    assert remote.settings['distributed'] and not local.settings['distributed']


# --------------------------------------------------------------------------
# progress, cancellation, results


def test_progress_and_cancel(small_stack):
    stack, _ = small_stack
    steps = iter_register_stack(stack, batch_size=2, **FAST)
    events = []
    while True:
        try:
            events.append(next(steps))
        except StopIteration as done:
            result = done.value
            break
    assert all(isinstance(e, StackProgress) for e in events)
    assert [e.step for e in events] == sorted(e.step for e in events)
    finished = [e for e in events if e.frames_done and np.isnan(e.loss)]
    assert [e.frames_done for e in finished] == [2, 4]
    assert events[-1].step == events[-1].total == 4
    assert isinstance(result, StackResult)

    cancelled = iter_register_stack(stack, batch_size=1, **FAST)
    first = next(cancelled)
    assert first.batch == 0
    cancelled.close()  # no error, nothing runs on


def test_to_dict_is_json(small_stack):
    stack, _ = small_stack
    result = register_stack(stack, batch_size=5, **FAST)
    summary = json.loads(json.dumps(result.to_dict()))
    assert len(summary['moving_from_fixed']) == 5
    assert summary['metric_after'][0] is None
    # the first batch runs the whole schedule on two frames, the rest start
    # warm from them
    assert [f for b in summary['batches'] for f in b['frames']] == [1, 2, 3, 4]
    assert result.frame_seconds[0] == 0 and (result.frame_seconds[1:] > 0).all()
    np.testing.assert_allclose(
        result.fixed_from_moving @ result.moving_from_fixed,
        np.broadcast_to(np.eye(3), (5, 3, 3)),
        atol=1e-9,
    )


def test_sitk_backend_loops_over_frames(small_stack):
    pytest.importorskip('SimpleITK')
    pytest.importorskip('napari_coreg.engines.sitk.engine')
    stack, truth = small_stack
    result = register_stack(stack, reference='first', backend='sitk', model='rigid')
    assert len(result.batches) == 4
    errors = relative_errors(result, truth, stack.shape[1:])
    assert errors.max() < 0.5, errors.round(3)


# --------------------------------------------------------------------------
# validation (before any work)


@pytest.mark.parametrize(
    ('kwargs', 'match'),
    [
        ({'axis': 3}, 'axis=3 is out of range'),
        ({'reference': 7}, 'reference frame 7 is out of range'),
        ({'reference': 'last'}, "unknown reference 'last'"),
        ({'channel_axis': 0}, 'axis and channel_axis are both 0'),
        ({'register_channel': 1}, 'register_channel needs a channel axis'),
        ({'backend': 'sitk', 'metric': 'l1'}, "backend 'sitk' has no 'l1' metric"),
        ({'model': 'shear'}, "unknown model 'shear'"),
        ({'batch_size': 0}, 'batch_size must be a positive integer'),
        ({'out': np.zeros((2, 2))}, 'out has shape'),
        ({'out': 'stack.png'}, 'give a path ending in'),
        ({'client': 'remote'}, 'client must be'),
    ],
)
def test_bad_arguments_raise_before_work(small_stack, kwargs, match):
    stack, _ = small_stack
    with pytest.raises(ValueError, match=match):
        iter_register_stack(stack, **kwargs)


def test_bad_stacks_raise():
    with pytest.raises(ValueError, match='a stack is 3D'):
        register_stack(np.zeros((8, 8)))
    with pytest.raises(ValueError, match='1 frame along axis 0'):
        register_stack(np.zeros((1, 16, 16)))
    frames = np.random.default_rng(0).random((3, 32, 32))
    with pytest.raises(ValueError, match='out is'):
        register_stack(frames, out=frames[:])
    frames[2, 3, 3] = np.nan
    with pytest.raises(ValueError, match='stack frame 2'):
        register_stack(frames, init='center')
