"""Property test of the stack API: every call gives a result or a clear error.

Shapes, dtypes, axes, references and options are drawn at random, with at
most one of them bad; the outcome must be a :class:`StackResult` with one
finite matrix per frame, or a ``ValueError``/``TypeError`` (raised when the
call checks its arguments, or while running for what only the run can find,
such as frames with no overlap for ``'mean'``), never another exception, and
the input is never modified.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from napari_coreg import StackResult, iter_register_stack

hypothesis = pytest.importorskip('hypothesis')
st = pytest.importorskip('hypothesis.strategies')

GOOD = {
    'reference': ['previous', 'first', 'mean', 0, 1, -1],
    'model': ['translation', 'rigid', 'similarity', 'affine'],
    'metric': ['ncc', 'mse', 'mi'],
    'backend': ['torch', 'torch', 'sitk'],
    'batch_size': [None, 1, 2],
    'optimizer': [None, 'auto'],
    'rounds': [1, 2],
}
BAD = {
    'axis': [3, -4, 1.0, True],
    'reference': ['last', 7, 1.5, None],
    'model': ['shear', 'homography', 3],
    'metric': ['dice', 'l1'],
    'backend': ['gpu'],
    'batch_size': [0, -1, 2.5],
    'optimizer': ['banana', 'lbfgsb', 'adam'],
    'rounds': [0, 1.5],
    'channel_axis': [0, 2, 5],
    'iterations': [0, -2],
    'levels': [0, 9],
}
DTYPES = ('uint8', 'uint16', 'int16', 'float32', 'float64')


def _stack(n: int, shape: tuple[int, int], dtype: str, seed: int) -> np.ndarray:
    """``n`` smooth random frames (structure to register), cast to ``dtype``."""
    rng = np.random.default_rng(seed)
    frames = ndimage.gaussian_filter(rng.random((n, *shape)), (0, 2, 2))
    frames = (frames - frames.min()) / (np.ptp(frames) or 1)
    if np.issubdtype(np.dtype(dtype), np.integer):
        frames = frames * (np.iinfo(dtype).max // 2)
    return frames.astype(dtype)


@st.composite
def calls(draw):
    """A stack and the keywords of one call, at most one of them bad."""
    n = draw(st.integers(2, 4))
    shape = draw(st.tuples(st.integers(12, 40), st.integers(12, 40)))
    stack = _stack(n, shape, draw(st.sampled_from(DTYPES)), draw(st.integers(0, 3)))
    kwargs = {name: draw(st.sampled_from(values)) for name, values in GOOD.items()}
    kwargs.update(levels=1, iterations=2, init='center')
    broken = draw(st.sampled_from([*BAD, *[None] * len(BAD)]))
    if broken is not None:
        kwargs[broken] = draw(st.sampled_from(BAD[broken]))
    if draw(st.integers(0, 4)) == 4:  # a tiny or flat stack
        stack = draw(st.sampled_from([stack[:1], stack[:, :3], stack[..., None]]))
    return stack, kwargs


@hypothesis.settings(max_examples=60, deadline=None, derandomize=True)
@hypothesis.given(calls())
def test_every_outcome_is_a_result_or_a_clear_error(call):
    stack, kwargs = call
    before = stack.copy()
    try:
        steps = iter_register_stack(stack, **kwargs)
    except (ValueError, TypeError) as error:
        hypothesis.event(f'refused: {str(error)[:30]}')
        np.testing.assert_array_equal(stack, before)
        return
    try:
        while True:
            next(steps)
    except StopIteration as done:
        result = done.value
    except ValueError as error:
        hypothesis.event(f'refused while running: {str(error)[:30]}')
        np.testing.assert_array_equal(stack, before)
        return
    hypothesis.event('registered')
    assert isinstance(result, StackResult)
    assert result.moving_from_fixed.shape[0] == stack.shape[0]
    assert np.isfinite(result.moving_from_fixed).all()
    np.testing.assert_array_equal(stack, before)
