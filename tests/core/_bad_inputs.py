"""Helpers of the bad-input catalogue: images, input hashing, engine guard."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from scipy import ndimage

#: Size of the catalogue's images: small, so cases that do run stay fast.
SIZE = 48
#: Shift of the moving image (row, col), the truth of the cases that run.
SHIFT = (2.0, -3.0)
#: Fast settings of the cases that run a registration (accuracy is checked
#: against a tolerance that these reach on the catalogue's images).
FAST = {'levels': 1, 'iterations': 25, 'init': 'identity'}


def smooth(shape=(SIZE, SIZE), seed: int = 0) -> np.ndarray:
    """A smooth random float32 image with structure on every scale used."""
    rng = np.random.default_rng(seed)
    return ndimage.gaussian_filter(rng.random(shape), 2.5).astype(np.float32)


def pair(shape=(SIZE, SIZE), shift=SHIFT) -> tuple[np.ndarray, np.ndarray]:
    """Fixed and moving, ``moving_from_fixed`` = translation by ``shift``."""
    fixed = smooth(shape)
    moving = ndimage.shift(fixed, shift, order=3, mode='nearest').astype(np.float32)
    return fixed, moving


def _update(digest, value) -> None:
    """Feed ``value`` (arrays, containers, tensors, SimpleITK images) to a hash."""
    if isinstance(value, np.ma.MaskedArray):
        _update(digest, np.ma.getdata(value))
        _update(digest, np.ma.getmaskarray(value))
    elif isinstance(value, np.ndarray):
        digest.update(
            repr((value.shape, value.dtype.str, value.flags.writeable)).encode()
        )
        digest.update(np.ascontiguousarray(value).tobytes())
    elif type(value).__module__.startswith('torch'):
        _update(digest, value.detach().cpu().numpy())
        digest.update(repr(value.requires_grad).encode())
    elif type(value).__module__.startswith('SimpleITK'):
        import SimpleITK as sitk

        _update(digest, sitk.GetArrayFromImage(value))
        digest.update(repr((value.GetSpacing(), value.GetOrigin())).encode())
    elif isinstance(value, dict):
        for key in sorted(value, key=str):
            digest.update(str(key).encode())
            _update(digest, value[key])
    elif isinstance(value, (list, tuple)):
        digest.update(type(value).__name__.encode())
        for item in value:
            _update(digest, item)
    elif isinstance(value, Path):
        digest.update(str(value).encode())
        if value.is_file():
            digest.update(value.read_bytes())
    else:
        digest.update(repr(value).encode())


def fingerprint(*values) -> str:
    """A hash of everything a case hands to the library (to prove it untouched)."""
    digest = hashlib.sha256()
    for value in values:
        _update(digest, value)
    return digest.hexdigest()


def translation_error(matrix: np.ndarray, shift=SHIFT) -> float:
    """Largest distance (px) of ``matrix`` from the true translation at the
    corners of the image."""
    ndim = matrix.shape[0] - 1
    truth = np.eye(ndim + 1)
    truth[:ndim, ndim] = shift[:ndim]
    corners = np.array(np.meshgrid(*[[0, SIZE - 1]] * ndim)).reshape(ndim, -1)
    points = np.vstack([corners, np.ones(corners.shape[1])])
    return float(np.abs((matrix - truth) @ points)[:ndim].max())
