"""Deterministic benchmark cases, reproducing /work/shared/PEERS.md.

A case is a fixed image, a moving image and the TRUE ``moving_from_fixed``
3x3 matrix in numpy (row, col) order: it maps a fixed pixel (row, col, 1)
to the moving pixel that shows the same scene point.

Construction (per family, size ``S`` and case index ``i``):

* source: scikit-image bundled image ``IMAGES[i % 8]`` (colour -> gray),
  float in [0, 1], rescaled up (cubic) when its short side is below
  ``2 S`` so that the moving image can be rendered from real content;
* fixed: the central ``S x S`` crop of the source (no interpolation);
* moving: ``moving[q] = source(offset + inv(M) q)`` (cubic spline, mirror
  outside the source, which the 2 S margin makes rare), where ``M`` is the
  true transform about the crop centre:

  - translation: shift ``U(-0.08 S, 0.08 S)`` per axis;
  - rigid: rotation ``U(-15, 15)`` degrees and the shift above;
  - affine: rigid composed with per-axis scale ``U(0.9, 1.1)`` and shear
    ``U(-0.1, 0.1)``;
  - homography: rigid composed with a projective map that moves each of
    the four crop corners by ``U(-0.06 S, 0.06 S)`` per axis;
  - capture (a rigid model): rotation ``U(-30, 30)`` degrees, shift
    ``U(-0.2 S, 0.2 S)``;

* intensities: moving ``**= gamma`` with ``gamma ~ U(0.7, 1.4)``; "multi"
  cases then remap the moving image non-monotonically,
  ``x -> 0.5 - 0.5 cos(2 pi x)`` (a fold: 0 at 0, 1 at 1/2, 0 at 1), so
  that dark and bright both turn dark; both images get independent Gaussian
  noise ``sigma = 0.02`` and are clipped to [0, 1], float32.

  The fold was chosen over ``0.5 + 0.5 cos(1.5 pi x)``: that one is mostly
  an inversion (global correlation about -0.5), on which OpenCV ECC fails
  at once on every case ("the correlation is going to be minimized"); the
  fold leaves a weak positive correlation (about +0.3) and reproduces
  PEERS.md's ECC multi figures (a few successes of 8) while SimpleITK's
  Mattes MI still solves nearly all cases.

Everything is seeded from ``(family, modality, size, index)`` through
``numpy.random.default_rng``, so a case is the same whatever else runs.
"""

from __future__ import annotations

import functools
import zlib
from dataclasses import dataclass, field

import numpy as np

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
# family -> (model kind, max rotation deg, max shift as a fraction of S)
FAMILIES = {
    'translation': ('translation', 0.0, 0.08),
    'rigid': ('rigid', 15.0, 0.08),
    'affine': ('affine', 15.0, 0.08),
    'homography': ('homography', 15.0, 0.08),
    'capture': ('rigid', 30.0, 0.20),
}
SIZES = (256, 512, 1024)
NOISE_SIGMA = 0.02
GAMMA_RANGE = (0.7, 1.4)
SOURCE_MARGIN = 2.0  # source short side >= SOURCE_MARGIN * S


@dataclass
class Case:
    """One registration problem with its ground truth."""

    family: str
    modality: str  # "mono" or "multi"
    size: int
    index: int
    image: str
    fixed: np.ndarray = field(repr=False)
    moving: np.ndarray = field(repr=False)
    truth: np.ndarray = field(repr=False)  # moving_from_fixed, (row, col)
    params: dict = field(default_factory=dict)

    @property
    def kind(self) -> str:
        """The transform model that matches this case."""
        return FAMILIES[self.family][0]

    @property
    def name(self) -> str:
        return case_name(self.family, self.modality, self.size, self.index)


def case_name(family: str, modality: str, size: int, index: int) -> str:
    """A case's unique, readable name."""
    return f'{family}-{modality}-{size}-{index}-{IMAGES[index % len(IMAGES)]}'


# --------------------------------------------------------------------------
# matrix helpers (shared by peers.py and run_all.py)


def swap_axes(matrix: np.ndarray) -> np.ndarray:
    """Convert a 3x3 between (row, col) and (x, y) = (col, row) order.

    The same operation goes both ways: P @ M @ P with P swapping the first
    two coordinates (swap the first two rows and the first two columns).
    """
    p = np.array([[0.0, 1, 0], [1, 0, 0], [0, 0, 1]])
    return p @ np.asarray(matrix, dtype=np.float64) @ p


def apply_h(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map (n, 2) points through a 3x3 (projective divide)."""
    pts = np.column_stack([points, np.ones(len(points))])
    out = pts @ np.asarray(matrix, dtype=np.float64).T
    return out[:, :2] / out[:, 2:3]


def check_points(shape) -> np.ndarray:
    """The four image corners and the centre, (row, col)."""
    h, w = shape[0] - 1.0, shape[1] - 1.0
    return np.array([[0, 0], [0, w], [h, 0], [h, w], [h / 2, w / 2]])


def corner_error(est, truth, shape) -> float:
    """Mean distance (px) between corners + centre mapped by est and truth.

    ``inf`` when ``est`` is None or not finite.
    """
    if est is None or not np.all(np.isfinite(est)):
        return float('inf')
    pts = check_points(shape)
    err = np.linalg.norm(apply_h(est, pts) - apply_h(truth, pts), axis=1)
    err = float(err.mean())
    return err if np.isfinite(err) else float('inf')


def homography_from_points(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 3x3 mapping four (n, 2) points ``src`` onto ``dst`` (DLT)."""
    rows, rhs = [], []
    for (x, y), (u, v) in zip(src, dst, strict=True):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        rhs += [u, v]
    h = np.linalg.solve(np.array(rows, float), np.array(rhs, float))
    return np.append(h, 1.0).reshape(3, 3)


def _about(centre: np.ndarray, linear: np.ndarray, shift: np.ndarray):
    """3x3 applying ``linear`` about ``centre`` then ``shift``."""
    m = np.eye(3)
    m[:2, :2] = linear
    m[:2, 2] = centre + shift - linear @ centre
    return m


def _rotation(deg: float) -> np.ndarray:
    t = np.deg2rad(deg)
    return np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])


