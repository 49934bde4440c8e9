"""Fixtures of the plugin tests: small sample pairs and fake results.

GUI tests need a display with OpenGL: run them under ``xvfb-run -a``.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip('napari')


def _downscaled(name: str, factor: int):
    """A sample pair shrunk ``factor`` times, with its truth in the new pixels."""
    from skimage.transform import downscale_local_mean

    from napari_coreg.samples import sample_pair

    fixed, moving, truth, info = sample_pair(name)
    axes = (factor, factor) + (1,) * (fixed.ndim - 2)
    small = [
        downscale_local_mean(np.asarray(a, np.float32), axes) for a in (fixed, moving)
    ]
    if info['rgb']:
        small = [np.clip(np.round(a), 0, 255).astype(np.uint8) for a in small]
    # a small pixel i covers big pixels factor*i ... factor*i + factor-1
    big_from_small = np.diag([factor, factor, 1.0])
    big_from_small[:2, 2] = (factor - 1) / 2
    truth = np.linalg.inv(big_from_small) @ truth @ big_from_small
    return small[0], small[1], truth, info


@pytest.fixture
def rigid_pair():
    """Camera pair at 56 x 60 px: (fixed, moving, truth_px, info)."""
    return _downscaled('rigid', 4)


@pytest.fixture
def homography_pair():
    """Astronaut RGB homography pair at 72 x 77 px."""
    return _downscaled('homography', 3)


@pytest.fixture
def private_napari_settings(monkeypatch):
    """napari settings of this test only (never the user's settings file)."""
    import napari.settings
    from napari.settings import NapariSettings

    monkeypatch.setattr(napari.settings, '_SETTINGS', NapariSettings(config_path=None))


@pytest.fixture
def s2(shared_data):
    """The shared Sentinel-2 pair's folder (skips where the data is absent)."""
    folder = shared_data / 'arosics_s2_inter1'
    if not folder.is_dir():
        pytest.skip(f'Sentinel-2 test pair not found at {folder}')
    return folder


def world_error(fixed_layer, moving_layer, truth_px, ndim=2) -> float:
    """Largest world distance between where fixed and moving show a structure.

    ``truth_px`` maps fixed pixels to moving pixels (spatial axes); the result
    is in units of the fixed layer's pixels (divided by its mean scale).
    """
    shape = np.asarray(
        fixed_layer.data.shape[-ndim:]
        if not fixed_layer.rgb
        else fixed_layer.data.shape[:2]
    )
    corners = (
        np.array(np.meshgrid(*[[0, n - 1] for n in shape], indexing='ij'))
        .reshape(ndim, -1)
        .T
    )
    points = np.vstack([corners, (shape - 1) / 2])
    worst = 0.0
    for p in points:
        q = truth_px @ np.r_[p, 1]
        q = q[:-1] / q[-1]
        a = np.asarray(fixed_layer.data_to_world(p))
        b = np.asarray(moving_layer.data_to_world(q))
        worst = max(worst, float(np.linalg.norm(a - b)))
    return worst / float(np.mean(np.abs(fixed_layer.scale[-ndim:])))


def fake_result(
    moving_from_fixed, fixed_grid, moving_grid, model='rigid', fixed=None, moving=None
):
    """A RegistrationResult with a chosen transform (no optimisation)."""
    from napari_coreg.result import LevelReport, RegistrationResult

    result = RegistrationResult(
        moving_from_fixed=np.asarray(moving_from_fixed, dtype=np.float64),
        model=model,
        metric='ncc',
        backend='torch',
        metric_before=0.5,
        metric_after=0.99,
        levels=(
            LevelReport(tuple(fixed_grid.shape), 3, 0.1, 'converged', (0.5, 0.2, 0.01)),
        ),
        elapsed=0.1,
        fixed_grid=fixed_grid,
        moving_grid=moving_grid,
        settings={},
        _fixed=fixed,
        _moving=moving,
    )
    if fixed is None or moving is None:
        result = with_verdict(result, 'ok')
    return result


def with_verdict(result, verdict='ok', reasons=()):
    """Give a result without images a stated verdict (there is nothing to assess)."""
    from types import SimpleNamespace

    result.__dict__['assessment'] = SimpleNamespace(
        verdict=verdict, reasons=tuple(reasons), uncertainty_px=None
    )
    return result


@pytest.fixture
def helpers():
    """Functions shared by the plugin tests."""

    class Helpers:
        world_error = staticmethod(world_error)
        fake_result = staticmethod(fake_result)
        with_verdict = staticmethod(with_verdict)
        downscaled = staticmethod(_downscaled)

    return Helpers


@pytest.fixture
def multimodal_pair():
    """ITK brain T1 (fixed) / PD (moving) at 128 x 110 px: exact truth."""
    return _downscaled('multimodal', 2)
