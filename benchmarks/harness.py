"""Benchmark harness: run a case in a child process and keep a JSON record.

Every suite (``bench_*.py``) measures through this module, so that all of
them share one way to:

* **pin threads**: :func:`pin_threads` (or :func:`thread_env` for one child)
  sets the thread variables of OpenMP, MKL, OpenBLAS, ITK and OpenCV (and
  ``OMP_WAIT_POLICY=PASSIVE``) before any library starts its pool; children
  inherit them and :func:`threads` tells a child how many it may use;
* **isolate a case**: :func:`run_case` runs ``module.function(**kwargs)`` in
  a fresh interpreter (``python harness.py``, the spec on stdin) with a
  timeout, and returns a record whether it succeeded, raised or timed out;
* **measure memory**: one way, the child's ``/proc/self/status``. Peak RSS is
  the kernel's high-water mark ``VmHWM`` of the child's own image (unlike
  ``ru_maxrss``, which a child inherits from the parent that forked it);
  :func:`baseline` notes the RSS before the measured work and can sample the
  anonymous memory (``RssAnon``, all but file pages: the figure that matters
  for memory-mapped inputs), whose peak the kernel does not keep;
* **record versions**: :func:`versions` lists every installed distribution,
  the interpreter, the CPU and the repository's commit;
* **store records**: JSON files under ``benchmarks/results`` (:func:`load`,
  :func:`save`, :func:`merge`).

Data sets are found by :func:`data_dir`: ``--data``, else ``NAPARI_COREG_DATA``,
else ``../shared/data`` beside the repository root.
"""

from __future__ import annotations

import contextlib
import datetime
import importlib
import importlib.metadata
import json
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / 'results'
DEFAULT_THREADS = 2
MARKER = '@@harness-record@@ '
#: Distributions named in a report's one-line summary of versions.
KEY_PACKAGES = (
    'numpy',
    'scipy',
    'scikit-image',
    'torch',
    'kornia',
    'SimpleITK',
    'opencv-python-headless',
    'opencv-python',
    'pystackreg',
    'napari-coreg',
)
THREAD_VARIABLES = (
    'OMP_NUM_THREADS',
    'MKL_NUM_THREADS',
    'OPENBLAS_NUM_THREADS',
    'NUMEXPR_NUM_THREADS',
    'ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS',
    'OPENCV_FOR_THREADS_NUM',
)

Log = Callable[[str], None]


# --------------------------------------------------------------------------
# threads and environment


def thread_env(
    n: int = DEFAULT_THREADS,
    *,
    policy: str | None = 'PASSIVE',
    base: dict[str, str] | None = None,
) -> dict[str, str]:
    """An environment that limits every library to ``n`` threads.

    Parameters
    ----------
    n : int
        Threads per library (OpenMP, MKL, OpenBLAS, numexpr, ITK, OpenCV).
    policy : str or None
        ``OMP_WAIT_POLICY``: ``'PASSIVE'`` (OpenMP threads sleep while they
        wait: on shared cores spinning threads make torch 5-50x slower) or
        None for the OpenMP default (the variable removed). A value already
        in ``base`` wins over ``'PASSIVE'``.
    base : dict, optional
        The environment to start from (default: this process's).

    Returns
    -------
    dict
        A new environment.
    """
    env = dict(os.environ if base is None else base)
    env.update(dict.fromkeys(THREAD_VARIABLES, str(n)))
    env['BENCH_THREADS'] = str(n)
    if policy is None:
        env.pop('OMP_WAIT_POLICY', None)
    else:
        env.setdefault('OMP_WAIT_POLICY', policy)
    return env


def pin_threads(n: int = DEFAULT_THREADS) -> None:
    """Limit every library in this process and its children to ``n`` threads.

    Call before torch, OpenCV or SimpleITK is imported (:func:`thread_env`
    with ``OMP_WAIT_POLICY=PASSIVE`` unless it is set).
    """
    os.environ.update(thread_env(n))


def threads() -> int:
    """Threads per library in this process (set by :func:`pin_threads`)."""
    return int(os.environ.get('BENCH_THREADS', DEFAULT_THREADS))


def data_dir(flag: str | os.PathLike | None = None) -> Path:
    """Folder of the shared test data.

    ``flag`` (a ``--data`` option) wins, then ``NAPARI_COREG_DATA``, then
    ``../shared/data`` relative to the repository root.
    """
    if flag:
        return Path(flag)
    env = os.environ.get('NAPARI_COREG_DATA')
    return Path(env) if env else ROOT.parent / 'shared' / 'data'


