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
