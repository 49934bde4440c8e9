"""Keypoints, descriptors and matches between two 2D views.

Detector choice (measured on the Oxford graf and boat pairs at half size,
400 x 320 px, one CPU thread on a loaded 2-core machine, RANSAC homography
on the matches; time for both images, corner error in full-size pixels):

============  ==========  =============================  ===================
detector      time        graf 1-2 / 1-3 / 1-4 inliers   boat 1-2 / 1-4
============  ==========  =============================  ===================
skimage SIFT  0.9-1.3 s   556 / 216 / 36 (0.8-2.9 px)    797 / 259 (0.7-2.3)
kornia SIFT   1.2-1.7 s   307 / 105 / 31 (1.9-6.8 px)    476 / 141 (0.4-1.3)
skimage ORB   0.7-0.9 s   436 / 48 / 9 (3.4-12 px)       312 / 66 (3.5-1.8)
============  ==========  =============================  ===================

scikit-image's SIFT is the fastest detector that succeeds on every pair and
finds the most inliers, so it is the CPU default. On an accelerator
(``device`` not CPU), kornia's hand-crafted SIFT pipeline (DoG scale space,
dominant orientation, SIFT descriptors; no downloaded weights) runs on the
device instead. Matching (mutual nearest neighbours with Lowe's ratio test)
runs in torch on the chosen device either way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

__all__ = ['Matches', 'detect', 'match']

#: Lowe's ratio: the nearest descriptor must be this much closer than the
#: second nearest.
RATIO = 0.8
#: Most keypoints kept per image.
MAX_KEYPOINTS = 4000
#: Images up to this many pixels along their longest side are upsampled
#: twice before scikit-image's SIFT builds its scale space (small images
#: give too few keypoints otherwise); larger ones are not (5x faster).
UPSAMPLE_BELOW = 384


@dataclass(frozen=True, eq=False)
class Keypoints:
    """Keypoint positions ``(n, 2)`` in (row, col) pixels and descriptors."""

    points: NDArray[np.float64]
    descriptors: object  # ndarray or torch.Tensor, (n, d)


@dataclass(frozen=True, eq=False)
class Matches:
    """Corresponding points, ``(m, 2)`` each, (row, col) view pixels."""

    fixed: NDArray[np.float64]
    moving: NDArray[np.float64]
    n_fixed: int
    n_moving: int
    detector: str


def _skimage_sift(image: NDArray) -> Keypoints:
    from skimage.feature import SIFT

    sift = SIFT(upsampling=2 if max(image.shape) <= UPSAMPLE_BELOW else 1)
    try:
        sift.detect_and_extract(np.asarray(image, np.float64))
    except RuntimeError:  # no keypoints at all
        return Keypoints(np.zeros((0, 2)), np.zeros((0, 128), np.float32))
    points = np.asarray(sift.keypoints, np.float64)
    descriptors = np.asarray(sift.descriptors, np.float32)
    if len(points) > MAX_KEYPOINTS:
        keep = np.argsort(-np.abs(sift.scales))[:MAX_KEYPOINTS]
        points, descriptors = points[keep], descriptors[keep]
    return Keypoints(points, descriptors)


def _kornia_sift(image: NDArray, device) -> Keypoints:
    import kornia.feature as KF
    import torch

    sift = KF.SIFTFeature(num_features=MAX_KEYPOINTS, device=device)
    tensor = torch.as_tensor(np.asarray(image, np.float32), device=device)
    with torch.inference_mode():
        lafs, _, descriptors = sift(tensor[None, None])
        centres = KF.get_laf_center(lafs)[0]
    points = centres.flip(-1).cpu().double().numpy()  # (x, y) -> (row, col)
    return Keypoints(points, descriptors[0])


def detect(image: NDArray, device=None) -> tuple[Keypoints, str]:
    """Keypoints and descriptors of one image, scaled to [0, 1].

    Returns the keypoints and the detector's name.
    """
    lo, hi = np.percentile(image, (0.5, 99.5))
    image = np.clip((np.asarray(image, np.float32) - lo) / max(hi - lo, 1e-12), 0, 1)
    if device is None or str(device) == 'cpu':
        return _skimage_sift(image), 'skimage-sift'
    return _kornia_sift(image, device), 'kornia-sift'


def match(fixed: Keypoints, moving: Keypoints, device=None) -> NDArray[np.int64]:
    """Mutual nearest neighbours that pass the ratio test, ``(m, 2)`` indices."""
    import torch

    if len(fixed.points) < 2 or len(moving.points) < 2:
        return np.zeros((0, 2), np.int64)
    a = torch.as_tensor(fixed.descriptors, dtype=torch.float32, device=device)
    b = torch.as_tensor(moving.descriptors, dtype=torch.float32, device=device)
    distances = torch.cdist(a, b)
    nearest, index = distances.topk(2, dim=1, largest=False)
    back = distances.argmin(dim=0)
    rows = torch.arange(len(a), device=distances.device)
    keep = (nearest[:, 0] < RATIO * nearest[:, 1]) & (back[index[:, 0]] == rows)
    pairs = torch.stack([rows[keep], index[keep, 0]], dim=1)
    return pairs.cpu().numpy().astype(np.int64)


def matched_points(fixed_image: NDArray, moving_image: NDArray, device=None) -> Matches:
    """Detect, describe and match: corresponding points of two images."""
    kp_f, name = detect(fixed_image, device)
    kp_m, _ = detect(moving_image, device)
    pairs = match(kp_f, kp_m, device)
    return Matches(
        kp_f.points[pairs[:, 0]],
        kp_m.points[pairs[:, 1]],
        len(kp_f.points),
        len(kp_m.points),
        name,
    )
