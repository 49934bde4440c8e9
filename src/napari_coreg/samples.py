"""Misaligned image pairs with a known transform, for demos, docs and tests.

``sample_pair(name)`` returns ``(fixed, moving, truth, info)`` where ``truth``
is the exact ``moving_from_fixed`` matrix in pixel units (numpy axis order:
``moving(truth @ p) == fixed(p)`` for a fixed pixel ``p``), so any result can
be scored with :func:`napari_coreg.corner_error`.

Every image is a real photograph or scan that ships with the package or with
scikit-image; nothing is downloaded. Sources and licences are listed in
``src/napari_coreg/data/LICENSES.md``.
"""

from __future__ import annotations

from importlib.resources import files
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from .cases import about_centre, rotation
from .transforms import apply_matrix, homogeneous

__all__ = ['SAMPLES', 'sample_pair']

#: Names accepted by :func:`sample_pair`, with a one-line description.
SAMPLES: dict[str, str] = {
    'rigid': 'camera photograph, rotated 6 degrees and shifted (rigid)',
    'multimodal': 'ITK brain MR slices: T1 (fixed) vs proton density (moving), '
    'shifted (13, 17) px',
    'homography': 'astronaut photograph (RGB) seen from another viewpoint (homography)',
}


def sample_pair(
    name: str = 'rigid', *, seed: int = 0
) -> tuple[NDArray, NDArray, NDArray[np.float64], dict[str, Any]]:
    """Return a misaligned 2D image pair and its ground-truth transform.

    Parameters
    ----------
    name : {'rigid', 'multimodal', 'homography'}
        ``'rigid'``: the scikit-image *camera* photograph (224 x 240, float32)
        and a copy rotated by 6 degrees about its centre and shifted, with a
        little Gaussian noise on both. ``'multimodal'``: the ITK Software
        Guide brain slices, T1 as fixed and proton density as moving
        (257 x 221, uint8); the moving slice is shifted by exactly
        (17, 13) px in (row, col) (real data, exact ground truth; register
        with ``metric='mi'``). ``'homography'``: the scikit-image *astronaut*
        photograph (RGB, 216 x 232 x 3, uint8) and a perspective view of it
        (register with ``model='homography'``).
    seed : int
        Seed of the noise (``'rigid'`` only).

    Returns
    -------
    fixed, moving : ndarray
        The two images, same shape.
    truth : ndarray, shape (3, 3)
        Exact ``moving_from_fixed`` in pixel units, numpy (row, col) order.
    info : dict
        ``name``, ``title``, ``description``, ``fixed_name``, ``moving_name``,
        ``model`` and ``metric`` that suit the pair, ``rgb``, ``source`` and
        ``license``.

    Raises
    ------
    ValueError
        For an unknown ``name``.

    Examples
    --------
    >>> from napari_coreg.samples import sample_pair
    >>> fixed, moving, truth, info = sample_pair('multimodal')
    >>> fixed.shape, info['metric']
    ((257, 221), 'mi')
    >>> truth[:2, 2]
    array([17., 13.])
    """
    makers = {
        'rigid': _rigid,
        'multimodal': _multimodal,
        'homography': _homography,
    }
    if name not in makers:
        raise ValueError(
            f'unknown sample {name!r}: choose one of {", ".join(map(repr, SAMPLES))}'
        )
    fixed, moving, truth, info = makers[name](seed)
    info = {'name': name, 'description': SAMPLES[name], **info}
    return fixed, moving, truth, info


def _warp(source: NDArray, source_from_moving: NDArray, shape, order: int = 3):
    """Sample ``source`` at ``source_from_moving @ q`` for every pixel q of ``shape``.

    ``source_from_moving`` may be projective; channels (last axis) are kept.
    """
    grid = np.indices(shape, dtype=np.float64).reshape(2, -1).T
    coords = apply_matrix(source_from_moving, grid).T
    source = np.asarray(source, dtype=np.float32)
    planes = source[..., None] if source.ndim == 2 else source
    out = np.stack(
        [
            ndimage.map_coordinates(
                planes[..., c], coords, order=order, mode='constant', cval=0.0
            ).reshape(shape)
            for c in range(planes.shape[-1])
        ],
        axis=-1,
    )
    return out[..., 0] if source.ndim == 2 else out


