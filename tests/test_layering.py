"""The package's import structure: layers import downward only, no cycles, no guards around own imports.

Layers (docs/architecture.md): face basics and shared definitions at the bottom; data and models above;
evaluation, inference and training above those; the CLI (and its command handlers) and the UI on top.
Every import of a pose3dfr module counts, at module level or inside a function, except those under
`if TYPE_CHECKING:` (annotations only, never executed).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from pose3dfr.paths import PROJECT_ROOT

PACKAGE = PROJECT_ROOT / "pose3dfr"
# Layer of each top-level part of the package (module or subpackage).
LAYERS: dict[str, int] = {
    "__init__": 0, "__main__": 3, "errors": 0, "paths": 0, "geometry": 0, "logs": 0, "face": 0,
    "deadline": 0, "resources": 0,
    "losses": 1, "data": 1, "models": 1, "headpose": 1,
    "eval": 2, "inference": 2, "engine": 2, "viz": 2, "convert": 2,
    "cli": 3, "commands": 3, "ui": 3,
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PROJECT_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(tree: ast.AST, module: str) -> list[tuple[str, int, bool]]:
    """(imported pose3dfr module, line, inside a try block) for every import in the module."""
    found: list[tuple[str, int, bool]] = []
    guarded: set[int] = set()
    typing_only: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try):
            for inner in node.body:
                guarded.update(id(n) for n in ast.walk(inner))
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for inner in node.body:
                typing_only.update(id(n) for n in ast.walk(inner))
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level:
            base = module.split(".")[: -node.level + (1 if module.endswith("__init__") else 0) or None]
            names = [".".join(base + ([node.module] if node.module else []))]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            if name == "pose3dfr" or name.startswith("pose3dfr."):
                found.append((name, node.lineno, id(node) in guarded))
    return found


def _part(name: str) -> str | None:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else None


def _graph() -> dict[str, list[tuple[str, int, bool]]]:
    graph = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module_name(path)
        graph[module] = _imports(ast.parse(path.read_text(), str(path)), module)
    return graph


GRAPH = _graph()
MODULES = set(GRAPH)


def _resolve(name: str) -> str | None:
    """The pose3dfr module an imported name refers to (a module, or a name inside one)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def test_every_part_of_the_package_has_a_layer():
    parts = {_part(m) or "__init__" for m in MODULES}
    assert parts <= set(LAYERS), f"give these a layer in LAYERS and docs/architecture.md: {parts - set(LAYERS)}"


def test_imports_go_down_the_layers_only():
    upward = []
    for module, imports in GRAPH.items():
        here = LAYERS[_part(module) or "__init__"]
        for name, line, _ in imports:
            target = _resolve(name)
            if target and LAYERS[_part(target) or "__init__"] > here:
                upward.append(f"{module}:{line} -> {target}")
    assert not upward, "imports that run up a layer:\n" + "\n".join(sorted(set(upward)))


def test_no_import_cycles_between_modules():
    edges = {m: {t for n, _, _ in imports if (t := _resolve(n)) and t != m and not m.startswith(t + ".")
                 and not t.startswith(m + ".")} for m, imports in GRAPH.items()}
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in edges.get(node, ()):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt] if nxt in stack else [node, nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_no_module_guards_an_import_of_the_project_itself():
    guarded = [f"{m}:{line} ({name})" for m, imports in GRAPH.items() for name, line, g in imports if g]
    assert not guarded, "the project's own modules are always there; drop these try/except guards:\n" + "\n".join(guarded)


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PROJECT_ROOT)))
def test_no_module_is_long_without_saying_why(path):
    """A file of one job stays a few hundred lines; a longer one says at its top why it is one file."""
    lines = path.read_text().count("\n")
    head = path.read_text()[:1500]
    assert lines <= 500 or "Why one file:" in head, f"{path.name}: {lines} lines; split it or say why at its top"


def test_no_test_module_imports_another():
    """Tests share fixtures and builders through tests/conftest.py only."""
    offenders = []
    for path in sorted((PROJECT_ROOT / "tests").glob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else \
                [a.name for a in node.names] if isinstance(node, ast.Import) else []
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[-1].startswith("test_")
                          or n.startswith("tests.")]
    assert not offenders, "\n".join(offenders)
