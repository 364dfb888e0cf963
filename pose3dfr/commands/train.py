"""`pose3dfr train`: one training run, single process or one rank under torchrun (pose3dfr.engine.train)."""

from __future__ import annotations

import argparse
import os

from pose3dfr.engine.config import build_train_config
from pose3dfr.engine.train import train
from pose3dfr.eval.reports import results_markdown


def run(args: argparse.Namespace) -> int:
    """`pose3dfr train --preset P --data DIR --out DIR [--steps N] [--seed S] [--resume] [--config F]`."""
    config = build_train_config(args.preset, args.config, args.set or (), steps=args.steps, seed=args.seed,
                                batch_size=args.batch_size, pretrained=args.pretrained,
                                num_workers=args.num_workers, device=args.device)
    if args.freeze:
        config.freeze = args.freeze
    summary = train(config, args.data, args.out, resume=args.resume)
    if summary.get("validation") and int(os.environ.get("RANK", "0")) == 0:
        print(results_markdown(summary["validation"], title=f"Validation ({config.eval.split}) at step {summary['step']}"))
    if summary.get("model"):
        print(f"wrote {summary['model']}")
    return 0
