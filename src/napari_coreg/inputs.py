"""Turn user input (numpy, dask, SimpleITK images) into checked float images."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .transforms import Grid

__all__ = [
    'Image',
    'as_image',
    'as_mask',
    'luminance',
    'match_histogram',
    'normalise_intensities',
]

#: Weights of ITU-R BT.709 luminance, as scikit-image's ``rgb2gray``.
_LUMINANCE = np.array([0.2125, 0.7154, 0.0721], dtype=np.float32)


@dataclass(frozen=True, eq=False)
class Image:
    """A checked image: its data, its luminance and its grid."""

    data: NDArray  # the user's data as an array, channels (if any) last
    gray: NDArray[np.float32]
    grid: Grid


def _is_sitk_image(data: object) -> bool:
    return type(data).__module__.startswith('SimpleITK') and hasattr(data, 'GetSpacing')


def _from_sitk(data) -> tuple[NDArray, Grid]:
    """Array and grid of a SimpleITK image, in numpy axis order."""
    import SimpleITK as sitk

    from ._sitk import grid_from_image

    return sitk.GetArrayFromImage(data), grid_from_image(data)


def _channels_last(array: NDArray, channel_axis: int | None) -> tuple[NDArray, int]:
    """The array with channels (if any) last, and its number of spatial axes."""
    if channel_axis is not None:
        return np.moveaxis(array, channel_axis, -1), array.ndim - 1
    is_rgb = array.ndim == 3 and array.shape[-1] in (3, 4) and min(array.shape[:2]) > 4
    return array, array.ndim - 1 if is_rgb else array.ndim


def luminance(array: NDArray, spatial_ndim: int) -> NDArray[np.float32]:
    """Single-channel float32 version of an image with channels (if any) last."""
    if array.ndim == spatial_ndim:
        return np.asarray(array, dtype=np.float32)
    channels = array.shape[-1]
    if channels in (3, 4):
        rgb = np.asarray(array[..., :3], dtype=np.float32)
        return rgb @ _LUMINANCE
    return np.asarray(array, dtype=np.float32).mean(axis=-1)


def as_image(
    data: ArrayLike,
    name: str,
    *,
    spacing: Sequence[float] | None = None,
    origin: Sequence[float] | None = None,
    direction: ArrayLike | None = None,
    channel_axis: int | None = None,
) -> Image:
    """Check one input image and compute its single-channel float32 version.

    Parameters
    ----------
    data : array_like or SimpleITK.Image
        2D or 3D image, optionally with a channel axis (RGB/RGBA as the last
        axis of a 2D image is detected; give ``channel_axis`` otherwise).
        Dask arrays are computed. A SimpleITK image keeps its spacing, origin
        and direction.
    name : str
        ``'fixed'`` or ``'moving'``, for error messages.
    spacing, origin : sequence of float, optional
        Physical geometry (numpy order); overrides a SimpleITK image's.
    direction : array_like, shape (D, D), optional
        Physical directions of the array axes (columns, numpy order);
        overrides a SimpleITK image's.
    channel_axis : int, optional
        Axis of ``data`` that holds channels.

    Raises
    ------
    ValueError
        For empty, 1D, >3D, non-numeric, NaN/inf or constant images.
    """
    grid = None
    if _is_sitk_image(data):
        if data.GetNumberOfComponentsPerPixel() > 1 and channel_axis is None:
            channel_axis = -1
        array, grid = _from_sitk(data)
    else:
        array = np.asarray(data)
    if array.dtype == bool or not np.issubdtype(array.dtype, np.number):
        raise ValueError(
            f'{name} image has dtype {array.dtype}: pass a numeric image '
            '(integer or float)'
        )
    if np.iscomplexobj(array):
        raise ValueError(f'{name} image is complex: pass its magnitude (np.abs)')
    if array.size == 0:
        raise ValueError(f'{name} image is empty (shape {array.shape})')
    array, spatial_ndim = _channels_last(array, channel_axis)
    spatial = array.shape[:spatial_ndim]
    if len(spatial) not in (2, 3):
        raise ValueError(
            f'{name} image has {len(spatial)} spatial dimensions (shape '
            f'{np.shape(data)}): pass a 2D or 3D image; for RGB or other '
            'channels give channel_axis=; for stacks use register_stack'
        )
    if min(spatial) < 4:
        raise ValueError(
            f'{name} image of shape {spatial} is too small: every axis needs '
            'at least 4 pixels'
        )
    gray = luminance(array, spatial_ndim)
    if not np.isfinite(gray).all():
        raise ValueError(
            f'{name} image contains NaN or infinite values: replace them, '
            'e.g. np.nan_to_num(image), and pass a mask of the valid pixels'
        )
    if gray.min() == gray.max():
        raise ValueError(
            f'{name} image is constant (all {gray.flat[0]}): it has no '
            'structure to register'
        )
    if (
        grid is None
        or spacing is not None
        or origin is not None
        or direction is not None
    ):
        base = grid or Grid(spatial)
        grid = Grid(
            spatial,
            spacing=tuple(spacing) if spacing is not None else base.spacing,
            origin=tuple(origin) if origin is not None else base.origin,
            direction=direction if direction is not None else base.direction,
        )
    return Image(data=array, gray=gray, grid=grid)


def as_mask(
    mask: ArrayLike | None, shape: tuple[int, ...], name: str
) -> NDArray | None:
    """Check a mask against its image's spatial shape."""
    if mask is None:
        return None
    mask = _from_sitk(mask)[0] if _is_sitk_image(mask) else np.asarray(mask)
    if mask.shape != tuple(shape):
        raise ValueError(
            f'{name} has shape {mask.shape} but its image has spatial shape '
            f'{tuple(shape)}: pass a mask of the same shape'
        )
    mask = mask.astype(bool)
    if mask.sum() < 16:
        raise ValueError(
            f'{name} selects {int(mask.sum())} pixels: it needs at least 16'
        )
    return mask


def normalise_intensities(gray: NDArray[np.float32]) -> NDArray[np.float32]:
    """Rescale to about [0, 1] by robust percentiles (0.5 and 99.5).

    Percentiles are taken from at most about a million pixels (a regular
    subsample), so large images cost little.
    """
    step = max(1, gray.size // 1_000_000)
    sample = gray.reshape(-1)[::step]
    low, high = np.percentile(sample, [0.5, 99.5])
    if high <= low:
        low, high = float(gray.min()), float(gray.max())
    return ((gray - low) / (high - low)).astype(np.float32)


def _quantiles(image: NDArray[np.float32], levels: NDArray) -> NDArray:
    step = max(1, image.size // 1_000_000)
    return np.quantile(image.reshape(-1)[::step], levels)


def match_histogram(
    moving: NDArray[np.float32], fixed: NDArray[np.float32], n_quantiles: int = 1024
) -> NDArray[np.float32]:
    """Map ``moving``'s intensities so its histogram matches ``fixed``'s.

    A monotone map through ``n_quantiles`` quantiles (from at most about a
    million pixels each), so a gamma or contrast change between two
    acquisitions no longer biases difference metrics (ITK's
    HistogramMatchingImageFilter practice). Use only for images of the same
    modality.
    """
    levels = np.linspace(0, 1, n_quantiles)
    source = _quantiles(moving, levels)
    target = _quantiles(fixed, levels)
    source, unique = np.unique(source, return_index=True)
    return np.interp(moving, source, target[unique]).astype(np.float32)
