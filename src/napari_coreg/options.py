"""Choices a registration is made of: model, metric, optimiser, initialisation."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


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
    FEATURES = 'features'
    FOURIER_MELLIN = 'fourier-mellin'
    MOMENTS = 'moments'


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
        ``'auto'`` (the layers' placement, centres, moments and phase
        correlation with a coarse rotation search; when none of these
        matches well, Fourier-Mellin and features + RANSAC in 2D, principal
        axes and axis rotations in 3D: the best few by the metric at the
        coarsest level are refined and the best kept, see
        ``result.settings['init_report']``; frames registered in batches
        get the cheap starts only), ``'identity'``, ``'center'``
        (image centres aligned), ``'phase'`` (phase correlation
        translation), ``'features'`` (keypoints + RANSAC, 2D),
        ``'fourier-mellin'`` (rotation + scale + translation, 2D) or
        ``'moments'`` (centres of mass and principal axes). Ignored when
        ``initial`` is given.
    allow_reflection : bool
        Let ``init`` start from a mirror image of the moving image. Without
        it (default), a pair whose mirrored start clearly beats every proper
        one raises a ``ValueError`` instead of returning a wrong answer.
    tolerance : float, optional
        Convergence threshold on the largest point displacement per step, in
        pixels of the level (default 1e-3).
    mi_bins : int
        Histogram bins of mutual information.
    sampling : float, optional
        Fraction of pixels sampled per metric evaluation (SimpleITK random
        sampling, torch MI); ``None`` uses every pixel.
    seed : int
        Seed of every random choice, so runs are reproducible.
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
    allow_reflection: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, 'init', Init.parse(self.init, 'init'))
        object.__setattr__(self, 'optimizer', str(self.optimizer).lower())
        for name in ('shrink_factors', 'smoothing_sigmas', 'iterations'):
            value = getattr(self, name)
            if value is not None and not isinstance(value, (int, float)):
                object.__setattr__(self, name, tuple(value))
        if self.mi_bins < 4:
            raise ValueError(f'mi_bins must be at least 4, got {self.mi_bins}')
        if self.sampling is not None and not 0 < self.sampling <= 1:
            raise ValueError(
                f'sampling is a fraction of pixels in (0, 1], got {self.sampling}'
            )
        if self.learning_rate is not None and not self.learning_rate > 0:
            raise ValueError(
                f'learning_rate must be positive, got {self.learning_rate}'
            )
        if self.tolerance is not None and not self.tolerance > 0:
            raise ValueError(f'tolerance must be positive, got {self.tolerance}')

    def to_dict(self) -> dict:
        """JSON-able copy."""
        return {
            name: (str(value) if isinstance(value, Enum) else value)
            for name, value in self.__dict__.items()
        }
