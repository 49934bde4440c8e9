"""Registration cases with a known transform, made from real photographs.

The one case factory of the project: the tests, the benchmarks and the
sample pairs (:mod:`napari_coreg.samples`) build their misaligned images here.
numpy, scipy and scikit-image only (no torch).

Every case is cut from a larger source image (scikit-image's bundled photos),
so that its truth is exact by construction::

    fixed(p)  = source(p + crop)
    moving(q) = source(G q)   with   G = Tr(crop) @ inv(T)

hence ``moving(T p) = fixed(p)``: ``T`` is the true ``moving_from_fixed`` in
numpy ``(row, col)`` pixel order. The moving image then gets a gamma change
and noise (or, for multimodal cases, a non-monotonic intensity remap), so no
case is an exact copy.

Three kinds of case:

* :func:`make_case` and :func:`random_case`: small cases for the tests
  (moderate transforms, gamma 1.2, noise 0.01, multimodal remap
  ``0.5 + 0.5 cos(1.5 pi x)``);
* :func:`benchmark_case`: the benchmark families of the peers' comparison
  (see its docstring), seeded from ``(family, modality, size, index)``;
* :func:`drift_stack`: a time-lapse moved by a random walk of rigid motions.
"""

from __future__ import annotations

import functools
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage

__all__ = [
    'FAMILIES',
    'IMAGES',
    'METRICS',
    'MODELS',
    'Case',
    'about_centre',
    'benchmark_case',
    'benchmark_cases',
    'case_indices',
    'case_name',
    'case_seed',
    'drift_stack',
    'drift_walk',
    'family_transform',
    'fold',
    'gray_photo',
    'homography_from_points',
    'make_case',
    'mi_remap',
    'random_case',
    'random_transform',
    'rotation',
    'scaled_source',
    'source_image',
    'translation',
    'warp_source',
]

MODELS = ('translation', 'rigid', 'similarity', 'affine', 'homography')
METRICS = ('l1', 'mse', 'ncc', 'mi')

#: The benchmark's source images; case ``i`` uses ``IMAGES[i % 8]``.
IMAGES = (
    'camera',
    'astronaut',
    'coins',
    'moon',
    'cell',
    'retina',
    'immunohistochemistry',
    'coffee',
)
#: Benchmark family -> (model kind, max rotation deg, max shift as a fraction of S).
FAMILIES = {
    'translation': ('translation', 0.0, 0.08),
    'rigid': ('rigid', 15.0, 0.08),
    'affine': ('affine', 15.0, 0.08),
    'homography': ('homography', 15.0, 0.08),
    'capture': ('rigid', 30.0, 0.20),
}
NOISE_SIGMA = 0.02
GAMMA_RANGE = (0.7, 1.4)
SOURCE_MARGIN = 2.0  # benchmark source short side >= SOURCE_MARGIN * S


@dataclass
class Case:
    """One registration problem with its ground truth.

    Parameters
    ----------
    fixed, moving : ndarray
        The two images.
    truth : ndarray, shape (3, 3)
        ``moving_from_fixed`` in numpy ``(row, col)`` pixels.
    family, modality, size, index, image : str, str, int, int, str
        Benchmark cases only: what :func:`benchmark_case` was called with and
        the source image's name.
    params : dict
        Benchmark cases only: the drawn angle, shift, scale, shear and gamma.
    """

    fixed: np.ndarray = field(repr=False)
    moving: np.ndarray = field(repr=False)
    truth: np.ndarray = field(repr=False)
    family: str = ''
    modality: str = ''
    size: int = 0
    index: int = 0
    image: str = ''
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        """The transform model that matches a benchmark case."""
        return FAMILIES[self.family][0]

    @property
    def name(self) -> str:
        """A benchmark case's unique, readable name."""
        return case_name(self.family, self.modality, self.size, self.index)


# --------------------------------------------------------------------------
# geometry


