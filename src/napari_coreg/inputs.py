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
    """A checked image: its data, its luminance, its grid and its valid pixels.

    ``valid`` is ``None`` when every pixel counts, else a boolean array of
    the spatial shape: ``False`` under a ``numpy.ma`` mask and at nodata
    sentinels (magnitude of at least :data:`NODATA_MAGNITUDE`). Invalid
    pixels of ``data`` and ``gray`` hold the median of the valid ones.
    """

    data: NDArray  # the user's data as an array, channels (if any) last
    gray: NDArray[np.float32]
    grid: Grid
    valid: NDArray[np.bool_] | None = None


#: Values of at least this magnitude are nodata sentinels (GDAL's float32
#: nodata -3.4e38, 1e30 fill values), never intensities: they are masked.
NODATA_MAGNITUDE = 1e30


def _is_sitk_image(data: object) -> bool:
    return type(data).__module__.startswith('SimpleITK') and hasattr(data, 'GetSpacing')


def _from_sitk(data) -> tuple[NDArray, Grid]:
    """Array and grid of a SimpleITK image, in numpy axis order."""
    import SimpleITK as sitk

    from ._sitk import grid_from_image

    return sitk.GetArrayFromImage(data), grid_from_image(data)


def _to_array(data: object, name: str) -> tuple[NDArray, NDArray | None]:
    """``data`` as a numpy array, and its ``numpy.ma`` mask (True = masked)."""
    module = type(data).__module__
    if module.startswith('torch') and hasattr(data, 'requires_grad'):
        if data.requires_grad:
            raise TypeError(
                f'{name} image is a torch tensor that requires grad: pass '
                'tensor.detach() (registration does not differentiate through '
                'its inputs)'
            )
        if data.device.type != 'cpu':
            raise TypeError(
                f'{name} image is a torch tensor on {data.device}: pass '
                'tensor.cpu() (or a numpy array)'
            )
        return data.numpy(), None
    if np.ma.isMaskedArray(data):
        masked = np.ma.getmaskarray(data)
        return np.asarray(np.ma.getdata(data)), masked if masked.any() else None
    if data is None or isinstance(data, (str, bytes, dict, set)):
        raise TypeError(
            f'{name} image must be an array (numpy, dask, SimpleITK, ...), got '
            f'{type(data).__name__}'
        )
    try:
        return np.asarray(data), None
    except (ValueError, TypeError) as error:
        raise ValueError(
            f'{name} image cannot be read as an array ({error}): pass a '
            'rectangular numeric array'
        ) from None


def _check_channel_axis(channel_axis: object, ndim: int, name: str) -> int:
    if isinstance(channel_axis, bool) or not isinstance(
        channel_axis, (int, np.integer)
    ):
        raise TypeError(
            f'channel_axis must be an integer axis or None, got {channel_axis!r}'
        )
    if not -ndim <= channel_axis < ndim:
        raise ValueError(
            f'channel_axis={channel_axis} is out of range for the {name} image '
            f'of {ndim} axes: give an axis from {-ndim} to {ndim - 1}'
        )
    return int(channel_axis)


def _refuse_ambiguous(shape: tuple[int, ...], name: str, declared_3d: bool) -> None:
    """Refuse a 3-axis array whose first or last axis looks like channels."""
    if len(shape) != 3:
        return
    first, last = shape[0], shape[-1]
    hint = (
        'name the channel axis with channel_axis= (registered on the '
        "luminance or the channels' mean)"
    )
    if last == 2 and min(shape[:2]) > 4:
        raise ValueError(
            f'{name} image of shape {shape} looks like a 2D image with 2 '
            f'channels last, too small for a volume (4+ planes): {hint}, '
            'e.g. channel_axis=-1'
        )
    if first in (2, 3) and min(shape[1:]) > 4:
        raise ValueError(
            f'{name} image of shape {shape} looks like a 2D image with '
            f'{first} channels first, too small for a volume (4+ planes): '
            f'{hint}, e.g. channel_axis=0'
        )
    if first == 4 and min(shape[1:]) > 4 and not declared_3d:
        raise ValueError(
            f'{name} image of shape {shape} is ambiguous: an RGBA image with '
            'channels first, or a volume of 4 planes? For RGBA give '
            'channel_axis=0; for a volume give its 3 spacings (e.g. '
            'fixed_spacing=(1, 1, 1))'
        )


