"""Freed heap memory is handed back between stack batches on glibc only."""

from __future__ import annotations

import platform

import pytest

from napari_coreg.stack import heap


@pytest.fixture
def fresh_lookup():
    heap._malloc_trim.cache_clear()
    yield
    heap._malloc_trim.cache_clear()


def test_release_freed_asks_glibc_on_linux(fresh_lookup):
    on_glibc = platform.system() == 'Linux' and platform.libc_ver()[0] == 'glibc'
    assert heap.release_freed() is on_glibc


@pytest.mark.parametrize(
    ('system', 'libc'), [('Darwin', ''), ('Windows', ''), ('Linux', 'musl')]
)
def test_release_freed_does_nothing_off_glibc(fresh_lookup, monkeypatch, system, libc):
    monkeypatch.setattr(platform, 'system', lambda: system)
    monkeypatch.setattr(platform, 'libc_ver', lambda *a, **k: (libc, ''))
    assert heap._malloc_trim() is None
    assert heap.release_freed() is False
