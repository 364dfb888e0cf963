"""Two recipes compared end to end, seed by seed (docs/results.md section 8: what ships as `default`).

Each input is one end-to-end result (pose3dfr.eval.end_to_end, `python -m benchmarks.end_to_end`) holding one
seed of both recipes as `--extra` systems named <prefix><seed> (e.g. jam0 and zv-full0). Per |yaw| and FAR: each
recipe's TAR (mean ± std over seeds, pipeline crops) and `other` minus `base` paired by seed, with the per-seed
differences: end-to-end numbers of single runs move by several points between seeds, so only paired means over
seeds decide. The CLI is `python -m benchmarks.paired_end_to_end`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Sequence

from pose3dfr.eval.seeds import summary
from pose3dfr.eval.end_to_end import FARS as E2E_FARS

FARS = tuple(f"{far:g}" for far in E2E_FARS)  # as the end-to-end results name them in their "tar_<far>" keys


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
