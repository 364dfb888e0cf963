"""Two sets of ablation runs compared seed by seed (docs/results.md section 8: the twin before and after).

    python -m benchmarks.paired_runs --runs now=runs/guidance/baseline-2d --runs before=runs/guidance-before/baseline-2d

Each --runs is NAME=FOLDER holding seed<k>/test_eval.json (written by `pose3dfr ablate`); the seeds both have
are paired. Prints the TAR table (mean ± std over seeds) and each later set minus the first, per seed, with
pose3dfr.eval.seeds' aggregation.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pose3dfr.eval.seeds import aggregate, ablation_markdown, paired_differences


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", action="append", required=True, metavar="NAME=FOLDER")
    args = parser.parse_args(argv)
    folders = dict(item.split("=", 1) for item in args.runs)
    seeds = [sorted(int(p.parent.name[4:]) for p in Path(f).glob("seed*/test_eval.json")) for f in folders.values()]
    common = sorted(set.intersection(*map(set, seeds)))
    runs = {name: [json.loads((Path(f) / f"seed{s}" / "test_eval.json").read_text()) for s in common]
            for name, f in folders.items()}
    table = aggregate(runs, (1e-2,))
    table["paired"] = paired_differences(table["rows"], twin=next(iter(folders)))
    table.update(seeds=len(common), data=None, split="test")
    markdown = ablation_markdown(table).replace("Minus the 2D twin (baseline-2d)", f"Minus {next(iter(folders))}")
    print(markdown.split("\nData: ")[0] + f"\nSeeds paired: {common}; split: test.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
