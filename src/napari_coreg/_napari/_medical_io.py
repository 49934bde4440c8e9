"""Medical image files in napari: an npe2 reader and writer through SimpleITK.

Reads NIfTI (``.nii``, ``.nii.gz``), MetaImage (``.mha``, ``.mhd``), NRRD
(``.nrrd``, ``.nhdr``) and a folder holding a DICOM series; writes an image
layer back to ``.nii.gz``/``.nii``, ``.mha``/``.mhd`` or ``.nrrd``.

Geometry (numpy axis order, ITK's physical space, i.e. LPS millimetres):

- ``scale`` = spacing, ``translate`` = origin, and ``rotate`` = the direction
  matrix (columns: physical directions of the array axes), so napari's
  ``data2physical`` is exactly ITK's index-to-point map and world coordinates
  are the file's physical coordinates, also for oblique or flipped images
  (napari accepts a reflection as ``rotate``). The ``affine`` is left for
  registration results (``physical2world``).
- ``metadata['medical_image']`` keeps the file's geometry as read (numpy order
  and ITK ``(x, y, z)`` order), the pixel type, the source and the header
  entries.

The writer saves what the viewer shows: ``world_from_data = affine @
data2physical``. It must be a grid geometry (orthonormal directions times
positive spacings): a layer that is only scaled, translated, rotated or
flipped, or registered rigidly (write-back as ``affine``), saves exactly;
shear or a non-rigid affine cannot be stored in these headers and is refused
(resample the layer onto a grid first).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..transforms import Grid

__all__ = [
    'MEDICAL_KEY',
    'READ_SUFFIXES',
    'WRITE_SUFFIXES',
    'get_reader',
    'read_medical',
    'write_medical_image',
]

#: Layer metadata entry holding the file's geometry and header.
MEDICAL_KEY = 'medical_image'
READ_SUFFIXES = ('.nii', '.nii.gz', '.mha', '.mhd', '.nrrd', '.nhdr')
WRITE_SUFFIXES = ('.nii', '.nii.gz', '.mha', '.mhd', '.nrrd')
#: Header values longer than this are cut (some DICOM entries are huge).
MAX_HEADER_VALUE = 512


def _suffix_ok(path: str, suffixes: tuple[str, ...]) -> bool:
    return str(path).lower().endswith(suffixes)


def _dicom_series(folder: str) -> list[str]:
    import SimpleITK as sitk

    return list(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)) or ())


def get_reader(path: str | list[str]) -> Callable | None:
    """npe2 reader: our function for medical files and DICOM folders, or None."""
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    if not paths:
        return None
    for item in paths:
        item = os.fspath(item)
        if os.path.isdir(item):
            try:
                if not _dicom_series(item):
                    return None
            except RuntimeError:
                return None
        elif not _suffix_ok(item, READ_SUFFIXES):
            return None
    return read_medical


def _header(reader_or_image) -> dict[str, str]:
    header = {}
    for key in reader_or_image.GetMetaDataKeys():
        try:
            value = reader_or_image.GetMetaData(key)
        except (RuntimeError, UnicodeDecodeError):
            continue
        header[key] = value[:MAX_HEADER_VALUE]
    return header


def _layer(image, source: str, name: str, header: dict[str, str]) -> tuple:
    """LayerDataTuple of a SimpleITK image with its geometry."""
    import SimpleITK as sitk

    from .._sitk import grid_from_image

    ndim = image.GetDimension()
    components = image.GetNumberOfComponentsPerPixel()
    array = sitk.GetArrayFromImage(image)
    grid = grid_from_image(image)
    spacing, origin, direction = grid.spacing, grid.origin, grid.direction
    meta = {
        MEDICAL_KEY: {
            'source': source,
            'shape': list(array.shape[:ndim]),
            'spacing': list(spacing),
            'origin': list(origin),
            'direction': direction.tolist(),
            'itk_size': list(image.GetSize()),
            'itk_spacing': list(image.GetSpacing()),
            'itk_origin': list(image.GetOrigin()),
            'itk_direction': np.reshape(image.GetDirection(), (ndim, ndim)).tolist(),
            'pixel_type': image.GetPixelIDTypeAsString(),
            'components': components,
            'header': header,
        }
    }
    kwargs: dict[str, Any] = {
        'name': name,
        'scale': spacing,
        'translate': origin,
        'rotate': direction,
        'metadata': meta,
    }
    if components > 1:
        if ndim == 2 and components in (3, 4) and array.dtype == np.uint8:
            kwargs['rgb'] = True
        else:  # vector pixels: one layer per component, same geometry
            kwargs['channel_axis'] = ndim
    return array, kwargs, 'image'


def _name(path: str) -> str:
    name = Path(path).name
    for suffix in READ_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def read_medical(path: str | list[str]) -> list[tuple]:
    """Read medical image files (or DICOM series folders) into image layers.

    Parameters
    ----------
    path : str or list of str
        Files (``.nii``, ``.nii.gz``, ``.mha``, ``.mhd``, ``.nrrd``,
        ``.nhdr``) or folders with a DICOM series (every series found in a
        folder becomes a layer).

    Returns
    -------
    list of LayerDataTuple
        ``(array, {'scale', 'translate', 'rotate', 'metadata', 'name'},
        'image')`` with the geometry described in this module's notes.
    """
    import SimpleITK as sitk

    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    layers = []
    for item in map(os.fspath, paths):
        if os.path.isdir(item):
            for series in _dicom_series(item):
                files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(item, series)
                reader = sitk.ImageSeriesReader()
                reader.SetFileNames(files)
                reader.MetaDataDictionaryArrayUpdateOn()
                image = reader.Execute()
                header = {}
                if files:
                    header = {
                        key: reader.GetMetaData(0, key)[:MAX_HEADER_VALUE]
                        for key in reader.GetMetaDataKeys(0)
                    }
                name = f'{Path(item).name} {series[-8:]}'
                layers.append(_layer(image, item, name, header))
        else:
            reader = sitk.ImageFileReader()
            reader.SetFileName(item)
            reader.ReadImageInformation()
            header = _header(reader)
            layers.append(_layer(reader.Execute(), item, _name(item), header))
    return layers


def _world_from_data(meta: dict, ndim: int) -> np.ndarray:
    from napari.utils.transforms import CompositeAffine

    physical = CompositeAffine(
        scale=meta.get('scale', np.ones(ndim)),
        translate=meta.get('translate', np.zeros(ndim)),
        rotate=meta.get('rotate', np.eye(ndim)),
        shear=meta.get('shear', np.zeros(ndim * (ndim - 1) // 2)),
        ndim=ndim,
    ).affine_matrix
    affine = meta.get('affine')
    if affine is None:
        affine = np.eye(ndim + 1)
    elif hasattr(affine, 'affine_matrix'):
        affine = affine.affine_matrix
    return np.asarray(affine, dtype=np.float64) @ np.asarray(physical, dtype=np.float64)


def _grid_geometry(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Spacing, origin and direction (numpy order) of a world_from_data map."""
    ndim = matrix.shape[0] - 1
    linear = matrix[:ndim, :ndim]
    spacing = np.linalg.norm(linear, axis=0)
    if np.any(spacing <= 0) or not np.allclose(matrix[ndim], np.eye(ndim + 1)[ndim]):
        raise ValueError('the layer transform is degenerate or projective')
    direction = linear / spacing
    if not np.allclose(direction.T @ direction, np.eye(ndim), atol=1e-6):
        raise ValueError(
            'the layer has shear or a non-rigid affine, which NIfTI, NRRD and '
            'MetaImage headers cannot hold: resample it onto a grid first (the '
            "registration widget's 'resample' write-back) or reset its affine"
        )
    return spacing, matrix[:ndim, ndim], direction