def _channels_last(
    array: NDArray, channel_axis: int | None, name: str, declared_3d: bool
) -> tuple[NDArray, int]:
    """The array with channels (if any) last, and its number of spatial axes."""
    if channel_axis is not None:
        axis = _check_channel_axis(channel_axis, array.ndim, name)
        return np.moveaxis(array, axis, -1), array.ndim - 1
    is_rgb = array.ndim == 3 and array.shape[-1] in (3, 4) and min(array.shape[:2]) > 4
    if not is_rgb:
        _refuse_ambiguous(array.shape, name, declared_3d)
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


def _valid_pixels(
    array: NDArray, masked: NDArray | None, spatial_ndim: int
) -> NDArray[np.bool_] | None:
    """Spatial mask of pixels that are neither ``numpy.ma``-masked nor nodata."""
    valid = None
    if masked is not None:
        valid = ~masked
        if valid.ndim > spatial_ndim:
            valid = valid.all(axis=tuple(range(spatial_ndim, valid.ndim)))
    if (
        np.issubdtype(array.dtype, np.floating)
        and float(np.finfo(array.dtype).max) >= NODATA_MAGNITUDE
    ):
        with np.errstate(invalid='ignore'):
            sentinel = np.isfinite(array) & (np.abs(array) >= NODATA_MAGNITUDE)
        if sentinel.ndim > spatial_ndim:
            sentinel = sentinel.any(axis=tuple(range(spatial_ndim, sentinel.ndim)))
        if sentinel.any():
            valid = ~sentinel if valid is None else valid & ~sentinel
    return valid