def find_data(sub: str, flag: str | os.PathLike | None, log: Log) -> Path | None:
    """``data_dir(flag) / sub``, or None with a message saying how to get it."""
    path = data_dir(flag) / sub
    if path.exists():
        return path
    log(
        f'skipped: {path} not found (pass --data DIR or set NAPARI_COREG_DATA '
        'to the folder of the shared test data)'
    )
    return None


# --------------------------------------------------------------------------
# memory, one way: /proc/self/status


def proc_status() -> dict[str, float]:
    """``VmRSS``, ``VmHWM`` and ``RssAnon`` of this process in MiB ({} off Linux)."""
    out: dict[str, float] = {}
    try:
        with open('/proc/self/status') as stream:
            for line in stream:
                key, _, rest = line.partition(':')
                if key in ('VmRSS', 'VmHWM', 'RssAnon'):
                    out[key] = int(rest.split()[0]) / 1024
    except OSError:
        pass
    return out


class _Memory:
    """What the child notes about its memory (see :func:`baseline`)."""

    def __init__(self) -> None:
        self.before: dict[str, float] = {}
        self.peak_anon: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sample(self, interval: float) -> None:
        self.peak_anon = self.before.get('RssAnon')

        def loop() -> None:
            while not self._stop.wait(interval):
                anon = proc_status().get('RssAnon')
                if anon is not None:
                    self.peak_anon = max(self.peak_anon or 0.0, anon)

        self._thread = threading.Thread(target=loop, daemon=True)
        self._thread.start()

    def report(self) -> dict[str, float | None]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        now = proc_status()
        if self.peak_anon is not None and 'RssAnon' in now:
            self.peak_anon = max(self.peak_anon, now['RssAnon'])
        return {
            'peak_rss_mib': now.get('VmHWM'),
            'rss_before_mib': self.before.get('VmRSS'),
            'anon_before_mib': self.before.get('RssAnon'),
            'peak_anon_mib': self.peak_anon,
        }


_MEMORY = _Memory()


def baseline(sample_anon: float | None = None) -> None:
    """Note the memory before the measured work (call in a case function).

    Parameters
    ----------
    sample_anon : float, optional
        Also sample ``RssAnon`` every ``sample_anon`` seconds until the case
        returns, for its peak (``peak_anon_mib``).
    """
    _MEMORY.before = proc_status()
    if sample_anon:
        _MEMORY.sample(sample_anon)


@contextlib.contextmanager
def timed() -> Iterator[dict[str, float]]:
    """Wall and CPU seconds of a block: ``with timed() as t: ...; t['seconds']``."""
    out: dict[str, float] = {}
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        yield out
    finally:
        out['seconds'] = time.perf_counter() - t0
        out['cpu_seconds'] = time.process_time() - c0


# --------------------------------------------------------------------------
# one case in a child process