def translation(offset: ArrayLike) -> NDArray[np.float64]:
    """Return the homogeneous matrix of a shift by ``offset`` (any dimension)."""
    matrix = np.eye(len(offset) + 1)
    matrix[:-1, -1] = offset
    return matrix


def about_centre(
    linear: ArrayLike, centre: ArrayLike, shift: ArrayLike = (0.0, 0.0)
) -> NDArray[np.float64]:
    """``q = linear (p - c) + c + shift`` as a homogeneous (row, col) matrix."""
    centre = np.asarray(centre, np.float64)
    linear = np.asarray(linear, np.float64)
    matrix = np.eye(3)
    matrix[:2, :2] = linear
    matrix[:2, 2] = centre - linear @ centre + np.asarray(shift, np.float64)
    return matrix


def rotation(degrees: float) -> NDArray[np.float64]:
    """2D rotation in (row, col) coordinates."""
    a = np.deg2rad(degrees)
    return np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])


def _corners(shape: tuple[int, int]) -> NDArray[np.float64]:
    """Return the four corners of a 2D image, (row, col)."""
    h, w = shape[0] - 1.0, shape[1] - 1.0
    return np.array([[0, 0], [0, w], [h, 0], [h, w]])


def homography_from_points(src: ArrayLike, dst: ArrayLike) -> NDArray[np.float64]:
    """Return the 3x3 mapping four ``(4, 2)`` points ``src`` onto ``dst`` (DLT)."""
    rows, rhs = [], []
    for (x, y), (u, v) in zip(src, dst, strict=True):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        rhs += [u, v]
    h = np.linalg.solve(np.array(rows, float), np.array(rhs, float))
    return np.append(h, 1.0).reshape(3, 3)


def warp_source(
    source: NDArray,
    source_from_out: ArrayLike,
    shape: tuple[int, ...],
    order: int = 3,
    mode: str = 'reflect',
) -> NDArray[np.float64]:
    """Pull ``source`` back through a (projective) matrix onto ``shape``.

    Parameters
    ----------
    source : ndarray
        Image in [0, 1], any dimension.
    source_from_out : array_like, shape (D + 1, D + 1)
        Maps an output pixel to the source pixel it samples.
    shape : tuple of int
        Output shape.
    order : int
        Spline order of :func:`scipy.ndimage.map_coordinates`.
    mode : str
        How the source is extended beyond its border.

    Returns
    -------
    ndarray
        float64, clipped to [0, 1].
    """
    grid = np.indices(shape, dtype=np.float64).reshape(len(shape), -1)
    homog = source_from_out @ np.vstack([grid, np.ones(grid.shape[1])])
    coords = homog[:-1] / homog[-1]
    out = ndimage.map_coordinates(source, coords, order=order, mode=mode)
    return np.clip(out.reshape(shape), 0.0, 1.0)


# --------------------------------------------------------------------------
# test cases


def source_image(name: str = 'camera') -> NDArray[np.float64]:
    """Return a bundled scikit-image photo as float64 in [0, 1] (gray, min-max)."""
    from skimage import data as skdata

    image = getattr(skdata, name)()
    if image.ndim == 3:
        image = image[..., :3] @ np.array([0.2125, 0.7154, 0.0721])
    image = image.astype(np.float64)
    return (image - image.min()) / (image.max() - image.min())


def random_transform(
    model: str, shape: tuple[int, int], rng: np.random.Generator, strength: float = 1.0
) -> NDArray[np.float64]:
    """Draw a moderate random ``moving_from_fixed`` of ``model`` about the centre.

    Shift up to 5% of the size, rotation up to 8 degrees, scale +-8%, shear
    +-0.06, homography corners moved up to 4% of the size (times strength).
    """
    shape = np.asarray(shape, np.float64)
    centre = (shape - 1) / 2
    shift = rng.uniform(-0.05, 0.05, 2) * shape * strength
    linear = np.eye(2)
    if model in ('rigid', 'similarity', 'affine', 'homography'):
        linear = rotation(rng.uniform(-8, 8) * strength)
    if model in ('similarity', 'affine', 'homography'):
        linear = linear * (1 + rng.uniform(-0.08, 0.08) * strength)
    if model in ('affine', 'homography'):
        linear = linear @ (np.eye(2) + rng.uniform(-0.06, 0.06, (2, 2)) * strength)
    matrix = about_centre(linear, centre, shift)
    if model == 'homography':
        # projective part, conjugated by the centre translation (centre kept)
        proj = np.eye(3)
        proj[2, :2] = rng.uniform(-0.04, 0.04, 2) * strength / shape
        proj = translation(centre) @ proj @ translation(-centre)
        matrix = matrix @ proj
        matrix = matrix / matrix[2, 2]
    return matrix