def write_medical_image(path: str, data: Any, meta: dict) -> list[str]:
    """npe2 single-layer writer: save an image layer with its geometry.

    Parameters
    ----------
    path : str
        ``.nii.gz``, ``.nii``, ``.mha``, ``.mhd`` (with a ``.raw``) or
        ``.nrrd``.
    data : array_like
        The layer's data (level 0 of a multiscale layer).
    meta : dict
        The layer's attributes: ``scale``, ``translate``, ``rotate``,
        ``shear``, ``affine``, ``rgb``, ``multiscale``.

    Returns
    -------
    list of str
        The files written.

    Raises
    ------
    ValueError
        For another suffix, or a layer whose world placement is not a grid
        (shear, non-rigid affine).
    """
    import SimpleITK as sitk

    from .._sitk import image_from_array

    if not _suffix_ok(path, WRITE_SUFFIXES):
        raise ValueError(
            f'{Path(path).name}: medical images are written as '
            + ', '.join(WRITE_SUFFIXES)
        )
    if meta.get('multiscale'):
        data = data[0]
    array = np.asarray(data)
    rgb = bool(meta.get('rgb', False))
    ndim = array.ndim - 1 if rgb else array.ndim
    spacing, origin, direction = _grid_geometry(_world_from_data(meta, ndim))
    if array.dtype == bool:
        array = array.astype(np.uint8)
    image = image_from_array(
        array, Grid(array.shape[:ndim], spacing, origin, direction), vector=rgb
    )
    compress = str(path).lower().endswith(('.nii.gz', '.mha', '.nrrd'))
    sitk.WriteImage(image, str(path), useCompression=compress)
    written = [str(path)]
    if str(path).lower().endswith('.mhd'):
        written.append(str(Path(path).with_suffix('.raw')))
        if not os.path.exists(written[-1]):
            written.pop()
    return written
