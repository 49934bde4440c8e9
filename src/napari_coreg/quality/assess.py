"""``assess``: the verdict on a :class:`~napari_coreg.RegistrationResult`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from numpy.typing import ArrayLike

from .evidence import gather
from .verdict import Assessment, judge

if TYPE_CHECKING:
    from ..result import RegistrationResult

__all__ = ['assess']


def assess(
    result: RegistrationResult,
    fixed_points: ArrayLike | None = None,
    moving_points: ArrayLike | None = None,
) -> Assessment:
    """Judge a registration result from the evidence it leaves.

    Parameters
    ----------
    result : RegistrationResult
        A finished registration (it keeps its input images).
    fixed_points, moving_points : array_like, shape (n, D), optional
        Paired landmarks (physical coordinates, numpy axis order): the
        residual after registration joins the evidence.

    Returns
    -------
    Assessment
        ``verdict``, ``reasons``, ``uncertainty_px`` and the evidence.

    Notes
    -----
    Costs a few tens of milliseconds for any image size: the evidence is
    measured on block-averaged copies of about 128 pixels per side (48 in
    3D). Masks given to the registration (and nodata) limit the evidence to
    the pixels that counted.
    """
    evidence = gather(
        result._fixed,
        result._moving,
        result.moving_from_fixed,
        result.fixed_grid,
        result.moving_grid,
        model=result.model,
        metric=result.metric,
        metric_before=result.metric_before,
        metric_after=result.metric_after,
        stop_reason=result.stop_reason,
        fixed_points=fixed_points,
        moving_points=moving_points,
        fixed_mask=result._fixed_mask,
        moving_mask=result._moving_mask,
        reflection_allowed=bool(result.settings.get('allow_reflection', False)),
    )
    return judge(evidence)