def mi_remap(image: NDArray) -> NDArray:
    """Non-monotonic intensity remap of the multimodal test cases."""
    return 0.5 + 0.5 * np.cos(1.5 * np.pi * image)


def make_case(
    truth: ArrayLike,
    shape: tuple[int, int] = (128, 160),
    *,
    source: str = 'camera',
    crop: tuple[float, float] = (120, 150),
    moving_shape: tuple[int, int] | None = None,
    gamma: float = 1.2,
    noise: float = 0.01,
    multimodal: bool = False,
    seed: int = 0,
    dtype: type = np.float32,
) -> Case:
    """Make fixed and moving images with ``moving(truth @ p) = fixed(p)``.

    Parameters
    ----------
    truth : array_like, shape (3, 3)
        ``moving_from_fixed`` in (row, col) pixels.
    shape, moving_shape : tuple of int
        Fixed and moving shapes (``moving_shape`` defaults to ``shape``).
    source : str
        Name of a scikit-image photo (:func:`source_image`).
    crop : tuple of float
        Source pixel of the fixed image's pixel (0, 0).
    gamma, noise : float
        Moving image ``** gamma``; Gaussian noise sigma on both.
    multimodal : bool
        Remap the moving intensities with :func:`mi_remap` instead of gamma.
    seed : int
        Seed of the noise.
    dtype : type
        Output dtype of both images.

    Returns
    -------
    Case
        ``fixed``, ``moving`` and ``truth`` (float64).
    """
    rng = np.random.default_rng(seed)
    src = source_image(source)
    moving_shape = tuple(moving_shape or shape)
    crop_m = translation(crop)
    fixed = warp_source(src, crop_m, shape)
    moving = warp_source(src, crop_m @ np.linalg.inv(truth), moving_shape)
    moving = mi_remap(moving) if multimodal else moving**gamma
    fixed = fixed + rng.normal(0, noise, fixed.shape)
    moving = moving + rng.normal(0, noise, moving.shape)
    return Case(
        fixed.astype(dtype), moving.astype(dtype), np.asarray(truth, np.float64)
    )


def random_case(
    model: str,
    metric: str = 'ncc',
    shape: tuple[int, int] = (128, 160),
    seed: int = 0,
    strength: float = 1.0,
    source: str = 'camera',
    crop: tuple[float, float] = (120, 150),
) -> Case:
    """Make a random test case of ``model``; MI cases get the non-monotonic remap."""
    rng = np.random.default_rng(seed)
    truth = random_transform(model, shape, rng, strength)
    return make_case(
        truth, shape, source=source, crop=crop, multimodal=(metric == 'mi'), seed=seed
    )


# --------------------------------------------------------------------------
# benchmark cases


def case_name(family: str, modality: str, size: int, index: int) -> str:
    """Return a benchmark case's unique, readable name."""
    return f'{family}-{modality}-{size}-{index}-{IMAGES[index % len(IMAGES)]}'


@functools.cache
def gray_photo(name: str) -> NDArray[np.float64]:
    """Return a bundled scikit-image photo, gray (``rgb2gray``), float64 in [0, 1]."""
    from skimage import color, data

    img = getattr(data, name)()
    if img.ndim == 3:
        img = color.rgb2gray(img[..., :3])
    img = img.astype(np.float64)
    return img / 255.0 if img.max() > 1.0 else img


