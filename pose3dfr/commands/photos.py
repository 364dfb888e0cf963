"""`pose3dfr photos`: the real-photo regression check (pose3dfr.eval.real_photos) of one or more checkpoints."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pose3dfr.eval.real_photos import CHECK_HEADER, check_row, real_photo_check
from pose3dfr.inference.verifier import Verifier


def run(args: argparse.Namespace) -> int:
    """Print one table row per checkpoint; 1 when a checkpoint orders some pair wrong, else 0."""
    results = {}
    print(CHECK_HEADER)
    for name in args.checkpoint:
        check = real_photo_check(Verifier.from_pretrained(name), far=args.far, variants=not args.originals_only)
        results[name] = check
        print(check_row(name, check), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    missed = {name: c["faces_missed"] for name, c in results.items() if c["faces_missed"]}
    if missed:
        print(f"no face found (counted as rejections): {missed}")
    return 0 if all(c["separated"] for c in results.values()) else 1
