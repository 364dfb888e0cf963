"""The `pose3dfr` command line. Each subcommand declares its arguments here and names the library
function that runs it ("module:function", imported only when that subcommand runs, so `--help` is fast).
Handlers take the parsed arguments and return an exit code."""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Callable, Sequence

import pose3dfr
import pose3dfr.errors


def _add_info(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="version, shipped assets and checkpoints")
    p.set_defaults(handler=_info)


def _info(args: argparse.Namespace) -> int:
    from pose3dfr.paths import ASSETS_DIR, CHECKPOINTS_DIR

    print(f"pose3dfr {pose3dfr.__version__}")
    print(f"assets:      {ASSETS_DIR}")
    for path in sorted(p for p in ASSETS_DIR.rglob("*") if p.is_file()):
        print(f"  {path.relative_to(ASSETS_DIR)}")
    print(f"checkpoints: {CHECKPOINTS_DIR}")
    for path in sorted(CHECKPOINTS_DIR.glob("*.safetensors")):
        print(f"  {path.name}")
    return 0


# Subcommands, in the order `--help` lists them. Later issues add theirs here.
SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [_add_info]


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (also used by the docs and tests)."""
    parser = argparse.ArgumentParser(
        prog="pose3dfr",
        description="Pose-robust 2D face recognition that learns from 3D (Peace, Hu, Riggan, FG 2025).")
    parser.add_argument("--version", action="version", version=f"pose3dfr {pose3dfr.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in SUBCOMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `pose3dfr` console script and of `python -m pose3dfr.cli`."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    handler = args.handler
    if isinstance(handler, str):
        module, _, name = handler.partition(":")
        handler = getattr(importlib.import_module(module), name)
    try:
        return int(handler(args) or 0)
    except pose3dfr.errors.Pose3DFRError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
