"""Memory: peak RSS of registering one large pair with our engine.

    python benchmarks/bench_memory.py                   # 4096² pair
    python benchmarks/bench_memory.py --memory-size 1024

A rigidly moved pair of the camera photo resized to ``size x size`` (float32)
is saved to a temporary ``.npz``; a fresh child process
(:func:`harness.run_case`) loads it, notes its RSS, registers it once with
our engine (CPU, default settings) and reports its peak RSS (``VmHWM``).
Records go to ``records.json`` (``memory``). Target (issue 11): < 1.2 GB.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import harness
import numpy as np
from scoring import error_px

from napari_coreg.cases import about_centre, gray_photo, rotation

SUITE = 'memory'
SETTINGS = ({'model': 'affine', 'metric': 'ncc'}, {'model': 'affine', 'metric': 'mi'})


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
    parser.add_argument_group('memory').add_argument(
        '--memory-size', type=int, default=4096, help='side of the pair (px)'
    )


def quick(args: argparse.Namespace) -> None:
    """Smoke settings: a 1024² pair."""
    args.memory_size = 1024


def run(args: argparse.Namespace, store: dict, log) -> set[str]:
    """Measure each setting, replace ``store['memory']``; return groups run."""
    if args.only == 'peers':
        return set()
    size = args.memory_size
    fixed, moving, truth = memory_pair(size)
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / 'pair.npz'
        np.savez(path, fixed=fixed, moving=moving)
        del fixed, moving
        for settings in SETTINGS:
            kwargs = {'path': str(path), 'settings': settings}
            name = f'{size}² {settings}'
            rec = harness.run_case(SUITE, name, 'bench_memory', 'register_pair', kwargs)
            entry: dict[str, Any] = {'size': size, 'kw': settings}
            if rec['status'] == 'ok':
                result, memory = rec['result'], rec['memory']
                entry |= {
                    'base_mb': memory['rss_before_mib'],
                    'peak_mb': memory['peak_rss_mib'],
                    'time': result['time'],
                    'inputs_mb': result['inputs_mb'],
                    'err': error_px(result['matrix'], truth, (size, size)),
                }
            else:
                entry['error'] = f'{rec["status"]}: {rec["error"]}'
            log(f'memory {name} -> {entry}')
            out.append(entry)
    store['memory'] = out
    return {'ours'}


if __name__ == '__main__':
    import driver

    driver.main([SUITE], doc=__doc__)
