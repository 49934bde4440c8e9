"""Issue 11's speed and memory targets, every row measured in one run.

    python benchmarks/run_all.py --suites speed           # make bench-speed
    python benchmarks/run_all.py --suites speed --quick   # smoke, small sizes
    python benchmarks/bench_targets.py [--quick]          # the same, alone

Each row of the targets (``report_targets.TARGETS``) is measured against its
peer side by side, in one run, with every library limited to ``--threads``
(default 2). The suites that own the measurements do the work; this one
calls them and keeps what they return:

* 512² rigid, affine and homography + NCC against OpenCV's ECC (3 levels),
  affine + MI against SimpleITK at its best settings (25 % random sampling,
  seed 1, 4 levels): :func:`bench_speed.suite_pairs` in a child process
  (ours and the peer alternately, ratio of the medians, median over cases);
* the ITK brain T1 onto the shifted PD with MI: ours (translation, rigid)
  against SimpleITK (Euler2D, Mattes MI, full sampling, 3 levels), side by
  side (:func:`bench_speed.side_by_side`);
* a 100 x 512² rigid drift stack, reference ``'first'`` and ``'previous'``,
  against pystackreg with the same reference: :func:`bench_stack.measure`
  (each method in its own child, one after the other);
* 3D rigid + MI at 128³ (the CT volume of :func:`bench_3d.make_pair`): our
  torch engine, our SimpleITK backend and SimpleITK driven by hand
  (:func:`bench_speed._sitk_by_hand_3d`), interleaved in one child; and the
  SimpleITK backend on a 2D pair and the original CT (:func:`bench_speed.suite_sitk`);
* peak memory (``VmHWM`` of a fresh process) of registering a 4096² pair
  (:func:`bench_memory.memory_pair`, each of :data:`bench_memory.SETTINGS`)
  and a 512³ float32 volume pair (rigid + MI, 2 iterations per level:
  buffers do not depend on the iteration count), with the peak so far when
  each pyramid level starts (where the memory goes);
* for every time row whose target is not met, a profile of ours (cProfile:
  the phases of :data:`bench_speed.PHASES` and the functions with the most
  own time).

GPU rows are read from ``benchmarks/results/gpu.json`` (written by
``benchmarks/gpu.py`` on a CUDA machine), not measured here. The run's
records are kept in ``records.json`` under ``targets``;
:func:`report_targets.section` writes the section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import cProfile
import itertools
import os
import pstats
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import harness
import numpy as np
import report_targets

SUITE = 'speed'
CT = 'ct_lung_3d_synthetic_rigid'
BRAIN = 'itk_brain_2d'
#: The drift-stack rows: (name, child function of bench_stack, settings).
STACK_METHODS = tuple(
    (f'{who}, {reference}', function, {**settings, 'reference': reference})
    for reference in report_targets.REFERENCES
    for who, function, settings in (
        (report_targets.OURS_STACK, 'ours', {}),
        (report_targets.PEER_STACK, 'stackreg', {'mode': 'RIGID_BODY'}),
    )
)


# --------------------------------------------------------------------------
# options


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """This suite's options."""
    group = parser.add_argument_group('speed (issue 11 targets)')
    group.add_argument('--speed-size', type=int, default=512, help='pair side (px)')
    group.add_argument('--speed-cases', type=int, default=4, help='pairs per row')
    group.add_argument(
        '--speed-repeats', type=int, default=2, help='timed runs per side and case'
    )
    group.add_argument('--stack-frames', type=int, default=100)
    group.add_argument('--volume-size', type=int, default=128)
    group.add_argument('--pair-memory-size', type=int, default=4096)
    group.add_argument('--volume-memory-size', type=int, default=512)
    group.add_argument(
        '--profile-frames', type=int, default=20, help='frames of a profiled stack'
    )


def quick(args: argparse.Namespace) -> None:
    """Smoke settings: small pairs, stacks and volumes, one repeat."""
    args.speed_size, args.speed_cases, args.speed_repeats = 128, 1, 1
    args.stack_frames, args.volume_size, args.profile_frames = 8, 32, 4
    args.pair_memory_size, args.volume_memory_size = 512, 64


# --------------------------------------------------------------------------
# child processes: each returns a JSON-serialisable dict


def _limit() -> None:
    import bench_speed

    bench_speed._limit(harness.threads())


def pairs(size: int, cases: int, repeats: int) -> dict[str, Any]:
    """The 2D rows against ECC and SimpleITK (:func:`bench_speed.suite_pairs`)."""
    import bench_speed

    _limit()
    ns = argparse.Namespace(size=size, cases=cases, repeats=repeats)
    return {'rows': bench_speed.suite_pairs(ns)}


