"""The pyramid and optimiser controls of *Register images*, and their settings.

:class:`SettingsControls` builds the controls (levels, shrink factors,
smoothing, iterations, optimiser, learning rate, start, sampling, MI bins)
and reads them into the keyword arguments of
:func:`napari_coreg.register`; the widget lays them out.
"""

from __future__ import annotations

from typing import Any

from magicgui.widgets import ComboBox, LineEdit, SpinBox

from ._controls import counts, parse_numbers

__all__ = ['SettingsControls']

_STARTS = [
    ('auto (best guess)', 'auto'),
    ('identity', 'identity'),
    ('centres aligned', 'center'),
    ('phase correlation', 'phase'),
    ('features + RANSAC', 'features'),
    ('Fourier-Mellin', 'fourier-mellin'),
    ('moments', 'moments'),
    ('current overlay', 'current'),
]


class SettingsControls:
    """Pyramid and optimiser controls (plain magicgui widgets)."""

    def __init__(self) -> None:
        self.levels = ComboBox(
            label='Levels', choices=counts('auto', list(range(9))), value=0
        )
        self.levels.tooltip = 'auto: the coarsest level is about 48 px.'
        self.shrink = LineEdit(label='Shrink factors', value='auto')
        self.shrink.tooltip = (
            'One per level, coarse to fine, e.g. 4,2,1 ("auto": powers of two).'
        )
        self.smoothing = LineEdit(label='Smoothing (px)', value='auto')
        self.smoothing.tooltip = (
            "Gaussian sigma per level, in that level's pixels, e.g. 2,1,0."
        )
        self.iterations = LineEdit(label='Iterations', value='auto')
        self.iterations.tooltip = (
            'Most iterations per level: one number, or one per level.'
        )
        self.optimizer = ComboBox(label='Optimizer', choices=['auto'], value='auto')
        self.optimizer.tooltip = (
            "auto: the backend's default (Gauss-Newton / BFGS for PyTorch, "
            'regular-step gradient descent for SimpleITK).'
        )
        self.learning_rate = LineEdit(label='Learning rate', value='auto')
        self.learning_rate.tooltip = (
            'Step size of Adam and of the SimpleITK gradient optimisers.'
        )
        self.init = ComboBox(label='Start from', choices=_STARTS, value='auto')
        self.init.tooltip = (
            'auto: the best of the layer placement, centres, moments and phase '
            'correlation; when none matches well, Fourier-Mellin and features + '
            'RANSAC (any rotation and scale). "current overlay" refines where the '
            'layers are shown now.'
        )
        self.sampling = LineEdit(label='Sampling', value='all')
        self.sampling.tooltip = (
            'Fraction of pixels per metric evaluation, in (0, 1], or "all".'
        )
        self.mi_bins = SpinBox(label='MI bins', min=4, max=256, value=32)
        self.mi_bins.tooltip = (
            'Histogram bins of mutual information: fewer for small or noisy images.'
        )

    @property
    def pyramid(self) -> list:
        """The pyramid controls, coarse to fine settings."""
        return [self.levels, self.shrink, self.smoothing, self.iterations]

    @property
    def optimiser(self) -> list:
        """The optimiser and start controls."""
        return [
            self.optimizer,
            self.learning_rate,
            self.init,
            self.sampling,
            self.mi_bins,
        ]

    def settings(self, metric: str) -> dict[str, Any]:
        """Keyword arguments of :func:`napari_coreg.register` for these values.

        Parameters
        ----------
        metric : str
            The chosen metric (``'mi'`` adds ``mi_bins``).

        Returns
        -------
        dict
            Only the settings that are not "auto".

        Raises
        ------
        ValueError
            A text field that is not "auto" or numbers; the message names it.
        """
        settings: dict[str, Any] = {}
        if self.levels.value:
            settings['levels'] = int(self.levels.value)
        for key, widget, kind in (
            ('shrink_factors', self.shrink, int),
            ('smoothing_sigmas', self.smoothing, float),
            ('iterations', self.iterations, int),
        ):
            value = parse_numbers(widget.value, widget.label, kind)
            if value is not None:
                settings[key] = (
                    (value,)
                    if key == 'shrink_factors' and isinstance(value, int)
                    else value
                )
        settings['optimizer'] = self.optimizer.value or 'auto'
        fields = [(self.learning_rate, 'learning_rate', 'one number (or "auto")')]
        if self.sampling.visible:
            fields.append(
                (self.sampling, 'sampling', 'one fraction in (0, 1] (or "all")')
            )
        for widget, key, what in fields:
            value = parse_numbers(widget.value, widget.label, float)
            if isinstance(value, tuple):
                raise ValueError(f'{widget.label}: give {what}')
            if value is not None:
                settings[key] = value
        if metric == 'mi':
            settings['mi_bins'] = int(self.mi_bins.value)
        return settings
