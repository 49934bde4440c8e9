"""Pictures for reports and the demo, without matplotlib.

Images are RGB arrays in [0, 1] (made into base64 PNG by :func:`png_uri`),
curves are inline SVG, and titled panels with a colour key are drawn with
Pillow (which scikit-image's imageio already needs).
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from html import escape

import numpy as np
from numpy.typing import NDArray

__all__ = [
    'OVERLAY_KEY',
    'checkerboard',
    'convergence_svg',
    'difference',
    'overlay',
    'panels',
    'png_uri',
    'unit',
]

#: What the colours of :func:`overlay` mean.
OVERLAY_KEY = (
    ((0.0, 1.0, 0.0), 'fixed'),
    ((1.0, 0.0, 1.0), 'moving'),
    ((1.0, 1.0, 1.0), 'both agree'),
)
#: Colours of successive pyramid levels in the convergence plot.
LEVEL_COLOURS = ('#1b9e77', '#d95f02', '#7570b3', '#e7298a', '#66a61e', '#e6ab02')


def unit(image: NDArray) -> NDArray[np.float64]:
    """Gray image scaled to [0, 1] by its 0.5 and 99.5 percentiles."""
    gray = np.asarray(image, dtype=np.float64)
    if gray.ndim == 3 and gray.shape[-1] in (3, 4):
        gray = gray[..., :3].mean(axis=-1)
    finite = gray[np.isfinite(gray)]
    if finite.size == 0:
        return np.zeros(gray.shape)
    low, high = np.percentile(finite, [0.5, 99.5])
    return np.clip(np.nan_to_num((gray - low) / max(high - low, 1e-12)), 0, 1)


def overlay(fixed: NDArray, moving: NDArray) -> NDArray[np.float64]:
    """Fixed in green, moving in magenta: gray where they agree."""
    f, m = unit(fixed), unit(moving)
    return np.stack([m, f, m], axis=-1)


def checkerboard(fixed: NDArray, moving: NDArray, tiles: int = 8) -> NDArray:
    """Alternating squares of fixed and moving (gray RGB)."""
    f, m = unit(fixed), unit(moving)
    size = max(1, max(f.shape) // tiles)
    rows, cols = np.indices(f.shape[:2]) // size
    board = np.where((rows + cols) % 2 == 0, f, m)
    return np.repeat(board[..., None], 3, axis=-1)


def difference(
    fixed: NDArray, moving: NDArray, valid: NDArray | None = None
) -> NDArray[np.float64]:
    """Fixed minus moving: red where fixed is brighter, blue where darker.

    Outside ``valid`` (where moving does not cover fixed) the picture is gray.
    """
    d = np.clip(unit(fixed) - unit(moving), -1, 1)
    pos, neg = np.clip(d, 0, 1), np.clip(-d, 0, 1)
    rgb = np.stack([1 - neg, 1 - pos - neg, 1 - pos], axis=-1)
    if valid is not None:
        rgb[~valid] = 0.6
    return rgb


def _uint8(rgb: NDArray) -> NDArray[np.uint8]:
    rgb = np.asarray(rgb)
    if rgb.dtype == np.uint8:
        return rgb
    return (np.clip(rgb, 0, 1) * 255).round().astype(np.uint8)


def png_uri(rgb: NDArray) -> str:
    """A ``data:image/png;base64,...`` URI of an RGB (or gray) image."""
    import imageio.v3 as iio

    data = iio.imwrite('<bytes>', _uint8(rgb), extension='.png')
    return 'data:image/png;base64,' + base64.b64encode(data).decode('ascii')


def panels(
    images: Sequence[tuple[str, NDArray]],
    key: Sequence[tuple[tuple[float, float, float], str]] = OVERLAY_KEY,
    gap: int = 8,
) -> NDArray[np.uint8]:
    """Images side by side, each with a title above, and a colour key below.

    Parameters
    ----------
    images : sequence of (title, RGB image)
        Same height; values in [0, 1] or uint8.
    key : sequence of (RGB colour, label)
        Drawn as swatches along the bottom (empty: none).
    gap : int
        White pixels between and around the panels.
    """
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=14)
    height = max(img.shape[0] for _, img in images)
    width = sum(img.shape[1] for _, img in images) + gap * (len(images) + 1)
    title_h, key_h = 22, 24 if key else 0
    canvas = Image.new('RGB', (width, height + title_h + key_h + gap), 'white')
    draw = ImageDraw.Draw(canvas)
    x = gap
    for title, img in images:
        canvas.paste(Image.fromarray(_uint8(img)), (x, title_h))
        draw.text((x, 3), title, fill='black', font=font)
        x += img.shape[1] + gap
    x, y = gap, title_h + height + gap // 2
    for colour, label in key:
        fill = tuple(int(round(255 * c)) for c in colour)
        draw.rectangle([x, y + 3, x + 14, y + 17], fill=fill, outline='black')
        draw.text((x + 20, y + 2), label, fill='black', font=font)
        x += 30 + int(draw.textlength(label, font=font))
    return np.asarray(canvas)


def convergence_svg(
    losses: Sequence[Sequence[float]], width: int = 480, height: int = 220
) -> str:
    """Loss per iteration, one polyline per pyramid level, as inline SVG.

    Levels follow each other along the x axis (coarse to fine); the y axis is
    the loss (lower is better) over the range of all levels.
    """
    values = [np.asarray(level, np.float64) for level in losses]
    finite = np.concatenate([v[np.isfinite(v)] for v in values] + [np.zeros(0)])
    total = sum(len(v) for v in values)
    left, right, top, bottom = 56, 10, 10, 34
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" font-size="11" '
        'font-family="sans-serif">',
        f'<rect x="{left}" y="{top}" width="{width - left - right}" '
        f'height="{height - top - bottom}" fill="none" stroke="#888"/>',
    ]
    if finite.size == 0 or total == 0:
        parts.append(f'<text x="{left + 8}" y="{height / 2}">no iterations</text>')
        return '\n'.join([*parts, '</svg>'])
    low, high = float(finite.min()), float(finite.max())
    span = high - low or 1.0
    plot_w, plot_h = width - left - right, height - top - bottom

    def xy(i: int, v: float) -> str:
        x = left + plot_w * i / max(total - 1, 1)
        y = top + plot_h * (1 - (v - low) / span)
        return f'{x:.1f},{y:.1f}'

    start = 0
    for k, level in enumerate(values):
        colour = LEVEL_COLOURS[k % len(LEVEL_COLOURS)]
        points = ' '.join(
            xy(start + i, v) for i, v in enumerate(level) if np.isfinite(v)
        )
        parts.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" '
            f'points="{points}"><title>level {k + 1}</title></polyline>'
        )
        label_x = left + plot_w * start / max(total - 1, 1)
        parts.append(
            f'<text x="{label_x + 2:.1f}" y="{height - 20}" fill="{colour}">'
            f'L{k + 1}</text>'
        )
        start += len(level)
    parts += [
        f'<text x="4" y="{top + 10}">{escape(f"{high:.4g}")}</text>',
        f'<text x="4" y="{height - bottom}">{escape(f"{low:.4g}")}</text>',
        f'<text x="{left + plot_w / 2 - 60:.0f}" y="{height - 4}">'
        'iteration (levels coarse to fine)</text>',
        '</svg>',
    ]
    return '\n'.join(parts)
