"""The architectural guard: ``import napari_coreg`` stays light."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = (
    'torch',
    'kornia',
    'SimpleITK',
    'napari',
    'qtpy',
    'PyQt5',
    'PySide2',
    'PyQt6',
    'PySide6',
    'magicgui',
    'dask',
    'vispy',
    'rasterio',
)


#: Prints the heavy top-level packages present in sys.modules.
REPORT = (
    'import sys; '
    f'heavy = {set(HEAVY)!r} & {{m.split(".")[0] for m in sys.modules}}; '
    'print(" ".join(sorted(heavy)))'
)


def _imported_after(statement: str) -> set[str]:
    code = f'{statement}\n{REPORT}'
    out = subprocess.run(
        [sys.executable, '-c', code],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return set(out.stdout.split())


@pytest.mark.parametrize(
    'statement',
    [
        'import napari_coreg',
        'from napari_coreg import register, iter_register, corner_error, Grid',
        'import napari_coreg.api, napari_coreg.engines, napari_coreg.pyramid',
        'import napari_coreg.inputs, napari_coreg.transforms, napari_coreg.result',
        'import napari_coreg.geo',
    ],
)
def test_core_import_is_light(statement) -> None:
    assert _imported_after(statement) == set()


def test_validation_errors_need_no_heavy_import() -> None:
    """Bad input is refused without importing torch (before any work)."""
    statement = (
        'import numpy as np, napari_coreg\n'
        'try:\n'
        '    napari_coreg.register(np.zeros(10), np.zeros(10))\n'
        'except ValueError:\n'
        '    pass\n'
        'else:\n'
        '    raise SystemExit("no ValueError")'
    )
    code = f'{statement}\n{REPORT}'
    out = subprocess.run(
        [sys.executable, '-c', code],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.stdout.split() == []
