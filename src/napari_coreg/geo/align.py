"""Register two georeferenced scenes in map coordinates.

The scenes start where their georeferencing puts them; the result is the
residual mis-registration in map units, as AROSICS reports it.

Conventions
-----------
World = the reference CRS's map coordinates, numpy order ``(y, x)``.
``moving_from_fixed`` maps a reference map point to the *georeferenced*
target map point that shows the same content; ``fixed_from_moving`` maps the
target's georeferenced position to its true (reference) position. For a
translation its offset is ``shift_map = (dy, dx)``: true position =
georeferenced position + shift (AROSICS' "map shift" in ``(y, x)`` order).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..quality.verdict import Assessment
from ..transforms import apply_matrix, homogeneous
from .georef import Georef
from .local import ShiftModel
from .overlap import (
    Overlap,
    RasterInput,
    as_source,
    auto_nodata,
    georef_of,
    overlap_of,
)
from .raster import GeoRaster, require_rasterio
from .tiepoints import TiePoints, measure_tie_points
from .windows import ArrayWindows, FileWindows, OverlapGrid, overlap_grid

#: Most tie-point windows of a default grid (global registration).
MAX_DEFAULT_WINDOWS = 400
#: Overlaps with more pixels are measured on windows read from the files
#: (bounded memory); smaller ones are read at once (faster, e.g. JPEG 2000,
#: where window reads decode tiles again: 94 s instead of 12 s measured on
#: the Sentinel-2 pair).
LAZY_PIXELS = 4096 * 4096

__all__ = ['GeoRegistration', 'register_rasters', 'reproject_raster']


@dataclass(frozen=True, eq=False)
class GeoRegistration:
    """The outcome of :func:`register_rasters`.

    Attributes
    ----------
    model : str
        Transform model.
    moving_from_fixed, fixed_from_moving : ndarray, shape (3, 3)
        Map-coordinate transforms (see the module conventions).
    reference, target : Georef
        Georeferencing of the scenes (the target's after any reprojection).
    tie_points : TiePoints
        The windowed measurements behind the estimate.
    engine : RegistrationResult or None
        The engine run that refined the estimate.
    seconds : float
        Wall time.
    target_source : GeoRaster or str
        The target pixels (a path, or in memory after reprojection).
    assessment : Assessment or None
        The verdict from the tie points (:mod:`napari_coreg.geo.trust`);
        ``verdict``, ``verdict_reasons`` and ``uncertainty_px`` read it, and
        :func:`~napari_coreg.quality.hold_reasons` holds a failed result.
    """

    model: str
    moving_from_fixed: NDArray[np.float64]
    fixed_from_moving: NDArray[np.float64]
    reference: Georef
    target: Georef
    tie_points: TiePoints
    engine: Any
    seconds: float
    target_source: GeoRaster | str
    assessment: Assessment | None = None
    extra: dict = field(default_factory=dict)

    #: The similarity behind ``metric_before`` / ``metric_after``: the median
    #: NCC of the matching windows (orientation similarity for
    #: ``similarity='gradient'``).
    metric = 'ncc'

    @property
    def verdict(self) -> str | None:
        """``'ok'``, ``'suspect'`` or ``'failed'`` (see :mod:`.trust`)."""
        return None if self.assessment is None else self.assessment.verdict

    @property
    def verdict_reasons(self) -> tuple[str, ...]:
        """Short sentences behind the verdict, each saying what to do."""
        return () if self.assessment is None else self.assessment.reasons

    @property
    def uncertainty_px(self) -> float | None:
        """95% bound on the shift (target px); ``None`` when failed or unchecked."""
        return None if self.assessment is None else self.assessment.uncertainty_px

    @property
    def metric_before(self) -> float:
        """Median NCC of the matching windows at the georeferenced position."""
        return _median_of(self.tie_points, self.tie_points.ncc_before)

    @property
    def metric_after(self) -> float:
        """Median NCC of the matching windows after the shift."""
        return _median_of(self.tie_points, self.tie_points.ncc)

    @property
    def shift_map(self) -> NDArray[np.float64]:
        """``(dy, dx)`` in map units at the overlap centre: true = georef + shift."""
        centre = self.extra.get('centre_map', np.zeros(2))
        return apply_matrix(self.fixed_from_moving, [centre])[0] - centre

    @property
    def shift_px(self) -> NDArray[np.float64]:
        """``(d_row, d_col)`` in target pixels (AROSICS' x/y shift, numpy order)."""
        linear = self.target.world_from_px[:2, :2]
        return np.linalg.solve(linear, self.shift_map)

    @property
    def corrected_georef(self) -> Georef:
        """The target's georeferencing with the shift applied (translation)."""
        if self.model != 'translation':
            raise ValueError(
                f"a '{self.model}' correction needs resampling: use "
                'write_corrected, which resamples onto the reference grid'
            )
        return self.target.moved(tuple(self.shift_map))

    def summary(self) -> str:
        """One line for terminals and logs."""
        dy, dx = self.shift_map
        dr, dc = self.shift_px
        tie = self.tie_points
        return (
            f'{self.model}: map shift dx={dx:+.2f} dy={dy:+.2f} '
            f'(target px d_row={dr:+.3f} d_col={dc:+.3f}); '
            f'{tie.n_valid}/{len(tie)} valid tie points; {self.seconds:.1f} s; '
            f'verdict {self.verdict}'
        )

    def assess_local(self, local: ShiftModel) -> GeoRegistration:
        """A copy judged as the local correction ``local`` through its tie points."""
        from .trust import assess_tie_points

        tie = self.tie_points
        residual = local(tie.points[tie.valid]) - tie.shift_px[tie.valid]
        assessment = assess_tie_points(
            tie, residual, local.kind, self.extra['overlap'], fit_px=local.rmse
        )
        return replace(self, assessment=assessment)

    def write(self, path, **kwargs):
        """Write the corrected target, see :func:`~napari_coreg.geo.write_corrected`."""
        from .write import write_corrected

        return write_corrected(self, path, **kwargs)


def _median_of(tie: TiePoints, values: NDArray) -> float:
    return float(np.median(values[tie.valid])) if tie.n_valid else float('nan')


def reproject_raster(source: GeoRaster | str, georef_to: Georef) -> GeoRaster:
    """Reproject a scene into another CRS at about its own resolution."""
    require_rasterio()
    from affine import Affine
    from rasterio.crs import CRS
    from rasterio.warp import Resampling, calculate_default_transform, reproject

    from .raster import read_raster

    raster = source if isinstance(source, GeoRaster) else read_raster(source)
    geo = raster.georef
    src_crs, dst_crs = CRS.from_wkt(geo.crs_wkt), CRS.from_wkt(georef_to.crs_wkt)
    rows, cols = geo.shape
    left, bottom, right, top = (
        geo.bounds()[1],
        geo.bounds()[0],
        geo.bounds()[3],
        geo.bounds()[2],
    )
    transform, width, height = calculate_default_transform(
        src_crs, dst_crs, cols, rows, left=left, bottom=bottom, right=right, top=top
    )
    data = raster.data if raster.data.ndim == 3 else raster.data[None]
    nodata = geo.nodata if geo.nodata is not None else 0
    out = np.full((data.shape[0], height, width), nodata, dtype=data.dtype)
    for i in range(data.shape[0]):
        reproject(
            data[i],
            out[i],
            src_transform=Affine.from_gdal(*geo.geotransform),
            src_crs=src_crs,
            src_nodata=nodata,
            dst_transform=transform,
            dst_crs=dst_crs,
            dst_nodata=nodata,
            resampling=Resampling.bilinear,
        )
    new = Georef(
        shape=(height, width),
        geotransform=tuple(transform.to_gdal()),
        crs_wkt=georef_to.crs_wkt,
        epsg=georef_to.epsg,
        nodata=nodata,
        band_names=geo.band_names,
        path=None,
    )
    return GeoRaster(data=out if raster.data.ndim == 3 else out[0], georef=new)


def _coarse_start(
    ref_src: GeoRaster | str,
    tgt_src: GeoRaster | str,
    grid: OverlapGrid,
    ref_geo: Georef,
    tgt_geo: Georef,
    band: int,
    ref_nodata: float | None,
    tgt_nodata: float | None,
    window: int,
    similarity: str,
) -> NDArray[np.float64]:
    """Map shift ``(dy, dx)`` of the coarse estimate, in whole target pixels."""
    from .coarse import coarse_offset

    offset = coarse_offset(
        ref_src, tgt_src, grid, tgt_geo, band=band,
        ref_nodata=ref_nodata, tgt_nodata=tgt_nodata, similarity=similarity,
    )  # fmt: skip
    if offset is None or np.abs(offset).max() <= window / 8:
        return np.zeros(2)
    shift_map = ref_geo.world_from_px[:2, :2] @ offset
    target_px = np.round(np.linalg.solve(tgt_geo.world_from_px[:2, :2], shift_map))
    return tgt_geo.world_from_px[:2, :2] @ target_px


def _default_spacing(ref_geo: Georef, tgt_geo: Georef, window: int) -> int:
    """Grid spacing: 3/4 of a window, coarser for large overlaps."""
    rows, cols = overlap_grid(ref_geo, tgt_geo).shape
    return int(
        max(window * 3 // 4, np.ceil(np.sqrt(rows * cols / MAX_DEFAULT_WINDOWS)))
    )


def _window_mask(overlap: Overlap, tie: TiePoints) -> NDArray[np.bool_]:
    """Pixels of the valid tie-point windows (where the scenes agree)."""
    mask = np.zeros(overlap.valid.shape, bool)
    half = tie.window // 2
    for (r, c), ok in zip(tie.points.astype(int), tie.valid, strict=True):
        if ok:
            mask[r - half : r - half + tie.window, c - half : c - half + tie.window] = (
                True
            )
    return mask & overlap.valid


def register_rasters(
    reference: RasterInput,
    target: RasterInput,
    model: str = 'translation',
    metric: str = 'ncc',
    *,
    band: int = 1,
    window: int = 256,
    spacing: int | None = None,
    refine: bool = False,
    engine: bool = False,
    coarse: bool = True,
    similarity: str = 'intensity',
    reproject: bool = False,
    nodata: float | str | None = 'auto',
    backend: str = 'torch',
    progress: Callable[[int, int], None] | None = None,
    client: Any = None,
    **settings,
) -> GeoRegistration:
    """Co-register a target scene onto a reference scene in map coordinates.

    A grid of windows over the overlap measures the residual shift by phase
    correlation (optionally refined by the engine); unreliable windows
    (clouds, changes, nodata) are rejected, and ``model`` is fitted to the
    remaining tie points (the median shift for a translation). With
    ``engine=True`` the registration engine then refines the estimate over
    the reliable windows in map units (spacing, origin and direction from
    the geotransform), starting where the tie points put it.

    Parameters
    ----------
    reference, target : str, path-like, GeoRaster or (array, Georef)
        The scenes (any raster GDAL opens).
    model : str
        ``'translation'`` (AROSICS' global mode: the correction only moves
        the geotransform), ``'rigid'``, ``'similarity'``, ``'affine'``.
    metric : str
        Engine metric: ``'ncc'`` for the same sensor, ``'mi'`` otherwise.
    band : int
        1-based band of both scenes used for matching.
    window : int
        Window size (pixels) of the tie points.
    spacing : int, optional
        Grid spacing (reference pixels); default ``window * 3 // 4``, or
        coarser so that at most ``MAX_DEFAULT_WINDOWS`` windows cover a large
        overlap.
    refine : bool
        Refine each window's phase-correlation shift with the engine.
    engine : bool
        Refine the fitted model with :func:`napari_coreg.register` over the
        reliable windows (measured on the Sentinel-2 pair: the whole-overlap
        optimum moves by up to 0.2 px with the mask, so the tie-point
        estimate is the default).
    coarse : bool
        First align reduced-resolution scenes (overviews; median of coarse
        tie points) and, when the georeferencing is off by more than an
        eighth of a window, start the windows there.
    similarity : {'intensity', 'gradient'}
        How windows are matched: pixel values (same sensor), or gradient
        orientations (different sensors, e.g. Sentinel-1 radar onto
        Sentinel-2 optical; contrast reversals and non-monotone intensity
        relations do not matter).
    reproject : bool
        Reproject a target in another CRS into the reference CRS (bilinear,
        in memory) instead of refusing it.
    nodata : float, 'auto' or None
        Value without data in both scenes; ``'auto'`` takes the files' nodata
        or, when absent, 0 if a corner pixel is 0.
    backend : str
        Engine backend.
    progress : callable, optional
        Called as ``progress(done, total)`` while tie points are measured.
    client : dask.distributed.Client or 'local', optional
        Measure the tie-point windows as dask.distributed tasks (see
        :func:`~napari_coreg.geo.measure_tie_points`); threads otherwise.
    **settings
        Engine settings (``levels``, ``iterations``, ...).

    Returns
    -------
    GeoRegistration
        With a verdict (``'ok'``, ``'suspect'``, ``'failed'`` and reasons,
        :mod:`napari_coreg.geo.trust`); where too few windows match for
        ``model`` (noise, unrelated scenes, clouds) it is ``'failed'`` and the
        correction the identity.

    Raises
    ------
    ValueError
        When the scenes lie in different CRS (and ``reproject`` is False) or
        do not overlap.
    """
    from .trust import assess_tie_points, model_residuals, overlap_fraction

    started = time.perf_counter()
    if model not in ('translation', 'rigid', 'similarity', 'affine'):
        raise ValueError(
            f"model {model!r} is not available for rasters: use 'translation', "
            "'rigid', 'similarity' or 'affine'"
        )
    ref_src, tgt_src = as_source(reference, 'reference'), as_source(target, 'target')
    ref_geo, tgt_geo = georef_of(ref_src), georef_of(tgt_src)
    if not ref_geo.same_crs(tgt_geo):
        if not reproject:
            raise ValueError(
                f'the target CRS (EPSG {tgt_geo.epsg}) differs from the reference '
                f'CRS (EPSG {ref_geo.epsg}): pass reproject=True to reproject it '
                f'(or run gdalwarp -t_srs EPSG:{ref_geo.epsg} first)'
            )
        tgt_src = reproject_raster(tgt_src, ref_geo)
        tgt_geo = tgt_src.georef
    if nodata == 'auto':
        ref_nodata = auto_nodata(ref_src, ref_geo)
        tgt_nodata = auto_nodata(tgt_src, tgt_geo)
    else:
        ref_nodata = tgt_nodata = nodata
    spacing = spacing or _default_spacing(ref_geo, tgt_geo, window)
    grid = overlap_grid(ref_geo, tgt_geo)
    coarse_map = np.zeros(2)
    if coarse:
        coarse_map = _coarse_start(
            ref_src, tgt_src, grid, ref_geo, tgt_geo, band, ref_nodata, tgt_nodata,
            window, similarity,
        )  # fmt: skip
    moved_geo = tgt_geo.moved(tuple(coarse_map))
    if np.any(coarse_map):
        grid = overlap_grid(ref_geo, moved_geo)
    lazy = (
        grid.exact
        and isinstance(ref_src, str)
        and isinstance(tgt_src, str)
        and grid.shape[0] * grid.shape[1] > LAZY_PIXELS
    )
    overlap = None
    if lazy and not engine:  # windows read from the files: bounded memory
        windows = FileWindows(
            ref_src,
            tgt_src,
            grid,
            band=band,
            ref_nodata=ref_nodata,
            tgt_nodata=tgt_nodata,
        )
    else:
        overlap = overlap_of(
            ref_src,
            tgt_src,
            band=band,
            ref_nodata=ref_nodata,
            tgt_nodata=tgt_nodata,
            target_georef=moved_geo,
        )
        windows = ArrayWindows(
            overlap.reference, overlap.target, overlap.valid, overlap.georef
        )
    tie = measure_tie_points(
        windows,
        spacing=spacing,
        window=min(window, *grid.shape),
        refine=refine,
        metric=metric,
        progress=progress,
        similarity=similarity,
        client=client,
    )
    fixed_from_moving_px, median_px = _fit(tie, model)
    w = grid.georef.world_from_px
    fixed_from_moving = w @ fixed_from_moving_px @ np.linalg.inv(w)
    result = None
    overlap_share = overlap_fraction(grid.georef, ref_geo, tgt_geo)
    assessment = assess_tie_points(
        tie, model_residuals(tie, fixed_from_moving_px), model, overlap_share
    )
    if engine and assessment.verdict != 'failed':
        result = _refine_globally(
            overlap, tie, fixed_from_moving, model, metric, backend, settings
        )
        fixed_from_moving = result.fixed_from_moving
    # measured from where the coarse estimate moved the target
    fixed_from_moving = fixed_from_moving @ homogeneous(np.eye(2), coarse_map)
    centre_px = (np.array(grid.shape) - 1) / 2
    return GeoRegistration(
        model=model,
        moving_from_fixed=np.linalg.inv(fixed_from_moving),
        fixed_from_moving=fixed_from_moving,
        reference=replace(ref_geo, nodata=ref_nodata),
        target=replace(tgt_geo, nodata=tgt_nodata),
        tie_points=tie,
        engine=result,
        seconds=time.perf_counter() - started,
        target_source=tgt_src,
        assessment=assessment,
        extra={
            'overlap': overlap_share,
            'centre_map': apply_matrix(w, [centre_px])[0],
            'overlap_georef': grid.georef,
            'overlap_exact': grid.exact,
            'windows_from_files': overlap is None,
            'tie_point_median_px': median_px,
            'coarse_shift_map': coarse_map,
            'measured_target_georef': replace(moved_geo, nodata=tgt_nodata),
        },
    )


def _fit(tie: TiePoints, model: str) -> tuple[NDArray, NDArray]:
    """``fixed_from_moving`` in overlap pixels, and the median shift.

    Without enough matching windows for ``model`` the identity (no
    correction; the verdict fails) and a NaN median.
    """
    from .local import fit_matrix
    from .trust import MODEL_POINTS

    if tie.n_valid < MODEL_POINTS[model]:
        return np.eye(3), np.full(2, np.nan)
    median_px = tie.median_shift_px()
    points = tie.points[tie.valid]
    shifts = tie.shift_px[tie.valid]
    if model == 'translation':
        return homogeneous(np.eye(2), median_px), median_px
    return fit_matrix(points - shifts, points, model), median_px


def _refine_globally(
    overlap: Overlap,
    tie: TiePoints,
    fixed_from_moving: NDArray,
    model: str,
    metric: str,
    backend: str,
    settings: dict,
):
    """Engine registration in map units over the reliable windows."""
    from ..api import register

    mask = _window_mask(overlap, tie)
    grid = overlap.georef.grid
    geometry = {
        f'{who}_{what}': value
        for who in ('fixed', 'moving')
        for what, value in (
            ('spacing', grid.spacing),
            ('origin', grid.origin),
            ('direction', grid.direction),
        )
    }
    return register(
        overlap.reference,
        overlap.target,
        model=model,
        metric=metric,
        backend=backend,
        fixed_mask=mask,
        moving_mask=mask,
        initial=np.linalg.inv(fixed_from_moving),
        **geometry,
        **settings,
    )
