"""The torch engine on a bare box: no SimpleITK, kornia, napari or rasterio.

``benchmarks/gpu.py`` must run from the source tree on a CUDA machine that
has Python with torch, numpy, scipy, scikit-image, tifffile and OpenCV only
(issue 11). Each test runs a fresh interpreter in which importing those
packages raises ``ModuleNotFoundError`` and records the attempt.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BLOCKED = ('SimpleITK', 'kornia', 'napari', 'rasterio')
#: Installed first in the child: the packages above are "not installed".
BLOCKER = f"""
import importlib.abc, sys
ATTEMPTS = []
class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {BLOCKED!r}:
            ATTEMPTS.append(name)
            raise ModuleNotFoundError(f'No module named {{name!r}}', name=name)
sys.meta_path.insert(0, Blocker())
"""
PROBE = """
import json
import napari_coreg as nc
from napari_coreg.cases import benchmark_case, drift_stack
case = benchmark_case('affine', 'mono', 96, 0)
pair = nc.register(case.fixed, case.moving, model='affine', metric='ncc',
                   backend='torch', device='cpu')
mi = nc.register(case.fixed, case.moving, model='rigid', metric='mi', device='cpu')
stack, truth = drift_stack(4, 64)
frames = nc.register_stack(stack, reference='first', model='rigid', device='cpu')
print(json.dumps({
    'error': nc.corner_error(pair.moving_from_fixed, case.truth, case.fixed.shape),
    'stack_error': max(
        nc.corner_error(m, t, stack.shape[1:])
        for m, t in zip(frames.moving_from_fixed, truth)
    ),
    'attempts': ATTEMPTS,
    'loaded': sorted(m for m in sys.modules if m.split('.')[0] in BLOCKED_NAMES),
}))
"""


def _bare(*args: str, code: str | None = None) -> subprocess.CompletedProcess:
    """Run ``python -c BLOCKER + code`` (or a script with ``args``) without CUDA."""
    env = dict(os.environ, PYTHONPATH=str(ROOT / 'src'), CUDA_VISIBLE_DEVICES='')
    if code is None:  # a script: run it after the blocker, as __main__
        code = f'import runpy; sys.argv = {list(args)!r}; '
        code += f'runpy.run_path({args[0]!r}, run_name="__main__")'
    return subprocess.run(
        [sys.executable, '-c', BLOCKER + code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_torch_engine_needs_none_of_the_optional_packages() -> None:
    done = _bare(code=PROBE.replace('BLOCKED_NAMES', repr(BLOCKED)))
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out['attempts'] == []  # not even tried (and failed quietly)
    assert out['loaded'] == []
    assert out['error'] < 0.1
    assert out['stack_error'] < 0.1


def test_gpu_benchmark_without_cuda_says_so() -> None:
    torch = pytest.importorskip('torch')
    if torch.cuda.is_available():
        pytest.skip('CUDA is available here')
    done = _bare('benchmarks/gpu.py', '--no-tests')
    assert done.returncode == 2
    assert 'CUDA is not available here: use --device cpu' in done.stderr
