"""Exit 0 when this machine already has what scripts/setup.sh would install, so setup can skip pip (about 25 s
on 2 cores even when nothing changes); exit 1 when anything must be installed.

    python scripts/installed.py requirements-dev.txt   # every `name==version` pin (and -r includes) installed
    python scripts/installed.py requirements-bench.txt # the same for the file `setup.sh dev` installs with --no-deps
    python scripts/installed.py --editable .           # pose3dfr installed in editable mode from this folder
"""

from __future__ import annotations

import json
import re
import sys
from importlib import metadata
from pathlib import Path

PIN = re.compile(r"^([A-Za-z0-9_.\-]+)(\[[^\]]*\])?==([^\s;#]+)\s*(#.*)?$")


def pins(path: Path) -> list[tuple[str, str]] | None:
    """(name, version) of every line of a requirements file and its -r includes; None if a line is not a pin."""
    out: list[tuple[str, str]] = []
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-r "):
            included = pins(path.parent / line[3:].strip())
            if included is None:
                return None
            out += included
            continue
        match = PIN.match(line)
        if match is None:
            return None  # an option, a URL or a range: let pip decide
        out.append((match.group(1), match.group(3)))
    return out


def installed_version(name: str) -> str | None:
    try:
        return metadata.version(name).split("+")[0]  # torch's CPU build is 2.13.0+cpu
    except metadata.PackageNotFoundError:
        return None


def requirements_met(path: Path) -> bool:
    wanted = pins(path)
    return wanted is not None and all(installed_version(name) == version for name, version in wanted)


def editable_here(folder: Path) -> bool:
    for dist in metadata.distributions(name="pose3dfr"):  # a checkout's own pose3dfr.egg-info has no direct_url
        info = json.loads(dist.read_text("direct_url.json") or "{}")
        if info.get("dir_info", {}).get("editable") and info.get("url") == folder.resolve().as_uri():
            return True
    return False


def main(argv: list[str]) -> int:
    if argv[:1] == ["--editable"]:
        return 0 if editable_here(Path(argv[1])) else 1
    return 0 if requirements_met(Path(argv[0])) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
