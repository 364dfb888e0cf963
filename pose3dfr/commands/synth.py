"""`pose3dfr synth`: generate the synthetic multi-view benchmark (pose3dfr.data.synthetic)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pose3dfr.data.synthetic import SynthConfig, generate_benchmark


def run(args: argparse.Namespace) -> int:
    """`pose3dfr synth`: generate the benchmark and print where its manifest is."""
    config = SynthConfig(identities=args.identities, seed=args.seed, image_size=args.image_size,
                         yaw_step=args.yaw_step, expressions=args.expressions, points=args.points,
                         workers=args.workers)
    path = generate_benchmark(args.out, config, progress=True)
    manifest = json.loads(path.read_text())
    print(f"wrote {len(manifest['views'])} images of {config.identities} identities to {Path(args.out)}")
    print(f"manifest: {path}")
    print(f"contact sheet: {Path(args.out) / 'contact_sheet.png'}")
    return 0
