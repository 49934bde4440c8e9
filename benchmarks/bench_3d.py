"""3D benchmark: CT volumes of 64^3 to 256^3, torch vs SimpleITK backends.

    python benchmarks/bench_3d.py                     # 64, 128, 256; rigid + affine
    python benchmarks/bench_3d.py --sizes 64 128 --models rigid
    python benchmarks/bench_3d.py --out docs/bench_3d.md

The volume: ``ct_lung_3d_synthetic_rigid/CT_3D_lung_fixed_small.mha`` from the
shared test data (57 x 78 x 64 voxels, 2.732 x 2.732 x 5 mm), resampled
(3rd-order B-spline) onto ``N^3`` voxels covering the same physical box
(spacing ``extent / N`` per axis, so voxels stay anisotropic). The moving
volume is that one moved by the data set's exact rigid transform (Euler
angles 4, -3, 6 degrees, translation 7.5, -5, 10 mm about the centre):
``moving(T x) = fixed(x)``, default -1024 HU outside. Both are float32
SimpleITK images, so both backends work in physical millimetres.

Each case runs in a fresh subprocess (2 threads for torch, OpenMP and
SimpleITK), which reports the wall time of ``register`` (data already in
memory, imports done), the mean corner error (eight corners and the centre
of the fixed volume, mm) against the truth, and the process's peak resident
memory (``ru_maxrss``: interpreter, libraries and both volumes included).
Metric: Mattes-style mutual information (``'mi'``); default pyramid and
optimisers of each backend; SimpleITK with full sampling and with 10 %
random sampling (its usual setting).
"""

from __future__ import annotations

import os

for _var in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS', 'OPENBLAS_NUM_THREADS'):
    os.environ.setdefault(_var, '2')

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
THREADS = 2
DATA = (
    Path(os.environ.get('NAPARI_COREG_DATA', HERE.parents[1] / 'shared' / 'data'))
    / 'ct_lung_3d_synthetic_rigid'
)
SIZES = (64, 128, 256)
MODELS = ('rigid', 'affine')
#: (label, backend, extra settings)
CONFIGS = (
    ('torch', 'torch', {}),
    ('sitk, full sampling', 'sitk', {}),
    ('sitk, 10 % sampling', 'sitk', {'sampling': 0.1}),
)


# --------------------------------------------------------------------------
# data


def make_pair(size: int, folder: Path) -> tuple[Path, Path]:
    """Write the fixed and moving ``size^3`` volumes as .mha; return paths."""
    import SimpleITK as sitk

    fixed_path = folder / f'fixed_{size}.mha'
    moving_path = folder / f'moving_{size}.mha'
    if fixed_path.exists() and moving_path.exists():
        return fixed_path, moving_path
    ct = sitk.ReadImage(str(DATA / 'CT_3D_lung_fixed_small.mha'), sitk.sitkFloat32)
    extent = np.array(ct.GetSpacing()) * (np.array(ct.GetSize()) - 1)
    grid = sitk.Image([size] * 3, sitk.sitkFloat32)
    grid.SetSpacing((extent / (size - 1)).tolist())
    grid.SetOrigin(ct.GetOrigin())
    grid.SetDirection(ct.GetDirection())
    fixed = sitk.Resample(ct, grid, sitk.Transform(), sitk.sitkBSpline, -1024.0)
    truth = sitk.ReadTransform(str(DATA / 'gt_fixed_to_moving.tfm'))
    moving = sitk.Resample(fixed, fixed, truth.GetInverse(), sitk.sitkBSpline, -1024.0)
    sitk.WriteImage(fixed, str(fixed_path))
    sitk.WriteImage(moving, str(moving_path))
    return fixed_path, moving_path


# --------------------------------------------------------------------------
# one case, in a child process


def run_case(
    fixed_path: str, moving_path: str, backend: str, model: str, settings: dict
) -> dict:
    """Register one pair (call in a fresh process for a clean peak memory)."""
    import resource
    import time

    import SimpleITK as sitk
    import torch

    from napari_coreg import register
    from napari_coreg._sitk import matrix_from_transform
    from napari_coreg.transforms import apply_matrix, grid_points

    torch.set_num_threads(THREADS)
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(THREADS)
    fixed = sitk.ReadImage(fixed_path)
    moving = sitk.ReadImage(moving_path)
    truth_tfm = sitk.ReadTransform(str(DATA / 'gt_fixed_to_moving.tfm'))
    truth = matrix_from_transform(truth_tfm)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    before = usage.ru_maxrss / 1024
    cpu_before = usage.ru_utime + usage.ru_stime
    started = time.perf_counter()
    res = register(fixed, moving, model=model, metric='mi', backend=backend, **settings)
    seconds = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    peak = usage.ru_maxrss / 1024
    cpu = usage.ru_utime + usage.ru_stime - cpu_before
    grid = res.fixed_grid
    corners = apply_matrix(grid.phys_from_px, grid_points(grid.shape))
    error = np.linalg.norm(
        apply_matrix(res.moving_from_fixed, corners) - apply_matrix(truth, corners),
        axis=1,
    ).mean()
    return {
        'seconds': seconds,
        'cpu_seconds': cpu,
        'error_mm': float(error),
        'peak_mb': peak,
        'before_mb': before,
        'iterations': [lv.iterations for lv in res.levels],
        'level_shapes': [list(lv.shape) for lv in res.levels],
    }


