"""GPU figures for the torch backend, from the source tree, on a bare CUDA box.

    PYTHONPATH=src python benchmarks/gpu.py                 # on a CUDA machine
    PYTHONPATH=src python benchmarks/gpu.py --device cpu --quick   # smoke test

Needs only torch, numpy, scipy, scikit-image (and pytest, optionally): no
SimpleITK, kornia, napari or network. It

1. runs the CUDA-marked tests (``pytest -m gpu tests/core``) when pytest is
   installed (``--no-tests`` skips them);
2. measures batched affine NCC registrations of 512 px pairs, in pairs per
   second (one batch of ``--batch`` pairs registered together);
3. times a 128^3 rigid registration with mutual information;
4. times a 100-frame 512 px rigid drift stack (reference ``'first'``);

and prints one JSON object, which a CUDA run (not ``--quick``) also writes to
``benchmarks/results/gpu.json`` (``--out`` elsewhere):
``run`` (when, command, load, versions and commit, as :func:`harness.run_header`),
``device``, ``device_name``, ``torch``, ``quick``, ``tests`` (``ran``,
``returncode``, ``summary``), ``pairs`` (``size``, ``batch``, ``seconds``,
``pairs_per_second``, ``corner_error_px_median``/``_max``),
``volume_rigid_mi`` (``size``, ``seconds``, ``corner_error_px``) and ``stack``
(``size``, ``frames``, ``seconds``, ``ms_per_frame``, ``corner_error_px_max``).
``report_targets.py`` puts it in the speed-targets section of
docs/benchmarks.md. Every case is synthetic and seeded (a
scikit-image photo, or smoothed noise for the volume, moved by a known
transform), and its corner error against the truth is reported with the
time, so a fast but wrong run shows.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# as napari_coreg does on import: idle OpenMP threads sleep instead of spinning
# (torch may be imported here first; on shared cores spinning costs 5-50x)
os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')
sys.path.insert(0, str(HERE))

import harness  # noqa: E402  (standard library only)


def _sync(device: str) -> None:
    import torch

    if device.startswith('cuda'):
        torch.cuda.synchronize()


def _timed(fn, device: str) -> tuple[float, object]:
    _sync(device)
    start = time.perf_counter()
    out = fn()
    _sync(device)
    return time.perf_counter() - start, out


def _about_centre(linear: np.ndarray, shape, shift) -> np.ndarray:
    """``moving_from_fixed`` (pixels, numpy order) applying ``linear`` about the
    image centre, then ``shift``."""
    ndim = len(shape)
    centre = (np.asarray(shape, float) - 1) / 2
    matrix = np.eye(ndim + 1)
    matrix[:ndim, :ndim] = linear
    matrix[:ndim, ndim] = centre + np.asarray(shift, float) - linear @ centre
    return matrix


def _moved(image: np.ndarray, moving_from_fixed: np.ndarray) -> np.ndarray:
    """The moving image: ``moving(T p) = image(p)``."""
    from scipy import ndimage

    inverse = np.linalg.inv(moving_from_fixed)
    return ndimage.affine_transform(image, inverse, order=3, mode='nearest').astype(
        np.float32
    )


def _photo(size: int) -> np.ndarray:
    from skimage import data, transform

    image = data.camera().astype(np.float32) / 255.0
    return transform.resize(image, (size, size), anti_aliasing=True).astype(np.float32)


def _affine_truth(rng: np.random.Generator, size: int) -> np.ndarray:
    angle = np.deg2rad(rng.uniform(-5, 5))
    rotation = np.array(
        [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
    )
    linear = rotation @ (np.eye(2) + rng.uniform(-0.04, 0.04, (2, 2)))
    return _about_centre(linear, (size, size), rng.uniform(-0.03, 0.03, 2) * size)


def bench_pairs(device: str, size: int, batch: int) -> dict:
    """Pairs per second of one batched affine NCC registration."""
    from napari_coreg import corner_error
    from napari_coreg.method import resolve
    from napari_coreg.problem import Problem
    from napari_coreg.transforms import Grid

    rng = np.random.default_rng(0)
    fixed = _photo(size)
    truths = [_affine_truth(rng, size) for _ in range(batch)]
    moving = np.stack([_moved(fixed, t) for t in truths])
    method = resolve('affine', 'ncc', device=device)
    grid = Grid((size, size))
    engine = method.engine()

    def run():
        problem = Problem(
            fixed=fixed[None],
            moving=moving,
            fixed_grid=grid,
            moving_grid=grid,
            fixed_mask=None,
            moving_mask=None,
            method=method,
            schedule=method.schedule((size, size)),
            initial=None,
        )
        steps = engine.run(problem)
        while True:
            try:
                next(steps)
            except StopIteration as done:
                return done.value

    run()  # warm-up: kernels, allocator
    seconds, outcome = _timed(run, device)
    errors = [
        corner_error(m, t, (size, size))
        for m, t in zip(outcome.moving_from_fixed, truths, strict=True)
    ]
    return {
        'size': size,
        'batch': batch,
        'seconds': seconds,
        'pairs_per_second': batch / seconds,
        'corner_error_px_median': float(np.median(errors)),
        'corner_error_px_max': float(np.max(errors)),
    }


def bench_volume(device: str, size: int) -> dict:
    """Time of one rigid MI registration of two ``size^3`` volumes."""
    from scipy import ndimage

    from napari_coreg import corner_error, register

    rng = np.random.default_rng(1)
    volume = ndimage.gaussian_filter(rng.random((size,) * 3), size / 32)
    volume = ((volume - volume.min()) / np.ptp(volume)).astype(np.float32)
    a, b = np.deg2rad(4.0), np.deg2rad(-3.0)
    rot_a = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    rot_b = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    truth = _about_centre(rot_a @ rot_b, volume.shape, np.array([3.0, -2.0, 4.0]))
    moving = _moved(volume, truth)
    moving = 1.0 - moving  # a contrast inversion: MI's job

    def run():
        return register(volume, moving, model='rigid', metric='mi', device=device)

    run()
    seconds, result = _timed(run, device)
    return {
        'size': size,
        'seconds': seconds,
        'corner_error_px': float(
            corner_error(result.moving_from_fixed, truth, volume.shape)
        ),
    }


def bench_stack(device: str, size: int, frames: int) -> dict:
    """Time per frame of a rigid drift stack registered to its first frame."""
    from scipy import ndimage

    from napari_coreg import corner_error, register_stack

    rng = np.random.default_rng(2)
    image = _photo(size)
    shifts = np.cumsum(rng.normal(0, 0.5, (frames, 2)), axis=0)
    shifts -= shifts[0]
    stack = np.stack(
        [ndimage.shift(image, s, order=3, mode='nearest') for s in shifts]
    ).astype(np.float32)

    def run():
        return register_stack(
            stack, reference='first', model='rigid', metric='ncc', device=device
        )

    run()
    seconds, result = _timed(run, device)
    errors = []
    for matrix, shift in zip(result.moving_from_fixed, shifts, strict=True):
        truth = np.eye(3)
        truth[:2, 2] = shift
        errors.append(corner_error(matrix, truth, (size, size)))
    return {
        'size': size,
        'frames': frames,
        'seconds': seconds,
        'ms_per_frame': seconds / frames * 1e3,
        'corner_error_px_max': float(np.max(errors)),
    }


def run_tests() -> dict:
    """The CUDA-marked tests of ``tests/core``, if pytest is installed."""
    try:
        import pytest  # noqa: F401
    except ImportError:
        return {'ran': False, 'why': 'pytest is not installed'}
    path = [str(ROOT / 'src'), *os.environ.get('PYTHONPATH', '').split(os.pathsep)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in path if p))
    command = [
        sys.executable,
        '-m',
        'pytest',
        '-q',
        '-m',
        'gpu',
        '-p',
        'no:cacheprovider',
        '--continue-on-collection-errors',
        'tests/core',
    ]
    done = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    lines = (done.stdout + done.stderr).strip().splitlines()
    return {'ran': True, 'returncode': done.returncode, 'summary': lines[-1:]}


def main(argv: list[str] | None = None) -> dict:
    """Run the figures and print them as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--device', default='cuda')
    parser.add_argument('--quick', action='store_true', help='small sizes: smoke')
    parser.add_argument('--batch', type=int, default=None)
    parser.add_argument('--no-tests', action='store_true')
    parser.add_argument(
        '--out',
        type=Path,
        help='JSON file to write (default: benchmarks/results/gpu.json for a '
        'CUDA run without --quick, else none)',
    )
    args = parser.parse_args(argv)
    started, load_start = time.perf_counter(), os.getloadavg()[0]
    import torch

    if args.device.startswith('cuda') and not torch.cuda.is_available():
        parser.error('CUDA is not available here: use --device cpu (with --quick)')
    quick = args.quick
    pair_size, volume_size = (128, 32) if quick else (512, 128)
    stack_size, frames = (128, 10) if quick else (512, 100)
    batch = args.batch or (4 if quick else 64)
    report = {
        'device': args.device,
        'device_name': (
            torch.cuda.get_device_name(args.device)
            if args.device.startswith('cuda')
            else platform.processor() or platform.machine()
        ),
        'torch': torch.__version__,
        'python': platform.python_version(),
        'quick': quick,
        'tests': {'ran': False, 'why': '--no-tests'} if args.no_tests else run_tests(),
        'pairs': bench_pairs(args.device, pair_size, batch),
        'volume_rigid_mi': bench_volume(args.device, volume_size),
        'stack': bench_stack(args.device, stack_size, frames),
    }
    command = ' '.join(['gpu.py', *(sys.argv[1:] if argv is None else argv)])
    report['run'] = harness.run_header(command, started, load_start)
    print(json.dumps(report, indent=1))
    out = args.out
    if out is None and args.device.startswith('cuda') and not quick:
        out = harness.RESULTS / 'gpu.json'
    if out is not None:
        harness.save(out, report)
        print(f'wrote {out}', file=sys.stderr)
    return report


if __name__ == '__main__':
    main()
