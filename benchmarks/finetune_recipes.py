"""Real photos against profile gain, per fine-tuning recipe (issue #19; docs/results.md section 7).

    python -m benchmarks.finetune_recipes --data data/synth200 \
        --row dlib-pretrained=dlib-pretrained --row head-only=runs/pipeline/baseline-2d/seed0/model.safetensors \
        --row last-level=runs/r19/tt1/model.safetensors --row "wise-0.5=runs/r19/tt1/model.safetensors@0.5" ...

Each row is NAME=CHECKPOINT, optionally @ALPHA for WiSE-FT towards the pretrained dlib network
(pose3dfr.eval.wise_ft). Per row: the real-photo check (pose3dfr.eval.real_photos, as `pose3dfr photos`) and
TAR @ 1% FAR per |yaw| bin on the validation identities through the real pipeline (detector, pose, alignment;
no face = rejection). The real-photo accept counts use each checkpoint's own thresholds, recalibrated on the
validation split (after fitting the routing, and with the real-photo rule) for interpolated and frontal-teacher
rows, as `pose3dfr publish` would. Writes a Markdown table (and --json).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from pose3dfr.engine.publish import with_real_photo_rule
from pose3dfr.eval.config import EvalConfig
from pose3dfr.eval.evaluate import evaluate_split, fit_routing
from pose3dfr.eval.real_photos import real_photo_check
from pose3dfr.eval.wise_ft import interpolate
from pose3dfr.inference.verifier import Verifier
from pose3dfr.models.io import load_checkpoint, pretrained_dlib_model

BINS = ("[0,30)", "[30,60)", "[60,90)", "[90,+)")


def measure(spec: str, data: str, pretrained) -> dict:
    """The real-photo check and validation TAR per bin of one row spec (CHECKPOINT[@ALPHA])."""
    path, _, alpha = spec.partition("@")
    model, meta, name = load_checkpoint(path)
    model = model.eval()
    if alpha:
        model = interpolate(model, pretrained, float(alpha))
    if getattr(model, "routing", None) is not None:  # as `pose3dfr publish` does before calibrating
        fit_routing(model, data)
    validation = evaluate_split(model, data, EvalConfig(split="val", align="pipeline"))
    if alpha or model.routing is not None:  # their own thresholds, as publishing would give them
        calibration = with_real_photo_rule(model, validation["calibration"])
        meta = {**meta, "extra": {**(meta.get("extra") or {}), "calibration": calibration}}
    with torch.no_grad():
        check = real_photo_check(Verifier(model, meta, name=name))
    return {"spec": spec, "photos": {k: v for k, v in check.items() if k not in ("genuine", "impostor")},
            "val_tar_1e-2": {b: validation["bins"][b]["tar_at_far_1e-2"] for b in BINS}}


def markdown(rows: dict[str, dict]) -> str:
    lines = ["| recipe | real AUC | real margin | real relative margin | same accepted | different accepted | "
             + " | ".join(f"val TAR {b}" for b in BINS) + " |", "|---" * (6 + len(BINS)) + "|"]
    for name, r in rows.items():
        p = r["photos"]
        lines.append(f"| {name} | {p['auc']:.3f} | {p['margin']:+.3f} | {p['relative_margin']:+.3f} | "
                     f"{p['same_accepted']}/{p['same_pairs']} | {p['different_accepted']}/{p['different_pairs']} | "
                     + " | ".join(f"{100 * r['val_tar_1e-2'][b]:.1f}" for b in BINS) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--row", action="append", required=True, metavar="NAME=CHECKPOINT[@ALPHA]")
    parser.add_argument("--json", default=None)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    pretrained, _ = pretrained_dlib_model()
    rows = {}
    for item in args.row:
        name, _, spec = item.partition("=")
        rows[name] = measure(spec, args.data, pretrained)
        print(f"{name}: done", file=sys.stderr, flush=True)
    print(markdown(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
