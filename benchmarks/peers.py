"""Peer registration runners with the settings of PEERS.md (../shared/PEERS.md).

Every runner takes ``(fixed, moving)`` (2D float32 in [0, 1]; kornia also
accepts (H, W, 3)) and returns ``moving_from_fixed`` as a 3x3 float64 in
numpy (row, col) order, or None when the peer raises.  Conversions from the
peers' (x, y) = (col, row) matrices go through
``napari_coreg.transforms.reverse_axes`` only.

Directions (checked by ``python benchmarks/peers.py``):

* SimpleITK: the optimised transform maps fixed physical points to moving
  ones; with unit spacing and zero origin physical = (x, y) pixel index.
* OpenCV ``findTransformECC(template=fixed, input=moving)``: the warp maps
  template (x, y) to input (x, y), i.e. fixed -> moving.
* kornia ``ImageRegistrator.register(src=moving, dst=fixed)``: maps fixed
  normalised coords (align_corners=False) to moving normalised coords.
* pystackreg ``register(ref=fixed, mov=moving)``: fixed (x, y) -> moving.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np
from harness import threads

from napari_coreg.transforms import reverse_axes

THREADS = threads()


_APPLIED: list[int] = []


def limit_threads(n: int | None = None) -> None:
    """Limit torch, OpenCV and SimpleITK to ``n`` threads (default: the harness's).

    Cheap to call again: only a change of ``n`` is applied.
    """
    global THREADS
    import cv2
    import SimpleITK as sitk
    import torch

    n = n or THREADS
    if _APPLIED and _APPLIED[-1] == n:
        return
    torch.set_num_threads(n)
    cv2.setNumThreads(n)
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(n)
    THREADS = n
    _APPLIED.append(n)


def _safe(fn):
    """Return None instead of raising (a failed registration)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception:  # noqa: BLE001 - any peer failure counts as a failure
            return None

    return wrapper


def pyramid_levels(shape, coarsest: int) -> int:
    """Number of halving levels so that the coarsest side is >= coarsest."""
    return 1 + max(0, int(math.floor(math.log2(min(shape[:2]) / coarsest))))


# --------------------------------------------------------------------------
# SimpleITK


def _sitk_matrix_xy(transform) -> np.ndarray:
    """3x3 (x, y) matrix of an affine-type SimpleITK transform, by probing."""
    o = np.array(transform.TransformPoint((0.0, 0.0)))
    ex = np.array(transform.TransformPoint((1.0, 0.0))) - o
    ey = np.array(transform.TransformPoint((0.0, 1.0))) - o
    m = np.eye(3)
    m[:2, 0], m[:2, 1], m[:2, 2] = ex, ey, o
    return m


@_safe
def sitk_register(
    fixed, moving, transform='euler', metric='correlation', sampling='random'
):
    """SimpleITK ImageRegistrationMethod.

    ``sampling="random"``: PEERS.md settings (25 % random, seed 1, 4 levels
    8/4/2/1 with sigmas 4/2/1/0 px, learning rate S/64).  ``"full"``: all
    pixels, 3 levels 4/2/1 with sigmas 2/1/0 px, learning rate 1 (with
    physical-shift scales: a step of about 1 px).
    """
    import SimpleITK as sitk

    limit_threads()
    f = sitk.GetImageFromArray(np.asarray(fixed, np.float32))
    m = sitk.GetImageFromArray(np.asarray(moving, np.float32))
    tx = sitk.Euler2DTransform() if transform == 'euler' else sitk.AffineTransform(2)
    init = sitk.CenteredTransformInitializer(
        f, m, tx, sitk.CenteredTransformInitializerFilter.GEOMETRY
    )
    reg = sitk.ImageRegistrationMethod()
    if metric == 'meansquares':
        reg.SetMetricAsMeanSquares()
    elif metric == 'correlation':
        reg.SetMetricAsCorrelation()
    else:
        reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    if sampling == 'random':
        reg.SetMetricSamplingStrategy(reg.RANDOM)
        reg.SetMetricSamplingPercentage(0.25, 1)
        shrink, sigmas, lr = [8, 4, 2, 1], [4, 2, 1, 0], min(fixed.shape) / 64.0
    else:
        reg.SetMetricSamplingStrategy(reg.NONE)
        shrink, sigmas, lr = [4, 2, 1], [2, 1, 0], 1.0
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsRegularStepGradientDescent(
        learningRate=lr,
        minStep=1e-3,
        numberOfIterations=200,
        relaxationFactor=0.5,
        gradientMagnitudeTolerance=1e-8,
    )
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetShrinkFactorsPerLevel(shrink)
    reg.SetSmoothingSigmasPerLevel(sigmas)
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOff()
    reg.SetInitialTransform(init, inPlace=False)
    out = reg.Execute(f, m)
    return reverse_axes(_sitk_matrix_xy(out))


# --------------------------------------------------------------------------
# OpenCV ECC


ECC_MOTIONS = ('translation', 'euclidean', 'affine', 'homography')


@_safe
def ecc_register(fixed, moving, motion='affine', levels=None, coarsest=64):
    """OpenCV findTransformECC coarse to fine on a pyrDown pyramid.

    ``levels=None``: as many levels as keep the coarsest side >= coarsest.
    The warp (fixed -> moving, (x, y)) is carried as S W S^-1, S=diag(2,2,1).
    """
    import cv2

    limit_threads()
    mode = getattr(cv2, f'MOTION_{motion.upper()}')
    n = levels or pyramid_levels(fixed.shape, coarsest)
    pf = [np.asarray(fixed, np.float32)]
    pm = [np.asarray(moving, np.float32)]
    for _ in range(n - 1):
        pf.append(cv2.pyrDown(pf[-1]))
        pm.append(cv2.pyrDown(pm[-1]))
    criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-6)
    rows = 3 if motion == 'homography' else 2
    warp = np.eye(3, dtype=np.float32)
    up = np.diag([2.0, 2.0, 1.0])
    for lvl in reversed(range(n)):
        _, w = cv2.findTransformECC(
            pf[lvl], pm[lvl], warp[:rows].copy(), mode, criteria, None, 5
        )
        warp[:rows] = w
        if lvl:
            warp = (up @ warp @ np.linalg.inv(up)).astype(np.float32)
    return reverse_axes(warp.astype(np.float64))


