"""`pose3dfr convert-sface`: convert OpenCV Zoo's int8 SFace ONNX file into the project's safetensors."""

from __future__ import annotations

import argparse
from pathlib import Path

from pose3dfr.convert.sface import convert_sface_onnx, find_installed_onnx


def run(args: argparse.Namespace) -> int:
    """`pose3dfr convert-sface`: check the ONNX file's sha256, convert it, print the output's sha256."""
    source = Path(args.onnx) if args.onnx else find_installed_onnx()
    digest = convert_sface_onnx(source, args.out)
    print(f"{args.out}  sha256 {digest}  (from {source})")
    return 0
