"""The benchmark harness: a case runs in a child process and comes back as a
record with its status, peak memory and the versions of the run."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / 'benchmarks'


@pytest.fixture(scope='module')
def harness():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import harness
    finally:
        sys.path.remove(str(BENCHMARKS))
    return harness


def test_case_runs_in_a_child_with_peak_memory(harness) -> None:
    record = harness.run_case('smoke', 'status', 'harness', 'proc_status', timeout=60)
    assert record['status'] == 'ok', record['error']
    assert record['suite'] == 'smoke' and record['call'] == 'harness.proc_status'
    if sys.platform.startswith('linux'):
        child_peak = record['memory']['peak_rss_mib']
        assert child_peak > 1.0
        assert record['result']['VmHWM'] <= child_peak  # the child's own figures


def test_failure_is_a_record_not_an_exception(harness) -> None:
    record = harness.run_case('smoke', 'bad', 'json', 'loads', {'s': '{'}, timeout=60)
    assert record['status'] == 'error'
    assert record['error'].startswith('JSONDecodeError')


def test_versions_name_every_installed_distribution(harness) -> None:
    info = harness.versions()
    assert 'numpy' in info['packages'] and info['python']
    assert 'numpy' in harness.versions_line(info)