def sitk_backend_2d(size: int, repeats: int, data: str) -> dict[str, Any]:
    """Our SimpleITK backend against SimpleITK by hand, 2D and the CT volume.

    :func:`bench_speed.suite_sitk`; the CT is skipped when ``data`` lacks it.
    """
    import bench_speed

    _limit()
    ns = argparse.Namespace(size=size, repeats=repeats, data=Path(data))
    return {'rows': bench_speed.suite_sitk(ns)}


def _brain_pair(folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ITK brain T1 (fixed), shifted PD (moving) and the exact truth."""
    import json

    from skimage import io

    from napari_coreg import reverse_axes

    def read(name: str) -> np.ndarray:
        image = io.imread(folder / name)
        return image[..., 0] if image.ndim == 3 else image

    truth = json.loads((folder / 'ground_truth.json').read_text())['pairs']
    key = (
        f'{report_targets.BRAIN_T1} (as FIXED) vs {report_targets.BRAIN_PD} (as MOVING)'
    )
    expected = reverse_axes(truth[key]['fixed_to_moving_3x3'])
    return read(report_targets.BRAIN_T1), read(report_targets.BRAIN_PD), expected


def brain(folder: str, repeats: int) -> dict[str, Any]:
    """ITK brain T1/PD with MI: ours (translation, rigid) and SimpleITK (rigid)."""
    import bench_speed
    import peers

    import napari_coreg as nc

    _limit()
    fixed, moving, truth = _brain_pair(Path(folder))
    out: dict[str, Any] = {}
    for model in ('translation', 'rigid'):
        t_ours, t_peer, res, est = bench_speed.side_by_side(
            lambda m=model: nc.register(fixed, moving, model=m, metric='mi'),
            lambda: peers.sitk_register(fixed, moving, 'euler', 'mattes', 'full'),
            repeats,
        )
        out[model] = {
            'ours_s': t_ours,
            'peer_s': t_peer,
            'error_ours_px': nc.corner_error(res.moving_from_fixed, truth, fixed.shape),
            'error_peer_px': nc.corner_error(est, truth, fixed.shape),
        }
    return out


def _corner_error_mm(matrix, truth, image) -> float:
    """Mean distance (mm) of a volume's corners mapped by ``matrix`` and ``truth``
    (physical, numpy axis order)."""
    from napari_coreg.transforms import apply_matrix

    corners = itertools.product(*[(0.0, n - 1.0) for n in image.GetSize()])
    xyz = [image.TransformContinuousIndexToPhysicalPoint(c) for c in corners]
    points = np.array(xyz)[:, ::-1]
    gap = apply_matrix(np.asarray(matrix), points) - apply_matrix(truth, points)
    return float(np.linalg.norm(gap, axis=1).mean())


def volumes(fixed: str, moving: str, truth_path: str, repeats: int) -> dict[str, Any]:
    """3D rigid + MI: torch, our SimpleITK backend, SimpleITK by hand, interleaved.

    Each is warmed up on the volumes shrunk 4 times, then the three run in
    turn ``repeats`` times; medians of wall and CPU seconds, errors in mm.
    """
    import bench_speed
    import SimpleITK as sitk

    from napari_coreg import register
    from napari_coreg._sitk import matrix_from_transform

    _limit()
    pair = [sitk.ReadImage(path) for path in (fixed, moving)]
    truth = matrix_from_transform(sitk.ReadTransform(truth_path))
    runs: dict[str, Callable[[Any, Any], np.ndarray]] = {
        'torch': lambda f, m: register(f, m, 'rigid', 'mi').moving_from_fixed,
        'sitk backend': lambda f, m: (
            register(f, m, 'rigid', 'mi', backend='sitk').moving_from_fixed
        ),
        'by hand': lambda f, m: matrix_from_transform(
            bench_speed._sitk_by_hand_3d(f, m)
        ),
    }
    small = [sitk.Shrink(image, [4] * 3) for image in pair]
    for run in runs.values():
        run(*small)
    wall: dict[str, list[float]] = {name: [] for name in runs}
    cpu: dict[str, list[float]] = {name: [] for name in runs}
    errors: dict[str, float] = {}
    for _ in range(repeats):
        for name, run in runs.items():
            with harness.timed() as t:
                matrix = run(*pair)
            wall[name].append(t['seconds'])
            cpu[name].append(t['cpu_seconds'])
            errors[name] = _corner_error_mm(matrix, truth, pair[0])
    return {
        name: {
            'seconds': float(np.median(wall[name])),
            'cpu_seconds': float(np.median(cpu[name])),
            'error_mm': errors[name],
        }
        for name in runs
    }


def _traced(run: Callable[[Callable], Any]) -> dict[str, Any]:
    """Run ``run(callback)``; note the peak RSS so far (``VmHWM``, MiB) when
    each pyramid level takes its first step: where the memory goes."""
    by_level: list[list[float]] = []

    def callback(progress) -> None:
        if not by_level or by_level[-1][0] != progress.level:
            by_level.append([progress.level, harness.proc_status().get('VmHWM')])

    harness.baseline()
    with harness.timed() as t:
        result = run(callback)
    return {
        **t,
        'hwm_by_level': by_level,
        'level_shapes': [list(lv.shape) for lv in result.levels],
        'matrix': np.asarray(result.moving_from_fixed).tolist(),
    }


def pair_memory(path: str, model: str, metric: str) -> dict[str, Any]:
    """Register the 2D pair saved at ``path`` once (default settings)."""
    from napari_coreg import register

    _limit()
    data = np.load(path)
    fixed, moving = data['fixed'], data['moving']
    return _traced(lambda cb: register(fixed, moving, model, metric, callback=cb))


def volume_memory(fixed: str, moving: str) -> dict[str, Any]:
    """Register the volume pair at these paths once (rigid + MI, 2 iterations
    per level: a level's buffers do not depend on the iteration count)."""
    import SimpleITK as sitk

    from napari_coreg import register

    _limit()
    pair = [sitk.ReadImage(path) for path in (fixed, moving)]
    return _traced(lambda cb: register(*pair, 'rigid', 'mi', iterations=2, callback=cb))


# --------------------------------------------------------------------------
# profiles of ours


def _label(key: tuple[str, int, str]) -> str:
    path, _, name = key
    if path == '~':  # a builtin: a torch or numpy operation
        return name.replace('<built-in method ', '').replace('<method ', '').rstrip('>')
    return f'{Path(path).name}:{name}'


def profile_of(run: Callable[[], object], top: int = 8) -> dict[str, Any]:
    """Where one call of ``run`` spends its time (after one warm-up call).

    Returns
    -------
    dict
        ``total_ms`` (wall, under cProfile), ``phases`` (name, cumulative
        ms) of :data:`bench_speed.PHASES` found in the profile, and ``top``:
        the ``top`` functions (Python or builtin) with the most own time
        (name, ms).
    """
    import bench_speed

    run()
    profile = cProfile.Profile()
    with harness.timed() as t:
        profile.enable()
        run()
        profile.disable()
    stats = pstats.Stats(profile).stats
    phases = []
    for phase, (filename, function) in bench_speed.PHASES.items():
        ms = 1e3 * sum(
            value[3]
            for (path, _, name), value in stats.items()
            if path.endswith(filename) and name == function
        )
        if ms > 0:
            phases.append([phase, ms])
    ranked = sorted(stats.items(), key=lambda kv: kv[1][2], reverse=True)
    return {
        'total_ms': t['seconds'] * 1e3,
        'phases': phases,
        'top': [[_label(key), value[2] * 1e3] for key, value in ranked[:top]],
    }


def profile(key: str, size: int, frames: int, paths: dict[str, str]) -> dict[str, Any]:
    """Profile our side of the row ``key`` (see :data:`report_targets.TARGETS`)."""
    import bench_speed

    import napari_coreg as nc

    _limit()
    kind, _, detail = key.partition(':')
    if kind == 'pair':
        family, metric = detail.split('+')
        case = bench_speed._case(family, 'mono', size, 0)
        return profile_of(
            lambda: nc.register(case.fixed, case.moving, model=family, metric=metric)
        )
    if kind == 'stack':
        from napari_coreg.cases import drift_stack

        stack, _ = drift_stack(frames, size)
        return profile_of(
            lambda: nc.register_stack(
                stack, reference=detail, model='rigid', metric='ncc'
            )
        )
    import SimpleITK as sitk

    fixed, moving = (sitk.ReadImage(paths[k]) for k in ('fixed', 'moving'))
    return profile_of(lambda: nc.register(fixed, moving, 'rigid', 'mi', backend=detail))


# --------------------------------------------------------------------------
# the run


def _child(log: harness.Log, function: str, **kwargs) -> dict[str, Any]:
    """``function(**kwargs)`` of this module in a child process: its result, or
    ``{'error': ...}``; the child's memory under ``'memory'``."""
    log(f'{function} {kwargs.get("key", "")}...')
    rec = harness.run_case(SUITE, function, 'bench_targets', function, kwargs)
    if rec['status'] != 'ok':
        log(f'  {function}: {rec["status"]}: {rec["error"]}')
        return {'error': f'{rec["status"]}: {rec["error"]}'}
    return {**rec['result'], 'memory': rec['memory']}


def _volume_pair(
    size: int, tmp: Path, data: Path | None, linear: bool = False
) -> dict[str, str] | None:
    import bench_3d

    if data is None:
        return None
    fixed, moving = bench_3d.make_pair(size, tmp, data, linear)
    return {'fixed': str(fixed), 'moving': str(moving)}


def _pair_memory(size: int, tmp: Path, log: harness.Log) -> list[dict[str, Any]]:
    """Peak memory of each setting of :data:`bench_memory.SETTINGS` on a
    ``size``² pair (:func:`bench_memory.memory_pair`)."""
    import bench_memory
    from scoring import error_px

    fixed, moving, truth = bench_memory.memory_pair(size)
    path = tmp / 'pair.npz'
    np.savez(path, fixed=fixed, moving=moving)
    out = []
    for settings in bench_memory.SETTINGS:
        got = _child(log, 'pair_memory', path=str(path), **settings)
        if 'matrix' in got:
            got['error_px'] = error_px(got.pop('matrix'), truth, (size, size))
        out.append({'size': size, **settings, **got})
    path.unlink()
    return out


def measure(args: argparse.Namespace, log: harness.Log) -> dict[str, Any]:
    """Every row's measurements (and profiles of the rows not met)."""
    import bench_stack

    size, repeats = args.speed_size, args.speed_repeats
    ct = harness.find_data(CT, args.data, log)
    brain_folder = harness.find_data(BRAIN, args.data, log)
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix='napari-coreg-targets-') as name:
        tmp = Path(name)
        out['size'] = size
        out['pairs'] = _child(
            log, 'pairs', size=size, cases=args.speed_cases, repeats=repeats
        )
        if brain_folder is not None:
            out['brain'] = _child(
                log, 'brain', folder=str(brain_folder), repeats=repeats
            )
        log(f'stack {args.stack_frames} x {size}² ...')
        out['stack'] = bench_stack.measure(
            args.stack_frames, size, False, log, methods=STACK_METHODS
        )
        volume = _volume_pair(args.volume_size, tmp, ct)
        if volume is not None:
            truth = str(ct / 'gt_fixed_to_moving.tfm')
            out['volume'] = {
                'size': args.volume_size,
                **_child(log, 'volumes', **volume, truth_path=truth, repeats=repeats),
            }
        # the original CT only in a full run: a quick run's 2D pair is enough
        sitk_data = str(harness.data_dir(args.data) if not args.quick else tmp)
        out['sitk'] = _child(
            log, 'sitk_backend_2d', size=size, repeats=repeats, data=sitk_data
        )
        out['pair_memory'] = _pair_memory(args.pair_memory_size, tmp, log)
        big = _volume_pair(args.volume_memory_size, tmp, ct, linear=True)
        if big is not None:
            out['volume_memory'] = {
                'size': args.volume_memory_size,
                **_child(log, 'volume_memory', **big),
            }
            out['volume_memory'].pop('matrix', None)
            for path in big.values():
                Path(path).unlink()
        out['profiles'] = {}
        for key in report_targets.to_profile(out):
            out['profiles'][key] = _child(
                log,
                'profile',
                key=key,
                size=size,
                frames=args.profile_frames,
                paths=volume or {},
            )
    return out


def run(args: argparse.Namespace, store: dict, log: harness.Log) -> set[str]:
    """Measure every row; store them under ``store['targets']``; the group ``speed``."""
    if args.only:
        log('speed: skipped with --only (each row needs ours and the peer)')
        return set()
    started, load_start = time.perf_counter(), os.getloadavg()[0]
    measured = measure(args, log)
    command = ' '.join([Path(sys.argv[0]).name, *sys.argv[1:]])
    store['targets'] = {
        'run': harness.run_header(command, started, load_start),
        'settings': {
            'size': args.speed_size,
            'cases': args.speed_cases,
            'repeats': args.speed_repeats,
            'frames': args.stack_frames,
            'volume_size': args.volume_size,
            'profile_frames': args.profile_frames,
            'quick': bool(args.quick),
        },
        'measured': measured,
    }
    return {'speed'}


if __name__ == '__main__':
    import driver

    driver.main([SUITE], doc=__doc__)
