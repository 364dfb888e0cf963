"""`pose3dfr publish`: ship a finished run as checkpoints/<name>.* with its model card."""

from __future__ import annotations

import argparse
from pathlib import Path

from pose3dfr.engine.publish import publish_run
from pose3dfr.errors import CheckpointError


def run(args: argparse.Namespace) -> int:
    """`pose3dfr publish --run DIR --name NAME --data DIR --command "..." [--twin NAME] [--frontal-teacher]`."""
    run = Path(args.run)
    if not (run / "model.safetensors").is_file():
        raise CheckpointError(f"{run}: no finished run here (model.safetensors is missing)")
    weights = publish_run(run, args.name, args.data, args.command, out_dir=args.out_dir, split=args.split,
                          twin=args.twin, check_photos=not args.no_photos, frontal_teacher=args.frontal_teacher)
    print(f"wrote {weights}, {weights.with_suffix('.json')}, {weights.with_suffix('.md')}")
    return 0