@functools.lru_cache(maxsize=32)
def scaled_source(name: str, size: int) -> NDArray[np.float64]:
    """Return the gray photo ``name`` rescaled up (cubic) to a short side >= 2 size."""
    from skimage.transform import rescale

    img = gray_photo(name)
    need = SOURCE_MARGIN * size
    if min(img.shape) < need:
        factor = need / min(img.shape)
        img = rescale(img, factor, order=3, anti_aliasing=False)
        img = np.clip(img, 0.0, 1.0)
    return img


def family_transform(
    family: str, size: int, rng: np.random.Generator
) -> tuple[NDArray[np.float64], dict[str, Any]]:
    """Draw a benchmark family's ``moving_from_fixed`` and return its parameters."""
    _, max_rot, max_shift = FAMILIES[family]
    centre = np.full(2, (size - 1) / 2.0)
    angle = rng.uniform(-max_rot, max_rot)
    shift = rng.uniform(-max_shift, max_shift, 2) * size
    params: dict[str, Any] = {'angle': angle, 'shift': shift.tolist()}
    linear = rotation(angle)
    if family == 'affine':
        scale = rng.uniform(0.9, 1.1, 2)
        shear = rng.uniform(-0.1, 0.1)
        linear = linear @ np.array([[1.0, shear], [0.0, 1.0]]) @ np.diag(scale)
        params.update(scale=scale.tolist(), shear=shear)
    m = about_centre(linear, centre, shift)
    if family == 'homography':
        corners = _corners((size, size))
        moved = corners + rng.uniform(-0.06, 0.06, (4, 2)) * size
        m = m @ homography_from_points(corners, moved)
        m /= m[2, 2]
    return m, params


def fold(x: NDArray) -> NDArray:
    """Remap intensities as the benchmark's multi cases: ``0.5 - 0.5 cos(2 pi x)``."""
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * x)


def case_seed(family: str, modality: str, size: int, index: int) -> int:
    """Return the seed of one benchmark case (independent of what else runs)."""
    return zlib.crc32(f'{family}|{modality}|{size}|{index}'.encode())


def benchmark_case(family: str, modality: str, size: int, index: int) -> Case:
    """One benchmark case, deterministic.

    Parameters
    ----------
    family : {'translation', 'rigid', 'affine', 'homography', 'capture'}
        The true transform's family (:data:`FAMILIES`).
    modality : {'mono', 'multi'}
        ``'multi'`` remaps the moving intensities with :func:`fold`.
    size : int
        Side ``S`` of both (square) images.
    index : int
        Case number; the source photo is ``IMAGES[index % 8]``.

    Returns
    -------
    Case
        float32 images in [0, 1] and every field of :class:`Case`.

    Notes
    -----
    The fixed image is the central ``S x S`` crop of the source (rescaled up
    when its short side is below ``2 S``); the moving image is rendered from
    the source (cubic spline, mirror outside) under the true transform about
    the crop centre: rotation ``U(-15, 15)`` degrees and shift
    ``U(-0.08 S, 0.08 S)`` per axis (translation: shift only; capture:
    ``U(-30, 30)`` degrees and ``U(-0.2 S, 0.2 S)``); affine adds per-axis
    scale ``U(0.9, 1.1)`` and shear ``U(-0.1, 0.1)``; homography moves the
    four corners by ``U(-0.06 S, 0.06 S)`` on top of the rigid part. Moving
    intensities get ``** gamma``, ``gamma ~ U(0.7, 1.4)``, then the fold for
    ``'multi'``. The fold, rather than ``0.5 + 0.5 cos(1.5 pi x)`` (mostly an
    inversion, global correlation about -0.5, on which OpenCV ECC fails at
    once), leaves a weak positive correlation (about +0.3). Both images get
    Gaussian noise ``sigma = 0.02`` and are clipped to [0, 1]. Everything is
    seeded from ``(family, modality, size, index)`` (:func:`case_seed`).
    """
    rng = np.random.default_rng(case_seed(family, modality, size, index))
    name = IMAGES[index % len(IMAGES)]
    src = scaled_source(name, size)
    offset = (np.array(src.shape) - size) // 2
    fixed = src[offset[0] : offset[0] + size, offset[1] : offset[1] + size]
    truth, params = family_transform(family, size, rng)
    pull = translation(offset.astype(np.float64)) @ np.linalg.inv(truth)
    moving = warp_source(src, pull, (size, size), mode='mirror')
    gamma = rng.uniform(*GAMMA_RANGE)
    moving = moving**gamma
    if modality == 'multi':
        moving = fold(moving)
    fixed = fixed + rng.normal(0.0, NOISE_SIGMA, fixed.shape)
    moving = moving + rng.normal(0.0, NOISE_SIGMA, moving.shape)
    params['gamma'] = gamma
    return Case(
        np.clip(fixed, 0, 1).astype(np.float32),
        np.clip(moving, 0, 1).astype(np.float32),
        truth,
        family=family,
        modality=modality,
        size=size,
        index=index,
        image=name,
        params=params,
    )


