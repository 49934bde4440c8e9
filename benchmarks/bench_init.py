"""Global initialisation on the Oxford graf and boat pairs, both directions.

Two tables, printed as markdown:

1. *Whole route*: ours, ``register(fixed, moving, model='homography')`` with
   default settings (``init='auto'``: cheap starts, then Fourier-Mellin and
   features + batched ACA RANSAC, then gradient refinement) against OpenCV's
   classic route: SIFT, ratio-test matches, ``cv2.findHomography`` with
   ``USAC_MAGSAC``, then ``findTransformECC`` (homography, 3 levels) started
   from it. Corner error (mean over the fixed image's corners and centre) to
   the published ``H1toNp``, and wall time.
2. *RANSAC alone, same matches*: our batched RANSAC (ACA four-point solver,
   local optimisation) against ``cv2.findHomography`` (USAC_MAGSAC and
   plain RANSAC) on one set of matches (our scikit-image SIFT matches on the
   512 px views): time, hypotheses per second, inliers at 2 view pixels.

Run ``python benchmarks/bench_init.py [--quick]`` from the repository root
(needs ../shared/data or NAPARI_COREG_DATA). Threads are limited to 2.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from napari_coreg import corner_error, register, reverse_axes

DATA = Path(
    os.environ.get(
        'NAPARI_COREG_DATA', Path(__file__).resolve().parents[2] / 'shared' / 'data'
    )
)
PAIRS = [('graf', 2), ('graf', 3), ('graf', 4), ('boat', 2), ('boat', 3), ('boat', 4)]
QUICK = [('graf', 2), ('boat', 2)]
DIRECTIONS = ('imgN-fixed', 'img1-fixed')
THREADS = 2
ECC_LEVELS = 3
MAGSAC_PX = 3.0


def _gray(path: Path) -> np.ndarray:
    from skimage import color, io

    image = io.imread(path)
    if image.ndim == 3:
        return color.rgb2gray(image).astype(np.float32)
    return (image / 255.0).astype(np.float32)


def load_pair(sequence: str, n: int, direction: str):
    """Fixed, moving and the true ``moving_from_fixed`` in (row, col) pixels."""
    folder = DATA / 'oxford_affine' / sequence
    ext = 'ppm' if sequence == 'graf' else 'pgm'
    first = _gray(folder / f'img1.{ext}')
    other = _gray(folder / f'img{n}.{ext}')
    n_from_1 = reverse_axes(np.loadtxt(folder / f'H1to{n}p'))
    if direction == 'imgN-fixed':
        fixed, moving, truth = other, first, np.linalg.inv(n_from_1)
    else:
        fixed, moving, truth = first, other, n_from_1
    return fixed, moving, truth / truth[2, 2]


def ours(fixed: np.ndarray, moving: np.ndarray):
    started = time.perf_counter()
    result = register(fixed, moving, model='homography')
    seconds = time.perf_counter() - started
    report = result.settings['init_report']
    features = report['details'].get('features', {})
    detail = f'start: {report["winner"]}, init {report["seconds"]:.2f} s'
    if features:
        detail += f', {features["inliers"]}/{features["matches"]} inliers'
    return result.moving_from_fixed, seconds, detail


def _sift_matches(fixed: np.ndarray, moving: np.ndarray):
    """OpenCV SIFT keypoints matched with Lowe's ratio (0.8), (x, y) each."""
    import cv2

    sift = cv2.SIFT_create()
    found = [
        sift.detectAndCompute((np.clip(im, 0, 1) * 255).astype(np.uint8), None)
        for im in (fixed, moving)
    ]
    (kp_f, des_f), (kp_m, des_m) = found
    pairs = cv2.BFMatcher(cv2.NORM_L2).knnMatch(des_f, des_m, k=2)
    good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < 0.8 * p[1].distance]
    src = np.float32([kp_f[m.queryIdx].pt for m in good])
    dst = np.float32([kp_m[m.trainIdx].pt for m in good])
    return src, dst


def _ecc(fixed: np.ndarray, moving: np.ndarray, warp_xy: np.ndarray) -> np.ndarray:
    """findTransformECC (homography) on a pyrDown pyramid from ``warp_xy``."""
    import cv2

    levels_f, levels_m = [np.float32(fixed)], [np.float32(moving)]
    for _ in range(ECC_LEVELS - 1):
        levels_f.append(cv2.pyrDown(levels_f[-1]))
        levels_m.append(cv2.pyrDown(levels_m[-1]))
    criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-6)
    down = np.diag([0.5, 0.5, 1.0])
    shrink = np.linalg.matrix_power(down, ECC_LEVELS - 1)
    warp = (shrink @ warp_xy @ np.linalg.inv(shrink)).astype(np.float32)
    for level in reversed(range(ECC_LEVELS)):
        _, warp = cv2.findTransformECC(
            levels_f[level],
            levels_m[level],
            warp,
            cv2.MOTION_HOMOGRAPHY,
            criteria,
            None,
            5,
        )
        if level:
            warp = (np.linalg.inv(down) @ warp @ down).astype(np.float32)
    return warp.astype(np.float64)