# --------------------------------------------------------------------------
# sources


@functools.cache
def _raw_image(name: str) -> np.ndarray:
    from skimage import color, data

    img = getattr(data, name)()
    if img.ndim == 3:
        img = color.rgb2gray(img[..., :3])
    img = img.astype(np.float64)
    return img / 255.0 if img.max() > 1.0 else img


@functools.lru_cache(maxsize=32)
def source_image(name: str, size: int) -> np.ndarray:
    """The gray source, rescaled up so its short side >= 2 * size."""
    from skimage.transform import rescale

    img = _raw_image(name)
    need = SOURCE_MARGIN * size
    if min(img.shape) < need:
        factor = need / min(img.shape)
        img = rescale(img, factor, order=3, anti_aliasing=False)
        img = np.clip(img, 0.0, 1.0)
    return img


# --------------------------------------------------------------------------
# transforms and rendering


def random_transform(family: str, size: int, rng) -> tuple[np.ndarray, dict]:
    """True moving_from_fixed (row, col) about the crop centre, and params."""
    _, max_rot, max_shift = FAMILIES[family]
    centre = np.full(2, (size - 1) / 2.0)
    angle = rng.uniform(-max_rot, max_rot)
    shift = rng.uniform(-max_shift, max_shift, 2) * size
    params = {'angle': angle, 'shift': shift.tolist()}
    linear = _rotation(angle)
    if family == 'affine':
        scale = rng.uniform(0.9, 1.1, 2)
        shear = rng.uniform(-0.1, 0.1)
        linear = linear @ np.array([[1.0, shear], [0.0, 1.0]]) @ np.diag(scale)
        params.update(scale=scale.tolist(), shear=shear)
    m = _about(centre, linear, shift)
    if family == 'homography':
        corners = check_points((size, size))[:4]
        moved = corners + rng.uniform(-0.06, 0.06, (4, 2)) * size
        m = m @ homography_from_points(corners, moved)
        m /= m[2, 2]
    return m, params


def render_moving(source: np.ndarray, offset, truth, size: int) -> np.ndarray:
    """moving[q] = source(offset + inv(truth) q), cubic spline."""
    from scipy import ndimage

    rr, cc = np.mgrid[0:size, 0:size].astype(np.float64)
    q = np.column_stack([rr.ravel(), cc.ravel()])
    p = apply_h(np.linalg.inv(truth), q) + np.asarray(offset, float)
    out = ndimage.map_coordinates(source, p.T, order=3, mode='mirror')
    return out.reshape(size, size)


def multimodal(x: np.ndarray) -> np.ndarray:
    """The non-monotonic intensity remap of the "multi" cases."""
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * x)


def case_seed(family: str, modality: str, size: int, index: int) -> int:
    return zlib.crc32(f'{family}|{modality}|{size}|{index}'.encode())


def make_case(family: str, modality: str, size: int, index: int) -> Case:
    """Build one case deterministically."""
    rng = np.random.default_rng(case_seed(family, modality, size, index))
    name = IMAGES[index % len(IMAGES)]
    src = source_image(name, size)
    offset = (np.array(src.shape) - size) // 2
    fixed = src[offset[0] : offset[0] + size, offset[1] : offset[1] + size]
    truth, params = random_transform(family, size, rng)
    moving = np.clip(render_moving(src, offset, truth, size), 0.0, 1.0)
    gamma = rng.uniform(*GAMMA_RANGE)
    moving = moving**gamma
    if modality == 'multi':
        moving = multimodal(moving)
    fixed = fixed + rng.normal(0.0, NOISE_SIGMA, fixed.shape)
    moving = moving + rng.normal(0.0, NOISE_SIGMA, moving.shape)
    params['gamma'] = gamma
    return Case(
        family,
        modality,
        size,
        index,
        name,
        np.clip(fixed, 0, 1).astype(np.float32),
        np.clip(moving, 0, 1).astype(np.float32),
        truth,
        params,
    )


def case_indices(n: int) -> list[int]:
    """n case indices; fewer than 8 are spread over the 8 images."""
    if n >= len(IMAGES):
        return list(range(n))
    return sorted({int(i) for i in np.linspace(0, len(IMAGES), n, endpoint=False)})


def make_cases(family: str, modality: str, size: int, n: int = 8) -> list[Case]:
    return [make_case(family, modality, size, i) for i in case_indices(n)]


if __name__ == '__main__':  # a quick look: python benchmarks/cases.py
    import time

    # one-point check of swap_axes: (row, col) = (2, 5) shifted by (+1, +10)
    rc = np.array([[1.0, 0, 1], [0, 1, 10], [0, 0, 1]])
    assert np.allclose(apply_h(swap_axes(rc), [[5.0, 2.0]]), [[15.0, 3.0]])
    for fam in FAMILIES:
        t0 = time.perf_counter()
        c = make_case(fam, 'mono', 512, 3)
        print(
            f'{c.name:40s} {time.perf_counter() - t0:.2f}s '
            f'identity err {corner_error(np.eye(3), c.truth, c.fixed.shape):.1f}px'
        )
