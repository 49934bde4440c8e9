"""The labelled runs of ``bench_verdict.py``: pairs that succeed and that fail.

A run builds ``(fixed, moving, truth_px or None, register keyword arguments)``;
``truth_px`` is the true ``moving_from_fixed`` in pixels (``None``: no truth,
a failure by construction). ``runs()`` is the set the verdict's thresholds
were tuned on, ``holdout()`` the set run once afterwards.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import _cases  # tests/core/_cases.py (bench_verdict.py puts it on sys.path)
import cases  # benchmarks/cases.py
import numpy as np

DATA = Path(__file__).resolve().parents[2] / 'shared' / 'data'


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
