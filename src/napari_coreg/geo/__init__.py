"""Georeferenced rasters: read, register in map coordinates, write corrected.

Needs the optional extra ``[geo]`` (rasterio); rasterio, torch and SimpleITK
are imported only when a function needs them.

Conventions: world coordinates are the CRS's map coordinates in numpy axis
order ``(y, x)``; pixel centres at integer indices; signs from the
geotransform (see :mod:`napari_coreg.geo.georef`).
"""

from .georef import Georef, geotransform_from_matrix
from .raster import (
    GeoRaster,
    RasterLevel,
    is_georeferenced,
    open_levels,
    read_georef,
    read_raster,
)

__all__ = [
    'GeoRaster',
    'Georef',
    'RasterLevel',
    'geotransform_from_matrix',
    'is_georeferenced',
    'open_levels',
    'read_georef',
    'read_raster',
]
