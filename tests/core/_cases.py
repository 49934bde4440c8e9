"""Known-transform test cases: a re-export of :mod:`napari_coreg.cases`.

The one case factory lives in the package (shared with the benchmarks and
the sample pairs); this module keeps the tests' ``from _cases import ...``.
Loaded by ``conftest.py`` (which puts this folder on ``sys.path``).
"""

from __future__ import annotations

from napari_coreg.cases import (  # noqa: F401
    METRICS,
    MODELS,
    Case,
    about_centre,
    make_case,
    mi_remap,
    random_case,
    random_transform,
    rotation,
    source_image,
    translation,
    warp_source,
)
