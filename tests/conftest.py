"""Shared fixtures. GUI tests run under Xvfb (`make test` uses xvfb-run):
Qt's offscreen platform has no OpenGL for napari's canvas."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

#: Real test images with ground truth live beside the repository (../shared/data);
#: NAPARI_COREG_DATA overrides the location.
SHARED_DATA = Path(
    os.environ.get(
        'NAPARI_COREG_DATA', Path(__file__).resolve().parents[2] / 'shared' / 'data'
    )
)


@pytest.fixture
def shared_data() -> Path:
    """Folder of the shared real test data; skips the test where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(
            f'shared test data not found at {SHARED_DATA} (a plain clone has no '
            '../shared/data; set NAPARI_COREG_DATA to its location)'
        )
    return SHARED_DATA


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture(
    params=['cpu', pytest.param('cuda', marks=pytest.mark.gpu)]
)
def device(request) -> str:
    if request.param == 'cuda':
        torch = pytest.importorskip('torch')
        if not torch.cuda.is_available():
            pytest.skip('CUDA not available')
    return request.param
