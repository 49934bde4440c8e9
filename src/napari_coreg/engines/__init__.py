"""Backends, their capabilities, and lazy loading (nothing heavy at import)."""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass

from ..options import Backend, Metric, Model

__all__ = ['CAPABILITIES', 'Capabilities', 'available_backends', 'check_supported', 'load_engine']


@dataclass(frozen=True)
class Capabilities:
    """What a backend can register."""

    models: frozenset[Model]
    metrics: frozenset[Metric]
    ndims: frozenset[int]
    #: models that exist only in 2D
    models_2d_only: frozenset[Model] = frozenset({Model.HOMOGRAPHY})
    uses_device: bool = False


CAPABILITIES: dict[Backend, Capabilities] = {
    Backend.TORCH: Capabilities(
        models=frozenset(Model),
        metrics=frozenset(Metric),
        ndims=frozenset({2, 3}),
        uses_device=True,
    ),
    Backend.SITK: Capabilities(
        models=frozenset(Model) - {Model.HOMOGRAPHY},
        metrics=frozenset(Metric) - {Metric.L1},
        ndims=frozenset({2, 3}),
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


def check_supported(backend: Backend, model: Model, metric: Metric, ndim: int) -> None:
    """Raise ValueError, before any work, if ``backend`` cannot do the combination."""
    caps = CAPABILITIES[backend]
    others = [b.value for b, c in CAPABILITIES.items() if b is not backend]
    if model not in caps.models:
        raise ValueError(
            f"backend '{backend}' has no '{model}' model: use backend='torch' "
            f"for it, or choose one of {sorted(m.value for m in caps.models)}"
        )
    if metric not in caps.metrics:
        raise ValueError(
            f"backend '{backend}' has no '{metric}' metric: use backend="
            f"{others[0]!r} for it, or choose one of "
            f"{sorted(m.value for m in caps.metrics)}"
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
            f"backend '{backend}' needs the '{package}' package: "
            f'pip install {package}'
        )
    return importlib.import_module(module).run


def default_iterations(backend: Backend, optimizer: str) -> int:
    """Most iterations per level when the user gives none."""
    if backend is Backend.SITK:
        return 200
    return {'adam': 300, 'bfgs': 60}.get(optimizer, 60)
