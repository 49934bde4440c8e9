"""The benchmark harness: a case runs in a child process and comes back as a
record with its status, peak memory and the versions of the run; the document
is written from records alone."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / 'benchmarks'


def _import(name: str):
    sys.path.insert(0, str(BENCHMARKS))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(BENCHMARKS))


@pytest.fixture(scope='module')
def harness():
    return _import('harness')


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


@pytest.mark.skipif(sys.platform == 'win32', reason='POSIX process groups')
def test_overrun_is_killed_and_recorded(harness) -> None:
    kwargs = {'args': ['sleep', '30']}  # a grandchild: the whole group goes
    record = harness.run_case('smoke', 'slow', 'subprocess', 'call', kwargs, timeout=1)
    assert record['status'] == 'timeout' and record['wall_s'] < 10


def test_versions_name_every_installed_distribution(harness) -> None:
    info = harness.versions()
    assert 'numpy' in info['packages'] and info['python']
    assert 'numpy' in harness.versions_line(info)


def _record(who: str, method: str, err: float) -> dict:
    return {
        'who': who,
        'method': method,
        'family': 'rigid',
        'modality': 'mono',
        'size': 256,
        'index': 0,
        'case': 'rigid-mono-256-0-camera',
        'time': 0.5,
        'cpu': 0.4,
        'err': err,
        'error': None,
    }


def test_document_is_written_from_records(harness) -> None:
    report = _import('report')
    store = {
        'records': [
            _record('ours', 'rigid (ncc)', 0.02),
            _record('SimpleITK', 'Euler2D (Correlation)', float('inf')),
        ],
        'runs': {},
    }
    text = report.write_markdown(store, command='test')
    assert '| 256 | **ours** | rigid (ncc) | 1 | 1 | 1 | 0.020 |' in text
    assert '| 256 | SimpleITK | Euler2D (Correlation) | 1 | 0 | 0 | fail |' in text
    # PEERS.md's figures come from their JSON record, beside the measured ones
    assert '0/1, fail, 0.500 (8, 0.02, 0.16)' in text