def opencv(fixed: np.ndarray, moving: np.ndarray):
    import cv2

    started = time.perf_counter()
    src, dst = _sift_matches(fixed, moving)
    warp, inliers = cv2.findHomography(src, dst, cv2.USAC_MAGSAC, MAGSAC_PX)
    detail = f'{int(inliers.sum())}/{len(src)} inliers'
    magsac = reverse_axes(warp / warp[2, 2])
    try:
        refined = reverse_axes(_ecc(fixed, moving, warp))
    except cv2.error:
        refined, detail = magsac, detail + ', ECC failed'
    return magsac, refined, time.perf_counter() - started, detail


def ransac_table(pairs) -> list[str]:
    """Our RANSAC vs cv2.findHomography on the same matches."""
    import cv2

    from napari_coreg.init.features import detect, match
    from napari_coreg.init.fit import residuals
    from napari_coreg.init.ransac import ransac
    from napari_coreg.init.views import view_pair
    from napari_coreg.transforms import Grid

    rows = [
        '| pair (imgN fixed) | matches | ours: time (ms) / hypotheses / hyp/s / '
        'inliers | MAGSAC: time (ms) / inliers | RANSAC: time (ms) / inliers |',
        '|---|---|---|---|---|',
    ]
    for sequence, n in pairs:
        fixed, moving, _ = load_pair(sequence, n, 'imgN-fixed')
        views = view_pair(fixed, moving, Grid(fixed.shape), Grid(moving.shape), 512)
        kp_f, _ = detect(views[0].image)
        kp_m, _ = detect(views[1].image)
        pairs_ = match(kp_f, kp_m)
        src, dst = kp_f.points[pairs_[:, 0]], kp_m.points[pairs_[:, 1]]
        ransac(src, dst, 'homography', 2.0)  # warm up
        started = time.perf_counter()
        found = ransac(src, dst, 'homography', 2.0, seed=1)
        ours_ms = 1e3 * (time.perf_counter() - started)
        cells = []
        for method in (cv2.USAC_MAGSAC, cv2.RANSAC):
            started = time.perf_counter()
            warp, _ = cv2.findHomography(
                src[:, ::-1].astype(np.float32),
                dst[:, ::-1].astype(np.float32),
                method,
                2.0,
            )
            ms = 1e3 * (time.perf_counter() - started)
            count = int((residuals(reverse_axes(warp), src, dst) < 2.0).sum())
            cells.append(f'{ms:.1f} / {count}')
        rate = found.hypotheses / max(found.seconds, 1e-9)
        rows.append(
            f'| {sequence} 1-{n} | {len(src)} | {ours_ms:.1f} / {found.hypotheses} / '
            f'{rate:,.0f} / {found.n_inliers} | {cells[0]} | {cells[1]} |'
        )
    return rows


def route_table(pairs) -> list[str]:
    rows = [
        '| pair | fixed | ours: corner err (px) / time (s) | ours: how | '
        'OpenCV MAGSAC: err (px) | MAGSAC + ECC: err (px) / time (s) | OpenCV: how |',
        '|---|---|---|---|---|---|---|',
    ]
    print('\n'.join(rows), flush=True)
    for sequence, n in pairs:
        for direction in DIRECTIONS:
            fixed, moving, truth = load_pair(sequence, n, direction)
            mine, seconds, how = ours(fixed, moving)
            magsac, refined, cv_seconds, cv_how = opencv(fixed, moving)
            err = [corner_error(m, truth, fixed.shape) for m in (mine, magsac, refined)]
            rows.append(
                f'| {sequence} 1-{n} | {direction.split("-")[0]} | '
                f'{err[0]:.2f} / {seconds:.1f} | {how} | {err[1]:.2f} | '
                f'{err[2]:.2f} / {cv_seconds:.1f} | {cv_how} |'
            )
            print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--quick', action='store_true', help='graf and boat 1-2 only')
    args = parser.parse_args()
    import cv2
    import torch

    torch.set_num_threads(THREADS)
    cv2.setNumThreads(THREADS)
    pairs = QUICK if args.quick else PAIRS
    route_table(pairs)
    print()
    print('\n'.join(ransac_table(pairs)))


if __name__ == '__main__':
    main()
