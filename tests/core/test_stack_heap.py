"""Freed heap memory is handed back between stack batches on glibc only."""

from __future__ import annotations

import platform

import pytest

from napari_coreg.stack import heap

ON_GLIBC = platform.system() == 'Linux' and platform.libc_ver()[0] == 'glibc'


@pytest.fixture
def fresh_lookup():
    heap._glibc.cache_clear()
    yield
    heap._glibc.cache_clear()


@pytest.mark.skipif(not ON_GLIBC, reason='glibc only')
def test_release_freed_trims_only_over_the_held_bytes(fresh_lookup):
    assert heap.release_freed(held=0) is True
    assert heap.release_freed(held=1 << 62) is False


@pytest.mark.parametrize(
    ('system', 'libc'), [('Darwin', ''), ('Windows', ''), ('Linux', 'musl')]
)
def test_release_freed_does_nothing_off_glibc(fresh_lookup, monkeypatch, system, libc):
    monkeypatch.setattr(platform, 'system', lambda: system)
    monkeypatch.setattr(platform, 'libc_ver', lambda *a, **k: (libc, ''))
    assert heap._glibc() is None
    assert heap.release_freed(held=0) is False
