"""Small helpers that build and fill the widgets' controls."""

from __future__ import annotations

from typing import Any

from magicgui.widgets import CheckBox, ComboBox, Container, Label

__all__ = [
    'align_labels',
    'collapsible',
    'devices',
    'parse_numbers',
    'section',
    'set_choices',
    'counts',
]


def devices() -> list[tuple[str, str]]:
    """'auto' plus the torch devices present (torch is imported here)."""
    choices = [('auto (GPU if present)', 'auto'), ('cpu', 'cpu')]
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return choices
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            choices.append((f'cuda:{i} ({torch.cuda.get_device_name(i)})', f'cuda:{i}'))
    mps = getattr(torch.backends, 'mps', None)
    if mps is not None and mps.is_available():
        choices.append(('mps', 'mps'))
    return choices


def parse_numbers(text: str, what: str, kind: type = int) -> Any:
    """Parse a text field: ``'auto'`` -> None, ``'3'`` -> 3, ``'4, 2'`` -> (4, 2).

    Raises
    ------
    ValueError
        If the text is neither "auto" nor numbers; the message names ``what``.
    """
    text = str(text).strip().lower()
    if text in ('', 'auto', 'all', 'none'):
        return None
    try:
        values = [
            kind(v) for v in text.replace(';', ',').replace(' ', ',').split(',') if v
        ]
    except ValueError:
        raise ValueError(
            f'{what}: expected "auto", a number or numbers separated by commas '
            f'(coarse to fine), got {text!r}'
        ) from None
    return values[0] if len(values) == 1 else tuple(values)


def section(title: str | None, widgets: list) -> Container:
    """A titled group of labelled widgets (``outer.inner`` holds the rows)."""
    box = Container(widgets=widgets, labels=True)
    box.margins = (0, 0, 0, 0)
    if title:
        heading = Label(value=f'<b>{title}</b>')
        outer = Container(widgets=[heading, box], labels=False)
        outer.margins = (0, 6, 0, 0)
        outer.inner = box
        return outer
    return box


def collapsible(title: str, widgets: list, open_: bool = False) -> Container:
    """A section folded behind a check box (``outer.toggle``, ``outer.inner``)."""
    toggle = CheckBox(text=title, value=open_)
    box = Container(widgets=widgets, labels=True)
    box.margins = (12, 0, 0, 0)
    box.visible = open_
    outer = Container(widgets=[toggle, box], labels=False)
    outer.margins = (0, 4, 0, 0)
    outer.inner, outer.toggle = box, toggle

    def _fold(value: bool) -> None:
        box.visible = bool(value)

    toggle.changed.connect(_fold)
    return outer


def align_labels(sections: list[Container]) -> None:
    """Give every labelled row of every section the same label width."""
    rows = []
    for part in sections:
        inner = getattr(part, 'inner', part)
        rows.extend((w, inner.margins[0]) for w in inner)
    try:
        from magicgui.application import use_app

        measure = use_app().get_obj('get_text_width')
        width = max(measure(w.label) + indent for w, indent in rows) + 12
        for w, indent in rows:  # indented rows: narrower labels, aligned fields
            labeled = w._labeled_widget()  # magicgui's row (label + widget)
            if labeled is not None:
                labeled.label_width = width - indent
    except (AttributeError, ValueError, TypeError):  # pragma: no cover - cosmetic
        pass


def set_choices(combo: ComboBox, choices: list, default: Any) -> bool:
    """Replace a combo box's choices, keeping its value when still offered.

    Returns
    -------
    bool
        Whether the previous value was kept.
    """
    values = [c[1] if isinstance(c, tuple) else c for c in choices]
    previous = combo.value
    combo.choices = choices
    kept = previous in values
    combo.value = previous if kept else (default if default in values else values[0])
    return kept


def counts(sentinel: str, values, unit: str = '') -> list[tuple[str, int]]:
    """Combo box choices: the sentinel (value 0 or -1) by name, then numbers."""
    return [(sentinel, values[0])] + [(f'{unit}{v}', v) for v in values[1:]]
