"""3D benchmark: CT volumes of 64^3 to 256^3, torch vs SimpleITK backends.

    python benchmarks/bench_3d.py                     # 64, 128, 256; rigid + affine
    python benchmarks/bench_3d.py --sizes 64 128 --models rigid
    python benchmarks/bench_3d.py --quick             # smoke: 32^3, rigid, 1 config
    python benchmarks/bench_3d.py --data /path/to/shared/data

The volume: ``ct_lung_3d_synthetic_rigid/CT_3D_lung_fixed_small.mha`` from the
shared test data (``--data``, else ``NAPARI_COREG_DATA``, else
``../shared/data`` beside the repository; skipped with a message when absent;
57 x 78 x 64 voxels, 2.732 x 2.732 x 5 mm), resampled (3rd-order B-spline)
onto ``N^3`` voxels covering the same physical box (spacing ``extent / N``
per axis, so voxels stay anisotropic). The moving volume is that one moved by
the data set's exact rigid transform (Euler angles 4, -3, 6 degrees,
translation 7.5, -5, 10 mm about the centre): ``moving(T x) = fixed(x)``,
default -1024 HU outside. Both are float32 SimpleITK images, so both backends
work in physical millimetres.

Each case runs in a fresh child process (:func:`harness.run_case`, 2 threads
for torch, OpenMP and SimpleITK), which reports the wall and CPU time of
``register`` (data already in memory, imports done), the mean corner error
(eight corners and the centre of the fixed volume, mm) against the truth, and
the harness's peak resident memory of the child (``VmHWM``: interpreter,
libraries and both volumes included). Metric: Mattes-style mutual
information (``'mi'``); default pyramid and optimisers of each backend;
SimpleITK with full sampling and with 10 % random sampling (its usual
setting), and, for the rigid model, SimpleITK driven by hand with PEERS.md's
settings (25 % random sampling, seed 1, shrink 4, 2, 1; ``BY_HAND``).
Records go to ``benchmarks/results/bench_3d.json``; the section
``benchmarks/results/bench_3d.md`` is written from them by
:func:`report_suites.volumes_section`.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import harness
import numpy as np

SUITE = '3d'
DATA = 'ct_lung_3d_synthetic_rigid'
TRUTH = 'gt_fixed_to_moving.tfm'
STORE = harness.RESULTS / 'bench_3d.json'
SECTION = harness.RESULTS / 'bench_3d.md'
SIZES = (64, 128, 256)
MODELS = ('rigid', 'affine')
#: The backend name of SimpleITK driven by hand with PEERS.md's settings
#: (``bench_speed._sitk_by_hand_3d``: 25 % random sampling, seed 1, shrink
#: 4, 2, 1), not through napari-coreg.
BY_HAND = 'sitk-by-hand'
#: (label, backend, extra settings)
CONFIGS = (
    ('torch', 'torch', {}),
    ('sitk, full sampling', 'sitk', {}),
    ('sitk, 10 % sampling', 'sitk', {'sampling': 0.1}),
    ('SimpleITK by hand, 25 % sampling', BY_HAND, {}),
)


# --------------------------------------------------------------------------
# data


def make_pair(
    size: int, folder: Path, data: Path, linear: bool = False
) -> tuple[Path, Path]:
    """Write the fixed and moving ``size^3`` volumes as .mha; return paths.

    ``linear``: resample with linear interpolation instead of a 3rd-order
    B-spline (several times faster at 512^3, for a memory check).
    """
    import SimpleITK as sitk

    interpolator = sitk.sitkLinear if linear else sitk.sitkBSpline
    fixed_path = folder / f'fixed_{size}.mha'
    moving_path = folder / f'moving_{size}.mha'
    if fixed_path.exists() and moving_path.exists():
        return fixed_path, moving_path
    ct = sitk.ReadImage(str(data / 'CT_3D_lung_fixed_small.mha'), sitk.sitkFloat32)
    extent = np.array(ct.GetSpacing()) * (np.array(ct.GetSize()) - 1)
    grid = sitk.Image([size] * 3, sitk.sitkFloat32)
    grid.SetSpacing((extent / (size - 1)).tolist())
    grid.SetOrigin(ct.GetOrigin())
    grid.SetDirection(ct.GetDirection())
    fixed = sitk.Resample(ct, grid, sitk.Transform(), interpolator, -1024.0)
    truth = sitk.ReadTransform(str(data / TRUTH))
    moving = sitk.Resample(fixed, fixed, truth.GetInverse(), interpolator, -1024.0)
    sitk.WriteImage(fixed, str(fixed_path))
    sitk.WriteImage(moving, str(moving_path))
    return fixed_path, moving_path


# --------------------------------------------------------------------------
# one case, in a child process


def register_volumes(
    fixed_path: str,
    moving_path: str,
    truth_path: str,
    backend: str,
    model: str,
    settings: dict[str, Any],
) -> dict[str, Any]:
    """Register one pair and score it (in a child process)."""
    import SimpleITK as sitk
    import torch

    from napari_coreg import register
    from napari_coreg._sitk import matrix_from_transform
    from napari_coreg.inputs import as_image
    from napari_coreg.transforms import apply_matrix, grid_points

    torch.set_num_threads(harness.threads())
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(harness.threads())
    fixed = sitk.ReadImage(fixed_path)
    moving = sitk.ReadImage(moving_path)
    truth = matrix_from_transform(sitk.ReadTransform(truth_path))
    harness.baseline()
    levels = ()
    with harness.timed() as t:
        if backend == BY_HAND:
            estimate = _by_hand(fixed, moving, model)
        else:
            res = register(
                fixed, moving, model=model, metric='mi', backend=backend, **settings
            )
            estimate, levels = res.moving_from_fixed, res.levels
    grid = as_image(fixed, 'fixed').grid
    corners = apply_matrix(grid.phys_from_px, grid_points(grid.shape))
    error = np.linalg.norm(
        apply_matrix(estimate, corners) - apply_matrix(truth, corners), axis=1
    ).mean()
    return {
        **t,
        'error_mm': float(error),
        'iterations': [lv.iterations for lv in levels],
        'level_shapes': [list(lv.shape) for lv in levels],
    }


def _by_hand(fixed, moving, model: str) -> np.ndarray:
    """SimpleITK driven by hand (rigid only): its ``moving_from_fixed``."""
    from bench_speed import _sitk_by_hand_3d

    from napari_coreg._sitk import matrix_from_transform

    if model != 'rigid':
        raise ValueError('SimpleITK by hand is measured on the rigid model only')
    return matrix_from_transform(_sitk_by_hand_3d(fixed, moving))


def measure(
    data: Path, sizes=SIZES, models=MODELS, configs=CONFIGS, log=print, skip=()
) -> list[dict]:
    """Run every case; return one record per (size, model, config)."""
    records = []
    with tempfile.TemporaryDirectory(prefix='napari-coreg-bench3d-') as tmp:
        for size in sizes:
            fixed_path, moving_path = make_pair(size, Path(tmp), data)
            for model in models:
                if (size, model) in skip:
                    continue
                for label, backend, settings in configs:
                    if backend == BY_HAND and model != 'rigid':
                        continue
                    kwargs = {
                        'fixed_path': str(fixed_path),
                        'moving_path': str(moving_path),
                        'truth_path': str(data / TRUTH),
                        'backend': backend,
                        'model': model,
                        'settings': settings,
                    }
                    name = f'{size}^3 {model} {label}'
                    rec = harness.run_case(
                        SUITE, name, 'bench_3d', 'register_volumes', kwargs
                    )
                    record = {'size': size, 'model': model, 'config': label}
                    if rec['status'] == 'ok':
                        record |= rec['result']
                        record['peak_mb'] = rec['memory']['peak_rss_mib']
                        record['before_mb'] = rec['memory']['rss_before_mib']
                    else:
                        record['error'] = f'{rec["status"]}: {rec["error"]}'
                    records.append(record)
                    log(f'{name}: {record}')
    return records


def main(argv: list[str] | None = None) -> None:
    """Measure, store the records, write the markdown section."""
    import os
    import sys
    import time

    import report_suites

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--sizes', type=int, nargs='+', default=list(SIZES))
    parser.add_argument('--models', nargs='+', default=list(MODELS))
    parser.add_argument('--data', help='folder of the shared test data')
    parser.add_argument('--threads', type=int, default=harness.DEFAULT_THREADS)
    parser.add_argument('--store', type=Path, default=STORE)
    parser.add_argument('--out', type=Path, default=SECTION)
    parser.add_argument(
        '--affine-max',
        type=int,
        default=128,
        help='largest size that also runs the affine model (default 128)',
    )
    parser.add_argument(
        '--quick',
        action='store_true',
        help='smoke run: 32^3, rigid, torch only; stores nothing, prints the table',
    )
    args = parser.parse_args(argv)
    harness.pin_threads(args.threads)
    log = harness.logger()
    data = harness.find_data(DATA, args.data, log)
    if data is None:
        return
    configs = CONFIGS
    if args.quick:
        args.sizes, args.models, configs = [32], ['rigid'], CONFIGS[:1]
    skip = [(n, 'affine') for n in args.sizes if n > args.affine_max]
    started, load_start = time.perf_counter(), os.getloadavg()[0]
    records = measure(data, args.sizes, args.models, configs, log=log, skip=skip)
    command = ' '.join(['bench_3d.py', *(sys.argv[1:] if argv is None else argv)])
    store = {
        'run': harness.run_header(command, started, load_start),
        'records': records,
    }
    text = report_suites.volumes_section(store)
    if not args.quick:
        harness.save(args.store, store)
        args.out.write_text(text)
        log(f'wrote {args.store} and {args.out}')
    print(text)


if __name__ == '__main__':
    main()
