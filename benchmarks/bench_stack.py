"""Stack benchmark: a drift stack registered by us and by the peers, side by side.

    python benchmarks/bench_stack.py                  # 100 x 512^2, + memory check
    python benchmarks/bench_stack.py --frames 30 --no-memory
    python benchmarks/bench_stack.py --memory-only --memory-gb 1

The stack: ``frames`` crops of ``size^2`` px from scikit-image's camera
(rescaled to 2 x size, cubic), moved by a random walk of rigid motions
(rotation steps N(0, 0.3 deg), shift steps N(0, 1.5 px) per axis, about the
crop centre), Gaussian noise sigma 0.02 on [0, 1] intensities, float32.
Frame 0 is the unmoved crop, so the truth ``moving_from_fixed`` of frame i
(reference = frame 0) is the walk's ``frame_from_world`` matrix.

Every method registers each frame to the previous one and chains the
transforms (StackReg's way, ``reference='previous'``); ours also runs with
``reference='first'``. Errors are corner errors (mean distance of the four
corners and the centre, px) of each frame's transform against the truth:
*pairwise* (frame i against frame i-1, what one registration achieves) and
*chained* (frame i against frame 0, which accumulates the pairwise errors of
the chain, about sqrt(i) times larger for random errors).

Peers (PEERS.md settings): pystackreg 0.2.8 ``StackReg.register_stack``
(TRANSLATION and RIGID_BODY, ``reference='previous'``); SimpleITK
``ImageRegistrationMethod`` per frame pair (Euler2D, Correlation, 25 %
random sampling, 4 levels, PEERS.md optimiser settings). Threads: torch,
SimpleITK and OpenCV limited to 2; pystackreg is single-threaded.

The memory check registers a memory-mapped uint16 ``.npy`` stack of about
``memory_gb`` GB in a subprocess (``reference='previous'``, aligned stack
written to an ``.npy`` on disk) and samples the process's anonymous resident
memory (``RssAnon``: everything but file pages) every 20 ms. The
optimisation is cut to 2 iterations per level: the check measures memory,
and a batch's buffers are the same size whatever the iteration count.
"""

from __future__ import annotations

import os

for _var in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS', 'OPENBLAS_NUM_THREADS'):
    os.environ.setdefault(_var, '2')

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import textwrap  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
THREADS = 2
ROTATION_STEP_DEG = 0.3
SHIFT_STEP_PX = 1.5
NOISE = 0.02


# --------------------------------------------------------------------------
# the stack


def _walk(n: int, size: int, seed: int) -> np.ndarray:
    """``frame_from_world`` per frame (numpy order, about the crop centre)."""
    rng = np.random.default_rng(seed)
    centre = np.full(2, (size - 1) / 2)
    angle, shift = 0.0, np.zeros(2)
    out = np.empty((n, 3, 3))
    for i in range(n):
        if i:
            angle += rng.normal(0, ROTATION_STEP_DEG)
            shift += rng.normal(0, SHIFT_STEP_PX, 2)
        a = np.deg2rad(angle)
        rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        out[i] = np.eye(3)
        out[i, :2, :2] = rot
        out[i, :2, 2] = centre + shift - rot @ centre
    return out


def _source(size: int) -> np.ndarray:
    from skimage import data
    from skimage.transform import rescale

    image = data.camera().astype(np.float64) / 255.0
    factor = 2 * size / min(image.shape)
    if factor > 1:
        image = np.clip(rescale(image, factor, order=3), 0, 1)
    return image


def drift_stack(n: int = 100, size: int = 512, seed: int = 0):
    """``(stack (n, size, size) float32, truth (n, 3, 3))``, see the module doc."""
    from scipy import ndimage

    source = _source(size)
    offset = (np.array(source.shape) - size) / 2
    truth = _walk(n, size, seed)
    rng = np.random.default_rng(seed + 1)
    stack = np.empty((n, size, size), np.float32)
    for i in range(n):
        pull = np.linalg.inv(truth[i])
        pull[:2, 2] += offset
        frame = ndimage.affine_transform(
            source, pull, output_shape=(size, size), order=3, mode='mirror'
        )
        stack[i] = np.clip(frame + rng.normal(0, NOISE, frame.shape), 0, 1)
    return stack, truth


