"""Core-test helpers: ``_cases`` importable, and the ``no_engine`` guard.

Tests run with ``--import-mode=importlib`` and the test folders have no
``__init__.py``, so this folder is put on ``sys.path`` once, here.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)


@pytest.fixture
def no_engine(monkeypatch):
    """Fail the test if a backend is loaded (i.e. if work would start).

    Returns the list of backends that were asked for.
    """
    import napari_coreg.method as method_module

    calls = []

    def refuse(backend):
        calls.append(backend)
        raise AssertionError(f'engine {backend} loaded although the input is bad')

    monkeypatch.setattr(method_module, 'load_engine', refuse)
    return calls
