"""The package's import structure: the import contracts of pyproject.toml hold (floors, the two front ends, the
conversion room, no import cycle; type-only imports count), no guards around own imports, files of one job.

The contracts are import-linter's (`lint-imports` from the repository root runs the same check); docs/architecture.md
draws the floors.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from pose3dfr.paths import PROJECT_ROOT

PACKAGE = PROJECT_ROOT / "pose3dfr"
PYPROJECT = PROJECT_ROOT / "pyproject.toml"
LINT_SECONDS = 120  # the whole check takes well under a second; a hang fails the test instead of the suite


def test_import_contracts_hold():
    """`lint-imports` over this checkout: every contract of [tool.importlinter] kept (its report on failure)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run([sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; "
                          "sys.exit(lint_imports_command())", "--no-cache", "--config", str(PYPROJECT)],
                         cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=LINT_SECONDS)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "0 broken" in run.stdout


def test_contracts_count_type_checking_imports_and_forbid_cycles():
    """The TYPE_CHECKING rule stays written out, and the acyclic contract covers the whole package."""
    config = tomllib.loads(PYPROJECT.read_text())["tool"]["importlinter"]
    assert config["exclude_type_checking_imports"] is False
    contracts = {c["id"]: c for c in config["contracts"]}
    assert contracts["acyclic"]["type"] == "acyclic" and contracts["acyclic"]["package"] == "pose3dfr"
    assert contracts["floors"]["exhaustive"] is True and contracts["floors"]["containers"] == ["pose3dfr"]


def _own_imports_in_try_blocks(path: Path) -> list[str]:
    """`module:line (name)` of every import of a pose3dfr module inside a try block of the file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.Try):
            continue
        for inner in (n for statement in node.body for n in ast.walk(statement)):
            names = [inner.module or ""] if isinstance(inner, ast.ImportFrom) and not inner.level else \
                [a.name for a in inner.names] if isinstance(inner, ast.Import) else []
            found += [f"{path.relative_to(PROJECT_ROOT)}:{inner.lineno} ({n})" for n in names
                      if n == "pose3dfr" or n.startswith("pose3dfr.")]
    return found


def test_no_module_guards_an_import_of_the_project_itself():
    guarded = [hit for path in sorted(PACKAGE.rglob("*.py")) for hit in _own_imports_in_try_blocks(path)]
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
