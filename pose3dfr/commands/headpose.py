"""`pose3dfr train-headpose`: the CLI handler of pose3dfr.headpose.train."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import shlex
import sys


def train(args: argparse.Namespace) -> int:
    """Build the configs from the arguments, train, and print where the checkpoint went."""
    from pose3dfr.headpose.data import recipe
    from pose3dfr.headpose.train import HeadPoseTrainConfig, train_headpose
    from pose3dfr.inference.detect import FaceAnalyzer
    from pose3dfr.inference.faces import DetectorConfig

    data = recipe(args.recipe, workers=args.workers,
                  **{k: v for k, v in (("identities", args.identities), ("seed", args.data_seed)) if v is not None})
    cfg = HeadPoseTrainConfig(data=data, device=args.device, threads=args.threads, cache=args.cache or "")
    cfg = dataclasses.replace(cfg, **{k: v for k, v in (("steps", args.steps), ("batch_size", args.batch_size),
                                                            ("time_budget_min", args.time_budget_min))
                                      if v is not None})
    command = "pose3dfr " + shlex.join(sys.argv[1:]) if sys.argv[1:2] == ["train-headpose"] else ""
    boxes_only = functools.partial(FaceAnalyzer, DetectorConfig(headpose_weights=None))  # boxes, landmarks
    path = train_headpose(cfg, args.out, boxes_only, progress=not args.quiet, command=command)
    print(f"wrote {path} (+ {path.with_suffix('.json').name}, metrics.jsonl)")
    return 0
