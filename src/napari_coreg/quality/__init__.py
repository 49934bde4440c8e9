"""Whether to trust a registration: figures, verdict, uncertainty, report.

- :func:`overlap_quality`: MSE, NCC and SSIM over the overlap, before/after;
- :func:`assess`: the verdict (``'ok'``, ``'suspect'``, ``'failed'``) with
  reasons a user can act on, and a 95% bound on the corner error;
- :func:`write_report`: a self-contained HTML report;
- :func:`hold_reasons`: why a result must not be applied unasked.

Nothing here is imported by ``import napari_coreg``; results import it on
first use.
"""

from __future__ import annotations

from .assess import assess
from .hold import hold_reasons
from .overlap import overlap_quality
from .report import write_report
from .verdict import VERDICTS, Assessment

__all__ = [
    'VERDICTS',
    'Assessment',
    'assess',
    'hold_reasons',
    'overlap_quality',
    'write_report',
]
