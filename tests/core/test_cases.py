"""The case factory shared by tests and benchmarks: light and deterministic."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from napari_coreg.cases import benchmark_case, drift_stack


def test_case_factory_imports_no_torch() -> None:
    code = 'import sys, napari_coreg.cases; print("torch" in sys.modules)'
    out = subprocess.run(
        [sys.executable, '-c', code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == 'False'


def test_benchmark_case_is_deterministic_with_its_truth() -> None:
    a = benchmark_case('rigid', 'multi', 64, 3)
    b = benchmark_case('rigid', 'multi', 64, 3)
    assert a.name == 'rigid-multi-64-3-moon' and a.kind == 'rigid'
    np.testing.assert_array_equal(a.moving, b.moving)
    assert a.fixed.dtype == np.float32 and a.fixed.shape == (64, 64)
    assert set(a.params) == {'angle', 'shift', 'gamma'}


def test_drift_stack_starts_unmoved() -> None:
    stack, truth = drift_stack(3, 32)
    assert stack.shape == (3, 32, 32) and truth.shape == (3, 3, 3)
    np.testing.assert_allclose(truth[0], np.eye(3), atol=1e-12)