# --------------------------------------------------------------------------
# kornia ImageRegistrator


def kornia_norm_from_px(height: int, width: int) -> np.ndarray:
    """(x, y) pixel -> normalised [-1, 1] with align_corners=False."""
    return np.array(
        [
            [2.0 / width, 0, 1.0 / width - 1],
            [0, 2.0 / height, 1.0 / height - 1],
            [0, 0, 1],
        ]
    )


def kornia_to_rc(matrix_norm, height: int, width: int) -> np.ndarray:
    """Normalised moving_from_fixed (x, y) -> pixel (row, col)."""
    n = kornia_norm_from_px(height, width)
    return reverse_axes(np.linalg.inv(n) @ np.asarray(matrix_norm, float) @ n)


def _to_tensor(img):
    import torch

    a = np.asarray(img, np.float32)
    t = torch.from_numpy(a[None] if a.ndim == 2 else a.transpose(2, 0, 1).copy())
    return t[None]


def _optimizer_with_rot_lr(registrator, rot_lr):
    """An Adam factory giving the Similarity rotation its own lr."""
    import torch

    def factory(params, lr):
        rot = getattr(registrator.model, 'rot', None)
        rest = [p for p in params if p is not rot]
        groups = [{'params': rest}]
        if isinstance(rot, torch.nn.Parameter):
            groups.append({'params': [rot], 'lr': rot_lr})
        return torch.optim.Adam(groups, lr=lr)

    return factory


KORNIA_TUNED = {
    'coarsest': 32,
    'lr': 2e-3,
    'rot_lr': 0.2,
    'iterations': 200,
    'tolerance': 1e-5,
}
# the homography tutorial: error_tol 1e-8, i.e. every iteration runs
KORNIA_TUTORIAL = {'levels': 6, 'lr': 1e-3, 'iterations': 100, 'tolerance': 1e-8}


