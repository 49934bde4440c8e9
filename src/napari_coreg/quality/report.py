"""A self-contained HTML report of one registration result.

One file, no external resources: images are base64 PNG, the convergence
curve is inline SVG. 3D results show the middle plane of the first axis.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
from html import escape
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..inputs import luminance
from ..warp import resample
from .figures import (
    OVERLAY_KEY,
    checkerboard,
    convergence_svg,
    difference,
    overlay,
    png_uri,
)

if TYPE_CHECKING:
    from ..result import RegistrationResult
    from .verdict import Assessment

__all__ = ['write_report']

#: Longest side of the pictures in the report (pixels).
MAX_SIDE = 512
#: Colour of each verdict.
VERDICT_COLOURS = {'ok': '#1a7f37', 'suspect': '#b35900', 'failed': '#c62828'}
#: Packages whose versions the report lists (read from metadata, not imported).
PACKAGES = ('napari-coreg', 'numpy', 'scipy', 'scikit-image', 'torch', 'SimpleITK')

_STYLE = """
body{font-family:sans-serif;max-width:1100px;margin:1em auto;color:#222}
h1{font-size:1.4em} h2{font-size:1.1em;margin-top:1.5em}
.verdict{display:inline-block;padding:.2em .7em;border-radius:.3em;color:#fff;
font-weight:bold} table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:.2em .6em;text-align:left}
figure{display:inline-block;margin:.3em} figcaption{font-size:.9em}
img{image-rendering:pixelated;border:1px solid #ccc} .key span{margin-right:1em}
.sw{display:inline-block;width:.9em;height:.9em;border:1px solid #000;
vertical-align:middle;margin-right:.3em} pre{background:#f6f6f6;padding:.5em}
"""


def _plane(image: NDArray, ndim: int) -> NDArray:
    """The middle plane of a 3D image, the image itself in 2D."""
    gray = luminance(np.asarray(image), ndim)
    return gray[gray.shape[0] // 2] if ndim == 3 else gray


def _shrink(image: NDArray) -> NDArray:
    step = max(1, int(np.ceil(max(image.shape[:2]) / MAX_SIDE)))
    return image[::step, ::step]


def _pictures(result: RegistrationResult) -> list[tuple[str, NDArray]]:
    ndim = result.ndim
    identity = np.eye(ndim + 1)
    moving = luminance(np.asarray(result._moving), ndim)
    ones = np.ones(result.moving_grid.shape, np.float32)

    def on_fixed(image: NDArray, matrix: NDArray) -> NDArray:
        return _plane(
            resample(image, matrix, result.fixed_grid, result.moving_grid), ndim
        )

    fixed = _plane(result._fixed, ndim)
    before = on_fixed(moving, identity)
    after = _plane(result.aligned, ndim)
    covered_before = on_fixed(ones, identity) > 0.999
    covered_after = on_fixed(ones, result.moving_from_fixed) > 0.999
    return [
        ('Before: overlay', overlay(fixed, before)),
        ('After: overlay', overlay(fixed, after)),
        ('After: checkerboard', checkerboard(fixed, after)),
        ('Before: difference', difference(fixed, before, covered_before)),
        ('After: difference', difference(fixed, after, covered_after)),
    ]


def _rows(pairs: list[tuple[str, object]]) -> str:
    return '\n'.join(
        f'<tr><th>{escape(str(k))}</th><td>{escape(str(v))}</td></tr>' for k, v in pairs
    )


def _versions() -> list[tuple[str, str]]:
    out = [('python', platform.python_version())]
    for name in PACKAGES:
        try:
            out.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            continue
    return out


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f'{value:.4g}'
    return str(value)


def _figures_table(result: RegistrationResult, assessment: Assessment) -> str:
    e = assessment.evidence
    q = result.quality
    unc = assessment.uncertainty_px
    rows = [
        (
            'model / metric / backend',
            f'{result.model} / {result.metric} / {result.backend}',
        ),
        (
            f'{result.metric} before -> after',
            f'{result.metric_before:.4g} -> {result.metric_after:.4g}',
        ),
        ('NCC before -> after', f'{q["before"]["ncc"]:.4f} -> {q["after"]["ncc"]:.4f}'),
        (
            'SSIM before -> after',
            f'{q["before"]["ssim"]:.4f} -> {q["after"]["ssim"]:.4f}',
        ),
        ('MSE before -> after', f'{q["before"]["mse"]:.4g} -> {q["after"]["mse"]:.4g}'),
        ('overlap', f'{e.overlap:.1%}'),
        ('uncertainty (95%, px)', 'n/a' if unc is None else f'{unc:.3f}'),
        ('match above chance (MI, spreads)', _fmt(e.mi_z)),
        (f'match above chance ({result.metric}, spreads)', _fmt(e.z)),
        ('re-registration step (px)', _fmt(e.curvature.step_px)),
        ('scale range (singular values)', f'{e.stretch[1]:.4f} .. {e.stretch[0]:.4f}'),
        ('reflection', 'yes' if e.determinant < 0 else 'no'),
        ('stop reason (finest level)', result.stop_reason),
        ('time (s)', f'{result.elapsed:.3f}'),
    ]
    if e.landmark_px is not None:
        rows.append(('landmark residual (px)', f'{e.landmark_px:.3f}'))
    return _rows(rows)


def _levels_table(result: RegistrationResult) -> str:
    head = '<tr><th>level</th><th>shape</th><th>iterations</th><th>s</th>'
    head += '<th>stop</th><th>final loss</th></tr>'
    body = [
        f'<tr><td>{k + 1}</td><td>{lv.shape}</td><td>{lv.iterations}</td>'
        f'<td>{lv.seconds:.3f}</td><td>{escape(lv.stop_reason)}</td>'
        f'<td>{lv.losses[-1] if lv.losses else float("nan"):.5g}</td></tr>'
        for k, lv in enumerate(result.levels)
    ]
    return head + '\n'.join(body)


def render(result: RegistrationResult, assessment: Assessment) -> str:
    """The report as an HTML string."""
    from .. import __version__

    colour = VERDICT_COLOURS.get(assessment.verdict, '#555')
    figures = '\n'.join(
        f'<figure><img src="{png_uri(_shrink(img))}" alt="{escape(title)}">'
        f'<figcaption>{escape(title)}</figcaption></figure>'
        for title, img in _pictures(result)
    )
    key = ''.join(
        f'<span><i class="sw" style="background:rgb'
        f'{tuple(int(255 * c) for c in rgb)}"></i>{escape(label)}</span>'
        for rgb, label in OVERLAY_KEY
    )
    reasons = '\n'.join(f'<li>{escape(r)}</li>' for r in assessment.reasons)
    matrix = np.array2string(result.moving_from_fixed, precision=6, suppress_small=True)
    plane = ' (middle plane of axis 0)' if result.ndim == 3 else ''
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>napari-coreg report: {escape(assessment.verdict)}</title>
<style>{_STYLE}</style></head><body>
<h1>Registration report <span class="verdict" style="background:{colour}">
verdict: {escape(assessment.verdict)}</span></h1>
<ul>{reasons}</ul>
<h2>Images{plane}</h2>
<p class="key">Overlays: {key} Differences: <span style="color:#c00">red</span>
fixed brighter, <span style="color:#00c">blue</span> moving brighter.</p>
{figures}
<h2>Convergence (loss per iteration, lower is better)</h2>
{convergence_svg(result.loss_history)}
<table>{_levels_table(result)}</table>
<h2>Figures</h2>
<table>{_figures_table(result, assessment)}</table>
<h2>Transform</h2>
<p>moving_from_fixed (physical units, numpy axis order; maps fixed points to
moving points):</p><pre>{escape(matrix)}</pre>
<h2>Settings</h2><pre>{escape(json.dumps(result.settings, indent=1, default=str))}</pre>
<h2>Versions</h2><table>{_rows(_versions())}</table>
<p><small>napari-coreg {escape(str(__version__))}, written {stamp}.</small></p>
</body></html>
"""


def write_report(
    result: RegistrationResult,
    path: str | os.PathLike,
    *,
    overwrite: bool = False,
    fixed_points: ArrayLike | None = None,
    moving_points: ArrayLike | None = None,
) -> Path:
    """Write a self-contained HTML report of ``result``.

    Parameters
    ----------
    result : RegistrationResult
    path : str or path-like
        File to write (``.html``).
    overwrite : bool
        Replace an existing file; by default an existing file is an error.
    fixed_points, moving_points : array_like, shape (n, D), optional
        Paired landmarks (physical): their residual joins the verdict.

    Returns
    -------
    Path
        The file written.

    Raises
    ------
    FileExistsError
        If ``path`` exists and ``overwrite`` is false.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(
            f'{path} already exists: choose another name or pass overwrite=True'
        )
    if fixed_points is None and moving_points is None:
        assessment = result.assessment
    else:
        from .assess import assess

        assessment = assess(result, fixed_points, moving_points)
    path.write_text(render(result, assessment), encoding='utf-8')
    return path
