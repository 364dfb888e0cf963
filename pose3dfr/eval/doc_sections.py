"""Named sections of docs/benchmarks.md, each written by its own benchmark between <!-- NAME:START/END --> markers,
so one benchmark rewrites its section (or the peers' report the whole page) without losing the others'."""

from __future__ import annotations

import re
from pathlib import Path

_SECTION = re.compile(r"<!-- ([A-Z_]+):START -->.*?<!-- \1:END -->\n?", re.S)
# how a results JSON recorded a run before benchmarks/ became a package of modules
_SCRIPT_COMMAND = re.compile(r"\bpython benchmarks/(\w+)\.py\b")


def markers(name: str) -> tuple[str, str]:
    """The start and end comment lines of section `name`."""
    return f"<!-- {name}:START -->", f"<!-- {name}:END -->"


def write_section(doc: Path, name: str, body: str) -> None:
    """Replace section `name` of `doc` with `body` (markers added), or append it."""
    start, end = markers(name)
    block = f"{start}\n{body.strip()}\n{end}\n"
    text = doc.read_text() if doc.is_file() else ""
    if start in text and end in text:
        before, rest = text.split(start, 1)
        text = before + block + rest.split(end, 1)[1].lstrip("\n")
    else:
        text = text.rstrip("\n") + "\n\n" + block
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(text)


def current_command(command: str) -> str:
    """A command recorded in a results JSON as it runs today: `python benchmarks/x.py ARGS` (recorded before the
    benchmarks became modules) is `python -m benchmarks.x ARGS`; a page shows the command that works."""
    return _SCRIPT_COMMAND.sub(r"python -m benchmarks.\1", command)


def kept_sections(text: str) -> str:
    """Every marked section of a page, for a script that rewrites the rest of it."""
    return "".join(m.group(0) for m in _SECTION.finditer(text))