def _errors(matrices: np.ndarray, truth: np.ndarray, shape) -> dict:
    """Pairwise and chained corner errors per frame (px), frames 1..n-1."""
    from napari_coreg.transforms import corner_error

    pair, chain = [], []
    for i in range(1, len(truth)):
        chain.append(corner_error(matrices[i], truth[i], shape))
        est = matrices[i] @ np.linalg.inv(matrices[i - 1])
        true = truth[i] @ np.linalg.inv(truth[i - 1])
        pair.append(corner_error(est, true, shape))
    pair, chain = np.array(pair), np.array(chain)
    return {
        'pair_median': float(np.median(pair)),
        'pair_max': float(pair.max()),
        'chain_median': float(np.median(chain)),
        'chain_max': float(chain.max()),
        'frames_over_0.1px': int((chain > 0.1).sum()),
    }


# --------------------------------------------------------------------------
# the methods


def ours(stack, model='rigid', reference='previous', **settings):
    import torch

    from napari_coreg import register_stack

    torch.set_num_threads(THREADS)
    start = time.perf_counter()
    result = register_stack(
        stack, reference=reference, model=model, metric='ncc', **settings
    )
    seconds = time.perf_counter() - start
    return (
        result.moving_from_fixed,
        seconds,
        {
            'batch_size': result.settings['batch_size'],
            'iterations_per_level': [
                float(np.mean([b.levels[k].iterations for b in result.batches]))
                for k in range(len(result.batches[0].levels))
            ],
        },
    )


def stackreg(stack, mode='RIGID_BODY'):
    from pystackreg import StackReg

    from napari_coreg.transforms import reverse_axes

    sr = StackReg(getattr(StackReg, mode))
    start = time.perf_counter()
    tmats = sr.register_stack(stack.astype(np.float64), reference='previous')
    seconds = time.perf_counter() - start
    # tmats[k] maps frame-0 (x, y) to frame-k (x, y): moving_from_fixed in x, y
    return reverse_axes(tmats), seconds, {}


def sitk_loop(stack):
    import SimpleITK as sitk

    sys.path.insert(0, str(HERE))
    import peers

    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(THREADS)
    n = len(stack)
    matrices = np.repeat(np.eye(3)[None], n, axis=0)
    failed = 0
    start = time.perf_counter()
    for i in range(1, n):
        pair = peers.sitk_register(stack[i - 1], stack[i], 'euler', 'correlation')
        if pair is None:
            failed += 1
            pair = np.eye(3)
        matrices[i] = pair @ matrices[i - 1]
    seconds = time.perf_counter() - start
    return matrices, seconds, {'failed': failed}


# --------------------------------------------------------------------------
# memory


def _memory_child(path: str, out: str) -> None:
    """Run in a subprocess: register ``path``, print peak memory as JSON."""
    import threading

    def status() -> dict:
        values = {}
        with open('/proc/self/status') as f:
            for line in f:
                key, _, rest = line.partition(':')
                if key in ('RssAnon', 'RssFile', 'RssShmem', 'VmHWM'):
                    values[key] = int(rest.split()[0]) * 1024
        return values

    import torch

    from napari_coreg import register_stack

    torch.set_num_threads(THREADS)
    stack = np.load(path, mmap_mode='r')
    register_stack(stack[:3], iterations=1)  # warm-up: libraries loaded
    baseline = status()
    peak = dict(baseline)
    done = threading.Event()

    def sample():
        while not done.wait(0.02):
            for key, value in status().items():
                peak[key] = max(peak[key], value)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    start = time.perf_counter()
    result = register_stack(
        stack, reference='previous', model='rigid', out=out, iterations=2
    )
    seconds = time.perf_counter() - start
    done.set()
    thread.join()
    print(
        json.dumps(
            {
                'baseline': baseline,
                'peak': peak,
                'seconds': seconds,
                'frames': int(stack.shape[0]),
                'shape': list(stack.shape),
                'input_bytes': int(stack.nbytes),
                'batch_size': result.settings['batch_size'],
            }
        )
    )


