"""The layout stays what docs/architecture.md says: checks on the source tree.

- no module in ``src`` imports another in a cycle (at import time or in a
  function: a cycle of lazy imports is still a knot for the reader);
- no source file is longer than :data:`MAX_LINES`;
- no run of more than :data:`MAX_COPIED_RUN` lines is copied between two
  places in ``src`` (lines compared without indentation, blank lines and
  comments; function signatures and ``name=name`` keyword forwarding are
  declarations, not copied logic, and are left out).
"""

from __future__ import annotations

import ast
import hashlib
import re
from collections import defaultdict
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / 'src'
PACKAGE = 'napari_coreg'
MAX_LINES = 600
MAX_COPIED_RUN = 12
_FORWARD = re.compile(r'^(\w+)=\1,?$')


def _modules() -> dict[str, Path]:
    modules = {}
    for path in sorted((SRC / PACKAGE).rglob('*.py')):
        parts = path.relative_to(SRC).with_suffix('').parts
        if parts[-1] == '__init__':
            parts = parts[:-1]
        modules['.'.join(parts)] = path
    return modules


def _runtime_nodes(tree: ast.AST):
    """Every node, except those under ``if TYPE_CHECKING:`` (never run)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and getattr(node.test, 'id', '') == 'TYPE_CHECKING':
            yield from (n for child in node.orelse for n in ast.walk(child))
            continue
        yield node
        yield from _runtime_nodes(node)


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Modules of the package that ``name`` imports (resolved, any depth)."""
    tree = ast.parse(path.read_text())
    package = name if path.name == '__init__.py' else name.rpartition('.')[0]
    found = set()
    for node in _runtime_nodes(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.split('.')
            if node.level:
                base = base[: len(base) - node.level + 1]
                prefix = '.'.join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ''
            targets = [prefix] + [f'{prefix}.{a.name}' for a in node.names]
        else:
            continue
        for target in targets:
            # an import of a.b.c also runs a and a.b: count the deepest module
            while target and target not in modules:
                target = target.rpartition('.')[0]
            if target and target != name and target.startswith(PACKAGE):
                found.add(target)
    return found


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle, or None. Packages importing their own submodules
    (``pkg/__init__`` re-exporting ``pkg.mod``) are the normal layout and
    are not edges back from ``pkg.mod`` to ``pkg``."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if node.startswith(nxt + '.'):
                continue  # a submodule importing its parent package's API
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycles() -> None:
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    assert _cycle(graph) is None, ' -> '.join(_cycle(graph) or [])


def test_the_cycle_check_finds_cycles() -> None:
    """The checker itself works: a known cycle is found, a chain is not."""
    assert _cycle({'a': {'b'}, 'b': {'c'}, 'c': {'a'}}) == ['a', 'b', 'c', 'a']
    assert _cycle({'a': {'b'}, 'b': {'c'}, 'c': set()}) is None


@pytest.mark.parametrize('path', sorted((SRC / PACKAGE).rglob('*.py')), ids=str)
def test_source_files_are_small(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, (
        f'{path.relative_to(SRC)} has {lines} lines: split it by job '
        f'(at most {MAX_LINES})'
    )


def _logic_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, normalised text) of the lines that carry logic."""
    text = path.read_text()
    skip: set[int] = set()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            first = node.body[0]
            is_doc = isinstance(first, ast.Expr) and isinstance(
                getattr(first, 'value', None), ast.Constant
            )
            end = (first.end_lineno if is_doc else first.lineno - 1) or node.lineno
            skip.update(range(node.lineno, end + 1))
    lines = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith('#') or number in skip:
            continue
        if _FORWARD.match(line) or line in (')', '],', ')', '}', '},', '),'):
            continue
        lines.append((number, line))
    return lines


def copied_runs(paths: list[Path], run: int, root: Path = SRC) -> list[str]:
    """Places where ``run`` consecutive logic lines repeat elsewhere."""
    seen: dict[str, list[tuple[Path, int]]] = defaultdict(list)
    for path in paths:
        lines = _logic_lines(path)
        for k in range(len(lines) - run + 1):
            window = '\n'.join(text for _, text in lines[k : k + run])
            digest = hashlib.sha1(window.encode()).hexdigest()
            seen[digest].append((path, lines[k][0]))
    found = []
    for places in seen.values():
        distinct = {places[0]}
        for path, line in places[1:]:
            if all(p != path or abs(line - n) >= run for p, n in distinct):
                distinct.add((path, line))
        if len(distinct) > 1:
            found.append(
                ' and '.join(f'{p.relative_to(root)}:{n}' for p, n in sorted(distinct))
            )
    return sorted(set(found))


def test_no_copied_code() -> None:
    paths = sorted((SRC / PACKAGE).rglob('*.py'))
    copies = copied_runs(paths, MAX_COPIED_RUN + 1)
    assert not copies, 'copied runs of code:\n' + '\n'.join(copies[:20])


def test_the_copy_check_finds_copies(tmp_path: Path) -> None:
    body = '\n'.join(f'    total = total + {k} * value' for k in range(14))
    for name in ('a.py', 'b.py'):
        (tmp_path / name).write_text(f'def f(value):\n    total = 0\n{body}\n')
    paths = sorted(tmp_path.glob('*.py'))
    copies = copied_runs(paths, MAX_COPIED_RUN + 1, root=tmp_path)
    assert 'a.py:2 and b.py:2' in copies
    assert not copied_runs(paths[:1], MAX_COPIED_RUN + 1, root=tmp_path)


def test_ruff_rules_hold_on_src() -> None:
    """ruff's rules of pyproject.toml, pydocstyle (numpy) included, pass on src."""
    pytest.importorskip('ruff')
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, '-m', 'ruff', 'check', '--no-cache', str(SRC)],
        capture_output=True,
        text=True,
        cwd=SRC.parent,
    )
    assert done.returncode == 0, done.stdout[-3000:]