@_safe
def kornia_register(
    fixed,
    moving,
    model='homography',
    levels=5,
    lr=1e-3,
    iterations=100,
    tolerance=1e-4,
    coarsest=None,
    rot_lr=None,
):
    """kornia.geometry.ImageRegistrator (L1, Adam); defaults = kornia's."""
    import torch
    import torch.nn.functional as F
    from kornia.geometry import ImageRegistrator

    limit_threads()
    if coarsest is not None:
        levels = pyramid_levels(fixed.shape, coarsest)
    reg = ImageRegistrator(
        model,
        loss_fn=F.l1_loss,
        pyramid_levels=levels,
        lr=lr,
        num_iterations=iterations,
        tolerance=tolerance,
    )
    if rot_lr is not None:
        reg.optimizer = _optimizer_with_rot_lr(reg, rot_lr)
    with torch.no_grad():
        src, dst = _to_tensor(moving), _to_tensor(fixed)
    m = reg.register(src, dst).detach().double().numpy()[0]
    return kornia_to_rc(m, *fixed.shape[:2])


# --------------------------------------------------------------------------
# pystackreg


@_safe
def stackreg_register(fixed, moving, mode='RIGID_BODY'):
    """pystackreg StackReg(mode).register(ref=fixed, mov=moving)."""
    from pystackreg import StackReg

    sr = StackReg(getattr(StackReg, mode))
    tmat = sr.register(np.asarray(fixed, np.float64), np.asarray(moving, np.float64))
    return reverse_axes(tmat)


# --------------------------------------------------------------------------
# the configurations benchmarked


MONO = 'mono'
MULTI = 'multi'


@dataclass(frozen=True)
class Config:
    """A peer (or our engine) with fixed settings, and where it runs."""

    who: str  # "ours" or the peer's name
    method: str  # model and metric, as shown in the tables
    fn: object = field(compare=False)
    families: tuple  # ((family, modality), ...)
    max_size: int = 1 << 30

    def applies(self, family: str, modality: str, size: int) -> bool:
        """Whether this configuration runs on a family, modality and size."""
        return (family, modality) in self.families and size <= self.max_size

    def run(self, fixed, moving):
        """Register ``moving`` onto ``fixed``; ``moving_from_fixed`` or None."""
        return self.fn(fixed, moving)


P = functools.partial
SITK, ECC, KORNIA, STACKREG = (
    'SimpleITK',
    'OpenCV ECC',
    'kornia ImageRegistrator',
    'pystackreg',
)


def peer_configs() -> list[Config]:
    """Every peer configuration and the case families it runs on."""
    rig, aff, hom = ('rigid', MONO), ('affine', MONO), ('homography', MONO)
    rig_m, aff_m, hom_m = ('rigid', MULTI), ('affine', MULTI), ('homography', MULTI)
    tra, cap = ('translation', MONO), ('capture', MONO)
    sk, ecc, kr = sitk_register, ecc_register, kornia_register
    return [
        Config(
            SITK,
            'Euler2D (MeanSquares)',
            P(sk, transform='euler', metric='meansquares'),
            (rig,),
        ),
        Config(
            SITK,
            'Euler2D (Correlation)',
            P(sk, transform='euler', metric='correlation'),
            (rig, cap),
        ),
        Config(
            SITK,
            'Euler2D (Mattes MI)',
            P(sk, transform='euler', metric='mattes'),
            (rig, rig_m),
        ),
        Config(
            SITK,
            'Affine (Correlation)',
            P(sk, transform='affine', metric='correlation'),
            (aff,),
        ),
        Config(
            SITK,
            'Affine (Mattes MI)',
            P(sk, transform='affine', metric='mattes'),
            (aff, aff_m),
        ),
        Config(
            SITK,
            'Euler2D (Mattes MI, full sampling, 3 levels)',
            P(sk, transform='euler', metric='mattes', sampling='full'),
            (rig_m,),
            512,
        ),
        Config(
            SITK,
            'Affine (Mattes MI, full sampling, 3 levels)',
            P(sk, transform='affine', metric='mattes', sampling='full'),
            (aff_m,),
            512,
        ),
        Config(ECC, 'Translation', P(ecc, motion='translation'), (tra,)),
        Config(ECC, 'Euclidean', P(ecc, motion='euclidean'), (rig, rig_m, cap)),
        Config(ECC, 'Affine', P(ecc, motion='affine'), (aff, aff_m)),
        Config(ECC, 'Homography', P(ecc, motion='homography'), (hom, hom_m)),
        Config(
            ECC, 'Euclidean, 3 levels', P(ecc, motion='euclidean', levels=3), (rig,)
        ),
        Config(ECC, 'Affine, 3 levels', P(ecc, motion='affine', levels=3), (aff,)),
        Config(
            ECC, 'Homography, 3 levels', P(ecc, motion='homography', levels=3), (hom,)
        ),
        Config(KORNIA, 'similarity, defaults', P(kr, model='similarity'), (rig,)),
        Config(KORNIA, 'homography, defaults', P(kr, model='homography'), (hom,)),
        Config(
            KORNIA,
            'similarity, tuned',
            P(kr, model='similarity', **KORNIA_TUNED),
            (rig,),
        ),
        Config(
            KORNIA,
            'homography, tuned',
            P(kr, model='homography', **KORNIA_TUNED),
            (hom,),
        ),
        Config(
            STACKREG, 'TRANSLATION', P(stackreg_register, mode='TRANSLATION'), (tra,)
        ),
        Config(
            STACKREG, 'RIGID_BODY', P(stackreg_register, mode='RIGID_BODY'), (rig, cap)
        ),
        Config(STACKREG, 'AFFINE', P(stackreg_register, mode='AFFINE'), (aff,)),
    ]


