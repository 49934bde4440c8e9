"""Command line: ``napari-coreg register FIXED MOVING ...``, ``napari-coreg demo``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .api import iter_register
from .options import Backend, Metric, Model
from .result import RegistrationResult

__all__ = ['main']


def _read_image(path: Path) -> np.ndarray:
    if not path.is_file():
        raise SystemExit(f'napari-coreg: no such image file: {path}')
    if path.suffix.lower() in ('.tif', '.tiff'):
        import tifffile

        return tifffile.imread(path)
    from skimage import io

    return io.imread(path)


def _write_image(path: Path, image: np.ndarray, dtype: np.dtype) -> None:
    """Write ``image`` in the input's integer dtype (rounded, clipped) or float32."""
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        image = np.clip(np.round(image), info.min, info.max).astype(dtype)
    if path.suffix.lower() in ('.tif', '.tiff'):
        import tifffile

        tifffile.imwrite(path, image)
        return
    if image.dtype != np.uint8:
        raise SystemExit(
            f'napari-coreg: {path.suffix} holds 8-bit images but the result is '
            f'{image.dtype}: write a .tif instead'
        )
    from skimage import io

    io.imsave(path, image, check_contrast=False)


def _refuse_overwrite(paths: Sequence[Path | None], force: bool) -> None:
    """Never overwrite a user's file unless asked to."""
    existing = [str(p) for p in paths if p is not None and p.exists()]
    if existing and not force:
        raise SystemExit(
            f'napari-coreg: {", ".join(existing)} already exist(s): choose another '
            'name or pass --force to overwrite'
        )


def _run_with_progress(steps, quiet: bool) -> RegistrationResult:
    """Drive an ``iter_register`` generator with a terminal progress bar."""
    from tqdm import tqdm

    bar = None
    try:
        while True:
            progress = next(steps)
            if bar is None:
                bar = tqdm(
                    total=progress.total,
                    desc='registering',
                    unit='it',
                    disable=quiet,
                    leave=False,
                )
            bar.set_postfix(
                level=f'{progress.level + 1}/{progress.n_levels}',
                loss=f'{progress.loss:.4g}',
                refresh=False,
            )
            bar.update(1)
    except StopIteration as done:
        return done.value
    finally:
        if bar is not None:
            bar.close()


def _save_transform(path: Path, result: RegistrationResult) -> None:
    from .io import save_transform

    save_transform(path, result)


def before_after_figure(
    fixed: np.ndarray, moving_on_fixed: np.ndarray, aligned: np.ndarray
) -> np.ndarray:
    """Titled colour overlays (before | after) with a colour key, RGB uint8.

    ``moving_on_fixed`` is the moving image shown on the fixed grid without
    registration (identity), ``aligned`` the registered one.
    """
    from .quality.figures import overlay, panels

    return panels(
        [
            ('Before registration', overlay(fixed, moving_on_fixed)),
            ('After registration', overlay(fixed, aligned)),
        ]
    )


def _summary(result: RegistrationResult) -> str:
    quality = result.quality
    lines = [
        f'model {result.model}, metric {result.metric}, backend {result.backend}: '
        f'{result.elapsed:.2f} s, stopped: {result.stop_reason}',
        f'{result.metric} before {result.metric_before:.4f} -> after '
        f'{result.metric_after:.4f}',
        'overlap NCC {:.3f} -> {:.3f}, SSIM {:.3f} -> {:.3f}'.format(
            quality['before']['ncc'],
            quality['after']['ncc'],
            quality['before']['ssim'],
            quality['after']['ssim'],
        ),
        f'verdict: {result.verdict} (uncertainty {_px(result.uncertainty_px)})',
        *(f'  - {reason}' for reason in result.verdict_reasons),
        'moving_from_fixed (row, col, 1):',
        np.array2string(result.moving_from_fixed, precision=4, suppress_small=True),
    ]
    return '\n'.join(lines)


def _px(value: float | None) -> str:
    return 'n/a' if value is None else f'{value:.2f} px'