def memory_check(gb: float = 1.0, size: int = 1024, log=print) -> dict:
    """Register a ~``gb`` GB memory-mapped uint16 stack in a subprocess."""
    from scipy import ndimage

    n = int(round(gb * 1e9 / (size * size * 2)))
    with tempfile.TemporaryDirectory(dir=os.environ.get('BENCH_TMP')) as tmp:
        path, out = Path(tmp) / 'stack.npy', Path(tmp) / 'aligned.npy'
        stack = np.lib.format.open_memmap(
            path, mode='w+', dtype=np.uint16, shape=(n, size, size)
        )
        base = _source(size)[: size + 64, : size + 64]
        rng = np.random.default_rng(0)
        shift = np.zeros(2)
        for i in range(n):
            shift += rng.normal(0, 0.7, 2)
            shift = np.clip(shift, -30, 30)
            frame = ndimage.shift(base, shift, order=1)[32 : 32 + size, 32 : 32 + size]
            stack[i] = np.round(frame * 60000).astype(np.uint16)
        stack.flush()
        del stack
        log(f'memory check: {n} x {size}^2 uint16 = {n * size * size * 2 / 1e9:.2f} GB')
        code = (
            f'import sys; sys.path.insert(0, {str(HERE)!r}); import bench_stack; '
            f'bench_stack._memory_child({str(path)!r}, {str(out)!r})'
        )
        proc = subprocess.run(
            [sys.executable, '-c', code], capture_output=True, text=True, check=False
        )
        if proc.returncode != 0:
            raise RuntimeError(f'memory check failed:\n{proc.stderr[-3000:]}')
        return json.loads(proc.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------
# the report


def _row(name, matrices, seconds, n, truth, shape, note=''):
    err = _errors(matrices, truth, shape)
    return (
        f'| {name} | {1000 * seconds / (n - 1):.0f} | {err["pair_median"]:.3f} / '
        f'{err["pair_max"]:.3f} | {err["chain_median"]:.3f} / {err["chain_max"]:.3f} '
        f'| {err["frames_over_0.1px"]} | {note} |'
    )


def _load() -> str:
    try:
        return ', '.join(f'{x:.1f}' for x in os.getloadavg())
    except OSError:  # pragma: no cover
        return 'n/a'


def run(
    frames: int = 100,
    size: int = 512,
    memory: bool = True,
    memory_gb: float = 1.0,
    memory_size: int = 1024,
    sitk: bool = True,
    log=print,
) -> str:
    """Run the stack benchmark and return it as a markdown section."""
    import pystackreg
    import SimpleITK
    import torch

    log(f'drift stack {frames} x {size}^2 ...')
    stack, truth = drift_stack(frames, size)
    shape = stack.shape[1:]
    load_before = _load()
    rows = []
    runs = [
        ('napari-coreg, torch CPU, rigid NCC, previous', ours, {}),
        ('napari-coreg, torch CPU, rigid NCC, first', ours, {'reference': 'first'}),
        (
            'napari-coreg, torch CPU, translation NCC, previous',
            ours,
            {'model': 'translation'},
        ),
        ('pystackreg RIGID_BODY, previous', stackreg, {'mode': 'RIGID_BODY'}),
        ('pystackreg TRANSLATION, previous', stackreg, {'mode': 'TRANSLATION'}),
    ]
    if sitk:
        runs.append(('SimpleITK Euler2D Correlation, per-frame loop', sitk_loop, {}))
    results = {}
    for name, fn, kwargs in runs:
        log(f'  {name} ...')
        matrices, seconds, info = fn(stack, **kwargs)
        note = ', '.join(f'{k} {v}' for k, v in info.items())
        if 'iterations_per_level' in info:
            its = '/'.join(f'{v:.0f}' for v in info['iterations_per_level'])
            note = f'batch {info["batch_size"]}, mean iterations per level {its}'
        rows.append(_row(name, matrices, seconds, frames, truth, shape, note))
        results[name] = seconds
        log(f'    {1000 * seconds / (frames - 1):.0f} ms/frame')
    ours_s = results[runs[0][0]]
    ref_s = results['pystackreg RIGID_BODY, previous']
    lines = [
        '## Stacks: drift correction of a time-lapse',
        '',
        f'{frames} frames of {size}x{size} px (camera, random walk of rigid motions: '
        f'rotation steps {ROTATION_STEP_DEG} deg, shift steps {SHIFT_STEP_PX} px '
        f'per axis, noise sigma {NOISE}); `python benchmarks/bench_stack.py`. '
        f'{datetime.date.today()}, {platform.processor() or platform.machine()}, '
        f'{os.cpu_count()} cores, {THREADS} threads per library, load average '
        f'before/after {load_before} / {_load()} (the machine is shared: '
        'times are upper bounds). torch '
        f'{torch.__version__}, pystackreg {getattr(pystackreg, "__version__", "?")}, '
        f'SimpleITK {SimpleITK.Version_VersionString()}.',
        '',
        'Time = registration only (per registered frame; the aligned stack is '
        'computed on demand). Errors in px: pairwise = frame i vs i-1 (one '
        'registration); chained = frame i vs frame 0 (accumulates along the '
        'chain); median / max over frames. Target: at most 50 ms per frame with '
        'errors at most 0.1 px. The translation rows are there for their time: '
        'the stack also rotates, which a translation cannot follow.',
        '',
        '| method | ms / frame | pairwise error med / max | chained error med / max '
        '| frames > 0.1 px (chained) | notes |',
        '|---|---|---|---|---|---|',
        *rows,
        '',
        f'Rigid, previous: napari-coreg {1000 * ours_s / (frames - 1):.0f} ms/frame vs '
        f'pystackreg {1000 * ref_s / (frames - 1):.0f} ms/frame '
        f'({ref_s / ours_s:.2f}x).',
    ]
    if memory:
        log('memory check ...')
        m = memory_check(memory_gb, memory_size, log=log)
        anon_peak = m['peak']['RssAnon'] / 2**20
        anon_extra = (m['peak']['RssAnon'] - m['baseline']['RssAnon']) / 2**20
        lines += [
            '',
            f'Memory: a memory-mapped uint16 stack of {m["input_bytes"] / 1e9:.2f} GB '
            f'({m["frames"]} x {m["shape"][1]}x{m["shape"][2]}) registered '
            f'(previous, rigid, batch {m["batch_size"]}, 2 iterations per level) '
            f'and written to an .npy on disk in {m["seconds"]:.0f} s. Peak anonymous '
            f'memory (RssAnon, all but file pages) {anon_peak:.0f} MiB, of which '
            f'{anon_extra:.0f} MiB above the process after imports and a warm-up; '
            f'peak RSS including file pages (input and output pages) '
            f'{m["peak"]["VmHWM"] / 2**20:.0f} MiB. Target: under 1 GB beyond the '
            "input's pages.",
        ]
    return '\n'.join(lines) + '\n'


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--frames', type=int, default=100)
    parser.add_argument('--size', type=int, default=512)
    parser.add_argument('--no-memory', action='store_true')
    parser.add_argument('--memory-only', action='store_true')
    parser.add_argument('--memory-gb', type=float, default=1.0)
    parser.add_argument('--memory-size', type=int, default=1024)
    parser.add_argument('--no-sitk', action='store_true')
    parser.add_argument('--out', type=Path, default=HERE / 'results' / 'stack.md')
    args = parser.parse_args(argv)

    def log(message):
        print(message, file=sys.stderr, flush=True)

    if args.memory_only:
        print(
            json.dumps(
                memory_check(args.memory_gb, args.memory_size, log=log), indent=1
            )
        )
        return
    text = run(
        args.frames,
        args.size,
        memory=not args.no_memory,
        memory_gb=args.memory_gb,
        memory_size=args.memory_size,
        sitk=not args.no_sitk,
        log=log,
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(textwrap.dedent(text))


if __name__ == '__main__':
    main()
