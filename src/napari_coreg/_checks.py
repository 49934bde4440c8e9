"""Type and range checks of option values, with messages that name the fix.

Each check raises ``TypeError`` for a value of the wrong type and
``ValueError`` for a value out of range, before any work starts.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np

__all__ = [
    'check_bool',
    'check_int',
    'check_int_sequence',
    'check_real',
    'check_real_sequence',
    'fit_initial_to_model',
]

#: Largest accepted seed: ITK's random generators take an unsigned 32-bit
#: seed, and SimpleITK receives ``seed + 1`` (see the SimpleITK backend).
MAX_SEED = 2**31 - 2


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_bool(value: object, name: str) -> bool:
    """``value`` as a bool; TypeError unless it is a bool (numpy's included)."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise TypeError(
        f'{name} must be True or False, got {value!r} ({type(value).__name__})'
    )


def check_int(
    value: object, name: str, low: int | None = None, high: int | None = None
) -> int:
    """``value`` as an int in ``[low, high]``."""
    if not _is_int(value):
        raise TypeError(
            f'{name} must be an integer, got {value!r} ({type(value).__name__})'
        )
    value = int(value)
    if low is not None and value < low:
        raise ValueError(f'{name} must be at least {low}, got {value}')
    if high is not None and value > high:
        raise ValueError(f'{name} must be at most {high}, got {value}')
    return value


def check_real(value: object, name: str) -> float:
    """``value`` as a finite float."""
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise TypeError(
            f'{name} must be a number, got {value!r} ({type(value).__name__})'
        )
    value = float(value)
    if value != value or value in (float('inf'), float('-inf')):
        raise ValueError(f'{name} must be finite, got {value}')
    return value


def _as_sequence(value: object, name: str) -> Sequence:
    if isinstance(value, (str, bytes)) or not hasattr(value, '__len__'):
        raise TypeError(
            f'{name} must be a number or a sequence of numbers (one per level), '
            f'got {value!r}'
        )
    if len(value) == 0:
        raise ValueError(f'{name} is empty: give one value per pyramid level')
    return value


def check_int_sequence(value: object, name: str, low: int = 1) -> int | tuple[int, ...]:
    """An int, or a non-empty tuple of ints, each at least ``low``."""
    if isinstance(value, numbers.Number):
        return check_int(value, name, low)
    items = _as_sequence(value, name)
    return tuple(check_int(v, f'each of {name}', low) for v in items)


def check_real_sequence(value: object, name: str) -> float | tuple[float, ...]:
    """A finite float, or a non-empty tuple of them."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return check_real(value, name)
    items = _as_sequence(value, name)
    return tuple(check_real(v, f'each of {name}') for v in items)


#: Relative tolerance within which an ``initial`` matrix counts as being of
#: a model (and is then projected onto it exactly).
MODEL_ATOL = 1e-6


def _model_defect(linear: np.ndarray, model: str) -> str | None:
    """Why ``linear`` (D, D) is not of ``model``, or None if it is."""
    ndim = linear.shape[0]
    if model == 'translation':
        if np.allclose(linear, np.eye(ndim), atol=MODEL_ATOL):
            return None
        return 'a rotation, scale or shear'
    det = np.linalg.det(linear)
    if det <= 0:
        return 'a reflection (negative determinant)'
    scale = det ** (1.0 / ndim)
    rotation = linear / scale
    if not np.allclose(rotation @ rotation.T, np.eye(ndim), atol=MODEL_ATOL):
        return 'a shear or an anisotropic scale'
    if model == 'rigid' and abs(scale - 1) > MODEL_ATOL:
        return f'a scale of {scale:.6g}'
    return None


def _project(linear: np.ndarray, model: str) -> np.ndarray:
    """The nearest linear part of ``model`` (for one already within tolerance)."""
    ndim = linear.shape[0]
    if model == 'translation':
        return np.eye(ndim)
    u, s, vt = np.linalg.svd(linear)
    rotation = u @ vt
    return rotation if model == 'rigid' else rotation * float(np.mean(s))


def fit_initial_to_model(initial: np.ndarray, model: str) -> np.ndarray:
    """``initial`` matrices ``(..., D + 1, D + 1)`` projected onto ``model``.

    A matrix that is of the model within :data:`MODEL_ATOL` is projected onto
    it exactly (rounding removed), so the result is always of the model.

    Raises
    ------
    ValueError
        If a matrix holds what the model cannot (a scale or shear for a
        translation, a reflection for a rigid or similarity model, ...).
    """
    model = str(model)
    if model in ('affine', 'homography'):
        return initial
    initial = np.array(initial, dtype=np.float64)
    ndim = initial.shape[-1] - 1
    for matrix in initial.reshape(-1, ndim + 1, ndim + 1):
        linear = matrix[:ndim, :ndim]
        defect = _model_defect(linear, model)
        if defect is not None:
            raise ValueError(
                f"initial holds {defect}, which a '{model}' model cannot "
                f"represent: pass an initial of the model, or use model='affine'"
            )
        matrix[:ndim, :ndim] = _project(linear, model)
    return initial
