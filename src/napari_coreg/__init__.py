"""Image registration for napari: a napari-free engine and a thin plugin.

``import napari_coreg`` is light: torch and SimpleITK load when a backend
first runs, napari only inside the plugin.
"""

try:
    from ._version import version as __version__
except ImportError:  # pragma: no cover - not installed
    __version__ = 'unknown'

from .api import iter_register, register
from .options import Backend, Init, Metric, Model, Optimizer, Settings
from .result import LevelReport, Progress, RegistrationResult
from .transforms import Grid, apply_matrix, corner_error, reverse_axes

__all__ = [
    'Backend',
    'Grid',
    'Init',
    'LevelReport',
    'Metric',
    'Model',
    'Optimizer',
    'Progress',
    'RegistrationResult',
    'Settings',
    '__version__',
    'apply_matrix',
    'corner_error',
    'iter_register',
    'register',
    'reverse_axes',
]
