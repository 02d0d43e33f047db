"""The house keeps its shape: no import cycles, no import from a lower layer to a higher one.

The layers, lowest first (DEVELOPERS.md, "Layers"), are read from the source with ``ast`` (every import,
also the ones inside functions), so a lazy import cannot hide an arrow that runs up.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

#: Lowest first. A module may import its own layer (without cycles) and the layers below it.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("dgnam.infra",),  # errors and messages, weights hub, interrupts, atomic files
    ("dgnam.core",),  # units, hooks, transforms, parameterizations, objectives, regularizers, code math
    ("dgnam.nets", "dgnam.generators"),
    ("dgnam.methods",),
    ("dgnam.run", "dgnam.distributed"),
    ("dgnam.io", "dgnam.eval", "dgnam.pool"),  # run folders and reports, scoring, the natural-image data
    ("dgnam.atlas", "dgnam.train", "dgnam.repro"),
    ("dgnam.cli",),
)
TOP = "dgnam"  # the public API: it imports anything, nothing inside the package imports it


def modules() -> dict[str, Path]:
    found = {}
    for path in (SRC / "dgnam").rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """Every dgnam module ``name`` imports, resolved to a module of the package."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    out = set()
    for node in _walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            stem = ".".join(base + ([node.module] if node.module else []))
            targets = [f"{stem}.{alias.name}" for alias in node.names] + [stem]
            targets = [t for t in targets[:-1] if t in known] or [stem]
        elif isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            continue
        for target in targets:
            while target not in known and "." in target:
                target = target.rsplit(".", 1)[0]
            if target in known and target != name:
                out.add(target)
    return out


def _walk(node: ast.AST):
    """``ast.walk`` without ``if TYPE_CHECKING:`` blocks (names for annotations only, never imported at run time)."""
    yield node
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and getattr(child.test, "id", getattr(child.test, "attr", None)) == "TYPE_CHECKING":
            continue
        yield from _walk(child)


def layer_of(name: str) -> int:
    if name == TOP:
        return len(LAYERS)
    for index, group in enumerate(LAYERS):
        if any(name == prefix or name.startswith(prefix + ".") for prefix in group):
            return index
    raise AssertionError(f"{name} is in no layer: add it to LAYERS here and in DEVELOPERS.md")


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_cycle_finder_finds_a_planted_cycle():
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(edges) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    assert cycles(graph()) == []


def test_every_module_has_a_layer_and_no_import_runs_up():
    edges = graph()
    upward = [f"{name} -> {target}" for name, targets in sorted(edges.items()) for target in sorted(targets)
              if layer_of(target) > layer_of(name)]
    assert upward == []


def test_every_module_imports_alone_in_a_fresh_interpreter():
    """A module that only imports as part of a bigger import order hides a cycle; each must import on its own."""
    names = sorted(name for name in modules() if not name.endswith("__main__"))
    code = "import importlib, sys\nfor name in sys.argv[1:]:\n    importlib.import_module(name)\n"
    # one interpreter per layer's first module is too slow to be worth it; the fresh interpreter per batch of
    # ten keeps the order random enough to catch an import that only works after another
    for start in range(0, len(names), 25):
        batch = names[start:start + 25][::-1]
        result = subprocess.run([sys.executable, "-c", code, *batch], capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]


@pytest.mark.parametrize("name", ["dgnam"])
def test_importing_the_package_imports_no_optional_library(name):
    code = (f"import sys, {name}\n"
            "bad = [m for m in ('torchvision', 'timm', 'transformers', 'matplotlib') if m in sys.modules]\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)
