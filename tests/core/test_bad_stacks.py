"""Bad-input catalogue of stacks, through ``register_stack`` only.

Per case: the error type and a message fragment, before any work (the
backend is never loaded), with the inputs hashed before and after. The
stack's own validation is tested with it (``test_stack.py``).
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from _bad_inputs import fingerprint, smooth

V, T = ValueError, TypeError
FRAME = smooth()


def _with(value, index, item):
    out = np.array(value, copy=True)
    out[index] = item
    return out


STACK = np.stack([np.roll(FRAME, k, axis=0) for k in range(4)])

STACK_ERRORS = [
    ('bins-float', {'mi_bins': 32.5}, T, 'mi_bins must be an integer'),
    ('bins-huge', {'mi_bins': 4096}, V, 'mi_bins must be at most 256'),
    ('seed-str', {'seed': 'abc'}, T, 'seed must be an integer'),
    ('histograms-str', {'match_histograms': 'no'}, T, 'match_histograms'),
    ('levels-vs-factors', {'levels': 2, 'shrink_factors': [4, 2, 1]}, V, 'levels=2'),
    ('model', {'model': 'banana'}, V, "unknown model 'banana'"),
    ('device', {'device': 'banana'}, V, "unknown device 'banana'"),
    ('axis', {'axis': 5}, V, 'axis=5'),
    ('reference', {'reference': 'banana'}, V, "unknown reference 'banana'"),
    ('bool-stack', {'stack': STACK > 0.5}, V, 'dtype bool'),
    ('nan-frame', {'stack': _with(STACK, (0, 3, 3), np.nan)}, V, 'NaN'),
    ('1d', {'stack': FRAME[0]}, V, 'stack has shape'),
]


@pytest.mark.parametrize(
    ('kwargs', 'exc', 'fragment'),
    [pytest.param(*case[1:4], id=case[0], marks=case[4:]) for case in STACK_ERRORS],
)
def test_stack_refused_before_work(kwargs, exc, fragment, no_engine):
    from napari_coreg import register_stack

    kwargs = {'stack': STACK, **kwargs}
    before = fingerprint(kwargs)
    with pytest.raises(exc, match=re.escape(fragment)):
        register_stack(**kwargs)
    assert not no_engine, 'work started before the input was refused'
    assert fingerprint(kwargs) == before, 'an input was modified'
