"""Choices a registration is made of: model, metric, optimiser, initialisation."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from . import _checks


class _Choice(str, Enum):
    """A string enum whose lookup error lists the valid values."""

    @classmethod
    def parse(cls, value: str | _Choice, what: str) -> _Choice:
        """Return the member named ``value``, or raise a helpful ValueError."""
        try:
            return cls(str(value.value if isinstance(value, Enum) else value).lower())
        except ValueError:
            valid = ', '.join(repr(m.value) for m in cls)
            raise ValueError(
                f'unknown {what} {value!r}: choose one of {valid}'
            ) from None

    def __str__(self) -> str:
        return self.value


class Model(_Choice):
    """Transform model, from fewest to most degrees of freedom."""

    TRANSLATION = 'translation'
    RIGID = 'rigid'
    SIMILARITY = 'similarity'
    AFFINE = 'affine'
    HOMOGRAPHY = 'homography'


class Metric(_Choice):
    """Intensity metric compared over the overlap of the two images."""

    L1 = 'l1'
    MSE = 'mse'
    NCC = 'ncc'
    MI = 'mi'


class Optimizer(_Choice):
    """Optimiser of the torch backend (the SimpleITK backend has its own)."""

    AUTO = 'auto'
    GAUSS_NEWTON = 'gauss-newton'
    BFGS = 'bfgs'
    ADAM = 'adam'


class Init(_Choice):
    """How the transform is initialised before the coarsest level."""

    AUTO = 'auto'
    IDENTITY = 'identity'
    CENTER = 'center'
    PHASE = 'phase'


class Backend(_Choice):
    """Registration backend."""

    TORCH = 'torch'
    SITK = 'sitk'


@dataclass(frozen=True)
class Settings:
    """Optimisation settings shared by the backends (all optional).

    Parameters
    ----------
    levels : int, optional
        Pyramid levels; default keeps about 48 px at the coarsest level.
    shrink_factors : sequence of int, optional
        Shrink factor per level, coarse to fine (default powers of two).
    smoothing_sigmas : float or sequence of float, optional
        Gaussian sigma per level, in that level's pixels.
    iterations : int or sequence of int, optional
        Most iterations per level (default depends on the optimiser).
    optimizer : str
        torch: ``'auto'`` (Levenberg-Marquardt Gauss-Newton for l1/mse/ncc,
        BFGS for mi), ``'gauss-newton'``, ``'bfgs'`` or ``'adam'``. sitk:
        ``'auto'`` (regular-step gradient descent), ``'gradient-descent'``,
        ``'lbfgsb'``, ``'amoeba'``, ...
    learning_rate : float, optional
        torch Adam: step in normalised units (default 1e-3 times the level's
        shrink factor). sitk gradient optimisers: the first step, in pixels
        of the level (default 1).
    init : str
        ``'auto'`` (best of centre alignment and phase correlation, with a
        coarse rotation search for models that rotate), ``'identity'``,
        ``'center'`` (image centres aligned) or ``'phase'`` (phase
        correlation translation). Ignored when ``initial`` is given.
    tolerance : float, optional
        Convergence threshold on the largest point displacement per step, in
        pixels of the level (default 1e-3).
    mi_bins : int
        Histogram bins of mutual information, 4 to 256 (more bins only add
        noise and cost: time and memory grow with the square of the bins).
    sampling : float, optional
        Fraction of pixels sampled per metric evaluation (SimpleITK random
        sampling, torch MI); ``None`` uses every pixel.
    seed : int
        Seed of every random choice, so runs are reproducible (0 to
        2**31 - 2; on SimpleITK too, which receives ``seed + 1`` because ITK
        reads a seed of 0 as "seed from the wall clock").
    device : str, optional
        torch device; ``None`` picks cuda, then mps, then cpu.
    match_histograms : bool
        For ``l1`` and ``mse``: map the moving image's intensity histogram
        onto the fixed image's first, so a gamma or contrast change does not
        bias the difference (default True; ``ncc`` and ``mi`` ignore it).
    """

    levels: int | None = None
    shrink_factors: tuple[int, ...] | None = None
    smoothing_sigmas: float | tuple[float, ...] | None = None
    iterations: int | tuple[int, ...] | None = None
    optimizer: str = 'auto'
    learning_rate: float | None = None
    init: Init = Init.AUTO
    tolerance: float | None = None
    mi_bins: int = 32
    sampling: float | None = None
    seed: int = 0
    device: str | None = None
    match_histograms: bool = True

    def __post_init__(self) -> None:
        for name, value in _checked_settings(self).items():
            object.__setattr__(self, name, value)

    def to_dict(self) -> dict:
        """JSON-able copy."""
        return {
            name: (str(value) if isinstance(value, Enum) else value)
            for name, value in self.__dict__.items()
        }


def _checked_settings(settings: Settings) -> dict:
    """Every field of ``settings``, type- and range-checked and normalised.

    Raises TypeError for a wrong type and ValueError for a bad value.
    """
    values = dict(settings.__dict__)
    values['init'] = Init.parse(settings.init, 'init')
    if not isinstance(settings.optimizer, (str, Enum)):
        raise TypeError(f'optimizer must be a name, got {settings.optimizer!r}')
    values['optimizer'] = str(settings.optimizer).lower()
    if settings.levels is not None:
        values['levels'] = _checks.check_int(settings.levels, 'levels', 1, 16)
    if settings.shrink_factors is not None:
        factors = _checks.check_int_sequence(settings.shrink_factors, 'shrink_factors')
        values['shrink_factors'] = (factors,) if isinstance(factors, int) else factors
        if values['levels'] is not None and values['levels'] != len(
            values['shrink_factors']
        ):
            raise ValueError(
                f'levels={values["levels"]} but shrink_factors has '
                f'{len(values["shrink_factors"])} entries '
                f'{values["shrink_factors"]}: give one of them, or one shrink '
                'factor per level'
            )
    if settings.smoothing_sigmas is not None:
        values['smoothing_sigmas'] = _checks.check_real_sequence(
            settings.smoothing_sigmas, 'smoothing_sigmas'
        )
    if settings.iterations is not None:
        values['iterations'] = _checks.check_int_sequence(
            settings.iterations, 'iterations'
        )
    values['mi_bins'] = _checks.check_int(settings.mi_bins, 'mi_bins', 4, 256)
    values['seed'] = _checks.check_int(settings.seed, 'seed', 0, _checks.MAX_SEED)
    values['match_histograms'] = _checks.check_bool(
        settings.match_histograms, 'match_histograms'
    )
    if settings.sampling is not None:
        sampling = _checks.check_real(settings.sampling, 'sampling')
        if not 0 < sampling <= 1:
            raise ValueError(
                f'sampling is a fraction of pixels in (0, 1], got {sampling}'
            )
        values['sampling'] = sampling
    for name in ('learning_rate', 'tolerance'):
        value = getattr(settings, name)
        if value is not None:
            value = _checks.check_real(value, name)
            if not value > 0:
                raise ValueError(f'{name} must be positive, got {value}')
            values[name] = value
    device = settings.device
    if (  # torch.device objects are accepted
        device is not None
        and not isinstance(device, str)
        and type(device).__name__ != 'device'
    ):
        raise TypeError(
            f"device must be a name such as 'cpu' or 'cuda', got {device!r}"
        )
    return values
