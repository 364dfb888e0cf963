"""`pose3dfr export --checkpoint NAME --onnx OUT [--overwrite]`: the 2D embedding network as ONNX (dynamic batch).

It writes exactly OUT.onnx and its record OUT.json, nothing else, and replaces neither unless asked: OUT.json
beside a checkpoint's weights (`cd checkpoints && pose3dfr export --onnx default.onnx`) would have been that
checkpoint's own record, so that is refused even with --overwrite."""

from __future__ import annotations

import argparse
from pathlib import Path

from pose3dfr.errors import Pose3DFRError
from pose3dfr.inference.onnx_export import export_onnx
from pose3dfr.models.io import load_checkpoint


def export(args: argparse.Namespace) -> int:
    """Write OUT.onnx and its OUT.json record (checkpoint, sha256s)."""
    out = export_paths(args.onnx)
    check_targets(out, overwrite=args.overwrite)
    model, meta, name = load_checkpoint(args.checkpoint)
    path = export_onnx(model, meta, name, out)
    print(f"wrote {path} and {path.with_suffix('.json').name} (checkpoint {name}, input images B x 3 x "
          f"{model.backbone.input_size} x {model.backbone.input_size} in [0, 1])")
    return 0


def export_paths(onnx: str | Path) -> Path:
    """The .onnx path export_onnx writes for `onnx` (".onnx" appended when missing); its record is beside it."""
    out = Path(onnx)
    return out if out.suffix == ".onnx" else out.with_name(out.name + ".onnx")


def check_targets(out: Path, overwrite: bool = False) -> None:
    """Pose3DFRError, before any model is loaded, when OUT.onnx or OUT.json exists (unless `overwrite`), or
    when OUT.json would be the record of a checkpoint (a .safetensors with the same stem)."""
    record = out.with_suffix(".json")
    if out.with_suffix(".safetensors").exists():
        raise Pose3DFRError(f"{record.name}: {out.parent.name or '.'} holds checkpoint {out.stem}, whose record "
                            f"{record.name} the export would replace; choose another --onnx path")
    existing = [p.name for p in (out, record) if p.exists()]
    if existing and not overwrite:
        raise Pose3DFRError(f"{' and '.join(existing)} exist already; choose another --onnx path or pass --overwrite")
