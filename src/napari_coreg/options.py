"""Choices a registration is made of, and their declared specs.

This is the one place where a transform model or an intensity metric is
described: :data:`MODEL_SPECS` and :data:`METRIC_SPECS` say what each one is
(parameter count, what it can express, which way is better, whether it is a
least-squares metric, whether it suits images of different modalities).
Engines, the resolver, stacks and widgets read these specs instead of
listing names themselves.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from enum import Enum
from types import MappingProxyType
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

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


def _is_linear_model(linear: np.ndarray, *, scale: bool, atol: float) -> bool:
    """Whether ``linear`` is a proper rotation, times a uniform ``scale``."""
    ndim = linear.shape[0]
    det = np.linalg.det(linear)
    if det <= 0:
        return False
    factor = det ** (1.0 / ndim)
    if not scale and abs(factor - 1) > atol:
        return False
    rotation = linear / factor
    return bool(np.allclose(rotation @ rotation.T, np.eye(ndim), atol=atol))


@dataclass(frozen=True)
class ModelSpec:
    """What a transform model can express: read by every engine and widget.

    Attributes
    ----------
    label : str
        Name shown to users.
    ndims : frozenset of int
        Spatial dimensions the model exists in.
    n_params : callable
        ``n_params(ndim)``: degrees of freedom in ``ndim`` dimensions.
    rotates, scales, shears, projective : bool
        Which motions the model has besides translation (``scales``: a
        uniform scale; ``shears``: any linear map; ``projective``: a
        perspective last row).
    """

    label: str
    ndims: frozenset[int]
    n_params: Callable[[int], int]
    rotates: bool = False
    scales: bool = False
    shears: bool = False
    projective: bool = False

    def fits(self, matrix: ArrayLike, atol: float = 1e-9) -> bool:
        """Whether a homogeneous ``(D + 1, D + 1)`` matrix is one of this model's.

        Any axis order: the test is invariant under reversing the axes.
        """
        matrix = np.asarray(matrix, dtype=np.float64)
        size = matrix.shape[0]
        if self.projective:
            return True
        if not np.allclose(matrix[-1], np.eye(size)[-1], atol=atol):
            return False
        linear = matrix[:-1, :-1]
        if self.shears:
            return True
        if not self.rotates:  # the identity, or a uniform scale of it
            factor = np.trace(linear) / (size - 1) if self.scales else 1.0
            identity = np.eye(size - 1)
            return bool(
                factor > 0 and np.allclose(linear, factor * identity, atol=atol)
            )
        return _is_linear_model(linear, scale=self.scales, atol=atol)


def _rotation_params(ndim: int) -> int:
    return 1 if ndim == 2 else 3


#: The transform models, from fewest to most degrees of freedom.
MODEL_SPECS: Mapping[Model, ModelSpec] = MappingProxyType(
    {
        Model.TRANSLATION: ModelSpec(
            'Translation', frozenset({2, 3}), lambda ndim: ndim
        ),
        Model.RIGID: ModelSpec(
            'Rigid',
            frozenset({2, 3}),
            lambda ndim: ndim + _rotation_params(ndim),
            rotates=True,
        ),
        Model.SIMILARITY: ModelSpec(
            'Similarity',
            frozenset({2, 3}),
            lambda ndim: ndim + _rotation_params(ndim) + 1,
            rotates=True,
            scales=True,
        ),
        Model.AFFINE: ModelSpec(
            'Affine',
            frozenset({2, 3}),
            lambda ndim: ndim * (ndim + 1),
            rotates=True,
            scales=True,
            shears=True,
        ),
        Model.HOMOGRAPHY: ModelSpec(
            'Homography (2D)',
            frozenset({2}),
            lambda ndim: 8,
            rotates=True,
            scales=True,
            shears=True,
            projective=True,
        ),
    }
)


@dataclass(frozen=True)
class MetricSpec:
    """What an intensity metric is: read by every engine and widget.

    Attributes
    ----------
    label : str
        Name shown to users.
    higher_is_better : bool
        Direction of the natural value (NCC and MI: higher is better).
    least_squares : bool
        Has a least-squares form, so a Gauss-Newton step applies.
    multimodal : bool
        Suits images of different modalities (intensities related by any
        function, not just a linear one).
    difference : bool
        Compares intensities directly, so a gamma or contrast change biases
        it unless the histograms are matched first.
    best : float
        The best natural value the loss is measured from: the loss is
        ``best - value`` when higher is better, else the value itself.
    """

    label: str
    higher_is_better: bool
    least_squares: bool
    multimodal: bool = False
    difference: bool = False
    best: float = 0.0

    def loss(self, value: float) -> float:
        """The natural value as a lower-is-better loss."""
        return self.best - value if self.higher_is_better else value

    def improved(self, before: float, after: float) -> bool:
        """Whether ``after`` is at least as good as ``before``."""
        return after >= before if self.higher_is_better else after <= before


#: The intensity metrics.
METRIC_SPECS: Mapping[Metric, MetricSpec] = MappingProxyType(
    {
        Metric.L1: MetricSpec(
            'L1 (robust, same modality)', False, True, difference=True
        ),
        Metric.MSE: MetricSpec(
            'mean squared error (same modality)', False, True, difference=True
        ),
        Metric.NCC: MetricSpec('NCC (same modality)', True, True, best=1.0),
        Metric.MI: MetricSpec(
            'mutual information (multimodal)', True, False, multimodal=True
        ),
    }
)


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
        Histogram bins of mutual information, 4 to 256 (more bins only add
        noise and cost: time and memory grow with the square of the bins).
    sampling : float, optional
        Fraction of pixels sampled per metric evaluation (SimpleITK random
        sampling, torch MI); ``None`` is the backend's default (SimpleITK:
        25 % random, seeded; torch: at most the 65 536 pixels of strongest
        fixed gradient per level), ``1`` every pixel.
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
    allow_reflection: bool = False

    def __post_init__(self) -> None:
        for name, value in _checked_settings(self).items():
            object.__setattr__(self, name, value)

    @classmethod
    def merged(cls, settings: Settings | None = None, **overrides: Any) -> Settings:
        """``settings`` (or the defaults) with every override that is not None.

        The explicit keywords of :func:`napari_coreg.register` and
        :func:`napari_coreg.register_stack` arrive here, so a keyword given
        by the caller wins over the same field of ``settings``.

        Raises
        ------
        TypeError
            If ``settings`` is not a :class:`Settings` or an override names
            no setting.
        """
        if settings is None:
            settings = cls()
        elif not isinstance(settings, Settings):
            raise TypeError(
                f'settings must be a napari_coreg.Settings, got '
                f'{type(settings).__name__}: pass Settings(...) or keywords'
            )
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise TypeError(
                f'unknown setting(s) {", ".join(unknown)}: choose from '
                f'{", ".join(sorted(names))}'
            )
        given = {k: v for k, v in overrides.items() if v is not None}
        return replace(settings, **given) if given else settings

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
