"""Command line: ``napari-coreg register FIXED MOVING ...``, ``napari-coreg demo``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .api import iter_register
from .geo.cli import add_arguments as add_geo_arguments
from .options import Backend, Metric, Model
from .result import RegistrationResult

__all__ = ['main']


#: Suffixes ``--out`` may have: TIFF holds any dtype, the others 8 bits.
TIFF_SUFFIXES = ('.tif', '.tiff')
EIGHT_BIT_SUFFIXES = ('.png', '.jpg', '.jpeg', '.bmp')


def _fail(message: str) -> SystemExit:
    """The exit of a user error: one line on stderr, no traceback."""
    return SystemExit(f'napari-coreg: {message}')


def _read_image(path: Path) -> np.ndarray:
    if not path.is_file():
        raise _fail(f'no such image file: {path}')
    try:
        if path.suffix.lower() in TIFF_SUFFIXES:
            import tifffile

            image = tifffile.imread(path)
        else:
            from skimage import io

            image = io.imread(path)
    except Exception as error:  # noqa: BLE001 - every decoder has its own errors
        raise _fail(
            f'cannot read image {path}: {type(error).__name__}: {error}'.strip()
        ) from None
    image = np.asarray(image)
    if image.size == 0 or image.dtype == object:
        raise _fail(f'cannot read image {path}: the file holds no pixel data')
    return image


def _check_image_output(path: Path, dtype: np.dtype) -> None:
    """Refuse, before registering, an ``--out`` that cannot be written."""
    suffix = path.suffix.lower()
    if suffix not in TIFF_SUFFIXES + EIGHT_BIT_SUFFIXES:
        raise _fail(
            f'cannot write images as {suffix or "files without a suffix"} '
            f'({path}): use .tif (any dtype) or '
            + ', '.join(EIGHT_BIT_SUFFIXES)
            + ' (8-bit only)'
        )
    if suffix in EIGHT_BIT_SUFFIXES and np.dtype(dtype) != np.uint8:
        raise _fail(
            f'{suffix} holds 8-bit images but the moving image is '
            f'{np.dtype(dtype)}: write {path.with_suffix(".tif").name} instead'
        )
    if path.is_dir():
        raise _fail(f'--out {path} is a folder: give a file name')
    if not path.parent.is_dir():
        raise _fail(f'output folder {path.parent} does not exist: create it first')


def _check_transform_output(path: Path, model: str, force: bool) -> None:
    """Refuse, before registering, a ``--transform`` that cannot be written."""
    from .io import ITK_SUFFIXES, check_itk_writable, check_output_path

    try:
        check_output_path(path, overwrite=force)
        if path.name.lower().endswith(ITK_SUFFIXES):
            check_itk_writable(np.eye(3), model, projective=False)
    except ValueError as error:
        raise _fail(str(error)) from None


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
        raise _fail(
            f'{path.suffix} holds 8-bit images but the result is '
            f'{image.dtype}: write a .tif instead'
        )
    from skimage import io

    io.imsave(path, image, check_contrast=False)


def _refuse_overwrite(paths: Sequence[Path | None], force: bool) -> None:
    """Never overwrite a user's file unless asked to."""
    existing = [str(p) for p in paths if p is not None and p.exists()]
    if existing and not force:
        raise _fail(
            f'{", ".join(existing)} already exist(s): choose another '
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


def _save_transform(path: Path, result: RegistrationResult, force: bool) -> None:
    from .io import save_transform

    save_transform(path, result, overwrite=force)


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
    from .geo.cli import is_geo_pair, run

    if is_geo_pair(args.fixed, args.moving):  # map coordinates, GeoTIFF out
        return _held_status(run(args))
    args.model = args.model or 'affine'
    out = Path(args.out) if args.out else None
    transform = Path(args.transform) if args.transform else None
    report = Path(args.report) if args.report else None
    _refuse_overwrite([out, transform, report], args.force)
    if (
        out is not None
        and transform is not None
        and out.resolve() == transform.resolve()
    ):
        raise _fail('--out and --transform name the same file: give two names')
    if transform is not None:
        _check_transform_output(transform, args.model, args.force)
    fixed = _read_image(Path(args.fixed))
    moving = _read_image(Path(args.moving))
    if out is not None:
        _check_image_output(out, moving.dtype)
    settings = {
        k: v
        for k, v in (
            ('levels', args.levels),
            ('device', args.device),
            ('init', args.init),
            ('optimizer', args.optimizer),
            ('channel_axis', args.channel_axis),
        )
        if v is not None
    }
    try:
        steps = iter_register(
            fixed, moving, args.model, args.metric, args.backend, **settings
        )
    except (ValueError, TypeError) as error:
        raise _fail(str(error)) from None
    try:
        result = _run_with_progress(steps, args.quiet)
    except RuntimeError as error:  # e.g. SimpleITK: the images do not overlap
        raise _fail(f'registration failed: {error}') from None
    if out is not None:
        _write_image(out, result.aligned, moving.dtype)
    if transform is not None:
        _save_transform(transform, result, args.force)
    if report is not None:
        result.report(report, overwrite=args.force)
    if not args.quiet:
        print(_summary(result))
    return _held_status(result)


#: Exit status of ``register`` when the quality check holds the result.
HELD_STATUS = 3


def _held_status(result: RegistrationResult) -> int:
    """0, or :data:`HELD_STATUS` after saying on stderr why the result is held.

    Quiet or not, a failed result never passes as a success.
    """
    from .quality.hold import hold_reasons

    held = hold_reasons(result)
    if not held:
        return 0
    print(
        'napari-coreg: the result did not pass the quality check (files written '
        'all the same): ' + '; '.join(held),
        file=sys.stderr,
    )
    return HELD_STATUS


#: What ``napari-coreg demo`` writes into its folder.
_DEMO_FILES = (
    'aligned.tif',
    'transform.json',
    'before_after.png',
    'report.html',
    'fixed.tif',
    'moving.tif',
)


def _demo_command(args: argparse.Namespace) -> int:
    from skimage import io

    from .samples import sample_pair
    from .transforms import corner_error
    from .warp import resample

    folder = Path(args.out)
    if folder.exists() and not folder.is_dir():
        raise _fail(f'--out {folder} is a file: give a folder for the demo output')
    _refuse_overwrite([folder / name for name in _DEMO_FILES], args.force)
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
    _save_transform(folder / 'transform.json', result, args.force)
    result.report(folder / 'report.html', overwrite=args.force)
    io.imsave(
        folder / 'before_after.png',
        before_after_figure(fixed, before, result.aligned),
        check_contrast=False,
    )
    error = corner_error(result.moving_from_fixed, truth, fixed.shape)
    print(_summary(result))
    print(f'corner error against the ground truth: {error:.4f} px')
    print('wrote ' + ', '.join(str(folder / name) for name in _DEMO_FILES))
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='napari-coreg',
        description='Image registration (rigid, affine, homography) on PyTorch '
        'or SimpleITK.',
    )
    parser.add_argument('--version', action='version', version=f'%(prog)s {_version()}')
    commands = parser.add_subparsers(dest='command', required=True)

    reg = commands.add_parser(
        'register',
        help='register MOVING onto FIXED',
        description='Register MOVING onto FIXED. Exit status 3: the result did not '
        'pass the quality check (failed verdict, or a metric worse than before); '
        'the reasons are printed on stderr and the files are written all the same.',
    )
    reg.add_argument('fixed', help='fixed image (TIFF, PNG, JPEG, ...)')
    reg.add_argument('moving', help='moving image')
    reg.add_argument(
        '--model',
        choices=[m.value for m in Model],
        help="default 'affine' ('translation' for georeferenced rasters)",
    )
    reg.add_argument('--metric', default='ncc', choices=[m.value for m in Metric])
    reg.add_argument('--backend', default='torch', choices=[b.value for b in Backend])
    reg.add_argument(
        '--levels', type=int, help='pyramid levels (default: from the size)'
    )
    reg.add_argument(
        '--init',
        help="'auto', 'identity', 'center', 'phase', 'features', 'fourier-mellin' "
        "or 'moments'",
    )
    reg.add_argument(
        '--optimizer', help="torch: 'auto', 'gauss-newton', 'bfgs', 'adam'"
    )
    reg.add_argument(
        '--device', help="torch device, e.g. 'cpu' or 'cuda' (default: best)"
    )
    reg.add_argument(
        '--channel-axis',
        type=int,
        help='axis of both images that holds channels (RGB last is detected)',
    )
    reg.add_argument('--out', help='write moving resampled onto the fixed grid here')
    reg.add_argument('--transform', help='write the transform here (.json or ITK .tfm)')
    reg.add_argument('--report', help='write an HTML report (verdict, pictures) here')
    reg.add_argument('--force', action='store_true', help='overwrite existing outputs')
    reg.add_argument('--quiet', action='store_true', help='no progress bar or summary')
    add_geo_arguments(reg)
    reg.set_defaults(run=_register_command)

    demo = commands.add_parser(
        'demo', help='register the embedded sample pair and write the results'
    )
    demo.add_argument('--out', default='demo-output', help='output folder')
    demo.add_argument('--backend', default='torch', choices=[b.value for b in Backend])
    demo.add_argument(
        '--force', action='store_true', help='overwrite earlier demo output files'
    )
    demo.set_defaults(run=_demo_command)
    return parser


def _version() -> str:
    from . import __version__

    return __version__


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``napari-coreg`` command."""
    args = _parser().parse_args(argv)
    try:
        return args.run(args)
    except KeyboardInterrupt:  # Ctrl-C: a line, not a traceback
        print('napari-coreg: interrupted', file=sys.stderr)
        return 130


if __name__ == '__main__':  # pragma: no cover
    sys.exit(main())
