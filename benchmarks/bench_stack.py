"""Stack benchmark: a drift stack registered by us and by the peers, side by side.

    python benchmarks/bench_stack.py                  # 100 x 512^2, + memory check
    python benchmarks/bench_stack.py --frames 30 --no-memory
    python benchmarks/bench_stack.py --memory-only --memory-gb 1
    python benchmarks/bench_stack.py --quick          # smoke: 6 x 64^2, tiny memory

The stack: :func:`napari_coreg.cases.drift_stack`, ``frames`` crops of
``size^2`` px from scikit-image's camera (rescaled to 2 x size, cubic), moved
by a random walk of rigid motions (rotation steps N(0, 0.3 deg), shift steps
N(0, 1.5 px) per axis, about the crop centre), Gaussian noise sigma 0.02 on
[0, 1] intensities, float32. Frame 0 is the unmoved crop, so the truth
``moving_from_fixed`` of frame i (reference = frame 0) is the walk's matrix.

Rigid body only. Ours and pystackreg run with ``reference='previous'`` (each
frame registered to the one before it, the transforms chained: StackReg's
way) and ``reference='first'`` (every frame registered to frame 0); the
SimpleITK loop chains neighbour pairs. Errors are corner errors (mean
distance of the four corners and the centre, px) of each frame's transform
against the truth: *pairwise* (frame i against frame i-1, what one
registration achieves) and *chained* (frame i against frame 0, which
accumulates the pairwise errors of the chain, about sqrt(i) times larger for
random errors).

Peers (PEERS.md settings): pystackreg ``StackReg.register_stack``
(RIGID_BODY, ``reference='previous'`` and ``'first'``); SimpleITK
``ImageRegistrationMethod`` per frame pair (Euler2D, Correlation, 25 %
random sampling, 4 levels, PEERS.md optimiser settings). Threads: torch,
SimpleITK and OpenCV limited to 2; pystackreg is single-threaded.

Each method runs in a fresh child process (:func:`harness.run_case`) on the
stack saved to a temporary ``.npy``, ``--repeats`` times (default 3),
interleaved method after method; a record's ``seconds`` is the median run
(``seconds_runs`` all of them; the SimpleITK loop runs once). The memory
check registers a memory-mapped uint16 ``.npy`` stack of about
``memory_gb`` GB in a child
(``reference='previous'``, aligned stack written to an ``.npy`` on disk); the
harness samples the child's anonymous resident memory (``RssAnon``: all but
file pages) and reads its peak RSS (``VmHWM``). The optimisation is cut to 2
iterations per level: the check measures memory, and a batch's buffers are
the same size whatever the iteration count. Records go to
``benchmarks/results/stack.json``; ``benchmarks/results/stack.md`` is written
from them by :func:`report_suites.stack_section`.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import harness
import numpy as np

from napari_coreg.cases import drift_stack, scaled_source
from napari_coreg.transforms import corner_error

SUITE = 'stack'
STORE = harness.RESULTS / 'stack.json'
SECTION = harness.RESULTS / 'stack.md'
#: (row name, child function, its settings)
METHODS = (
    ('napari-coreg, torch CPU, rigid NCC, previous', 'ours', {}),
    ('napari-coreg, torch CPU, rigid NCC, first', 'ours', {'reference': 'first'}),
    ('pystackreg RIGID_BODY, previous', 'stackreg', {'mode': 'RIGID_BODY'}),
    (
        'pystackreg RIGID_BODY, first',
        'stackreg',
        {'mode': 'RIGID_BODY', 'reference': 'first'},
    ),
    ('SimpleITK Euler2D Correlation, per-frame loop', 'sitk_loop', {}),
)
#: Methods timed once however many repeats (SimpleITK takes ~0.6 s a frame).
ONCE = ('sitk_loop',)


def errors(matrices: np.ndarray, truth: np.ndarray, shape) -> dict[str, float]:
    """Pairwise and chained corner errors per frame (px), frames 1..n-1."""
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
# the methods, each in a child process: (path of the stack) -> matrices


def ours(
    path: str, model: str = 'rigid', reference: str = 'previous', **settings
) -> dict[str, Any]:
    """Our ``register_stack`` (NCC) on the stack at ``path``."""
    import torch

    from napari_coreg import register_stack

    torch.set_num_threads(harness.threads())
    stack = np.load(path)
    harness.baseline()
    with harness.timed() as t:
        result = register_stack(
            stack, reference=reference, model=model, metric='ncc', **settings
        )
    # warm batches skip coarse levels: iterations per level of the schedule,
    # over the batches that ran it (levels counted from the finest)
    n_levels = len(result.settings['schedule'])
    per_level = [[] for _ in range(n_levels)]
    for batch in result.batches:
        for k, level in enumerate(batch.levels):
            per_level[n_levels - len(batch.levels) + k].append(level.iterations)
    return {
        **t,
        'matrices': np.asarray(result.moving_from_fixed).tolist(),
        'info': {
            'batch_size': result.settings['batch_size'],
            'iterations_per_level': [float(np.mean(v)) for v in per_level if v],
            'warm_starts': result.settings.get('warm_starts'),
            'batches': len(result.batches),
        },
    }


def stackreg(
    path: str, mode: str = 'RIGID_BODY', reference: str = 'previous'
) -> dict[str, Any]:
    """pystackreg ``register_stack`` on the stack at ``path``."""
    from pystackreg import StackReg

    from napari_coreg.transforms import reverse_axes

    stack = np.load(path).astype(np.float64)
    sr = StackReg(getattr(StackReg, mode))
    harness.baseline()
    with harness.timed() as t:
        tmats = sr.register_stack(stack, reference=reference)
    # tmats[k] maps frame-0 (x, y) to frame-k (x, y): moving_from_fixed in x, y
    return {**t, 'matrices': reverse_axes(tmats).tolist(), 'info': {}}


def sitk_loop(path: str) -> dict[str, Any]:
    """SimpleITK per frame pair (PEERS.md settings), chained."""
    import peers

    peers.limit_threads()
    stack = np.load(path)
    n = len(stack)
    matrices = np.repeat(np.eye(3)[None], n, axis=0)
    failed = 0
    harness.baseline()
    with harness.timed() as t:
        for i in range(1, n):
            pair = peers.sitk_register(stack[i - 1], stack[i], 'euler', 'correlation')
            if pair is None:
                failed += 1
                pair = np.eye(3)
            matrices[i] = pair @ matrices[i - 1]
    return {**t, 'matrices': matrices.tolist(), 'info': {'failed': failed}}


# --------------------------------------------------------------------------
# memory


def register_memmap(path: str, out: str) -> dict[str, Any]:
    """Register the memory-mapped stack at ``path`` (in a child process)."""
    import torch

    from napari_coreg import register_stack

    torch.set_num_threads(harness.threads())
    stack = np.load(path, mmap_mode='r')
    register_stack(stack[:3], iterations=1)  # warm-up: libraries loaded
    harness.baseline(sample_anon=0.02)
    with harness.timed() as t:
        result = register_stack(
            stack, reference='previous', model='rigid', out=out, iterations=2
        )
    return {
        **t,
        'frames': int(stack.shape[0]),
        'shape': list(stack.shape),
        'input_bytes': int(stack.nbytes),
        'batch_size': result.settings['batch_size'],
    }


def memory_check(gb: float = 1.0, size: int = 1024, log=print) -> dict[str, Any]:
    """Register a ~``gb`` GB memory-mapped uint16 stack in a child process."""
    from scipy import ndimage

    n = max(3, int(round(gb * 1e9 / (size * size * 2))))
    with tempfile.TemporaryDirectory(dir=os.environ.get('BENCH_TMP')) as tmp:
        path, out = Path(tmp) / 'stack.npy', Path(tmp) / 'aligned.npy'
        stack = np.lib.format.open_memmap(
            path, mode='w+', dtype=np.uint16, shape=(n, size, size)
        )
        base = scaled_source('camera', size)[: size + 64, : size + 64]
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
        kwargs = {'path': str(path), 'out': str(out)}
        rec = harness.run_case(
            SUITE, 'memory', 'bench_stack', 'register_memmap', kwargs
        )
    if rec['status'] != 'ok':
        raise RuntimeError(f'memory check failed: {rec["error"]}')
    return {**rec['result'], 'memory': rec['memory']}


# --------------------------------------------------------------------------
# the run


def measure(
    frames: int,
    size: int,
    sitk: bool,
    log=print,
    methods=METHODS,
    repeats: int = 1,
) -> list[dict[str, Any]]:
    """Every method of ``methods`` on one drift stack; one record per method.

    The methods run ``repeats`` times, interleaved (method after method, then
    again), each run in a fresh child process; ``seconds`` is the median of
    the runs (all of them in ``seconds_runs``), errors are those of the first
    run. :data:`ONCE` methods run once.
    """
    log(f'drift stack {frames} x {size}^2, {repeats} interleaved runs ...')
    stack, truth = drift_stack(frames, size)
    methods = [m for m in methods if sitk or m[1] != 'sitk_loop']
    records = {
        name: {'name': name, 'frames': frames, 'size': size} for name, *_ in methods
    }
    runs: dict[str, list[float]] = {name: [] for name in records}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / 'stack.npy'
        np.save(path, stack)
        for repeat in range(repeats):
            for name, function, settings in methods:
                record = records[name]
                if 'error' in record or (repeat and function in ONCE):
                    continue
                log(f'  {name} (run {repeat + 1}) ...')
                kwargs = {'path': str(path), **settings}
                rec = harness.run_case(SUITE, name, 'bench_stack', function, kwargs)
                if rec['status'] != 'ok':
                    record['error'] = f'{rec["status"]}: {rec["error"]}'
                    continue
                result = rec['result']
                runs[name].append(result['seconds'])
                log(f'    {1000 * result["seconds"] / (frames - 1):.0f} ms/frame')
                if repeat == 0:
                    matrices = np.asarray(result.pop('matrices'))
                    record |= result | errors(matrices, truth, stack.shape[1:])
                    record['peak_rss_mib'] = rec['memory']['peak_rss_mib']
    for name, record in records.items():
        if runs[name]:
            record['seconds'] = float(np.median(runs[name]))
            record['seconds_runs'] = runs[name]
    return list(records.values())


def main(argv: list[str] | None = None) -> None:
    """Measure, store the records, write the markdown section."""
    import report_suites

    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--frames', type=int, default=100)
    parser.add_argument('--size', type=int, default=512)
    parser.add_argument('--no-memory', action='store_true')
    parser.add_argument('--memory-only', action='store_true')
    parser.add_argument('--memory-gb', type=float, default=1.0)
    parser.add_argument('--memory-size', type=int, default=1024)
    parser.add_argument('--no-sitk', action='store_true')
    parser.add_argument(
        '--repeats', type=int, default=3, help='interleaved runs of each method'
    )
    parser.add_argument('--threads', type=int, default=harness.DEFAULT_THREADS)
    parser.add_argument('--store', type=Path, default=STORE)
    parser.add_argument('--out', type=Path, default=SECTION)
    parser.add_argument(
        '--quick',
        action='store_true',
        help='smoke run: 6 x 64^2, no SimpleITK, a 2 MB memory check; stores '
        'nothing, prints the section',
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.frames, args.size, args.no_sitk, args.repeats = 6, 64, True, 1
        args.memory_gb, args.memory_size = 0.002, 128
    harness.pin_threads(args.threads)
    log = harness.logger()
    started, load_start = time.perf_counter(), os.getloadavg()[0]
    store: dict[str, Any] = {'records': [], 'memory': None}
    if not args.memory_only:
        store['records'] = measure(
            args.frames, args.size, not args.no_sitk, log, repeats=args.repeats
        )
    if not args.no_memory:
        log('memory check ...')
        store['memory'] = memory_check(args.memory_gb, args.memory_size, log=log)
    command = ' '.join(['bench_stack.py', *(sys.argv[1:] if argv is None else argv)])
    store['run'] = harness.run_header(command, started, load_start)
    text = report_suites.stack_section(store)
    if not args.quick:
        harness.save(args.store, store)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        log(f'wrote {args.store} and {args.out}')
    print(text)


if __name__ == '__main__':
    main()
