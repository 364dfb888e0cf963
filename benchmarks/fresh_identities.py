"""Runs paired by seed on every identity of a data set none of them trained on (docs/results.md section 9).

    pose3dfr synth --out runs/fresh-seed7 --identities 40 --seed 7 --workers 2
    python -m benchmarks.fresh_identities --data runs/fresh-seed7 --runs twin=runs/sface/sface-2d \
        --runs full=runs/sface/sface-full [--checkpoint sface-pretrained] [--json OUT.json]

A generator seed no run saw gives identities that are held out whatever split the manifest puts them in, so every
identity is evaluated (the held-out protocol of `pose3dfr eval`: frontal gallery, probes by |yaw| bin, pipeline
crops, thresholds from these identities' own impostors). Each --runs is NAME=FOLDER holding seed<k>/model.safetensors;
each run's result is kept beside it as fresh_<data name>_eval.json (reused when newer than the model). Prints the TAR
table (mean ± std over seeds) and each later set minus the first, paired by seed (pose3dfr.eval.seeds'
aggregation), and a row per --checkpoint (one model, no seeds: e.g. the pretrained network all runs start from).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from pose3dfr.eval.seeds import ablation_markdown, aggregate, paired_differences

FARS = (1e-2, 1e-3)


def evaluate_all(checkpoint: str | Path, data: str | Path) -> dict[str, Any]:
    """The held-out protocol on every identity of `data` (pipeline crops, as `pose3dfr eval` does)."""
    from pose3dfr.data.facescape import FaceScapeMultiView
    from pose3dfr.eval.config import EvalConfig
    from pose3dfr.eval.evaluate import evaluate_model
    from pose3dfr.models import load_checkpoint

    model, _, _ = load_checkpoint(str(checkpoint))
    return evaluate_model(model, FaceScapeMultiView(data, num_points=0), EvalConfig(split="all", fars=FARS))


def run_results(folder: Path, data: Path) -> dict[int, dict[str, Any]]:
    """{seed: results} of every finished seed<k> run in `folder`, evaluated once and cached beside the model."""
    out = {}
    for model in sorted(folder.glob("seed*/model.safetensors")):
        report = model.parent / f"fresh_{data.name}_eval.json"
        if not report.is_file() or report.stat().st_mtime < model.stat().st_mtime:
            report.write_text(json.dumps(evaluate_all(model, data)))
        out[int(model.parent.name[4:])] = json.loads(report.read_text())
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, type=Path, help="a data root no run trained on")
    parser.add_argument("--runs", action="append", required=True, metavar="NAME=FOLDER")
    parser.add_argument("--checkpoint", action="append", default=[], help="also one model without seeds")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    folders = {name: Path(folder) for name, folder in (item.split("=", 1) for item in args.runs)}
    per_run = {name: run_results(folder, args.data) for name, folder in folders.items()}
    common = sorted(set.intersection(*(set(r) for r in per_run.values())))
    table = aggregate({name: [r[s] for s in common] for name, r in per_run.items()}, FARS)
    table["paired"] = paired_differences(table["rows"], twin=next(iter(folders)))
    table.update(seeds=len(common), data=str(args.data), split="every identity")
    singles = {name: evaluate_all(name, args.data) for name in args.checkpoint}
    if singles:
        table["rows"].update(aggregate({n: [r] for n, r in singles.items()}, FARS)["rows"])
    markdown = ablation_markdown(table).replace("Minus the 2D twin (baseline-2d)", f"Minus {next(iter(folders))}")
    print(markdown.split("\nData: ")[0] + f"\nSeeds paired: {common}; data: {args.data}, every identity.")
    if args.json:
        args.json.write_text(json.dumps(table, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
