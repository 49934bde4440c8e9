"""One resolver for every entry point: names and settings in, a checked Method out.

``register``, ``register_stack``, ``register_layers``, the widgets and the
command line all call :func:`resolve`, so a choice is parsed, and a
combination a backend cannot do is refused, in exactly one place and before
any work starts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .engines import CAPABILITIES, Capabilities, Engine, check_device, load_engine
from .options import (
    METRIC_SPECS,
    MODEL_SPECS,
    Backend,
    Metric,
    MetricSpec,
    Model,
    ModelSpec,
    Settings,
)
from .pyramid import Level, level_schedule

__all__ = ['Method', 'resolve']


@dataclass(frozen=True)
class Method:
    """A checked choice of model, metric, backend and settings.

    Attributes
    ----------
    model, metric, backend : Model, Metric, Backend
    settings : Settings
    optimizer : str
        The optimiser that runs (``'auto'`` resolved for the backend and
        metric).
    """

    model: Model
    metric: Metric
    backend: Backend
    settings: Settings
    optimizer: str

    @property
    def model_spec(self) -> ModelSpec:
        """What the model can express."""
        return MODEL_SPECS[self.model]

    @property
    def metric_spec(self) -> MetricSpec:
        """What the metric is."""
        return METRIC_SPECS[self.metric]

    @property
    def capabilities(self) -> Capabilities:
        """What the backend declares."""
        return CAPABILITIES[self.backend]

    def check_ndim(self, ndim: int) -> None:
        """Raise ValueError if the backend or model cannot work in ``ndim`` D."""
        if ndim not in self.capabilities.ndims:
            raise ValueError(
                f"backend '{self.backend}' registers "
                f'{" or ".join(f"{n}D" for n in sorted(self.capabilities.ndims))} '
                f'images, not {ndim}D'
            )
        if ndim not in self.model_spec.ndims:
            others = [
                m.value
                for m, spec in MODEL_SPECS.items()
                if ndim in spec.ndims and spec.shears
            ]
            dims = '/'.join(f'{n}D' for n in sorted(self.model_spec.ndims))
            raise ValueError(
                f"'{self.model}' is a {dims} model but the images are {ndim}D: "
                f'use {others[0]!r} for them'
            )

    def schedule(self, shape: Sequence[int]) -> tuple[Level, ...]:
        """The pyramid for a fixed image of ``shape`` (checked)."""
        opts = self.settings
        return level_schedule(
            shape,
            levels=opts.levels,
            shrink_factors=opts.shrink_factors,
            smoothing_sigmas=opts.smoothing_sigmas,
            iterations=opts.iterations,
            default_iterations=self.capabilities.optimizers[self.optimizer],
            coarsest_size=self.capabilities.coarsest_size(len(shape)),
        )

    def engine(self) -> Engine:
        """The backend's module (imported now if it was not)."""
        return load_engine(self.backend)


def _check_combination(backend: Backend, model: Model, metric: Metric) -> None:
    caps = CAPABILITIES[backend]
    for what, value, field in (
        ('model', model, 'models'),
        ('metric', metric, 'metrics'),
    ):
        offered = getattr(caps, field)
        if value in offered:
            continue
        owners = [
            b.value for b, c in CAPABILITIES.items() if value in getattr(c, field)
        ]
        hint = f'use backend={owners[0]!r} for it, or ' if owners else ''
        raise ValueError(
            f"backend '{backend}' has no '{value}' {what}: {hint}choose one of "
            f'{sorted(v.value for v in offered)}'
        )


def _check_optimizer(backend: Backend, metric: Metric, name: str) -> str:
    caps = CAPABILITIES[backend]
    if name != 'auto' and name not in caps.optimizers:
        owners = [b.value for b, c in CAPABILITIES.items() if name in c.optimizers]
        hint = f' (use backend={owners[0]!r} for it)' if owners else ''
        raise ValueError(
            f"backend '{backend}' has no optimizer {name!r}{hint}: choose "
            f"'auto' or one of {', '.join(repr(o) for o in caps.optimizers)}"
        )
    if name == 'gauss-newton' and not METRIC_SPECS[metric].least_squares:
        raise ValueError(
            f"'{metric}' is not a least-squares metric, so Gauss-Newton cannot "
            "minimise it: use optimizer='bfgs' or 'adam' (or 'auto')"
        )
    return caps.optimizer(name, metric)


def resolve(
    model: str | Model = 'affine',
    metric: str | Model = 'ncc',
    backend: str | Backend = 'torch',
    *,
    ndim: int | None = None,
    settings: Settings | None = None,
    **overrides: Any,
) -> Method:
    """Parse and check a registration's choices, before any work.

    Parameters
    ----------
    model : {'translation', 'rigid', 'similarity', 'affine', 'homography'}
    metric : {'l1', 'mse', 'ncc', 'mi'}
    backend : {'torch', 'sitk'}
    ndim : int, optional
        Spatial dimensions of the images, when known: checked too.
    settings : Settings, optional
        Base settings; ``overrides`` (keywords of :class:`Settings`; None
        means "not given") win over its fields.

    Returns
    -------
    Method

    Raises
    ------
    ValueError
        For an unknown name, a combination the backend cannot do, an
        optimiser of another backend, an absent device, or a model that does
        not exist in ``ndim`` dimensions.
    TypeError
        For settings of the wrong type.
    """
    model = Model.parse(model, 'model')
    metric = Metric.parse(metric, 'metric')
    backend = Backend.parse(backend, 'backend')
    opts = Settings.merged(settings, **overrides)
    _check_combination(backend, model, metric)
    optimizer = _check_optimizer(backend, metric, opts.optimizer)
    check_device(backend, opts.device)
    method = Method(model, metric, backend, opts, optimizer)
    if ndim is not None:
        method.check_ndim(ndim)
    return method
