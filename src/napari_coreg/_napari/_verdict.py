"""Whether to trust a result: its verdict, and whether the widget may write it.

A registration result carries ``verdict`` (``'ok'``, ``'suspect'`` or
``'failed'``) and ``verdict_reasons``; a stack result carries ``verdicts``
(one per frame) and ``flagged_frames``. The widgets read them only through
the accessors here. A result is *held back* (not written until the user
presses *Apply anyway*) when its verdict is ``'failed'`` or when its metric
got worse than before the registration.
"""

from __future__ import annotations

import html
import math

__all__ = [
    'VERDICT_COLOURS',
    'convergence_text',
    'flagged_frames',
    'sparkline',
    'verdict_html',
    'verdict_of',
]

#: Colour of each verdict in the widgets.
VERDICT_COLOURS = {'ok': '#3fb950', 'suspect': '#f0a020', 'failed': '#f85149'}


def verdict_of(result) -> tuple[str | None, tuple[str, ...]]:
    """``(verdict, reasons)`` of a result; ``(None, ())`` where it has none."""
    return getattr(result, 'verdict', None), tuple(
        getattr(result, 'verdict_reasons', ()) or ()
    )


def flagged_frames(result) -> tuple[int, ...]:
    """Frames of a stack result whose verdict is not ``'ok'``."""
    return tuple(int(i) for i in getattr(result, 'flagged_frames', ()) or ())


_BARS = '\u2581\u2582\u2583\u2584\u2585\u2586\u2587\u2588'


def sparkline(values, width: int = 24) -> str:
    """A tiny plot of ``values`` in block characters (high = tall)."""
    values = [float(v) for v in values if math.isfinite(float(v))]
    if not values:
        return ''
    step = max(1, math.ceil(len(values) / width))
    values = values[::step]
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    return ''.join(_BARS[round((v - low) / span * (len(_BARS) - 1))] for v in values)


def convergence_text(result) -> str:
    """The loss per level as sparklines, coarse to fine: a convergence plot."""
    levels = getattr(result, 'levels', ()) or ()
    lines = [sparkline(level.losses) for level in levels]
    lines = [line for line in lines if line]
    return ('Loss per level: ' + ' | '.join(lines)) if lines else ''


def verdict_html(
    verdict: str | None, reasons: list[str] | tuple[str, ...], curve: str = ''
) -> str:
    """Rich text for a label: the verdict in its colour, its reasons, the curve."""
    if verdict is None and not reasons:
        return html.escape(curve)
    word = verdict or 'failed'
    colour = VERDICT_COLOURS.get(word, VERDICT_COLOURS['suspect'])
    text = f'<b style="color:{colour}">Verdict: {html.escape(word)}</b>'
    if reasons:
        text += '<br>' + '<br>'.join(f'\u2022 {html.escape(r)}' for r in reasons)
    if curve:
        text += '<br>' + html.escape(curve)
    return text
