"""The shape of the code base (issue 14): no import cycle in ``core/``, runs -> train one
way only, data knows nothing of the limits policy, one reader of ``medmnist.INFO``, and no
file in ``core/``, ``studio/`` or ``pages/`` over 400 lines.

Imports are read from the source with :mod:`ast` (every ``import``, at any depth, including
the ones inside functions), so a lazy import cannot hide a cycle.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 400


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted((ROOT / "core").rglob("*.py"))}


def _resolve(name: str, known: dict[str, Path]) -> str | None:
    """The longest known module that ``name`` (``a.b.c`` or ``a.b.c.attr``) names."""
    while name:
        if name in known:
            return name
        name = name.rpartition(".")[0]
    return None


def _imports(module: str, path: Path, known: dict[str, Path]) -> set[str]:
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            names = [prefix] + [f"{prefix}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            target = _resolve(name, known)
            if target and target != module:
                found.add(target)
    return found


def _graph() -> dict[str, set[str]]:
    known = _modules()
    graph = {m: _imports(m, p, known) for m, p in known.items()}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    component.append(top)
                    if top == node:
                        break
                if len(component) > 1:
                    out.append(sorted(component))
    return out


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_in_core():
    cycles = _cycles(_graph())
    assert cycles == [], "import cycles in core/: " + "; ".join(" <-> ".join(c) for c in cycles)


def _importers(prefix: str, of: str) -> list[str]:
    graph = _graph()
    return sorted(m for m, edges in graph.items() if (m == prefix or m.startswith(prefix + "."))
                  and any(e == of or e.startswith(of + ".") for e in edges))


def test_train_never_imports_the_run_store():
    assert _importers("core.train", "core.runs") == []


def test_data_never_imports_the_limits_policy():
    assert _importers("core.data", "core.limits") == []


def test_limits_is_policy_only():
    edges = _graph().get("core.limits", set())
    assert not [e for e in edges if e.startswith(("core.data", "core.train"))], sorted(edges)


def test_medmnist_info_is_read_only_inside_core_data():
    pattern = re.compile(r"\bINFO\b")
    readers = []
    for folder in ("core", "studio", "pages", "bench"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel.startswith("core/data/"):
                continue
            text = path.read_text(encoding="utf-8")
            if "medmnist" in text and pattern.search(text):
                readers.append(rel)
    assert readers == []


@pytest.mark.parametrize("folder", ["core", "studio", "pages"])
def test_no_file_over_400_lines(folder):
    long = {p.relative_to(ROOT).as_posix(): n for p in sorted((ROOT / folder).rglob("*.py"))
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert long == {}


@pytest.mark.parametrize("folder, name", [("core/train", "core.runs"), ("core/data", "core.limits")])
def test_the_lower_layer_does_not_even_name_the_upper_one(folder, name):
    """The issue's own check, ``grep -rn core.runs core/train``: not in code, not in a docstring."""
    found = [f"{p.relative_to(ROOT).as_posix()}:{i}" for p in sorted((ROOT / folder).rglob("*.py"))
             for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if name in line]
    assert found == []
