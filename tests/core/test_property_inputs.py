"""Property test: over shapes, dtypes, contents and options, ``register``
returns a result or raises ``ValueError``/``TypeError``; never another
exception, never a hang (a per-example deadline), never a modified input.

Images are small and runs short (one or two levels, at most 3 iterations),
so the whole test takes well under a minute on one core.
"""

from __future__ import annotations

import os
from datetime import timedelta

import numpy as np
import pytest
from _bad_inputs import fingerprint

hypothesis = pytest.importorskip('hypothesis')
from hypothesis import HealthCheck, event, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from napari_coreg import register  # noqa: E402

DTYPES = ['uint8', 'uint16', 'int16', 'float32', 'float64']
BAD_DTYPES = ['bool', 'complex64']
CONTENTS = ['huge-pixel', 'nodata-strip', 'masked']
BAD_CONTENTS = ['constant', 'nan', 'inf']
#: One flaw per example at most; ``None`` (valid input) in about half of them,
#: so that most examples do run a registration.
FLAWS = [None] * 8 + ['tiny', 'dtype', 'content', 'bins', 'mask', 'combo', 'layout']


def _image(rng, shape, dtype, content, layout):
    """An image of ``shape`` (spatial) as a user might pass it."""
    from scipy import ndimage

    image = ndimage.gaussian_filter(rng.random(shape), 1.5)
    image = (image - image.min()) / max(np.ptp(image), 1e-12)
    if content == 'constant':
        image[...] = 0.5
    if dtype == 'bool':
        image = image > 0.5
    elif np.issubdtype(np.dtype(dtype), np.integer):
        image = (image * np.iinfo(dtype).max * 0.9).astype(dtype)
    else:
        image = image.astype(dtype)
    if np.issubdtype(image.dtype, np.floating):
        if content == 'nan':
            image.flat[rng.integers(image.size)] = np.nan
        elif content == 'inf':
            image.flat[0] = -np.inf
        elif content == 'huge-pixel':
            image.flat[rng.integers(image.size)] = 1e30
        elif content == 'nodata-strip':
            image[: max(1, shape[0] // 5)] = np.float32(-3.4e38)
    if layout == 'rgb':
        image = np.stack([image] * 3, axis=-1)
    elif layout == 'channels-first':
        image = np.stack([image] * 2, axis=0)
    if content == 'masked':
        mask = np.zeros(image.shape, bool)
        mask[: max(1, image.shape[0] // 4)] = True
        image = np.ma.masked_array(image, mask=mask)
    return image


@st.composite
def cases(draw):
    flaw = draw(st.sampled_from(FLAWS))
    ndim = draw(st.sampled_from([2, 2, 2, 3]))
    side = st.integers(8, 40 if ndim == 2 else 14)
    if flaw == 'tiny':
        side = st.integers(1, 7)
    shape = tuple(draw(side) for _ in range(ndim))
    same = draw(st.booleans())
    moving_shape = shape if same else tuple(draw(side) for _ in range(ndim))
    dtypes = BAD_DTYPES if flaw == 'dtype' else DTYPES
    contents = BAD_CONTENTS if flaw == 'content' else ['smooth'] * 3 + CONTENTS
    layout = 'plain'
    if ndim == 2:
        layout = draw(st.sampled_from(['plain'] * 3 + ['rgb', 'channels-first']))
    images = {
        'fixed': (
            shape,
            draw(st.sampled_from(dtypes)),
            draw(st.sampled_from(contents)),
        ),
        'moving': (moving_shape, draw(st.sampled_from(DTYPES)), 'smooth'),
    }
    backend = draw(st.sampled_from(['torch', 'sitk']))
    models = ['translation', 'rigid', 'similarity', 'affine']
    metrics = ['mse', 'ncc', 'mi']
    if flaw == 'combo' or (backend == 'torch' and ndim == 2):
        models.append('homography')
    if flaw == 'combo' or backend == 'torch':
        metrics.append('l1')
    kwargs = {
        'model': draw(st.sampled_from(models)),
        'metric': draw(st.sampled_from(metrics)),
        'backend': backend,
        'levels': draw(st.sampled_from([None, 1, 2])),
        'iterations': draw(st.integers(1, 3)),
        'init': draw(st.sampled_from(['identity', 'center', 'phase', 'auto'])),
        'sampling': draw(st.sampled_from([None, None, 0.5, 1e-6])),
        'mi_bins': draw(
            st.sampled_from([300, 1000] if flaw == 'bins' else [4, 32, 64])
        ),
        'seed': draw(st.sampled_from([0, 1, 7])),
        'learning_rate': draw(st.sampled_from([None, None, 1e-6, 10.0, 1e6])),
        'match_histograms': draw(st.booleans()),
    }
    optimizers = {
        'torch': ['auto', 'bfgs', 'adam']
        + ['gauss-newton'] * (kwargs['metric'] != 'mi'),
        'sitk': ['auto', 'lbfgsb', 'amoeba', 'evolutionary', 'conjugate-gradient'],
    }
    kwargs['optimizer'] = draw(st.sampled_from(optimizers[backend]))
    if layout == 'channels-first' and flaw != 'layout':
        kwargs['channel_axis'] = 0
    masks = ['float-0.3', 'nan'] if flaw == 'mask' else [None, None, 'bool', 'ones']
    return (
        images,
        layout,
        kwargs,
        draw(st.sampled_from(masks)),
        draw(st.integers(0, 999)),
    )


def _mask(kind, shape, rng):
    if kind is None:
        return None
    if kind == 'bool':
        return rng.random(shape) > 0.3
    if kind in ('float-0.3', 'nan'):
        return np.full(shape, 0.3 if kind == 'float-0.3' else np.nan)
    mask = np.zeros(shape, np.float32)
    mask[: max(1, shape[0] // 2)] = 1.0
    return mask


@pytest.fixture(scope='module', autouse=True)
def _backends_loaded():
    """Import the backends once, so the deadline measures registrations only."""
    pytest.importorskip('torch')
    pytest.importorskip('SimpleITK')
    import napari_coreg.engines.sitk  # noqa: F401
    import napari_coreg.engines.torch  # noqa: F401


@settings(
    max_examples=int(os.environ.get('NAPARI_COREG_EXAMPLES', 150)),
    deadline=timedelta(seconds=10),
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(cases())
def test_register_gives_a_result_or_a_clear_error(case):
    images, layout, kwargs, mask_kind, seed = case
    rng = np.random.default_rng(seed)
    fixed = _image(rng, *images['fixed'], layout)
    moving = _image(rng, *images['moving'], layout)
    kwargs['fixed_mask'] = _mask(mask_kind, images['fixed'][0], rng)
    before = fingerprint(fixed, moving, kwargs)
    try:
        res = register(fixed, moving, **kwargs)
    except (ValueError, TypeError) as error:
        assert str(error), 'an error without a message'
        event(f'refused: {type(error).__name__}')
    else:
        matrix = res.moving_from_fixed
        assert matrix.shape == (len(images['fixed'][0]) + 1,) * 2
        assert np.isfinite(matrix).all()
        event('registered')
    assert fingerprint(fixed, moving, kwargs) == before, 'an input was modified'
