"""`pose3dfr eval` (the per-pose protocol on a checkpoint) and `pose3dfr calibrate` (its thresholds)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pose3dfr.engine.distributed import resolve_device
from pose3dfr.eval.calibration import calibration_record, published_real_photo_rule, write_calibration_file
from pose3dfr.eval.config import EvalConfig
from pose3dfr.eval.evaluate import evaluate_split
from pose3dfr.eval.reports import results_markdown, write_reports
from pose3dfr.models.io import load_checkpoint


def evaluate(args: argparse.Namespace) -> int:
    """`pose3dfr eval --checkpoint FILE --data DIR --json OUT [--split test]`."""
    config = EvalConfig(split=args.split, batch_size=args.batch_size, num_workers=args.num_workers,
                        device=args.device, align=getattr(args, "align", "pipeline"))
    if args.fars:
        config.fars = tuple(args.fars)
    model, _, _ = load_checkpoint(args.checkpoint)
    model.to(resolve_device(config.device))
    results = evaluate_split(model, args.data, config)
    results["checkpoint"] = str(args.checkpoint)
    results["data"] = str(args.data)
    written = write_reports(results, args.json)
    print(results_markdown(results))
    print("wrote " + ", ".join(str(p) for p in written.values()))
    return 0


def calibrate(args: argparse.Namespace) -> int:
    """`pose3dfr calibrate --checkpoint NAME --data DIR --out FILE [--split val] [--align pipeline]`."""
    config = EvalConfig(split=args.split, align=args.align, device=args.device)
    model, meta, _ = load_checkpoint(args.checkpoint)
    model.to(resolve_device(config.device))
    command = (f"pose3dfr calibrate --checkpoint {args.checkpoint} --data {args.data_name or args.data} "
               f"--split {args.split} --align {args.align} --out {args.out_name or args.out}")
    written = calibration_record(evaluate_split(model, args.data, config), synthetic=is_synthetic(args.data),
                                 align=config.align, split=config.split, command=command)
    extra = meta.get("extra") or {}
    rule = published_real_photo_rule(model.cfg.backbone)
    if rule is not None and extra.get("pretrained"):  # the network as published
        written["calibration"]["real_photos"] = rule
    write_calibration_file(args.out, written)
    for far, entry in written["calibration"]["far"].items():
        print(f"FAR {far}: threshold {entry['overall']:.4f}")
    print(f"wrote {args.out}")
    return 0


def is_synthetic(data: str | Path) -> bool:
    """Whether a data root is the project's synthetic benchmark (its manifest names the generator)."""
    manifest = Path(data) / "manifest.json"
    return manifest.is_file() and "synthetic" in str(json.loads(manifest.read_text()).get("generator", ""))
