"""`pose3dfr export --checkpoint NAME --onnx OUT`: the 2D embedding network as ONNX (dynamic batch)."""

from __future__ import annotations

import argparse

from pose3dfr.inference.onnx_export import export_onnx
from pose3dfr.models.io import load_checkpoint


def export(args: argparse.Namespace) -> int:
    """Write OUT.onnx and its OUT.json record (checkpoint, sha256s)."""
    model, meta, name = load_checkpoint(args.checkpoint)
    path = export_onnx(model, meta, name, args.onnx)
    print(f"wrote {path} and {path.with_suffix('.json').name} (checkpoint {name}, input images B x 3 x "
          f"{model.backbone.input_size} x {model.backbone.input_size} in [0, 1])")
    return 0
