"""Whether a result may be applied without the user's say-so.

One rule for every place that writes a result back (the widgets,
``register_layers``, the command line): a ``'failed'`` verdict, or a metric
that got worse than before, holds the result.
"""

from __future__ import annotations

import math
from typing import Any

from ..options import METRIC_SPECS, Metric

__all__ = ['hold_reasons']


def hold_reasons(result: Any) -> list[str]:
    """Why a result must not be applied without the user's say-so.

    Parameters
    ----------
    result : RegistrationResult
        A finished registration.

    Returns
    -------
    list of str
        Empty when the result may be applied. Metric values that are not
        finite compare as not worse (nothing to compare with).
    """
    failed = result.verdict == 'failed'
    held = list(result.verdict_reasons) if failed else []
    if failed and not held:
        held.append('the quality check failed')
    spec = METRIC_SPECS[Metric.parse(result.metric, 'metric')]
    before, after = float(result.metric_before), float(result.metric_after)
    if math.isfinite(before) and math.isfinite(after):
        tolerance = 1e-9 * max(1.0, abs(before))
        worse = (
            after < before - tolerance
            if spec.higher_is_better
            else after > before + tolerance
        )
        if worse:
            direction = 'higher' if spec.higher_is_better else 'lower'
            held.append(
                f'{result.metric.upper()} got worse: {before:.4g} before, '
                f'{after:.4g} after ({direction} is better)'
            )
    return held