def _filled(array: NDArray, valid: NDArray[np.bool_], name: str) -> NDArray:
    """A copy of ``array`` with invalid pixels set to the valid pixels' median."""
    if valid.sum() < 16:
        raise ValueError(
            f'{name} image has {int(valid.sum())} valid pixels (the rest are '
            'masked or nodata): it needs at least 16'
        )
    values = array[valid]
    if not np.isfinite(values).all():
        raise ValueError(
            f'{name} image contains NaN or infinite values: replace them, '
            'e.g. np.nan_to_num(image), and pass a mask of the valid pixels'
        )
    fill = np.median(values, axis=0).astype(array.dtype)
    out = np.array(array, copy=True)
    out[~valid] = fill
    return out


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
        and direction. A ``numpy.ma`` masked array keeps its mask (masked
        pixels do not count), and so do nodata sentinels (values of
        magnitude 1e30 or more, e.g. GDAL's -3.4e38). CPU torch tensors
        without grad are accepted.
    name : str
        ``'fixed'`` or ``'moving'``, for error messages.
    spacing, origin : sequence of float, optional
        Physical geometry (numpy order); overrides a SimpleITK image's.
    direction : array_like, shape (D, D), optional
        Physical directions of the array axes (columns, numpy order);
        overrides a SimpleITK image's. Copied, never modified.
    channel_axis : int, optional
        Axis of ``data`` that holds channels.

    Raises
    ------
    ValueError
        For empty, 1D, >3D, non-numeric, NaN/inf or constant images, and for
        3-axis arrays whose first or last axis looks like channels (2 to 4
        entries) when ``channel_axis`` is not given.
    TypeError
        For something that is not an array, a torch tensor that requires
        grad or lives on a GPU, or a non-integer ``channel_axis``.
    """
    grid = None
    masked = None
    if _is_sitk_image(data):
        if data.GetNumberOfComponentsPerPixel() > 1 and channel_axis is None:
            channel_axis = -1
        array, grid = _from_sitk(data)
    else:
        array, masked = _to_array(data, name)
    if array.dtype == bool or not np.issubdtype(array.dtype, np.number):
        raise ValueError(
            f'{name} image has dtype {array.dtype}: pass a numeric image '
            '(integer or float)'
        )
    if np.iscomplexobj(array):
        raise ValueError(f'{name} image is complex: pass its magnitude (np.abs)')
    if array.size == 0:
        raise ValueError(f'{name} image is empty (shape {array.shape})')
    declared_3d = grid is not None or any(
        value is not None and np.ndim(value) >= 1 and np.shape(value)[0] == 3
        for value in (spacing, origin, direction)
    )
    if masked is not None and masked.shape != array.shape:
        masked = np.broadcast_to(masked, array.shape)
    array, spatial_ndim = _channels_last(array, channel_axis, name, declared_3d)
    if masked is not None and channel_axis is not None:
        masked = np.moveaxis(masked, channel_axis, -1)
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
            'at least 4 pixels (if a short axis holds channels, give '
            'channel_axis=)'
        )
    valid = _valid_pixels(array, masked, spatial_ndim)
    if valid is not None:
        array = _filled(array, valid, name)
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
            direction=(
                np.array(direction, dtype=np.float64)  # a copy: never the caller's
                if direction is not None
                else base.direction
            ),
        )
    return Image(data=array, gray=gray, grid=grid, valid=valid)


def as_mask(
    mask: ArrayLike | None,
    shape: tuple[int, ...],
    name: str,
    valid: NDArray[np.bool_] | None = None,
) -> NDArray | None:
    """Check a mask against its image's spatial shape.

    Parameters
    ----------
    mask : array_like of bool, or None
        ``True`` (or 1) where pixels count; boolean, or numbers that are all
        0 or 1.
    shape : tuple of int
        Spatial shape of its image.
    name : str
        ``'fixed_mask'`` or ``'moving_mask'``, for error messages.
    valid : ndarray of bool, optional
        The image's own valid pixels (:attr:`Image.valid`), combined with
        ``mask``.

    Returns
    -------
    ndarray of bool or None
        ``None`` when every pixel counts.

    Raises
    ------
    ValueError
        For a mask of another shape, with values other than 0 and 1 (NaN
        included), or selecting fewer than 16 pixels.
    """
    if mask is None:
        if valid is None:
            return None
        return valid.copy()
    if _is_sitk_image(mask):
        mask = _from_sitk(mask)[0]
    elif np.ma.isMaskedArray(mask):
        mask = np.ma.filled(mask, 0)
    else:
        mask, _ = _to_array(mask, name)
    if mask.shape != tuple(shape):
        raise ValueError(
            f'{name} has shape {mask.shape} but its image has spatial shape '
            f'{tuple(shape)}: pass a mask of the same shape'
        )
    if mask.dtype != bool:
        if not np.issubdtype(mask.dtype, np.number) or np.iscomplexobj(mask):
            raise ValueError(
                f'{name} has dtype {mask.dtype}: pass a boolean mask (True where '
                'pixels count)'
            )
        ok = (mask == 0) | (mask == 1)
        if not ok.all():
            bad = mask[~ok].flat[0]
            raise ValueError(
                f'{name} must be boolean (True where pixels count) or hold only '
                f'0 and 1, but it holds {bad!r}: threshold it, e.g. '
                f'{name} > 0.5'
            )
    mask = mask.astype(bool)
    if valid is not None:
        mask &= valid
    if mask.sum() < 16:
        raise ValueError(
            f'{name} selects {int(mask.sum())} pixels: it needs at least 16'
        )
    return mask


def normalise_intensities(
    gray: NDArray[np.float32], mask: NDArray[np.bool_] | None = None
) -> NDArray[np.float32]:
    """Rescale to about [0, 1] by robust percentiles (0.5 and 99.5).

    Percentiles are taken over the pixels of ``mask`` (all when ``None``),
    from at most about ``PERCENTILE_SAMPLES`` of them (a regular subsample:
    the rank error of a 0.5 % percentile from 65k samples is about 0.03 %),
    so large images cost little. Values are then clipped to
    ``[-CLIP_MARGIN, 1 + CLIP_MARGIN]``, so that a few extreme pixels cannot
    dominate a metric or a pyramid level. Pixels outside ``mask`` whose
    values fall outside that range (nodata such as -9999) are set to the
    median of those inside: a neutral value that the smoothing of the
    pyramid cannot carry into the masked-in pixels. Masked pixels of ordinary
    values are kept, so that the pyramid near a mask's edge matches the other
    image.
    """
    values = gray[mask] if mask is not None else gray.reshape(-1)
    step = max(1, values.size // PERCENTILE_SAMPLES)
    sample = values[::step].astype(np.float64)
    low, high = np.percentile(sample, [0.5, 99.5])
    if high <= low:
        low, high = float(sample.min()), float(sample.max())
    if high <= low:  # constant inside the mask
        high = low + 1.0
    out = np.array(gray, dtype=np.float32, copy=True)
    with np.errstate(over='ignore', invalid='ignore'):
        np.subtract(out, np.float32(low), out=out)
        np.divide(out, np.float32(high - low), out=out)
    if mask is not None:  # outliers under the mask: neutral, not just clipped
        wild = ~mask & ((out < -CLIP_MARGIN) | (out > 1 + CLIP_MARGIN) | ~(out == out))
        out[wild] = np.median(out[mask])
    return np.clip(out, -CLIP_MARGIN, 1 + CLIP_MARGIN, out=out)


#: How far outside [0, 1] :func:`normalise_intensities` lets values go.
CLIP_MARGIN = 0.5
#: Most pixels :func:`normalise_intensities` takes its percentiles from.
PERCENTILE_SAMPLES = 1 << 16


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
