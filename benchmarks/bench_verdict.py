"""Labelled benchmark of the verdict (issue 9): does it call failures failures?

Every run registers a pair and is labelled by its true corner error (mean
over the fixed image's corners and centre, moving pixels): a *success* below
0.5 px, a *failure* above 2 px (pairs without a truth - unrelated images,
noise - are failures); runs in between are reported but not scored.

Pairs: synthetic known-transform cases (``tests/core/_cases.py`` and
``benchmarks/cases.py``: every model, ncc / mi / mse, torch and SimpleITK,
2D and 3D), the real ITK brain and CT lung pairs (``../shared/data``), and
designed failures: unrelated image pairs, pure noise, tiny overlaps, starts
outside the capture range (identity start), flipped inputs, the wrong metric
for a multimodal pair, a 4x4 image.

Targets: >= 95% of failures called 'failed' or 'suspect'; <= 2% of
successes anything but 'ok'; on successes the error is below
``uncertainty_px`` in >= 90% of runs; the verdict adds <= 20% to a default
512^2 registration.

Run: ``PYTHONPATH=src python benchmarks/bench_verdict.py [--quick]``; writes
``benchmarks/results/verdict.json`` and prints the markdown tables.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT / 'tests' / 'core'), str(ROOT / 'src')]

import _cases  # noqa: E402  (tests/core/_cases.py)
import cases  # noqa: E402  (benchmarks/cases.py)

from napari_coreg import register  # noqa: E402
from napari_coreg.transforms import corner_error  # noqa: E402
from napari_coreg.warp import pixel_matrix  # noqa: E402

DATA = ROOT.parent / 'shared' / 'data'
SUCCESS_PX, FAILURE_PX = 0.5, 2.0


@dataclass
class Run:
    """One labelled registration."""

    name: str
    kind: str  # what the pair was built as: 'known', 'real' or a failure kind
    make: Callable[[], tuple]  # -> fixed, moving, truth_px or None, kwargs
    tags: dict = field(default_factory=dict)


# --------------------------------------------------------------------------
# pairs


def _known(model: str, metric: str, seed: int, backend: str = 'torch') -> Run:
    def make():
        c = _cases.random_case(model, metric, seed=seed)
        return (
            c.fixed,
            c.moving,
            c.truth,
            {'model': model, 'metric': metric, 'backend': backend},
        )

    return Run(f'known-{model}-{metric}-{backend}-{seed}', 'known', make)


def _bench_case(
    family: str, modality: str, index: int, size: int = 256, model: str | None = None
) -> Run:
    def make():
        c = cases.make_case(family, modality, size, index)
        metric = 'mi' if modality == 'multi' else 'ncc'
        return c.fixed, c.moving, c.truth, {'model': model or c.kind, 'metric': metric}

    return Run(f'bench-{family}-{modality}-{size}-{index}', 'known', make)


def _volume(model: str, seed: int) -> Run:
    from scipy import ndimage

    def make():
        rng = np.random.default_rng(seed)
        shape = (40, 48, 44)
        source = ndimage.gaussian_filter(rng.random((80, 96, 88)), 2.5)
        source = (source - source.min()) / np.ptp(source)
        angles = np.deg2rad(rng.uniform(-4, 4, 3))
        c, s = np.cos(angles), np.sin(angles)
        rot = (
            np.array([[c[2], -s[2], 0], [s[2], c[2], 0], [0, 0, 1]])
            @ np.array([[c[1], 0, s[1]], [0, 1, 0], [-s[1], 0, c[1]]])
            @ np.array([[1, 0, 0], [0, c[0], -s[0]], [0, s[0], c[0]]])
        )
        centre = (np.array(shape) - 1) / 2
        truth = np.eye(4)
        truth[:3, :3] = rot if model != 'translation' else np.eye(3)
        truth[:3, 3] = centre - truth[:3, :3] @ centre + rng.uniform(-2, 2, 3)
        crop = np.eye(4)
        crop[:3, 3] = np.array(shape) / 2
        fixed = ndimage.affine_transform(source, crop, output_shape=shape, order=1)
        moving = ndimage.affine_transform(
            source, crop @ np.linalg.inv(truth), output_shape=shape, order=1
        )
        moving = moving + rng.normal(0, 0.01, shape)
        return (
            fixed.astype(np.float32),
            moving.astype(np.float32),
            truth,
            {'model': model, 'metric': 'ncc', 'levels': 2},
        )

    return Run(f'volume-{model}-{seed}', 'known', make)


def _read_png(name: str) -> np.ndarray:
    from skimage import io

    image = io.imread(DATA / 'itk_brain_2d' / name)
    return image[..., 0] if image.ndim == 3 else image


def _brain(moving_name: str, fixed_name: str, model: str, metric: str) -> Run:
    from napari_coreg import reverse_axes

    def make():
        truths = json.loads((DATA / 'itk_brain_2d' / 'ground_truth.json').read_text())
        pairs = truths['pairs']
        key = (
            moving_name
            if fixed_name.startswith('BrainProtonDensity')
            else next(k for k in pairs if k.startswith(fixed_name) and moving_name in k)
        )
        entry = pairs[key]
        truth = reverse_axes(
            entry.get('fixed_to_moving_3x3') or entry['fixed_to_moving_3x3_measured']
        )
        return (
            _read_png(fixed_name),
            _read_png(moving_name),
            truth,
            {'model': model, 'metric': metric},
        )

    short = moving_name.removeprefix('BrainProtonDensitySlice').removesuffix('.png')
    return Run(f'brain-{short}-{fixed_name[5:7]}-{model}-{metric}', 'real', make)


def _lung(backend: str) -> Run:
    def make():
        import SimpleITK as sitk

        from napari_coreg import reverse_axes

        folder = DATA / 'ct_lung_3d_synthetic_rigid'
        fixed = sitk.ReadImage(str(folder / 'CT_3D_lung_fixed_small.mha'))
        moving = sitk.ReadImage(str(folder / 'CT_3D_lung_moving_synthetic.mha'))
        truth = json.loads((folder / 'ground_truth.json').read_text())
        return (
            fixed,
            moving,
            reverse_axes(np.array(truth['homogeneous_4x4'])),
            {
                'model': 'rigid',
                'metric': 'mi',
                'levels': 2,
                'backend': backend,
                'physical_truth': True,
            },
        )

    return Run(f'ct-lung-3d-{backend}', 'real', make)


def _sample(name: str, model: str, metric: str) -> Run:
    def make():
        from napari_coreg.samples import sample_pair

        fixed, moving, truth, _ = sample_pair(name)
        return fixed, moving, truth, {'model': model, 'metric': metric}

    return Run(f'sample-{name}-{model}-{metric}', 'real', make)


def _oxford(sequence: str, index: int) -> Run:
    """Oxford affine-covariant pair img1 -> img``index`` (homography truth)."""

    def make():
        from skimage import io

        from napari_coreg import reverse_axes

        folder = DATA / 'oxford_affine' / sequence
        ext = 'pgm' if (folder / 'img1.pgm').exists() else 'ppm'
        fixed = io.imread(folder / f'img1.{ext}')
        moving = io.imread(folder / f'img{index}.{ext}')
        truth = reverse_axes(np.loadtxt(folder / f'H1to{index}p'))
        return fixed, moving, truth, {'model': 'homography', 'metric': 'ncc'}

    return Run(f'oxford-{sequence}-1to{index}', 'real', make)


def _photo(name: str, size: int = 192, at=(0.5, 0.5)) -> np.ndarray:
    src = cases.source_image(name, size)
    r0 = int((src.shape[0] - size) * at[0])
    c0 = int((src.shape[1] - size) * at[1])
    return src[r0 : r0 + size, c0 : c0 + size].astype(np.float32)


def _unrelated(a: str, b: str, model: str, metric: str = 'ncc') -> Run:
    def make():
        return _photo(a), _photo(b), None, {'model': model, 'metric': metric}

    return Run(f'unrelated-{a}-{b}-{model}-{metric}', 'unrelated', make)


def _noise(seed: int, size: int, model: str, metric: str = 'ncc') -> Run:
    def make():
        rng = np.random.default_rng(seed)
        shape = (size, size) if size > 0 else (24, 28, 26)
        return (
            rng.random(shape).astype(np.float32),
            rng.random(shape).astype(np.float32),
            None,
            {'model': model, 'metric': metric},
        )

    return Run(f'noise-{seed}-{size}-{model}-{metric}', 'noise', make)


def _shifted(name: str, fraction: float, init: str, kind: str) -> Run:
    """Two crops of one photo shifted by ``fraction`` of the size."""

    def make():
        size = 160
        src = cases.source_image(name, size)
        r0, c0 = (np.array(src.shape) - 2 * size) // 2 + size // 2
        shift = int(round(fraction * size))
        fixed = src[r0 : r0 + size, c0 : c0 + size]
        moving = src[r0 + shift : r0 + shift + size, c0 + shift : c0 + shift + size]
        truth = np.eye(3)
        truth[:2, 2] = -shift
        return (
            fixed.astype(np.float32),
            moving.astype(np.float32),
            truth,
            {'model': 'rigid', 'metric': 'ncc', 'init': init},
        )

    return Run(f'{kind}-{name}-{fraction}-{init}', kind, make)


def _rotated_start(seed: int, degrees: float) -> Run:
    """Outside the capture range: a large rotation, identity start."""

    def make():
        rng = np.random.default_rng(seed)
        shape = (128, 160)
        truth = _cases.about_centre(
            _cases.rotation(degrees), (np.array(shape) - 1) / 2, rng.uniform(-10, 10, 2)
        )
        c = _cases.make_case(truth, shape, seed=seed)
        return (
            c.fixed,
            c.moving,
            c.truth,
            {'model': 'rigid', 'metric': 'ncc', 'init': 'identity'},
        )

    return Run(f'capture-{seed}-{degrees:.0f}deg', 'capture', make)


def _flipped(name: str, model: str, axis: int = 1) -> Run:
    def make():
        fixed = _photo(name, 160)
        truth = np.eye(3)
        truth[axis, axis], truth[axis, 2] = -1.0, fixed.shape[axis] - 1
        moving = np.flip(fixed, axis).copy()
        return fixed, moving, truth, {'model': model, 'metric': 'ncc'}

    suffix = '' if axis == 1 else f'-axis{axis}'
    return Run(f'flipped-{name}-{model}{suffix}', 'flipped', make)


def _wrong_metric(seed: int, metric: str) -> Run:
    def make():
        c = cases.make_case('rigid', 'multi', 256, seed)
        return c.fixed, c.moving, c.truth, {'model': 'rigid', 'metric': metric}

    return Run(f'wrong-metric-{seed}-{metric}', 'wrong-metric', make)


def _tiny(shift: int) -> Run:
    """A 4x4 crop and the crop ``shift`` pixels to the right."""

    def make():
        src = _photo('camera', 64)
        fixed = src[30:34, 30:34].copy()
        moving = src[30:34, 30 + shift : 34 + shift].copy()
        truth = np.eye(3)
        truth[1, 2] = -shift
        return fixed, moving, truth, {'model': 'rigid', 'metric': 'ncc', 'levels': 1}

    return Run(f'tiny-4x4-{shift}', 'tiny', make)


def runs(quick: bool = False) -> Iterator[Run]:
    """The labelled runs (``quick``: about a quarter of them)."""
    seeds = (0, 1) if quick else (0, 1, 2, 3)
    for seed in seeds:
        for model in _cases.MODELS:
            for metric in ('ncc', 'mi', 'mse'):
                yield _known(model, metric, seed)
        for model in ('rigid', 'affine'):
            for metric in ('ncc', 'mi'):
                yield _known(model, metric, seed, 'sitk')
    for index in range(2) if quick else range(6):
        for family in ('translation', 'rigid', 'affine', 'homography'):
            yield _bench_case(family, 'mono', index)
        yield _bench_case('rigid', 'multi', index)
    for seed in seeds[:1] if quick else seeds:
        yield _volume('rigid', seed)
    if DATA.is_dir():
        pd = 'BrainProtonDensitySliceBorder20.png'
        yield _brain(
            'BrainProtonDensitySliceShifted13x17y.png', pd, 'translation', 'ncc'
        )
        yield _brain('BrainProtonDensitySliceShifted13x17y.png', pd, 'rigid', 'mse')
        yield _brain('BrainProtonDensitySliceR10X13Y17.png', pd, 'rigid', 'ncc')
        yield _brain('BrainProtonDensitySliceRotated10.png', pd, 'rigid', 'ncc')
        yield _brain(
            'BrainProtonDensitySliceShifted13x17y.png',
            'BrainT1SliceBorder20.png',
            'translation',
            'mi',
        )
        yield _brain('BrainProtonDensitySliceR10X13Y17S12.png', pd, 'similarity', 'ncc')
        yield _lung('sitk')
    yield _sample('rigid', 'rigid', 'ncc')
    yield _sample('rigid', 'affine', 'mse')
    yield _sample('multimodal', 'rigid', 'mi')
    yield _sample('homography', 'homography', 'ncc')
    images = cases.IMAGES
    pairs = list(zip(images, images[1:] + images[:1], strict=True))
    for a, b in pairs[:3] if quick else pairs:
        for model in ('rigid', 'affine'):
            yield _unrelated(a, b, model)
    for seed in seeds:
        for size, model in (
            (64, 'rigid'),
            (128, 'affine'),
            (256, 'translation'),
            (0, 'rigid'),
        ):
            yield _noise(seed, size, model)
        yield _noise(seed, 128, 'rigid', 'mi')
    for name in images[: 3 if quick else 8]:
        yield _shifted(name, 0.85, 'identity', 'overlap')
        yield _shifted(name, 0.92, 'auto', 'overlap')
        yield _flipped(name, 'rigid')
        yield _flipped(name, 'affine')
    for seed in seeds:
        for degrees in (90.0, 150.0, 180.0):
            yield _rotated_start(seed, degrees)
    for seed in seeds:
        yield _wrong_metric(seed, 'ncc')
        yield _wrong_metric(seed, 'mse')
    yield _tiny(3)


def holdout() -> Iterator[Run]:
    """Runs not used to set the thresholds: other seeds, images, sizes, axes."""
    for seed in (10, 11):
        for model in _cases.MODELS:
            for metric in ('ncc', 'mi', 'mse'):
                yield _known(model, metric, seed)
        yield _known('similarity', 'mi', seed, 'sitk')
    for index in (6, 7):
        for family in ('translation', 'rigid', 'affine', 'homography'):
            yield _bench_case(family, 'mono', index, size=192)
        yield _bench_case('affine', 'multi', index, size=192)
    for index in range(4):  # larger motions: labelled by their outcome
        yield _bench_case('capture', 'mono', index, size=256)
    for seed in (10, 11):
        yield _volume('translation', seed)
    images = cases.IMAGES
    for i, a in enumerate(images[:6]):
        yield _unrelated(a, images[(i + 3) % len(images)], 'similarity', 'mi')
    for seed in (10, 11, 12):
        yield _noise(seed, 96, 'affine', 'mi')
        yield _noise(seed, 160, 'similarity')
    for name in images[2:8]:
        yield _shifted(name, 0.8, 'identity', 'overlap')
        yield _flipped(name, 'rigid', axis=0)
    for seed in (10, 11, 12):
        for degrees in (120.0, 170.0):
            yield _rotated_start(seed, degrees)
    for seed in (10, 11, 12, 13):
        yield _wrong_metric(seed, 'ncc')
    yield _tiny(2)
    if DATA.is_dir():
        for sequence in ('graf', 'boat', 'leuven'):
            for index in (2, 3):
                yield _oxford(sequence, index)


# --------------------------------------------------------------------------
# scoring


def evaluate(run: Run) -> dict:
    """Register one run and record its error, verdict and evidence."""
    fixed, moving, truth, kwargs = run.make()
    kwargs = dict(kwargs)
    physical = kwargs.pop('physical_truth', False)
    model, metric = kwargs.pop('model'), kwargs.pop('metric')
    row = {'name': run.name, 'kind': run.kind}
    try:
        res = register(fixed, moving, model=model, metric=metric, **kwargs)
    except ValueError as error:  # refused up front: not a silent failure
        row.update(error=float('inf'), verdict='refused', refused=str(error))
        return row
    start = time.perf_counter()
    assessment = res.assessment
    row['verdict_s'] = time.perf_counter() - start
    row['register_s'] = res.elapsed
    if truth is None:
        error = float('inf')
    else:
        est = res.moving_from_fixed
        if physical:
            est = pixel_matrix(est, res.fixed_grid, res.moving_grid)
            truth = pixel_matrix(truth, res.fixed_grid, res.moving_grid)
        error = corner_error(est, truth, res.fixed_grid.shape)
    e = assessment.evidence
    row.update(
        error=float(error),
        verdict=assessment.verdict,
        uncertainty=assessment.uncertainty_px,
        reasons=list(assessment.reasons),
        z=e.z,
        mi_z=e.mi_z,
        mirror_z=e.mirror_z,
        mi_fraction=e.mi_fraction,
        overlap=e.overlap,
        step=e.curvature.step_px,
        stop=e.stop_reason,
    )
    return row


def label(row: dict) -> str | None:
    """'success', 'failure' or None (between the thresholds)."""
    if row['error'] < SUCCESS_PX:
        return 'success'
    if row['error'] > FAILURE_PX:
        return 'failure'
    return None


def summarise(rows: list[dict]) -> dict:
    """Confusion matrix, rates and coverage."""
    table = {
        lab: dict.fromkeys(('ok', 'suspect', 'failed', 'refused'), 0)
        for lab in ('success', 'failure', 'unscored')
    }
    for row in rows:
        table[label(row) or 'unscored'][row['verdict']] += 1
    successes = [r for r in rows if label(r) == 'success']
    failures = [r for r in rows if label(r) == 'failure']
    caught = sum(r['verdict'] != 'ok' for r in failures)
    false_alarms = sum(r['verdict'] != 'ok' for r in successes)
    covered = sum(
        r.get('uncertainty') is not None and r['error'] < r['uncertainty']
        for r in successes
    )
    n_s, n_f = max(len(successes), 1), max(len(failures), 1)
    return {
        'confusion': table,
        'failures_caught': caught / n_f,
        'successes_flagged': false_alarms / n_s,
        'coverage': covered / n_s,
        'median_uncertainty_success': float(
            np.median(
                [r['uncertainty'] for r in successes if r.get('uncertainty')]
                or [np.nan]
            )
        ),
        'n_success': len(successes),
        'n_failure': len(failures),
    }


def overhead(repeats: int = 3) -> dict:
    """Verdict time over the registration time, default settings, 512^2."""
    out = {}
    for family in ('affine', 'rigid'):
        c = cases.make_case(family, 'mono', 512, 1)
        model = 'affine' if family == 'affine' else 'rigid'
        register(c.fixed, c.moving, model=model)  # warm-up
        reg, ver = [], []
        for _ in range(repeats):
            start = time.perf_counter()
            res = register(c.fixed, c.moving, model=model)
            reg.append(time.perf_counter() - start)
            start = time.perf_counter()
            res.assessment  # noqa: B018
            ver.append(time.perf_counter() - start)
        out[model] = {
            'register_s': float(np.median(reg)),
            'verdict_s': float(np.median(ver)),
            'percent': 100 * float(np.median(ver) / np.median(reg)),
        }
    return out


def markdown(summary: dict, cost: dict | None) -> str:
    """The tables for docs/benchmarks.md."""
    lines = [
        '| true label \\ verdict | ok | suspect | failed | refused |',
        '|---|---|---|---|---|',
    ]
    for lab, counts in summary['confusion'].items():
        lines.append(
            f'| {lab} | '
            + ' | '.join(str(counts[v]) for v in ('ok', 'suspect', 'failed', 'refused'))
            + ' |'
        )
    lines += [
        '',
        f'- failures (> {FAILURE_PX} px) called failed/suspect/refused: '
        f'{summary["failures_caught"]:.1%} of {summary["n_failure"]} (target >= 95%)',
        f'- successes (< {SUCCESS_PX} px) not called ok: '
        f'{summary["successes_flagged"]:.1%} of {summary["n_success"]} (target <= 2%)',
        f'- successes with error < uncertainty_px: {summary["coverage"]:.1%} '
        f'(target >= 90%); median uncertainty_px '
        f'{summary["median_uncertainty_success"]:.2f}',
    ]
    for model, c in (cost or {}).items():
        lines.append(
            f'- verdict cost, default {model} 512x512: {c["verdict_s"] * 1e3:.0f} ms '
            f'on {c["register_s"] * 1e3:.0f} ms of registration (+{c["percent"]:.0f}%)'
        )
    return '\n'.join(lines)


def main() -> None:
    """Run the benchmark, print the tables, write the JSON."""
    parser = argparse.ArgumentParser()
    parser.add_argument('--quick', action='store_true')
    parser.add_argument('--no-overhead', action='store_true')
    parser.add_argument('--only', help='run only runs whose name contains this')
    parser.add_argument(
        '--holdout', action='store_true', help='the runs not used for tuning'
    )
    args = parser.parse_args()
    rows = []
    for run in holdout() if args.holdout else runs(args.quick):
        if args.only and args.only not in run.name:
            continue
        row = evaluate(run)
        rows.append(row)
        lab = label(row) or '-'
        print(
            f'{row["name"]:48s} {lab:8s} err {row["error"]:9.3f} '
            f'{row["verdict"]:8s} unc {row.get("uncertainty") or float("nan"):7.3f} '
            f'z {row.get("z", np.nan):6.1f} miz {row.get("mi_z", np.nan):6.1f} '
            f'step {row.get("step", np.nan):6.2f} '
            f'mir {row.get("mirror_z", np.nan):6.1f} '
            f'frac {row.get("mi_fraction", np.nan):5.2f}',
            flush=True,
        )
    summary = summarise(rows)
    cost = None if args.no_overhead else overhead()
    print(markdown(summary, cost))
    if args.only:
        return
    out = HERE / 'results' / f'verdict{"_holdout" if args.holdout else ""}.json'
    out.parent.mkdir(exist_ok=True)
    out.write_text(
        json.dumps(
            {'summary': summary, 'overhead': cost, 'rows': rows}, indent=1, default=str
        )
    )


if __name__ == '__main__':
    main()
