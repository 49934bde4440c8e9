"""Backends, their capabilities, and lazy loading (nothing heavy at import)."""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass

from ..options import Backend, Metric, Model

__all__ = [
    'CAPABILITIES',
    'Capabilities',
    'available_backends',
    'check_device',
    'check_supported',
    'default_iterations',
    'load_engine',
]


@dataclass(frozen=True)
class Capabilities:
    """What a backend can register."""

    models: frozenset[Model]
    metrics: frozenset[Metric]
    ndims: frozenset[int]
    #: optimiser names besides 'auto' (the backend's default)
    optimizers: tuple[str, ...] = ()
    #: models that exist only in 2D
    models_2d_only: frozenset[Model] = frozenset({Model.HOMOGRAPHY})
    uses_device: bool = False


CAPABILITIES: dict[Backend, Capabilities] = {
    Backend.TORCH: Capabilities(
        models=frozenset(Model),
        metrics=frozenset(Metric),
        ndims=frozenset({2, 3}),
        optimizers=('gauss-newton', 'bfgs', 'adam'),
        uses_device=True,
    ),
    Backend.SITK: Capabilities(
        models=frozenset(Model) - {Model.HOMOGRAPHY},
        metrics=frozenset(Metric) - {Metric.L1},
        ndims=frozenset({2, 3}),
        optimizers=(
            'gradient-descent',
            'gradient-descent-line-search',
            'conjugate-gradient',
            'lbfgsb',
            'lbfgs2',
            'amoeba',
            'evolutionary',
        ),
    ),
}

_MODULES = {
    Backend.TORCH: ('torch', 'napari_coreg.engines.torch_engine'),
    Backend.SITK: ('SimpleITK', 'napari_coreg.engines.sitk_engine'),
}


def available_backends() -> list[str]:
    """Backends whose package is installed (checked without importing it)."""
    return [
        backend.value
        for backend, (package, _) in _MODULES.items()
        if importlib.util.find_spec(package) is not None
    ]


def check_supported(
    backend: Backend, model: Model, metric: Metric, ndim: int, optimizer: str = 'auto'
) -> None:
    """Raise ValueError, before any work, if ``backend`` cannot do the combination."""
    caps = CAPABILITIES[backend]
    if optimizer != 'auto' and optimizer not in caps.optimizers:
        owners = [b.value for b, c in CAPABILITIES.items() if optimizer in c.optimizers]
        hint = f' (use backend={owners[0]!r} for it)' if owners else ''
        raise ValueError(
            f"backend '{backend}' has no optimizer {optimizer!r}{hint}: choose "
            f"'auto' or one of {', '.join(repr(o) for o in caps.optimizers)}"
        )
    if optimizer == 'gauss-newton' and metric is Metric.MI:
        raise ValueError(
            'mutual information is not a least-squares metric: use '
            "optimizer='bfgs' or 'adam' (or 'auto')"
        )
    others = [b.value for b, c in CAPABILITIES.items() if b is not backend]
    if model not in caps.models:
        raise ValueError(
            f"backend '{backend}' has no '{model}' model: use backend='torch' "
            f'for it, or choose one of {sorted(m.value for m in caps.models)}'
        )
    if metric not in caps.metrics:
        raise ValueError(
            f"backend '{backend}' has no '{metric}' metric: use backend="
            f'{others[0]!r} for it, or choose one of '
            f'{sorted(m.value for m in caps.metrics)}'
        )
    if ndim not in caps.ndims:
        raise ValueError(f"backend '{backend}' registers 2D or 3D images, not {ndim}D")
    if ndim != 2 and model in caps.models_2d_only:
        raise ValueError(
            f"'{model}' is a 2D model but the images are {ndim}D: use "
            f"'affine' for volumes"
        )


def load_engine(backend: Backend) -> Callable:
    """Import a backend on first use and return its ``run(problem)`` function."""
    package, module = _MODULES[backend]
    if importlib.util.find_spec(package) is None:
        raise ValueError(
            f"backend '{backend}' needs the '{package}' package: pip install {package}"
        )
    return importlib.import_module(module).run


def default_iterations(backend: Backend, optimizer: str) -> int:
    """Most iterations per level when the user gives none."""
    if backend is Backend.SITK:
        return 200
    return {'adam': 300, 'bfgs': 60}.get(optimizer, 60)


def check_device(backend: Backend, device: str | None) -> None:
    """Raise ValueError on call if a torch ``device`` is unknown or absent here."""
    if device is None or backend is not Backend.TORCH:
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
