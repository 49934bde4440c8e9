"""Speed against the peers, as ratios taken side by side in one process.

    PYTHONPATH=src python benchmarks/bench_speed.py                 # every suite
    PYTHONPATH=src python benchmarks/bench_speed.py --suite pairs --cases 4
    PYTHONPATH=src python benchmarks/bench_speed.py --suite profile

Suites:

* ``pairs``: 512 px rigid, affine and homography pairs with NCC against
  OpenCV's ECC (PEERS.md settings, 3+ pyramid levels), and affine MI against
  SimpleITK at its best settings (25 % random sampling, seed 1, 4 levels).
  Each case runs ours and the peer alternately ``--repeats`` times after a
  warm-up; the ratio is of the medians, and the table gives the median ratio
  over the cases that both solved (corner error < 1 px; a failing peer
  returns at once) with the median corner errors.
* ``init``: the share of ``init='auto'`` (starting points) in the time of an
  easy pair, against ``init='center'``, and the time of the starting-point
  search itself.
* ``profile``: where the time of one 512 px affine NCC registration goes
  (cProfile, grouped by phase).
* ``sitk``: our SimpleITK backend against SimpleITK driven by hand with
  PEERS.md settings, on a 2D pair and on the 3D CT volume of the shared data
  (``--data``, default ``../shared/data`` next to the repository).

Threads are limited (``--threads``, default 1) for every library, so that a
shared machine's load inflates ours and the peer's time alike; a loaded
machine still makes single numbers noisy, which is why only ratios of
interleaved medians are reported.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
# as napari_coreg does on import: idle OpenMP threads sleep instead of spinning
# (torch may be imported here first; on shared cores spinning costs 5-50x)
os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')
sys.path.insert(0, str(HERE))

DEFAULT_DATA = HERE.parents[0] / '..' / 'shared' / 'data'
#: family -> (our model, ECC motion)
ECC_FAMILIES = {
    'rigid': ('rigid', 'euclidean'),
    'affine': ('affine', 'affine'),
    'homography': ('homography', 'homography'),
}


def _case(family: str, modality: str, size: int, index: int):
    try:  # the benchmark cases moved into the package on the harness branch
        from napari_coreg.cases import benchmark_case

        return benchmark_case(family, modality, size, index)
    except ImportError:
        from cases import make_case

        return make_case(family, modality, size, index)


def _limit(threads: int) -> None:
    import cv2
    import torch

    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)
    try:
        import SimpleITK as sitk

        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
    except ImportError:
        pass
    import peers

    peers.THREADS = threads
    peers._APPLIED.clear()


def _timed(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def side_by_side(
    ours: Callable[[], object], peer: Callable[[], object], repeats: int
) -> tuple[float, float, object, object]:
    """Median times of ``ours`` and ``peer`` run alternately, and their outputs."""
    ours(), peer()  # warm-up (imports, caches)
    times_ours, times_peer = [], []
    for _ in range(repeats):
        t, out_ours = _timed(ours)
        times_ours.append(t)
        t, out_peer = _timed(peer)
        times_peer.append(t)
    return (
        float(np.median(times_ours)),
        float(np.median(times_peer)),
        out_ours,
        out_peer,
    )


def _error(matrix, case) -> float:
    from napari_coreg import corner_error

    if matrix is None:
        return float('inf')
    return float(corner_error(np.asarray(matrix), case.truth, case.fixed.shape))


def suite_pairs(args) -> list[dict]:
    """Ours against ECC (NCC) and SimpleITK (affine MI), per family."""
    import peers

    import napari_coreg as nc

    rows = []
    plans = [
        (family, 'mono', model, 'ncc', 'ECC', motion)
        for family, (model, motion) in ECC_FAMILIES.items()
    ]
    plans.append(('affine', 'mono', 'affine', 'mi', 'SimpleITK', None))
    for family, modality, model, metric, peer_name, motion in plans:
        ratios, errors_ours, errors_peer, ms = [], [], [], []
        for index in range(args.cases):
            case = _case(family, modality, args.size, index)

            def ours(case=case, model=model, metric=metric):
                return nc.register(case.fixed, case.moving, model=model, metric=metric)

            if motion is not None:

                def peer(case=case, motion=motion):
                    return peers.ecc_register(case.fixed, case.moving, motion=motion)
            else:

                def peer(case=case):
                    return peers.sitk_register(
                        case.fixed, case.moving, 'affine', 'mattes', 'random'
                    )

            t_ours, t_peer, res, est = side_by_side(ours, peer, args.repeats)
            ratios.append(t_ours / t_peer)
            ms.append((t_ours * 1e3, t_peer * 1e3))
            errors_ours.append(_error(res.moving_from_fixed, case))
            errors_peer.append(_error(est, case))
            print(
                f'  {family}-{metric} case {index}: ours {t_ours * 1e3:.0f} ms, '
                f'{peer_name} {t_peer * 1e3:.0f} ms, ratio {ratios[-1]:.2f}, '
                f'error {errors_ours[-1]:.3f} vs {errors_peer[-1]:.3f} px',
                flush=True,
            )
        # a peer that fails (ECC raises at once on some pairs) is no time to
        # compare with: the ratio is over the cases both solved (< 1 px)
        solved = [
            r
            for r, e, p in zip(ratios, errors_ours, errors_peer, strict=True)
            if e < 1 and p < 1
        ]
        rows.append(
            {
                'case': f'{args.size}px {family} + {metric}',
                'peer': peer_name,
                'ratio_median': float(np.median(solved or ratios)),
                'peer_failures': sum(not e < 1 for e in errors_peer),
                'ours_ms_median': float(np.median([m[0] for m in ms])),
                'peer_ms_median': float(np.median([m[1] for m in ms])),
                'error_ours_median': float(np.median(errors_ours)),
                'error_peer_median': float(np.median(errors_peer)),
                'cases': args.cases,
            }
        )
    return rows


def suite_init(args) -> list[dict]:
    """Share of the default start (``init='auto'``) in an easy pair's time."""
    import torch

    import napari_coreg as nc
    from napari_coreg.engines.torch import engine
    from napari_coreg.method import resolve
    from napari_coreg.problem import Problem

    rows = []
    for family in ('rigid', 'affine'):
        case = _case(family, 'mono', args.size, 0)

        def auto(case=case, family=family):
            return nc.register(case.fixed, case.moving, model=family, metric='ncc')

        def center(case=case, family=family):
            return nc.register(
                case.fixed, case.moving, model=family, metric='ncc', init='center'
            )

        t_auto, t_center, res_auto, res_center = side_by_side(
            auto, center, args.repeats
        )
        problem, _, _ = Problem.from_images(
            case.fixed, case.moving, resolve(family, 'ncc')
        )
        device = torch.device('cpu')
        norm = engine.normalised_frame(problem.fixed_grid)
        search = lambda p=problem, d=device, n=norm: engine._start(p, d, n)  # noqa: E731
        starts = [_timed(search)[0] for _ in range(args.repeats)]
        t_start = float(np.median(starts))
        rows.append(
            {
                'case': f'{args.size}px {family} + ncc (easy)',
                'auto_ms': t_auto * 1e3,
                'center_ms': t_center * 1e3,
                'start_search_ms': t_start * 1e3,
                'start_share_of_auto': t_start / t_auto,
                'error_auto': _error(res_auto.moving_from_fixed, case),
                'error_center': _error(res_center.moving_from_fixed, case),
            }
        )
        print(f'  {rows[-1]}', flush=True)
    return rows


