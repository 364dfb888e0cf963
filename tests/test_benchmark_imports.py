"""Where benchmarks and tests import from: the benchmarks are a package of command lines run from the repository
root (`python -m benchmarks.NAME`), the tests import only pose3dfr, and nobody edits sys.path to find either.
Static checks (no benchmark runs here: they are measured by running them)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from pose3dfr.paths import PROJECT_ROOT

BENCHMARKS = sorted((PROJECT_ROOT / "benchmarks").glob("*.py"))
TESTS = sorted((PROJECT_ROOT / "tests").glob("*.py"))
PACKAGE = sorted((PROJECT_ROOT / "pose3dfr").rglob("*.py"))
SYS_PATH_EDIT = re.compile(r"sys\.path\s*(\.\s*(insert|append|extend)\s*\(|\[[^\]]*\]\s*=|\+=)")
HELPERS = {"__init__", "harness"}  # benchmarks/ modules that are no command line


def _imported(path: Path) -> list[str]:
    """Every module name an import statement of the file names, relative ones resolved to their package."""
    names = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names.append("." * node.level + (node.module or ""))
    return names


def _name(path: Path) -> str:
    return path.relative_to(PROJECT_ROOT).as_posix()


@pytest.mark.parametrize("path", BENCHMARKS + TESTS, ids=_name)
def test_no_file_edits_sys_path(path):
    """A clone runs as is: `python -m benchmarks.NAME` and pytest from the repository root import this checkout."""
    assert not SYS_PATH_EDIT.search(path.read_text()), f"{_name(path)} edits sys.path"


@pytest.mark.parametrize("path", TESTS, ids=_name)
def test_tests_import_the_package_never_the_benchmarks(path):
    """What a test checks lives in pose3dfr; a benchmark is a thin command line over it."""
    offenders = [n for n in _imported(path) if n.split(".")[0] == "benchmarks"]
    assert not offenders, f"{_name(path)} imports {offenders}"


def test_the_package_never_imports_the_benchmarks():
    offenders = [f"{_name(p)}: {n}" for p in PACKAGE for n in _imported(p) if n.split(".")[0] == "benchmarks"]
    assert not offenders, "\n".join(offenders)


@pytest.mark.parametrize("path", BENCHMARKS, ids=_name)
def test_benchmarks_import_each_other_through_the_package(path):
    """benchmarks/ is a package: a benchmark imports another module of it as `benchmarks.x`, never by bare name."""
    own = {p.stem for p in BENCHMARKS}
    bare = [n for n in _imported(path) if n.split(".")[0] in own or n.startswith(".")]
    assert not bare, f"{_name(path)} imports {bare} by bare or relative name"


@pytest.mark.parametrize("path", [p for p in BENCHMARKS if p.stem not in HELPERS], ids=_name)
def test_each_benchmark_is_a_module_command_line(path):
    """Its docstring shows the `python -m benchmarks.NAME` command, and running the module calls main()."""
    text = path.read_text()
    doc = ast.get_docstring(ast.parse(text)) or ""
    assert f"python -m benchmarks.{path.stem}" in doc, f"{_name(path)}: its docstring lacks its command"
    assert "python benchmarks/" not in text, f"{_name(path)} still names a script path command"
    assert 'if __name__ == "__main__":' in text and "def main(" in text
