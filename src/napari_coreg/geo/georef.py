"""Georeferencing of a raster: CRS, geotransform, nodata, and its physical grid.

Conventions
-----------
- World coordinates are the CRS's map coordinates in numpy axis order:
  ``(y, x)`` (northing, easting for a projected CRS), rows first.
- Pixel centres are at integer indices (napari's convention); GDAL's
  geotransform refers to pixel corners, so the centre of pixel ``(r, c)`` is
  ``x = c0 + a (c + 0.5) + b (r + 0.5)``, ``y = f0 + d (c + 0.5) + e (r + 0.5)``.
- Signs come from the geotransform: a north-up raster has a negative row
  spacing ``e``; its :class:`~napari_coreg.transforms.Grid` has spacing
  ``(|e|, a)`` and direction ``diag(-1, 1)``, and its napari layer has
  ``scale = (e, a)`` and ``translate`` = the map position of pixel ``(0, 0)``'s
  centre.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..transforms import Grid, apply_matrix, homogeneous

__all__ = ['Georef', 'geotransform_from_matrix']


def geotransform_from_matrix(world_from_px: NDArray) -> tuple[float, ...]:
    """GDAL geotransform of a ``(y, x) <- (row, col)`` pixel-centre matrix.

    The inverse of :attr:`Georef.world_from_px`.
    """
    m = np.asarray(world_from_px, dtype=np.float64)
    e, d, b, a = m[0, 0], m[0, 1], m[1, 0], m[1, 1]
    f0 = m[0, 2] - (d + e) / 2
    c0 = m[1, 2] - (a + b) / 2
    return (float(c0), float(a), float(b), float(f0), float(d), float(e))


@dataclass(frozen=True, eq=False)
class Georef:
    """Where a raster lies on the Earth, and what its pixels mean.

    Parameters
    ----------
    shape : tuple of int
        ``(rows, cols)`` of one band.
    geotransform : tuple of 6 float
        GDAL order ``(x0, a, b, y0, d, e)``: ``x = x0 + a col + b row``,
        ``y = y0 + d col + e row`` at pixel corners.
    crs_wkt : str
        Coordinate reference system as WKT (empty when unknown).
    epsg : int, optional
        EPSG code of the CRS when it has one.
    nodata : float, optional
        Value of pixels without data.
    band_names : tuple of str
        One name per band (GDAL descriptions, or ``band 1``, ...).
    path : str, optional
        File the raster came from.
    """

    shape: tuple[int, int]
    geotransform: tuple[float, ...]
    crs_wkt: str = ''
    epsg: int | None = None
    nodata: float | None = None
    band_names: tuple[str, ...] = ()
    path: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        gt = tuple(float(v) for v in self.geotransform)
        if len(gt) != 6 or not np.all(np.isfinite(gt)):
            raise ValueError(
                f'geotransform must be 6 finite numbers (GDAL order x0, a, b, '
                f'y0, d, e), got {self.geotransform}'
            )
        if abs(gt[1] * gt[5] - gt[2] * gt[4]) < 1e-300:
            raise ValueError(
                f'geotransform {gt} is singular (zero pixel size): the raster '
                'is not georeferenced; pass its real geotransform'
            )
        object.__setattr__(self, 'geotransform', gt)
        object.__setattr__(self, 'shape', tuple(int(n) for n in self.shape))
        object.__setattr__(self, 'band_names', tuple(self.band_names))

    # -- geometry ------------------------------------------------------------
    @property
    def world_from_px(self) -> NDArray[np.float64]:
        """``(y, x, 1) <- (row, col, 1)`` for pixel centres (numpy order)."""
        x0, a, b, y0, d, e = self.geotransform
        return homogeneous([[e, d], [b, a]], [y0 + (d + e) / 2, x0 + (a + b) / 2])

    @property
    def north_up(self) -> bool:
        """Whether the geotransform has no rotation or shear terms."""
        return self.geotransform[2] == 0 and self.geotransform[4] == 0

    @property
    def pixel_size(self) -> tuple[float, float]:
        """Distance between pixel centres along rows and columns (map units)."""
        linear = self.world_from_px[:2, :2]
        norms = np.linalg.norm(linear, axis=0)
        return float(norms[0]), float(norms[1])

    @property
    def grid(self) -> Grid:
        """The physical :class:`Grid` (world = map coordinates, numpy order).

        Raises
        ------
        ValueError
            For a sheared geotransform, which a grid (orthonormal directions
            times spacings) cannot hold.
        """
        linear = self.world_from_px[:2, :2]
        spacing = np.linalg.norm(linear, axis=0)
        direction = linear / spacing
        if not np.allclose(direction.T @ direction, np.eye(2), atol=1e-6):
            raise ValueError(
                f'geotransform {self.geotransform} is sheared: warp the raster '
                'to a north-up grid first (e.g. gdalwarp or rasterio.warp)'
            )
        return Grid(
            self.shape,
            spacing=tuple(spacing),
            origin=tuple(self.world_from_px[:2, 2]),
            direction=direction,
        )

    def napari_geometry(self) -> dict[str, Any]:
        """Napari layer keywords placing pixels at their map coordinates.

        ``scale`` and ``translate`` for north-up rasters (``scale[0]`` is
        negative when north is up), ``affine`` for rotated or sheared ones.
        """
        m = self.world_from_px
        if self.north_up:
            return {
                'scale': (float(m[0, 0]), float(m[1, 1])),
                'translate': (float(m[0, 2]), float(m[1, 2])),
            }
        return {'affine': m}

    def bounds(self) -> tuple[float, float, float, float]:
        """``(ymin, xmin, ymax, xmax)`` of the pixel area (corners)."""
        rows, cols = self.shape
        corners = np.array(
            [
                [-0.5, -0.5],
                [-0.5, cols - 0.5],
                [rows - 0.5, -0.5],
                [rows - 0.5, cols - 0.5],
            ]
        )
        world = apply_matrix(self.world_from_px, corners)
        return (*world.min(axis=0), *world.max(axis=0))

    def same_crs(self, other: Georef) -> bool:
        """Whether two rasters share their CRS (EPSG code, else WKT)."""
        if self.epsg is not None and other.epsg is not None:
            return self.epsg == other.epsg
        if self.crs_wkt and other.crs_wkt:
            from rasterio.crs import CRS

            return CRS.from_wkt(self.crs_wkt) == CRS.from_wkt(other.crs_wkt)
        return not self.crs_wkt and not other.crs_wkt

    def moved(self, world_shift: tuple[float, float]) -> Georef:
        """A copy whose pixels lie ``world_shift`` = ``(dy, dx)`` further."""
        x0, a, b, y0, d, e = self.geotransform
        dy, dx = world_shift
        return replace(self, geotransform=(x0 + dx, a, b, y0 + dy, d, e))

    def with_matrix(self, world_from_px: NDArray, shape: tuple[int, int]) -> Georef:
        """A copy on another pixel grid (same CRS and nodata)."""
        return replace(
            self, geotransform=geotransform_from_matrix(world_from_px), shape=shape
        )

    def to_metadata(self) -> dict[str, Any]:
        """JSON-able description for layer metadata or sidecar files."""
        return {
            'crs_wkt': self.crs_wkt,
            'epsg': self.epsg,
            'geotransform': list(self.geotransform),
            'nodata': self.nodata,
            'band_names': list(self.band_names),
            'path': self.path,
            'shape': list(self.shape),
        }

    @classmethod
    def from_metadata(cls, meta: dict[str, Any]) -> Georef:
        """Inverse of :meth:`to_metadata`."""
        return cls(
            shape=tuple(meta['shape']),
            geotransform=tuple(meta['geotransform']),
            crs_wkt=meta.get('crs_wkt') or '',
            epsg=meta.get('epsg'),
            nodata=meta.get('nodata'),
            band_names=tuple(meta.get('band_names') or ()),
            path=meta.get('path'),
        )

    def valid_mask(self, data: NDArray) -> NDArray[np.bool_]:
        """Pixels with data: not ``nodata`` (in any band) and finite."""
        data = np.asarray(data)
        mask = np.ones(data.shape[-2:], dtype=bool)
        bands = data.reshape(-1, *data.shape[-2:])
        for band in bands:
            if np.issubdtype(band.dtype, np.floating):
                mask &= np.isfinite(band)
            if self.nodata is not None and not np.isnan(self.nodata):
                mask &= band != self.nodata
        return mask
