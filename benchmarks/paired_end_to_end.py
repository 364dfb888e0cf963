"""Two recipes compared end to end, seed by seed (docs/results.md section 8: what ships as `default`).

    python benchmarks/paired_end_to_end.py --base jam --other zv-full runs/e2e_seed0.json runs/e2e_seed1.json ...

Each JSON is one `benchmarks/end_to_end.py` run holding one seed of both recipes as `--extra` systems named
<prefix><seed> (e.g. jam0 and zv-full0). Prints, per |yaw| and FAR, each recipe's TAR (mean ± std over seeds,
pipeline crops) and `other` minus `base` paired by seed, with the per-seed differences: end-to-end numbers of
single runs move by several points between seeds, so only paired means over seeds decide.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a clone without installing
sys.path.insert(0, str(Path(__file__).resolve().parent))

from end_to_end import FARS as E2E_FARS  # noqa: E402
from pose3dfr.engine.ablate import summary  # noqa: E402

FARS = tuple(f"{far:g}" for far in E2E_FARS)  # as end_to_end.py writes them in its "tar_<far>" keys


def recipe_tar(results: dict[str, Any], prefix: str) -> tuple[int, dict[str, dict[str, float]]]:
    """(seed, {far: {yaw: TAR %}}) of the one pipeline system named <prefix><seed> in an end-to-end result."""
    found = [(int(m.group(1)), system) for name, system in results["systems"].items()
             if (m := re.fullmatch(re.escape(prefix) + r"(\d+)/pipeline", name))]
    if len(found) != 1:
        raise ValueError(f"expected one system {prefix}<seed>/pipeline, found {len(found)}")
    seed, system = found[0]
    return seed, {far: {yaw: 100.0 * row[f"tar_{far}"] for yaw, row in system["by_yaw"].items()
                        if row.get(f"tar_{far}") is not None} for far in FARS}


def paired(files: Sequence[str | Path], base: str, other: str) -> dict[str, Any]:
    """{"seeds", "yaws", "rows": {base|other|difference: {far: {yaw: summary}}}} over the files (one seed each)."""
    runs = []
    for path in files:
        results = json.loads(Path(path).read_text())
        (seed_a, a), (seed_b, b) = recipe_tar(results, base), recipe_tar(results, other)
        if seed_a != seed_b:
            raise ValueError(f"{path}: {base} seed {seed_a} beside {other} seed {seed_b}")
        runs.append((seed_a, a, b))
    runs.sort(key=lambda run: run[0])
    yaws = sorted(set.intersection(*(set(a[FARS[0]]) & set(b[FARS[0]]) for _, a, b in runs)), key=float)
    rows: dict[str, Any] = {name: {} for name in (base, other, "difference")}
    for far in FARS:
        rows[base][far] = {y: summary([a[far].get(y) for _, a, _ in runs]) for y in yaws}
        rows[other][far] = {y: summary([b[far].get(y) for _, _, b in runs]) for y in yaws}
        rows["difference"][far] = {y: summary([None if a[far].get(y) is None or b[far].get(y) is None
                                               else b[far][y] - a[far][y] for _, a, b in runs]) for y in yaws}
    return {"seeds": [seed for seed, _, _ in runs], "yaws": yaws, "rows": rows}


def markdown(table: dict[str, Any], base: str, other: str) -> str:
    """Rows: each recipe and the paired difference, per FAR; columns: |yaw|."""
    yaws = table["yaws"]
    lines = ["| recipe | FAR | " + " | ".join(f"{y}°" for y in yaws) + " |", "|---|---|" + "---|" * len(yaws)]
    for far in FARS:
        for name in (base, other, "difference"):
            cells = []
            for y in yaws:
                entry = table["rows"][name][far][y]
                sign = "+" if name == "difference" else ""
                cells.append("-" if entry["mean"] is None else f"{entry['mean']:{sign}.1f} ± {entry['std']:.1f}")
            label = f"{other} minus {base}" if name == "difference" else name
            lines.append(f"| {label} | {float(far):.1%} | " + " | ".join(cells) + " |")
    per_seed = ", ".join(f"{y}°: " + " / ".join(f"{v:+.1f}" for v in table["rows"]["difference"]["0.01"][y]["values"]
                                                 if v is not None) for y in yaws)
    return "\n".join(lines + ["", f"Seeds paired: {table['seeds']}. TAR@1% differences per seed, {per_seed}."])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", help="end_to_end.py JSONs, one seed of both recipes each")
    parser.add_argument("--base", required=True, help="system name prefix of the recipe compared against")
    parser.add_argument("--other", required=True, help="system name prefix of the recipe compared")
    args = parser.parse_args(argv)
    print(markdown(paired(args.files, args.base, args.other), args.base, args.other))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
