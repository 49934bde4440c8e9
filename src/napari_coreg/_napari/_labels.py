"""What the widgets call things: labels and tooltips shared by every widget."""

from __future__ import annotations

from ..engines import CAPABILITIES
from ..options import METRIC_SPECS

__all__ = [
    'BACKEND_LABELS',
    'METRIC_LABELS',
    'MODEL_TIPS',
    'PAIR_TIPS',
    'backend_choices',
    'better',
    'format_metric',
    'metric_choices',
    'pair_summary',
]

#: Backend names shown to the user (declared by each backend).
BACKEND_LABELS = {backend.value: caps.label for backend, caps in CAPABILITIES.items()}

#: Metric names shown to the user: what each is for.
METRIC_LABELS = {metric.value: spec.label for metric, spec in METRIC_SPECS.items()}

#: Tooltips of the transform models.
MODEL_TIPS = {
    'translation': 'shift only',
    'rigid': 'rotation + shift (distances kept)',
    'similarity': 'rotation + shift + uniform scale',
    'affine': 'any linear map + shift',
    'homography': 'perspective (2D only); written as a resampled layer',
}

#: Metrics for which a higher value is a better match.
HIGHER_IS_BETTER = frozenset(
    metric.value for metric, spec in METRIC_SPECS.items() if spec.higher_is_better
)

BACKEND_TIP = (
    'Which engine registers: PyTorch (gradient descent, GPU when present, all '
    'metrics and models) or SimpleITK (ITK optimisers, CPU).'
)
METRIC_TIP = 'NCC for images of the same kind, mutual information across modalities.'


_MASK_TIP = (
    'A Labels (non-zero pixels) or Shapes (inside) layer: the pixels that count.'
)

#: Tooltips of the *Register images* controls, by attribute name.
PAIR_TIPS = {
    'fixed': 'The reference image: it stays where it is.',
    'moving': 'The image that is moved onto the fixed one.',
    'dims': '3D registers whole volumes; 2D only the slice shown now (other axes '
    'are taken at the current position of the sliders).',
    'metric': METRIC_TIP,
    'backend': BACKEND_TIP,
    'device': 'Where PyTorch computes: auto picks a GPU when there is one, else '
    'the CPU.',
    'fixed_mask': _MASK_TIP,
    'moving_mask': _MASK_TIP,
    'fixed_points': 'Points clicked on the fixed image; the same structures, in the '
    'same order, as the moving landmarks. Their residual joins the verdict.',
    'moving_points': 'Points clicked on the moving image (same structures and '
    'order as the fixed landmarks).',
    'write_back': 'Move the moving layer: its affine is set, its pixels are '
    'untouched. New resampled layer: "<moving> registered" on the fixed grid.',
    'views': 'Layers on the fixed grid showing how well the result fits: a '
    'checkerboard of both images, and their difference (dark = agree).',
    'live': 'Move the moving layer as the optimiser goes (the result is written '
    'only at the end; Cancel puts it back).',
    'run': 'Register the moving image onto the fixed one.',
    'undo': 'Restore the moving layer as it was before the last registration.',
    'apply_anyway': 'Write the result that was held back (failed check or worse '
    'metric).',
}


def backend_choices(backends: list[str]) -> list[tuple[str, str]]:
    """``(label, value)`` pairs for a backend combo box."""
    return [(BACKEND_LABELS.get(b, b), b) for b in backends]


def metric_choices(metrics: list[str]) -> list[tuple[str, str]]:
    """``(label, value)`` pairs for a metric combo box."""
    return [(METRIC_LABELS.get(m, m), m) for m in metrics]


def better(metric: str) -> str:
    """``'higher'`` or ``'lower'``: which way ``metric`` improves."""
    return 'higher' if metric in HIGHER_IS_BETTER else 'lower'


def format_metric(value: float) -> str:
    """A metric value in a few significant digits."""
    return f'{value:.4g}' if abs(value) < 1e4 else f'{value:.3e}'


def pair_summary(result, request) -> str:
    """The status line after a pair registration was written.

    Parameters
    ----------
    result : RegistrationResult
        The finished registration.
    request : Request
        What was registered (layer names, write-back).

    Returns
    -------
    str
        Where the result went, the metric before and after, time, iterations
        and why the last level stopped.
    """
    where = (
        f'{request.moving_name!r} moved onto {request.fixed_name!r}'
        if request.write_back == 'affine'
        else f'new layer {request.moving_name + " registered"!r}'
    )
    return (
        f'Done: {where}. {result.metric.upper()} '
        f'{format_metric(result.metric_before)} \u2192 '
        f'{format_metric(result.metric_after)} ({better(result.metric)} is '
        f'better), {result.elapsed:.1f} s, '
        f'{sum(level.iterations for level in result.levels)} iterations, '
        f'stopped: {result.stop_reason}.'
    )
