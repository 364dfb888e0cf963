"""`pose3dfr ablate`: train and compare the paper's variants over seeds (pose3dfr.engine.ablate)."""

from __future__ import annotations

import argparse
from pathlib import Path

from pose3dfr.engine.ablate import VARIANTS, ablate
from pose3dfr.eval.seeds import ablation_markdown


def run(args: argparse.Namespace) -> int:
    """`pose3dfr ablate --data DIR --out DIR --seeds K [--steps N] [--preset fast]`."""
    table = ablate(args.data, args.out, seeds=args.seeds, steps=args.steps, base_preset=args.preset,
                   config_file=args.config, set_items=args.set or (), variants=args.variants or VARIANTS,
                   split=args.split)
    print(ablation_markdown(table))
    print(f"wrote {Path(args.out) / 'ablation.md'} and {Path(args.out) / 'ablation.json'}")
    return 0