#: Profile phases: function names (file:function) whose cumulative time
#: counts for the phase.
PHASES = {
    'inputs (Problem.from_images)': ('problem.py', 'from_images'),
    'starting points (init auto)': ('engine.py', '_start'),
    'level building (pyramid, points)': ('engine.py', '_level'),
    '  of which pyramid images (shrink, blur)': ('images.py', 'level_images'),
    'optimiser, all levels': ('compositional.py', 'compositional_gauss_newton'),
    '  of which iterations (warp + systems)': ('compositional.py', 'system'),
    '  of which warps (sample)': ('levels.py', 'sample'),
    '  of which steepest descent basis': ('compositional.py', '_basis'),
    'metric before/after': ('engine.py', '_natural'),
}


def suite_profile(args) -> list[dict]:
    """Where one 512 px affine NCC registration spends its time."""
    import napari_coreg as nc

    case = _case('affine', 'mono', args.size, 0)

    def run():
        return nc.register(case.fixed, case.moving, model='affine', metric='ncc')

    run()
    profile = cProfile.Profile()
    total = time.perf_counter()
    profile.enable()
    for _ in range(args.repeats):
        run()
    profile.disable()
    total = (time.perf_counter() - total) / args.repeats
    stats = pstats.Stats(profile).stats
    rows = [{'phase': 'total (under cProfile)', 'ms': total * 1e3}]
    for phase, (filename, function) in PHASES.items():
        cumulative = sum(
            value[3]
            for (path, _, name), value in stats.items()
            if path.endswith(filename) and name == function
        )
        rows.append({'phase': phase, 'ms': cumulative / args.repeats * 1e3})
    for row in rows:
        print(f'  {row["phase"]:<36} {row["ms"]:8.1f} ms', flush=True)
    return rows


