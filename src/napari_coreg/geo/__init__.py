"""Georeferenced rasters: read, register in map coordinates, write corrected.

Needs the optional extra ``[geo]`` (rasterio); rasterio, torch and SimpleITK
are imported only when a function needs them.

Conventions: world coordinates are the CRS's map coordinates in numpy axis
order ``(y, x)``; pixel centres at integer indices; signs from the
geotransform (see :mod:`napari_coreg.geo.georef`). Shifts are target ->
reference: true position = georeferenced position + shift.
"""

from .align import GeoRegistration, register_rasters, reproject_raster
from .georef import Georef, geotransform_from_matrix
from .local import ShiftModel, fit_matrix, fit_shift_model
from .raster import (
    GeoRaster,
    RasterLevel,
    is_georeferenced,
    open_levels,
    read_georef,
    read_raster,
)
from .tiepoints import TiePoints, measure_tie_points, reject_outliers
from .write import write_corrected, write_geotiff

__all__ = [
    'GeoRaster',
    'GeoRegistration',
    'Georef',
    'RasterLevel',
    'ShiftModel',
    'TiePoints',
    'fit_matrix',
    'fit_shift_model',
    'geotransform_from_matrix',
    'is_georeferenced',
    'measure_tie_points',
    'open_levels',
    'read_georef',
    'read_raster',
    'register_rasters',
    'reject_outliers',
    'reproject_raster',
    'write_corrected',
    'write_geotiff',
]
