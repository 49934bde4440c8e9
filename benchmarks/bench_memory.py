"""Memory: peak RSS of registering one large pair with our engine.

    python benchmarks/bench_memory.py                   # 4096² pair
    python benchmarks/bench_memory.py --memory-size 1024
    python benchmarks/bench_memory.py --memory-volume 512   # and a 512³ pair

A rigidly moved pair of the camera photo resized to ``size x size`` (float32)
is saved to a temporary ``.npz``; a fresh child process
(:func:`harness.run_case`) loads it, notes its RSS, registers it once with
our engine (CPU, default settings) and reports its peak RSS (``VmHWM``).
Records go to ``records.json`` (``memory``). Target (issue 11): < 1.2 GB.

``--memory-volume N`` also registers an ``N³`` float32 volume pair (a smooth
random volume, rigidly moved: :func:`memory_volume`) with rigid + MI, the
same way; its records go to ``memory_3d`` (target at 512³: < 6 GB).
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import harness
import numpy as np
from scoring import error_px

from napari_coreg.cases import about_centre, gray_photo, rotation

SUITE = 'memory'
SETTINGS = ({'model': 'affine', 'metric': 'ncc'}, {'model': 'affine', 'metric': 'mi'})
SETTINGS_3D = ({'model': 'rigid', 'metric': 'mi'},)


def memory_pair(size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A rigidly moved pair of the camera image rescaled to ``size x size``."""
    from scipy import ndimage
    from skimage.transform import resize

    fixed = resize(gray_photo('camera'), (size, size), order=1).astype(np.float32)
    centre = np.full(2, (size - 1) / 2.0)
    truth = about_centre(rotation(4.0), centre, np.array([0.02, -0.03]) * size)
    moving = ndimage.affine_transform(
        fixed, np.linalg.inv(truth), order=1, mode='reflect'
    )
    return fixed, moving.astype(np.float32), truth


def memory_volume(size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A smooth random ``size³`` float32 volume, and a rigidly moved copy.

    Blobs of a few voxels (blurred noise, built at ``size / 4`` and zoomed, so
    that it is cheap), rotated 3 degrees about the first axis and shifted by
    2 % of the size. Returns ``fixed, moving, truth`` (``moving_from_fixed``,
    voxels, numpy order).
    """
    from scipy import ndimage

    rng = np.random.default_rng(0)
    small = ndimage.gaussian_filter(rng.random((size // 4,) * 3), 1.5)
    fixed = ndimage.zoom(small.astype(np.float32), 4, order=1)
    angle = np.radians(3.0)
    linear = np.eye(3)
    linear[1:, 1:] = [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
    centre = np.full(3, (size - 1) / 2.0)
    truth = np.eye(4)
    truth[:3, :3] = linear
    truth[:3, 3] = centre - linear @ centre + 0.02 * size
    inverse = np.linalg.inv(truth)
    moving = ndimage.affine_transform(
        fixed, inverse[:3, :3], inverse[:3, 3], order=1, mode='nearest'
    )
    return fixed, moving, truth


def register_pair(path: str, settings: dict[str, str]) -> dict[str, Any]:
    """Load the pair at ``path`` and register it (in a child process)."""
    import torch

    from napari_coreg import register

    torch.set_num_threads(harness.threads())
    data = np.load(path)
    fixed, moving = data['fixed'], data['moving']
    harness.baseline()
    with harness.timed() as t:
        res = register(fixed, moving, backend='torch', **settings)
    return {
        'time': t['seconds'],
        'inputs_mb': (fixed.nbytes + moving.nbytes) / 2**20,
        'matrix': np.asarray(res.moving_from_fixed).tolist(),
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """This suite's options."""
    group = parser.add_argument_group('memory')
    group.add_argument(
        '--memory-size', type=int, default=4096, help='side of the pair (px)'
    )
    group.add_argument(
        '--memory-volume',
        type=int,
        default=0,
        help='also a volume pair of this side (voxels; 0: none)',
    )


def quick(args: argparse.Namespace) -> None:
    """Smoke settings: a 1024² pair."""
    args.memory_size = 1024


def run(args: argparse.Namespace, store: dict, log) -> set[str]:
    """Measure each setting, replace ``store['memory']``; return groups run."""
    if args.only == 'peers':
        return set()
    size = args.memory_size
    store['memory'] = _measure(
        memory_pair(size),
        SETTINGS,
        f'{size}²',
        size,
        ('err', lambda matrix, truth: error_px(matrix, truth, (size, size))),
        log,
    )
    if args.memory_volume:
        size = args.memory_volume
        store['memory_3d'] = _measure(
            memory_volume(size),
            SETTINGS_3D,
            f'{size}³',
            size,
            ('err_voxels', lambda matrix, truth: _corner_error_3d(matrix, truth, size)),
            log,
        )
    return {'ours'}


def _measure(
    pair: tuple[np.ndarray, np.ndarray, np.ndarray],
    settings_list,
    label: str,
    size: int,
    error: tuple[str, Callable[[Any, np.ndarray], float]],
    log,
) -> list[dict[str, Any]]:
    """Peak memory of registering ``pair`` once per setting, each in a child.

    ``error`` is the record's key for the error and the function giving it
    from the found matrix and the truth.
    """
    fixed, moving, truth = pair
    error_key, error_of = error
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / 'pair.npz'
        np.savez(path, fixed=fixed, moving=moving)
        del fixed, moving, pair
        for settings in settings_list:
            kwargs = {'path': str(path), 'settings': settings}
            name = f'{label} {settings}'
            rec = harness.run_case(SUITE, name, 'bench_memory', 'register_pair', kwargs)
            entry: dict[str, Any] = {'size': size, 'kw': settings}
            if rec['status'] == 'ok':
                result, memory = rec['result'], rec['memory']
                entry |= {
                    'base_mb': memory['rss_before_mib'],
                    'peak_mb': memory['peak_rss_mib'],
                    'time': result['time'],
                    'inputs_mb': result['inputs_mb'],
                    error_key: error_of(result['matrix'], truth),
                }
            else:
                entry['error'] = f'{rec["status"]}: {rec["error"]}'
            log(f'memory {name} -> {entry}')
            out.append(entry)
    return out


def _corner_error_3d(matrix, truth: np.ndarray, size: int) -> float:
    from napari_coreg import corner_error

    return float(corner_error(np.asarray(matrix), truth, (size,) * 3))


if __name__ == '__main__':
    import driver

    driver.main([SUITE], doc=__doc__)
