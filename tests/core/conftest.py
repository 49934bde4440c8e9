"""Core-test helpers: make ``_cases`` (synthetic known-transform cases) importable.

Tests run with ``--import-mode=importlib`` and the test folders have no
``__init__.py``, so this folder is put on ``sys.path`` once, here.
"""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