def _sitk_by_hand_3d(fixed, moving):
    """SimpleITK driven by hand on a volume: PEERS.md settings in 3D (Euler3D,
    Mattes MI 32 bins, 25 % random sampling with seed 1, regular-step
    gradient descent with physical-shift scales, shrink 4, 2, 1 and sigmas
    2, 1, 0 px for a volume of about 64 voxels a side)."""
    import SimpleITK as sitk

    transform = sitk.CenteredTransformInitializer(
        fixed,
        moving,
        sitk.Euler3DTransform(),
        sitk.CenteredTransformInitializerFilter.GEOMETRY,
    )
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    method.SetMetricSamplingStrategy(method.RANDOM)
    method.SetMetricSamplingPercentage(0.25, 1)
    method.SetInterpolator(sitk.sitkLinear)
    extent = min(
        n * s for n, s in zip(fixed.GetSize(), fixed.GetSpacing(), strict=True)
    )
    method.SetOptimizerAsRegularStepGradientDescent(
        learningRate=extent / 64.0,
        minStep=1e-3,
        numberOfIterations=200,
        relaxationFactor=0.5,
        gradientMagnitudeTolerance=1e-8,
    )
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetShrinkFactorsPerLevel([4, 2, 1])
    method.SetSmoothingSigmasPerLevel([2, 1, 0])
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOff()
    method.SetInitialTransform(transform, inPlace=False)
    return method.Execute(fixed, moving)


def _ct_error_mm(transform_point, fixed, truth: np.ndarray) -> float:
    """Mean distance (mm) of the fixed volume's corners mapped by an estimate
    (a function of an (x, y, z) point) and by the truth."""
    import itertools

    corners = [
        fixed.TransformContinuousIndexToPhysicalPoint([float(v) for v in corner])
        for corner in itertools.product(*[(0, n - 1) for n in fixed.GetSize()])
    ]
    points = np.array(corners)
    mapped = np.array([transform_point(tuple(p)) for p in points])
    expected = points @ truth[:3, :3].T + truth[:3, 3]
    return float(np.linalg.norm(mapped - expected, axis=1).mean())


def suite_sitk(args) -> list[dict]:
    """Our SimpleITK backend against SimpleITK by hand, 2D and 3D, MI."""
    import peers
    import SimpleITK as sitk

    import napari_coreg as nc

    rows = []
    case = _case('affine', 'mono', args.size, 0)
    t_ours, t_hand, res, est = side_by_side(
        lambda: nc.register(
            case.fixed, case.moving, model='affine', metric='mi', backend='sitk'
        ),
        lambda: peers.sitk_register(case.fixed, case.moving, 'affine', 'mattes'),
        args.repeats,
    )
    rows.append(
        {
            'case': f'2D {args.size}px affine + mi',
            'ours_s': t_ours,
            'by_hand_s': t_hand,
            'ratio': t_ours / t_hand,
            'error_ours_px': _error(res.moving_from_fixed, case),
            'error_by_hand_px': _error(est, case),
        }
    )
    print(f'  {rows[-1]}', flush=True)
    folder = Path(args.data) / 'ct_lung_3d_synthetic_rigid'
    if not folder.is_dir():
        print(f'  (3D skipped: {folder} not found)', flush=True)
        return rows
    fixed = sitk.Cast(
        sitk.ReadImage(str(folder / 'CT_3D_lung_fixed_small.mha')), sitk.sitkFloat32
    )
    moving = sitk.Cast(
        sitk.ReadImage(str(folder / 'CT_3D_lung_moving_synthetic.mha')),
        sitk.sitkFloat32,
    )
    truth = np.array(
        json.loads((folder / 'ground_truth.json').read_text())['homogeneous_4x4']
    )
    t_ours, t_hand, res, est = side_by_side(
        lambda: nc.register(fixed, moving, model='rigid', metric='mi', backend='sitk'),
        lambda: _sitk_by_hand_3d(fixed, moving),
        args.repeats,
    )
    xyz = nc.reverse_axes(res.moving_from_fixed)
    rows.append(
        {
            'case': '3D CT lung rigid + mi',
            'ours_s': t_ours,
            'by_hand_s': t_hand,
            'ratio': t_ours / t_hand,
            'error_ours_mm': _ct_error_mm(
                lambda p: xyz[:3, :3] @ np.array(p) + xyz[:3, 3], fixed, truth
            ),
            'error_by_hand_mm': _ct_error_mm(est.TransformPoint, fixed, truth),
        }
    )
    print(f'  {rows[-1]}', flush=True)
    return rows


SUITES = {
    'pairs': suite_pairs,
    'init': suite_init,
    'profile': suite_profile,
    'sitk': suite_sitk,
}


def main(argv: list[str] | None = None) -> None:
    """Run the chosen suites and print (and optionally save) JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--suite', choices=[*SUITES, 'all'], default='all')
    parser.add_argument('--size', type=int, default=512)
    parser.add_argument('--cases', type=int, default=4)
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--data', type=Path, default=DEFAULT_DATA)
    parser.add_argument('--out', type=Path, default=None, help='JSON file to write')
    args = parser.parse_args(argv)
    _limit(args.threads)
    chosen = list(SUITES) if args.suite == 'all' else [args.suite]
    results = {}
    for name in chosen:
        print(f'{name}:', flush=True)
        results[name] = SUITES[name](args)
    text = json.dumps(
        {'threads': args.threads, 'size': args.size, 'results': results}, indent=1
    )
    print(text)
    if args.out is not None:
        args.out.write_text(text + '\n')


if __name__ == '__main__':
    main()