def _register_command(args: argparse.Namespace) -> int:
    out = Path(args.out) if args.out else None
    transform = Path(args.transform) if args.transform else None
    report = Path(args.report) if args.report else None
    _refuse_overwrite([out, transform, report], args.force)
    fixed = _read_image(Path(args.fixed))
    moving = _read_image(Path(args.moving))
    settings = {
        k: v
        for k, v in (
            ('levels', args.levels),
            ('device', args.device),
            ('init', args.init),
            ('optimizer', args.optimizer),
        )
        if v is not None
    }
    try:
        steps = iter_register(
            fixed, moving, args.model, args.metric, args.backend, **settings
        )
    except ValueError as error:
        raise SystemExit(f'napari-coreg: {error}') from None
    result = _run_with_progress(steps, args.quiet)
    if out is not None:
        _write_image(out, result.aligned, moving.dtype)
    if transform is not None:
        _save_transform(transform, result)
    if report is not None:
        result.report(report, overwrite=args.force)
    if not args.quiet:
        print(_summary(result))
    return 0


def _demo_command(args: argparse.Namespace) -> int:
    from skimage import io

    from .samples import sample_pair
    from .transforms import corner_error
    from .warp import resample

    folder = Path(args.out)
    folder.mkdir(parents=True, exist_ok=True)
    fixed, moving, truth, info = sample_pair('rigid')
    print(f'demo: {info.get("description", "rigid sample pair")}')
    steps = iter_register(fixed, moving, 'rigid', 'ncc', args.backend)
    result = _run_with_progress(steps, quiet=False)
    before = resample(moving, np.eye(3), result.fixed_grid, result.moving_grid)
    for name, image in (
        ('fixed.tif', fixed),
        ('moving.tif', moving),
        ('aligned.tif', result.aligned),
    ):
        _write_image(folder / name, image, image.dtype)
    _save_transform(folder / 'transform.json', result)
    result.report(folder / 'report.html', overwrite=True)
    io.imsave(
        folder / 'before_after.png',
        before_after_figure(fixed, before, result.aligned),
        check_contrast=False,
    )
    error = corner_error(result.moving_from_fixed, truth, fixed.shape)
    print(_summary(result))
    print(f'corner error against the ground truth: {error:.4f} px')
    names = (
        'aligned.tif',
        'transform.json',
        'before_after.png',
        'report.html',
        'fixed.tif',
        'moving.tif',
    )
    print('wrote ' + ', '.join(str(folder / name) for name in names))
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='napari-coreg',
        description='Image registration (rigid, affine, homography) on PyTorch '
        'or SimpleITK.',
    )
    commands = parser.add_subparsers(dest='command', required=True)

    reg = commands.add_parser('register', help='register MOVING onto FIXED')
    reg.add_argument('fixed', help='fixed image (TIFF, PNG, JPEG, ...)')
    reg.add_argument('moving', help='moving image')
    reg.add_argument('--model', default='affine', choices=[m.value for m in Model])
    reg.add_argument('--metric', default='ncc', choices=[m.value for m in Metric])
    reg.add_argument('--backend', default='torch', choices=[b.value for b in Backend])
    reg.add_argument(
        '--levels', type=int, help='pyramid levels (default: from the size)'
    )
    reg.add_argument('--init', help="'auto', 'identity', 'center' or 'phase'")
    reg.add_argument(
        '--optimizer', help="torch: 'auto', 'gauss-newton', 'bfgs', 'adam'"
    )
    reg.add_argument(
        '--device', help="torch device, e.g. 'cpu' or 'cuda' (default: best)"
    )
    reg.add_argument('--out', help='write moving resampled onto the fixed grid here')
    reg.add_argument('--transform', help='write the transform here (.json or ITK .tfm)')
    reg.add_argument('--report', help='write an HTML report (verdict, pictures) here')
    reg.add_argument('--force', action='store_true', help='overwrite existing outputs')
    reg.add_argument('--quiet', action='store_true', help='no progress bar or summary')
    reg.set_defaults(run=_register_command)

    demo = commands.add_parser(
        'demo', help='register the embedded sample pair and write the results'
    )
    demo.add_argument('--out', default='demo-output', help='output folder')
    demo.add_argument('--backend', default='torch', choices=[b.value for b in Backend])
    demo.set_defaults(run=_demo_command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``napari-coreg`` command."""
    args = _parser().parse_args(argv)
    return args.run(args)


if __name__ == '__main__':  # pragma: no cover
    sys.exit(main())
