"""`pose3dfr attention`: heatmaps and attention statistics of a data set's identities per yaw
(pose3dfr.eval.attention_report): a PNG grid per identity and a JSON of the statistics per |yaw| bin."""

from __future__ import annotations

import argparse

from pose3dfr.eval.attention_data import split_identities
from pose3dfr.eval.attention_report import REPORT_FILE, attention_report, summary_table
from pose3dfr.inference.verifier import Verifier


def run(args: argparse.Namespace) -> int:
    """Write the figures and the JSON, print the per-bin table."""
    verifier = Verifier.from_pretrained(args.checkpoint)
    identities = args.identity or split_identities(args.data, args.split, args.identities)
    content = attention_report(verifier, args.data, identities, args.out, every_k=args.every_k)
    print(summary_table({verifier.name: content["per_bin"]}))
    print(f"wrote {len(identities)} figure(s) and {REPORT_FILE} to {args.out}")
    return 0