def run_case(
    suite: str,
    name: str,
    module: str,
    function: str,
    kwargs: dict[str, Any] | None = None,
    *,
    timeout: float = 1800.0,
    env: dict[str, str] | None = None,
    python: str | None = None,
) -> dict[str, Any]:
    """Run ``module.function(**kwargs)`` in a fresh interpreter; return its record.

    Parameters
    ----------
    suite, name : str
        Stored in the record (which suite, which case).
    module, function : str
        A module importable from ``benchmarks/`` (or installed) and a function
        in it that returns a JSON-serialisable dict.
    kwargs : dict, optional
        JSON-serialisable keyword arguments.
    timeout : float
        Seconds before the child and its process group are killed
        (``status='timeout'``).
    env : dict, optional
        Environment of the child (default: this process's, threads pinned).
    python : str, optional
        The child's interpreter (default: this one), e.g. a peer's virtual
        environment; this module needs only the standard library there.

    Returns
    -------
    dict
        ``suite``, ``case``, ``call``, ``kwargs``, ``threads``, ``status``
        (``'ok'``, ``'error'`` or ``'timeout'``), ``error``, ``wall_s`` (the
        child's whole life, start-up included), ``result`` (the function's
        dict) and ``memory`` (``peak_rss_mib``, ``rss_before_mib``,
        ``anon_before_mib``, ``peak_anon_mib``; MiB, None where unknown).
    """
    kwargs = dict(kwargs or {})
    spec = {'module': module, 'function': function, 'kwargs': kwargs}
    child_env = dict(os.environ if env is None else env)
    child_env.setdefault('BENCH_THREADS', str(threads()))
    path = [str(HERE), *child_env.get('PYTHONPATH', '').split(os.pathsep)]
    child_env['PYTHONPATH'] = os.pathsep.join(p for p in path if p)
    record: dict[str, Any] = {
        'suite': suite,
        'case': name,
        'call': f'{module}.{function}',
        'kwargs': kwargs,
        'threads': int(child_env['BENCH_THREADS']),
        'status': 'ok',
        'error': None,
        'result': None,
        'memory': {},
    }
    t0 = time.perf_counter()
    child = subprocess.Popen(
        [python or sys.executable, str(Path(__file__).resolve())],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env,
        start_new_session=True,  # its own process group, killed as a whole
    )
    try:
        stdout, stderr = child.communicate(json.dumps(spec), timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
        child.communicate()
        record.update(status='timeout', error=f'killed after {timeout:g} s')
    else:
        lines = [ln for ln in stdout.splitlines() if ln.startswith(MARKER)]
        if lines:
            record.update(json.loads(lines[-1][len(MARKER) :]))
        else:
            tail = (stderr.strip().splitlines() or ['no output'])[-1]
            record.update(
                status='error', error=f'exit {child.returncode}: {tail}'[:300]
            )
    record['wall_s'] = time.perf_counter() - t0
    return record


def _child() -> None:
    """The child's side of :func:`run_case`: read the spec, run, print the record."""
    spec = json.loads(sys.stdin.read())
    out: dict[str, Any] = {'status': 'ok', 'error': None, 'result': None}
    try:
        function = getattr(importlib.import_module(spec['module']), spec['function'])
        out['result'] = function(**spec['kwargs'])
    except Exception as exc:  # noqa: BLE001 - reported in the record
        out.update(status='error', error=f'{type(exc).__name__}: {exc}'[:300])
    out['memory'] = _MEMORY.report()
    print(MARKER + json.dumps(out, default=float), flush=True)


# --------------------------------------------------------------------------
# versions and run headers


def _cpu() -> str:
    try:
        for line in Path('/proc/cpuinfo').read_text().splitlines():
            if line.startswith('model name'):
                return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_head() -> str:
    """The repository's short commit, or ``'no commit'``."""
    try:
        out = subprocess.run(
            ['git', '-C', str(ROOT), 'rev-parse', '--short', 'HEAD'],
            capture_output=True,
            text=True,
            check=True,
        )
    except (subprocess.CalledProcessError, OSError):
        return 'no commit'
    return out.stdout.strip()


def versions() -> dict[str, Any]:
    """Interpreter, platform, CPU, commit and every installed distribution."""
    packages = {
        dist.metadata['Name']: dist.version
        for dist in importlib.metadata.distributions()
        if dist.metadata['Name']
    }
    return {
        'python': platform.python_version(),
        'platform': platform.platform(),
        'cpu': _cpu(),
        'cores': os.cpu_count(),
        'commit': git_head(),
        'packages': dict(sorted(packages.items(), key=lambda kv: kv[0].lower())),
    }


def run_header(command: str, started: float, load_start: float) -> dict[str, Any]:
    """What a run stores beside its records: when, how, threads, load, versions."""
    return {
        'when': f'{datetime.datetime.now():%Y-%m-%d %H:%M}',
        'command': command,
        'threads': threads(),
        'omp_wait_policy': os.environ.get('OMP_WAIT_POLICY', 'default'),
        'load': [round(load_start, 2), round(os.getloadavg()[0], 2)],
        'seconds': round(time.perf_counter() - started),
        'versions': versions(),
    }


def versions_line(info: dict[str, Any]) -> str:
    """One sentence naming the key packages' versions of a run header."""
    packages = {k.lower(): v for k, v in info.get('packages', {}).items()}
    names = [
        f'{k} {packages[k.lower()]}' for k in KEY_PACKAGES if k.lower() in packages
    ]
    return (
        f'Python {info.get("python", "?")}, {", ".join(names)}; CPU: '
        f'{info.get("cpu", "?")}, {info.get("cores", "?")} cores.'
    )


# --------------------------------------------------------------------------
# stores of records


def load(path: Path, empty: dict[str, Any] | None = None) -> dict[str, Any]:
    """A JSON store, or a copy of ``empty`` when the file does not exist."""
    if path.exists():
        return json.loads(path.read_text())
    return json.loads(json.dumps(empty or {}))


def save(path: Path, store: dict[str, Any]) -> None:
    """Write a JSON store (floats for numpy scalars)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(store, indent=1, default=float))


def merge(old: list[dict], new: list[dict], key: Callable[[dict], Any]) -> list[dict]:
    """``old`` without the entries ``new`` replaces (same key), then ``new``."""
    fresh = {key(r) for r in new}
    return [r for r in old if key(r) not in fresh] + new


def logger() -> Log:
    """A logger that prefixes the seconds since it was made."""
    start = time.perf_counter()

    def log(message: str) -> None:
        print(f'[{time.perf_counter() - start:7.1f}s] {message}', flush=True)

    return log


if __name__ == '__main__':
    # run the child through the importable module, so that a case function's
    # ``harness.baseline()`` and the report below share one ``_MEMORY``
    sys.path.insert(0, str(HERE))
    import harness

    harness._child()