# --------------------------------------------------------------------------
# direction self-check: python benchmarks/peers.py


def check_kornia_conversion(height=37, width=53) -> float:
    """Max difference between kornia's warp with a normalised matrix and a
    scipy pull-back with ``kornia_to_rc`` of it (non-square on purpose)."""
    import torch
    from kornia.geometry.transform import homography_warp
    from scipy import ndimage

    from napari_coreg.transforms import apply_matrix

    rng = np.random.default_rng(0)
    img = rng.random((height, width)).astype(np.float32)
    m = np.eye(3) + rng.uniform(-0.08, 0.08, (3, 3)) * [
        [1, 1, 1],
        [1, 1, 1],
        [0.2, 0.2, 0],
    ]
    warped = homography_warp(
        _to_tensor(img),
        torch.from_numpy(m[None]).float(),
        (height, width),
        align_corners=False,
    )[0, 0].numpy()
    rr, cc = np.mgrid[0:height, 0:width]
    q = apply_matrix(
        kornia_to_rc(m, height, width), np.column_stack([rr.ravel(), cc.ravel()])
    )
    ref = ndimage.map_coordinates(img, q.T, order=1, cval=np.nan).reshape(height, width)
    inside = np.isfinite(ref) & (warped != 0)
    return float(np.abs(warped - ref)[inside].max())


def _self_check() -> None:
    import time

    from scoring import error_px

    from napari_coreg.cases import benchmark_case as make_case

    limit_threads()
    diff = check_kornia_conversion()
    print(f'kornia conversion: max |kornia warp - scipy warp| = {diff:.2e}')
    # kornia's conversion on a pure translation where it converges
    trans = make_case('translation', MONO, 256, 0)
    print('translation truth (row, col) shift:', trans.truth[:2, 2].round(2))
    checks = [
        (
            'kornia translation',
            trans,
            P(
                kornia_register,
                model='translation',
                lr=1e-2,
                iterations=150,
                tolerance=1e-7,
            ),
        ),
        (
            'sitk euler corr',
            make_case('rigid', MONO, 256, 0),
            P(sitk_register, transform='euler'),
        ),
        (
            'ecc euclidean',
            make_case('rigid', MONO, 256, 0),
            P(ecc_register, motion='euclidean'),
        ),
        (
            'ecc homography',
            make_case('homography', MONO, 256, 0),
            P(ecc_register, motion='homography'),
        ),
        ('stackreg rigid', make_case('rigid', MONO, 256, 0), stackreg_register),
        (
            'kornia homography tuned',
            make_case('homography', MONO, 256, 0),
            P(kornia_register, model='homography', **KORNIA_TUNED),
        ),
    ]
    for label, case, fn in checks:
        t0 = time.perf_counter()
        est = fn(case.fixed, case.moving)
        dt = time.perf_counter() - t0
        err = error_px(est, case.truth, case.fixed.shape)
        print(f'{label:28s} {case.name:34s} err {err:8.3f} px  {dt:6.2f} s')


if __name__ == '__main__':
    _self_check()
