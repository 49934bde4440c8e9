"""Synthetic registration cases with a known transform, made from real images.

A case is built from a larger source image (scikit-image's bundled photos)
so that the truth is exact by construction:

    fixed(p)  = source(p + crop)
    moving(q) = source(G q)   with   G = Tr(crop) @ inv(T)

hence ``moving(T p) = source(Tr(crop) p) = fixed(p)``: ``T`` is the true
``moving_from_fixed`` in numpy ``(row, col)`` pixel order. The moving image
then gets a mild gamma change and noise (or, for multimodal cases, a
non-monotonic intensity remap), so no case is an exact copy.

Loaded by ``conftest.py`` (which puts this folder on ``sys.path``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage import data as skdata

MODELS = ('translation', 'rigid', 'similarity', 'affine', 'homography')
METRICS = ('l1', 'mse', 'ncc', 'mi')


def source_image(name: str = 'camera') -> np.ndarray:
    """A bundled scikit-image photo as float64 in [0, 1] (gray)."""
    image = getattr(skdata, name)()
    if image.ndim == 3:
        image = image[..., :3] @ np.array([0.2125, 0.7154, 0.0721])
    image = image.astype(np.float64)
    return (image - image.min()) / (image.max() - image.min())


def translation(offset) -> np.ndarray:
    matrix = np.eye(len(offset) + 1)
    matrix[:-1, -1] = offset
    return matrix


def about_centre(linear: np.ndarray, centre, shift=(0.0, 0.0)) -> np.ndarray:
    """``q = linear (p - c) + c + shift`` as a homogeneous (row, col) matrix."""
    centre = np.asarray(centre, np.float64)
    matrix = np.eye(3)
    matrix[:2, :2] = linear
    matrix[:2, 2] = centre - linear @ centre + np.asarray(shift, np.float64)
    return matrix


def rotation(degrees: float) -> np.ndarray:
    """2D rotation in (row, col) coordinates."""
    a = np.deg2rad(degrees)
    return np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])


def random_transform(
    model: str, shape, rng: np.random.Generator, strength: float = 1.0
) -> np.ndarray:
    """A moderate random ``moving_from_fixed`` of ``model`` about the centre.

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
        # projective part: move the far corner by up to ~4% of the size
        v = rng.uniform(-0.04, 0.04, 2) * strength / shape
        proj = np.eye(3)
        proj[2, :2] = v
        proj[:2, 2] = -0.0
        # keep the centre fixed: conjugate by the centre translation
        proj = translation(centre) @ proj @ translation(-centre)
        matrix = matrix @ proj
        matrix = matrix / matrix[2, 2]
    return matrix


def warp_source(
    source: np.ndarray, source_from_out: np.ndarray, shape, order: int = 3
) -> np.ndarray:
    """Pull ``source`` back through a (projective) matrix onto ``shape``."""
    grid = np.indices(shape, dtype=np.float64).reshape(len(shape), -1)
    homog = source_from_out @ np.vstack([grid, np.ones(grid.shape[1])])
    coords = homog[:-1] / homog[-1]
    out = ndimage.map_coordinates(source, coords, order=order, mode='reflect')
    return np.clip(out.reshape(shape), 0.0, 1.0)


def mi_remap(image: np.ndarray) -> np.ndarray:
    """Non-monotonic intensity remap for multimodal (MI) cases."""
    return 0.5 + 0.5 * np.cos(1.5 * np.pi * image)


@dataclass
class Case:
    fixed: np.ndarray
    moving: np.ndarray
    truth: np.ndarray  # moving_from_fixed, (row, col) pixels


def make_case(
    truth: np.ndarray,
    shape=(128, 160),
    *,
    source: str = 'camera',
    crop=(120, 150),
    moving_shape=None,
    gamma: float = 1.2,
    noise: float = 0.01,
    multimodal: bool = False,
    seed: int = 0,
    dtype=np.float32,
) -> Case:
    """Fixed and moving images with ``moving(truth @ p) = fixed(p)``."""
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
    shape=(128, 160),
    seed: int = 0,
    strength: float = 1.0,
    source: str = 'camera',
    crop=(120, 150),
) -> Case:
    """A random case of ``model``; MI cases get the non-monotonic remap."""
    rng = np.random.default_rng(seed)
    truth = random_transform(model, shape, rng, strength)
    return make_case(
        truth, shape, source=source, crop=crop, multimodal=(metric == 'mi'), seed=seed
    )
