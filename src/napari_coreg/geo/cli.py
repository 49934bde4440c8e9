"""``napari-coreg register REF TARGET`` for georeferenced rasters.

Called by :mod:`napari_coreg.cli` when both inputs carry georeferencing:
registers in map coordinates, writes the corrected GeoTIFF (``--out``), the
tie points (``--tie-points``) and the transform (``--transform``);
``--local SPACING`` corrects with a smooth displacement field through a
tie-point grid.
"""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ['add_arguments', 'is_geo_pair', 'run']


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of georeferenced registration."""
    group = parser.add_argument_group('georeferenced rasters (GeoTIFF, JPEG 2000, ...)')
    group.add_argument(
        '--local',
        type=int,
        metavar='SPACING',
        help='local correction: tie-point grid with this spacing (reference '
        'pixels), resampled through a smooth displacement field',
    )
    group.add_argument(
        '--tie-points', metavar='FILE', help='write the tie points (.csv or .geojson)'
    )
    group.add_argument(
        '--window', type=int, default=256, help='tie-point window size (pixels)'
    )
    group.add_argument(
        '--reproject',
        action='store_true',
        help='reproject a target in another CRS into the reference CRS',
    )
    group.add_argument(
        '--similarity',
        choices=['intensity', 'gradient'],
        default='intensity',
        help="window matching: 'gradient' (orientations) for different sensors",
    )
    group.add_argument(
        '--refine',
        action='store_true',
        help="refine every tie point with the engine's metric (slower)",
    )


def is_geo_pair(fixed: str, moving: str) -> bool:
    """Whether both files are rasters with georeferencing (and rasterio is here)."""
    from .raster import is_georeferenced

    return is_georeferenced(fixed) and is_georeferenced(moving)


def _progress(quiet: bool):
    if quiet:
        return None, None
    from tqdm import tqdm

    bar = tqdm(total=0, unit='window', desc='tie points', leave=False)

    def update(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)  # redraws at most every mininterval

    return update, bar


def run(args: argparse.Namespace):
    """Run the georeferenced registration for parsed ``register`` arguments.

    Returns
    -------
    GeoRegistration
        The result, judged as the local correction with ``--local``; the
        caller turns a held verdict into the exit status.
    """
    from . import fit_shift_model, register_rasters

    out = Path(args.out) if args.out else None
    extra = [Path(p) for p in (args.tie_points, args.transform) if p]
    existing = [str(p) for p in [out, *extra] if p is not None and p.exists()]
    if existing and not args.force:
        raise SystemExit(
            f'napari-coreg: {", ".join(existing)} already exist(s): choose another '
            'name or pass --force to overwrite'
        )
    model = args.model or 'translation'
    if model == 'homography':
        raise SystemExit(
            'napari-coreg: georeferenced rasters take translation, rigid, '
            'similarity or affine (or --local for a displacement field)'
        )
    update, bar = _progress(args.quiet)
    try:
        reg = register_rasters(
            args.fixed,
            args.moving,
            model=model,
            metric=args.metric,
            window=args.window,
            spacing=args.local,
            refine=args.refine,
            reproject=args.reproject,
            similarity=args.similarity,
            progress=update,
        )
        local = None
        if args.local and reg.verdict != 'failed':
            local = fit_shift_model(reg.tie_points, 'field')
            reg = reg.assess_local(local)
        if out is not None:
            reg.write(out, local=local, overwrite=args.force)
        if args.tie_points:
            reg.tie_points.write(args.tie_points, overwrite=args.force)
    except ValueError as error:
        raise SystemExit(f'napari-coreg: {error}') from None
    finally:
        if bar is not None:
            bar.close()
    if args.transform:
        from ..io import save_transform

        save_transform(
            args.transform,
            reg.moving_from_fixed,
            model=model,
            metadata={
                'units': 'map coordinates (y, x) of the reference CRS',
                'crs_epsg': reg.reference.epsg,
                'shift_map_yx': reg.shift_map.tolist(),
            },
        )
    if not args.quiet:
        print(reg.summary())
        print(*(f'  - {reason}' for reason in reg.verdict_reasons), sep='\n')
        if local is not None:
            print(
                f'local: displacement field through {reg.tie_points.n_valid} tie '
                f'points (fit RMSE {local.rmse:.3f} px)'
            )
        if out is not None:
            kind = (
                'geotransform moved, pixels unchanged'
                if (model == 'translation' and local is None)
                else 'resampled onto the reference grid'
            )
            print(f'wrote {out} ({kind})')
    return reg