def _rigid(seed: int):
    from skimage import data
    from skimage.transform import downscale_local_mean

    source = downscale_local_mean(data.camera().astype(np.float32), (2, 2))
    shape = (224, 240)
    offset = np.array([16.0, 8.0])  # fixed pixel (0, 0) in source pixels
    centre = (np.array(shape, np.float64) - 1) / 2
    truth = about_centre(rotation(6.0), centre, np.array([7.5, -11.25]))
    source_from_fixed = homogeneous(np.eye(2), offset)
    fixed = _warp(source, source_from_fixed, shape)
    moving = _warp(source, source_from_fixed @ np.linalg.inv(truth), shape)
    rng = np.random.default_rng(seed)
    noise = 0.02 * 255
    fixed = (fixed + rng.normal(0, noise, shape)).astype(np.float32)
    moving = (moving + rng.normal(0, noise, shape)).astype(np.float32)
    info = {
        'title': 'Misaligned pair (rigid, camera)',
        'fixed_name': 'camera fixed',
        'moving_name': 'camera moving',
        'model': 'rigid',
        'metric': 'ncc',
        'rgb': False,
        'source': 'scikit-image data.camera() (Lav Varshney)',
        'license': 'CC0 (no copyright restrictions)',
    }
    return fixed, moving, truth, info


def _read_png(filename: str) -> NDArray[np.uint8]:
    from PIL import Image

    with (files(__package__) / 'data' / filename).open('rb') as stream:
        # the ITK PNGs are palette images with a grey palette
        return np.asarray(Image.open(stream).convert('L'))


def _multimodal(seed: int):
    fixed = _read_png('BrainT1SliceBorder20.png')
    moving = _read_png('BrainProtonDensitySliceShifted13x17y.png')
    # moving(r + 17, c + 13) == PD(r, c), and PD is co-registered with T1
    truth = homogeneous(np.eye(2), [17.0, 13.0])
    info = {
        'title': 'Multimodal pair (brain MR, T1 / PD)',
        'fixed_name': 'brain T1',
        'moving_name': 'brain PD',
        'model': 'translation',
        'metric': 'mi',
        'rgb': False,
        'source': 'ITK Software Guide, Examples/Data (BrainT1SliceBorder20.png, '
        'BrainProtonDensitySliceShifted13x17y.png)',
        'license': 'Apache-2.0 (Insight Software Consortium)',
    }
    return fixed, moving, truth, info


def _homography(seed: int):
    from skimage import data
    from skimage.transform import ProjectiveTransform, downscale_local_mean

    source = downscale_local_mean(data.astronaut().astype(np.float32), (2, 2, 1))
    shape = (216, 232)
    offset = np.array([20.0, 12.0])
    corners = np.array(
        [[0, 0], [0, shape[1] - 1], [shape[0] - 1, shape[1] - 1], [shape[0] - 1, 0]],
        dtype=np.float64,
    )
    # where the fixed corners appear in the moving view (row, col)
    seen = corners + np.array([[14.0, 10.0], [-6.0, -16.0], [-18.0, -6.0], [4.0, 12.0]])
    # numpy-order coordinates work as they are: the fit is axis-order agnostic
    tform = (
        ProjectiveTransform.from_estimate(corners, seen)
        if hasattr(ProjectiveTransform, 'from_estimate')
        else _estimate_projective(corners, seen)
    )
    truth = np.asarray(tform.params, dtype=np.float64)
    truth = truth / truth[2, 2]
    source_from_fixed = homogeneous(np.eye(2), offset)
    fixed = _warp(source, source_from_fixed, shape)
    moving = _warp(source, source_from_fixed @ np.linalg.inv(truth), shape)
    to_uint8 = lambda a: np.clip(np.round(a), 0, 255).astype(np.uint8)  # noqa: E731
    info = {
        'title': 'Viewpoint change (homography, astronaut RGB)',
        'fixed_name': 'astronaut fixed',
        'moving_name': 'astronaut moving',
        'model': 'homography',
        'metric': 'ncc',
        'rgb': True,
        'source': 'scikit-image data.astronaut() (NASA, Eileen Collins)',
        'license': 'public domain (no known copyright restrictions)',
    }
    return to_uint8(fixed), to_uint8(moving), truth, info


def _estimate_projective(src: NDArray, dst: NDArray):
    from skimage.transform import ProjectiveTransform

    tform = ProjectiveTransform()
    tform.estimate(src, dst)
    return tform
