"""kornia's homography tutorial pair: Oxford graf img1 -> img2, ours vs peers.

    python benchmarks/bench_graf.py                   # needs the shared data
    python benchmarks/bench_graf.py --data /path/to/shared/data

The pair and its ground truth ``H1to2p`` are read from
``<data>/oxford_affine/graf`` (``--data``, else ``NAPARI_COREG_DATA``, else
``../shared/data`` beside the repository); without them the suite is skipped
with a message. Each method runs in its own child process
(:func:`harness.run_case`); records go to ``records.json`` (``graf``).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import harness
import numpy as np
import peers as PR
from bench_pairs import ours_register
from report_tables import OURS, fmt_err
from scoring import error_px, gray

from napari_coreg.transforms import reverse_axes

SUITE = 'graf'
GRAF = 'oxford_affine/graf'
Runner = tuple[str, str, Callable[[np.ndarray, np.ndarray], Any]]


def load_graf(folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """img1, img2 (RGB float32 in [0, 1]) and H1to2 in (row, col)."""
    import cv2

    def rgb(name: str) -> np.ndarray:
        img = cv2.imread(str(folder / name), cv2.IMREAD_COLOR)
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0

    h_xy = np.loadtxt(folder / 'H1to2p')
    return rgb('img1.ppm'), rgb('img2.ppm'), reverse_axes(h_xy / h_xy[2, 2])


def warp_l1(img1: np.ndarray, est_rc, truth_rc) -> float:
    """Mean |img1 warped by est - img1 warped by truth| into img2's frame."""
    import cv2

    if est_rc is None or not np.all(np.isfinite(est_rc)):
        return float('nan')
    h, w = img1.shape[:2]

    def warp(m):
        return cv2.warpPerspective(
            img1, reverse_axes(m), (w, h), flags=cv2.INTER_LINEAR
        )

    return float(np.abs(warp(est_rc) - warp(truth_rc)).mean())


def _gray_run(fn, img1, img2):
    return fn(gray(img1), gray(img2))


def _kornia_tutorial(img1, img2):
    """The tutorial's order: src=img1, dst=img2; returns img1_from_img2."""
    est = PR.kornia_register(img2, img1, model='homography', **PR.KORNIA_TUTORIAL)
    return None if est is None else np.linalg.inv(est)


def runners(with_ours: bool, with_peers: bool, tutorial: bool = True) -> list[Runner]:
    """(who, label, fn(img1, img2) -> H1to2 (row, col) estimate)."""
    out: list[Runner] = []
    if with_peers:
        if tutorial:
            label = (
                'homography, tutorial settings (RGB, L1, 6 levels, '
                'Adam 1e-3, 100 it/level)'
            )
            out.append((PR.KORNIA, label, _kornia_tutorial))
        for levels in (6, None):
            label = f'Homography, {levels or "auto (coarsest >= 64 px)"} levels (gray)'
            ecc = functools.partial(PR.ecc_register, motion='homography', levels=levels)
            out.append((PR.ECC, label, functools.partial(_gray_run, ecc)))
    if with_ours:
        for metric in (None, 'l1', 'ncc', 'mi'):
            kw = {'model': 'homography'} | ({'metric': metric} if metric else {})
            ours = functools.partial(ours_register, **kw)
            label = f'homography ({metric or "defaults"}, gray)'
            out.append((OURS, label, functools.partial(_gray_run, ours)))
    return out


def run_method(folder: str, who: str, label: str) -> dict[str, Any]:
    """Register the graf pair with one method (in a child process)."""
    PR.limit_threads()
    fn = next(f for w, m, f in runners(True, True) if (w, m) == (who, label))
    img1, img2, truth = load_graf(Path(folder))
    with contextlib.suppress(Exception):  # untimed: imports, first-call costs
        fn(img1[:128, :128].copy(), img2[:128, :128].copy())
    error = None
    harness.baseline()
    with harness.timed() as t:
        try:
            est = fn(img1, img2)
        except Exception as exc:  # noqa: BLE001 - a failure is a result
            est, error = None, f'{type(exc).__name__}: {exc}'[:300]
    return {
        'who': who,
        'method': label,
        'time': t['seconds'],
        'error': error,
        'err': error_px(est, truth, img1.shape),
        'l1': warp_l1(img1, est, truth),
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """This suite's options (none beyond the common ``--data``)."""


def quick(args: argparse.Namespace) -> None:
    """Smoke settings: no kornia tutorial run (about 20 s)."""
    args.graf_tutorial = False


def run(args: argparse.Namespace, store: dict, log) -> set[str]:
    """Measure every method, merge into ``store['graf']``; return groups run."""
    folder = harness.find_data(GRAF, args.data, log)
    if folder is None:
        return set()
    with_ours, with_peers = args.only != 'peers', args.only != 'ours'
    todo = runners(with_ours, with_peers, getattr(args, 'graf_tutorial', True))
    out = []
    for who, label, _ in todo:
        kwargs = {'folder': str(folder), 'who': who, 'label': label}
        rec = harness.run_case(
            SUITE, f'{who}: {label}', 'bench_graf', 'run_method', kwargs
        )
        if rec['status'] != 'ok':
            log(f'graf: {who} {label}: {rec["status"]} {rec["error"]}')
            continue
        out.append(rec['result'])
        r = rec['result']
        log(
            f'graf: {who:24s} {label:60s} err {fmt_err(r["err"])} px '
            f'L1 {r["l1"]:.4f} {r["time"]:.2f} s'
        )
    store['graf'] = harness.merge(
        store.get('graf', []), out, lambda r: (r['who'], r['method'])
    )
    return {OURS if r['who'] == OURS else 'peers' for r in out}


if __name__ == '__main__':
    import driver

    driver.main([SUITE], doc=__doc__)
