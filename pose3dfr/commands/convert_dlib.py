"""`pose3dfr convert-dlib`: convert dlib's descriptor .dat into the project's safetensors."""

from __future__ import annotations

import argparse
from pathlib import Path

from pose3dfr.convert.dlib import convert_dlib_dat, find_installed_dat


def run(args: argparse.Namespace) -> int:
    """`pose3dfr convert-dlib`: convert dlib's descriptor .dat to safetensors and print the output's sha256."""
    dat = Path(args.dat) if args.dat else find_installed_dat()
    digest = convert_dlib_dat(dat, args.out)
    print(f"{args.out}  sha256 {digest}  (from {dat})")
    return 0
