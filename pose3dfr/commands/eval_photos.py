"""`pose3dfr eval-photos FOLDER`: verification per |yaw| group on your own labelled photos, pose3dfr and its peers
side by side (pose3dfr.eval.photo_folder; layout and protocol in docs/eval_photos.md)."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from tqdm import tqdm

from pose3dfr.eval.peers import make_peer, parse_peers, peer_available
from pose3dfr.eval.photo_folder import (PhotoFolderConfig, check_folder, evaluate_photo_folder, is_benchmark_root,
                                        parse_groups, read_benchmark_split, read_photo_folder)
from pose3dfr.eval.photo_report import markdown_report
from pose3dfr.inference.verifier import Verifier


def run(args: argparse.Namespace) -> int:
    """Print the Markdown table (and write --json); bad arguments and unusable folders fail before any model loads."""
    config = PhotoFolderConfig(far=args.far, empirical_far=args.empirical_far,
                               groups=parse_groups(args.groups)).validate()
    keys = parse_peers(args.peers)
    folder = (read_benchmark_split(args.folder, args.split, args.max_identities) if is_benchmark_root(args.folder)
              else read_photo_folder(args.folder))
    for name, why in folder.skipped:
        print(f"skipped {name}: {why}", file=sys.stderr)
    check_folder(folder, config)
    peers = {}
    for key in keys:
        reason = peer_available(key)
        if reason:
            print(f"peer {key}: left out, {reason}", file=sys.stderr)
            continue
        peers[key] = make_peer(key)
        peers[key].load()
    verifier = Verifier.from_pretrained(args.checkpoint)
    with tqdm(desc="photos", total=len(folder.photos), unit="photo", leave=False) as bar:
        report = evaluate_photo_folder(folder, verifier, peers, config, progress=bar.update)
    for item in report["skipped"][len(folder.skipped):]:
        print(f"skipped {item['file']}: {item['reason']}", file=sys.stderr)
    for warning in report["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    print(markdown_report(report))
    if args.json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(_finite(report), indent=1, allow_nan=False))
        print(f"wrote {out}", file=sys.stderr)
    return 0


def _finite(value: Any) -> Any:
    """The report with every non-finite float as null (strict JSON)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
