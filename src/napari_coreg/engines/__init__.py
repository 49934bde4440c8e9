"""The backends: what each declares it can do, and loading them on first use.

Every backend is declared here, in :data:`CAPABILITIES`, by what it
supports (models, metrics, dimensions, optimisers with their default
iterations, batching, devices); nothing about a backend is defined by
subtraction, and nothing heavy is imported: a backend's package
(``engines/torch/`` or ``engines/sitk/``) is imported by :func:`load_engine`
when a registration first runs. Each package's ``run(problem)`` follows the
:class:`Engine` protocol.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Protocol

from ..options import METRIC_SPECS, Backend, Metric, Model
from ..pyramid import COARSEST_SIZE

if TYPE_CHECKING:
    from ..problem import Outcome, Problem
    from ..result import Progress

__all__ = [
    'CAPABILITIES',
    'PREVIEW_SECONDS',
    'TOLERANCE_PX',
    'Capabilities',
    'Engine',
    'available_backends',
    'check_device',
    'load_engine',
]

#: Default convergence shared by the backends: a step that moves no corner
#: of the fixed level by more than this many level pixels (times the level's
#: shrink factor) ends the level.
TOLERANCE_PX = 1e-3
#: Progress events carry the current matrix at most this often (seconds).
PREVIEW_SECONDS = 0.2


class Engine(Protocol):
    """What a backend module provides: one generator per (batched) problem."""

    def run(self, problem: Problem) -> Generator[Progress, None, Outcome]:
        """Register ``problem``, yielding progress; return the outcome."""


@dataclass(frozen=True)
class Capabilities:
    """What a backend declares it can register, and how it is loaded.

    Attributes
    ----------
    label : str
        Name shown to users.
    models, metrics : frozenset
        What it supports (a model's own dimensions are in its ModelSpec).
    ndims : frozenset of int
        Spatial dimensions it registers.
    optimizers : mapping of str to int
        Optimiser names (besides ``'auto'``) and their default iterations
        per level.
    auto_optimizer : callable
        ``auto_optimizer(metric)``: the optimiser that ``'auto'`` means.
    batching : bool
        Registers a batch of frames in one run (else frame after frame).
    uses_device : bool
        Takes a torch ``device``.
    package, module : str
        The package it needs, and the module whose ``run`` it is.
    coarsest_sizes : tuple of (int, int)
        Per number of dimensions, the size (pixels along the shortest axis)
        of the default pyramid's coarsest level;
        :data:`~napari_coreg.pyramid.COARSEST_SIZE` where not given.
    """

    label: str
    models: frozenset[Model]
    metrics: frozenset[Metric]
    ndims: frozenset[int]
    optimizers: Mapping[str, int]
    auto_optimizer: Callable[[Metric], str]
    batching: bool
    uses_device: bool
    package: str
    module: str
    coarsest_sizes: tuple[tuple[int, int], ...] = ()

    def coarsest_size(self, ndim: int) -> int:
        """The default pyramid's coarsest level size for ``ndim`` dimensions."""
        return dict(self.coarsest_sizes).get(ndim, COARSEST_SIZE)

    def optimizer(self, name: str, metric: Metric) -> str:
        """The optimiser that ``name`` means (``'auto'`` resolved)."""
        return self.auto_optimizer(metric) if name == 'auto' else name


def _torch_auto(metric: Metric) -> str:
    return 'gauss-newton' if METRIC_SPECS[metric].least_squares else 'bfgs'


#: Every backend, declared by what it supports.
CAPABILITIES: Mapping[Backend, Capabilities] = MappingProxyType(
    {
        Backend.TORCH: Capabilities(
            label='PyTorch',
            models=frozenset(Model),
            metrics=frozenset(Metric),
            ndims=frozenset({2, 3}),
            optimizers=MappingProxyType({'gauss-newton': 60, 'bfgs': 60, 'adam': 300}),
            auto_optimizer=_torch_auto,
            batching=True,
            uses_device=True,
            package='torch',
            module='napari_coreg.engines.torch',
        ),
        Backend.SITK: Capabilities(
            label='SimpleITK',
            models=frozenset(
                {Model.TRANSLATION, Model.RIGID, Model.SIMILARITY, Model.AFFINE}
            ),
            metrics=frozenset({Metric.MSE, Metric.NCC, Metric.MI}),
            ndims=frozenset({2, 3}),
            optimizers=MappingProxyType(
                dict.fromkeys(
                    (
                        'gradient-descent',
                        'gradient-descent-line-search',
                        'conjugate-gradient',
                        'lbfgsb',
                        'lbfgs2',
                        'amoeba',
                        'evolutionary',
                    ),
                    200,
                )
            ),
            auto_optimizer=lambda metric: 'gradient-descent',
            batching=False,
            uses_device=False,
            package='SimpleITK',
            module='napari_coreg.engines.sitk',
            # SimpleITK's 3D practice (shrink 4, 2, 1 on volumes of about 64
            # voxels a side): measured 0.6x the time of one 64^3 level on the
            # CT lung volume, at the same error
            coarsest_sizes=((3, 16),),
        ),
    }
)


def available_backends() -> list[str]:
    """Backends whose package is installed (checked without importing it)."""
    return [
        backend.value
        for backend, caps in CAPABILITIES.items()
        if importlib.util.find_spec(caps.package) is not None
    ]


def load_engine(backend: Backend) -> Engine:
    """Import a backend on first use and return its module (an :class:`Engine`)."""
    caps = CAPABILITIES[backend]
    if importlib.util.find_spec(caps.package) is None:
        raise ValueError(
            f"backend '{backend}' needs the '{caps.package}' package: "
            f'pip install {caps.package}'
        )
    return importlib.import_module(caps.module)


def check_device(backend: Backend, device: str | None) -> None:
    """Raise ValueError on call if a torch ``device`` is unknown or absent here."""
    if device is None or not CAPABILITIES[backend].uses_device:
        return
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(
            f"unknown device {device!r}: use 'cpu', 'cuda', 'cuda:1', 'mps' or "
            'None for the best present'
        ) from error
    mps = getattr(torch.backends, 'mps', None)
    present = {
        'cpu': True,
        'cuda': torch.cuda.is_available(),
        'mps': mps is not None and mps.is_available(),
    }.get(parsed.type, False)
    if not present:
        raise ValueError(
            f'device {device!r} is not available on this machine: use '
            "device=None (the best present) or 'cpu'"
        )