def case_indices(n: int) -> list[int]:
    """``n`` benchmark case indices; fewer than 8 are spread over the 8 images."""
    if n >= len(IMAGES):
        return list(range(n))
    return sorted({int(i) for i in np.linspace(0, len(IMAGES), n, endpoint=False)})


def benchmark_cases(family: str, modality: str, size: int, n: int = 8) -> list[Case]:
    """``n`` benchmark cases of one family, modality and size."""
    return [benchmark_case(family, modality, size, i) for i in case_indices(n)]


# --------------------------------------------------------------------------
# drift stacks


def drift_walk(
    n: int, size: int, seed: int, rotation_step: float = 0.3, shift_step: float = 1.5
) -> NDArray[np.float64]:
    """``frame_from_world`` per frame of a random walk of rigid motions.

    Rotation steps ``N(0, rotation_step)`` degrees and shift steps
    ``N(0, shift_step)`` px per axis, about the centre of a ``size^2`` frame;
    frame 0 does not move. Returns an ``(n, 3, 3)`` array (numpy order).
    """
    rng = np.random.default_rng(seed)
    centre = np.full(2, (size - 1) / 2)
    angle, shift = 0.0, np.zeros(2)
    out = np.empty((n, 3, 3))
    for i in range(n):
        if i:
            angle += rng.normal(0, rotation_step)
            shift += rng.normal(0, shift_step, 2)
        out[i] = about_centre(rotation(angle), centre, shift)
    return out


def drift_stack(
    n: int = 100, size: int = 512, seed: int = 0, noise: float = 0.02
) -> tuple[NDArray[np.float32], NDArray[np.float64]]:
    """Make a time-lapse of the camera photo drifting by a random walk.

    Parameters
    ----------
    n, size : int
        Number of frames and their side in pixels.
    seed : int
        Seed of the walk (``seed``) and of the noise (``seed + 1``).
    noise : float
        Gaussian noise sigma on the [0, 1] intensities.

    Returns
    -------
    stack : ndarray, shape (n, size, size), float32
        Crops of the camera photo (rescaled to ``2 size``), frame ``i`` moved
        by :func:`drift_walk`'s matrix ``i``.
    truth : ndarray, shape (n, 3, 3)
        ``moving_from_fixed`` of each frame against frame 0.
    """
    source = scaled_source('camera', size)
    offset = (np.array(source.shape) - size) / 2
    truth = drift_walk(n, size, seed)
    rng = np.random.default_rng(seed + 1)
    stack = np.empty((n, size, size), np.float32)
    for i in range(n):
        pull = np.linalg.inv(truth[i])
        pull[:2, 2] += offset
        frame = ndimage.affine_transform(
            source, pull, output_shape=(size, size), order=3, mode='mirror'
        )
        stack[i] = np.clip(frame + rng.normal(0, noise, frame.shape), 0, 1)
    return stack, truth
