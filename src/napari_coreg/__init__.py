"""Image registration for napari: a napari-free engine and a thin plugin.

``import napari_coreg`` is light: torch and SimpleITK load when a backend
first runs, napari only inside the plugin.
"""

import os

# torch's OpenMP threads spin while they wait by default; when the cores are
# shared (napari's GUI thread, other processes) that makes every parallel
# operation wait for a descheduled thread: measured 5-50x slower on 2 busy
# cores. Passive waiting costs nothing on an idle machine. Only a default: a
# value the user set wins, and it has no effect once torch is imported.
os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')

try:
    from ._version import version as __version__
except ImportError:  # pragma: no cover - not installed
    __version__ = 'unknown'

from .api import iter_register, register
from .io import TransformFile, load_transform, save_transform
from .method import Method, resolve
from .options import METRIC_SPECS, MODEL_SPECS, Backend, Init, Metric, Model, Settings
from .result import LevelReport, Progress, RegistrationResult
from .stack import StackProgress, StackResult, iter_register_stack, register_stack
from .transforms import Grid, apply_matrix, corner_error, reverse_axes

__all__ = [
    'Backend',
    'Grid',
    'Init',
    'LevelReport',
    'Metric',
    'Model',
    'METRIC_SPECS',
    'MODEL_SPECS',
    'Method',
    'Progress',
    'RegistrationResult',
    'Settings',
    'StackProgress',
    'StackResult',
    'TransformFile',
    '__version__',
    'apply_matrix',
    'corner_error',
    'iter_register',
    'iter_register_stack',
    'load_transform',
    'register',
    'register_stack',
    'resolve',
    'reverse_axes',
    'save_transform',
]


def __getattr__(name: str):
    # register_layers lives in the napari plugin: imported on first use only,
    # so that `import napari_coreg` stays free of napari and Qt (and it is
    # left out of __all__ so that `from napari_coreg import *` stays light)
    if name == 'register_layers':
        from ._napari._scripting import register_layers

        return register_layers
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