def _child(fixed_path, moving_path, backend, model, settings) -> dict:
    command = [
        sys.executable,
        __file__,
        '--case',
        json.dumps([str(fixed_path), str(moving_path), backend, model, settings]),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith('{')]
    if done.returncode != 0 or not lines:
        return {'error': (done.stderr.strip().splitlines() or ['failed'])[-1]}
    return json.loads(lines[-1])


# --------------------------------------------------------------------------
# the table


def _versions() -> str:
    import SimpleITK as sitk
    import torch

    return (
        f'Python {platform.python_version()}, torch {torch.__version__}, '
        f'SimpleITK {sitk.Version.VersionString()}, numpy {np.__version__}; '
        f'{os.cpu_count()} CPU cores, every library limited to {THREADS} threads'
    )


def measure(
    sizes=SIZES, models=MODELS, configs=CONFIGS, log=print, skip=()
) -> list[dict]:
    """Run every case; return one record per (size, model, config)."""
    records = []
    with tempfile.TemporaryDirectory(prefix='napari-coreg-bench3d-') as tmp:
        for size in sizes:
            fixed_path, moving_path = make_pair(size, Path(tmp))
            for model in models:
                if (size, model) in skip:
                    continue
                for label, backend, settings in configs:
                    result = _child(fixed_path, moving_path, backend, model, settings)
                    record = {'size': size, 'model': model, 'config': label, **result}
                    records.append(record)
                    log(json.dumps(record))
    return records


def _cell(record: dict) -> str:
    if 'error' in record:
        return f'failed: {record["error"][:60]}'
    return (
        f'{record["seconds"]:.1f} s ({record["cpu_seconds"]:.1f} s CPU), '
        f'{record["error_mm"]:.2f} mm, {record["peak_mb"] / 1024:.2f} GB'
    )


def table(records: list[dict]) -> str:
    """Markdown: one row per size and model, one column per configuration."""
    labels = list(dict.fromkeys(r['config'] for r in records))
    lines = [
        '| volume | model | ' + ' | '.join(labels) + ' |',
        '|---|---|' + '---|' * len(labels),
    ]
    keys = list(dict.fromkeys((r['size'], r['model']) for r in records))
    for size, model in keys:
        cells = []
        for label in labels:
            match = [
                r
                for r in records
                if (r['size'], r['model'], r['config']) == (size, model, label)
            ]
            cells.append(_cell(match[0]) if match else '-')
        lines.append(f'| {size}³ | {model} + MI | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def ratios(records: list[dict]) -> str:
    """torch time / sitk time per size and model, where both ran."""
    out = []
    for size, model in dict.fromkeys((r['size'], r['model']) for r in records):
        rows = {
            r['config']: r for r in records if (r['size'], r['model']) == (size, model)
        }
        torch_row = rows.get('torch', {})
        for label in ('sitk, full sampling', 'sitk, 10 % sampling'):
            other = rows.get(label, {})
            if 'seconds' in torch_row and 'seconds' in other:
                wall = torch_row['seconds'] / other['seconds']
                cpu = torch_row['cpu_seconds'] / other['cpu_seconds']
                out.append(
                    f'- {size}³ {model} + MI: torch / {label} = {wall:.2f} wall, '
                    f'{cpu:.2f} CPU ({torch_row["error_mm"]:.2f} vs '
                    f'{other["error_mm"]:.2f} mm)'
                )
    return '\n'.join(out)


def run(sizes=SIZES, models=MODELS, log=None, skip=()) -> str:
    """Measure and return a markdown section (used by ``run_all.py``).

    ``skip`` lists ``(size, model)`` cases left out (e.g. affine at 256^3).
    """
    records = measure(sizes, models, log=log or (lambda _: None), skip=skip)
    stamp = datetime.datetime.now().strftime('%Y-%m-%d %H:%M')
    intro = (
        'CT lung volume resampled to N³ voxels (same physical box, anisotropic '
        'voxels) and moved by the exact rigid transform of the shared data set '
        '(4°, −3°, 6°; 7.5, −5, 10 mm). Cells: wall time of `register` (and the '
        'CPU time of the process during it: the machine may be shared), mean '
        'corner error against the truth (mm), peak resident memory of the '
        'process (interpreter, libraries and both volumes included). Each case '
        'in a fresh process; default pyramid and optimiser of each backend.'
    )
    parts = [
        '## 3D: CT volumes, torch vs SimpleITK',
        f'Generated by `python benchmarks/bench_3d.py` on {stamp}. {_versions()}.',
        intro,
        table(records),
        'Time ratios (lower is faster for torch):\n\n' + (ratios(records) or '-'),
    ]
    return '\n\n'.join(parts) + '\n'


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--sizes', type=int, nargs='+', default=list(SIZES))
    parser.add_argument('--models', nargs='+', default=list(MODELS))
    parser.add_argument('--out', type=Path, help='write the markdown section here')
    parser.add_argument(
        '--affine-max',
        type=int,
        default=128,
        help='largest size that also runs the affine model (default 128)',
    )
    parser.add_argument('--case', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.case:
        print(json.dumps(run_case(*json.loads(args.case))), flush=True)
        return
    skip = [(n, 'affine') for n in args.sizes if n > args.affine_max]
    text = run(
        args.sizes, args.models, log=lambda line: print(line, flush=True), skip=skip
    )
    if args.out:
        args.out.write_text(text)
    print(text)


if __name__ == '__main__':
    main()
