"""Results over seeds: TAR per pose bin as mean ± std over seeds, each variant minus its 2D twin paired by seed, and
their Markdown table (the ablation's aggregation; also used by the paired end-to-end and fresh-identity benchmarks)."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from pose3dfr.eval.metrics import far_key

TWIN = "baseline-2d"  # the 2D-only twin every 3D variant is compared with, seed by seed


def summary(values: Sequence[float | None]) -> dict[str, Any]:
    """{"mean", "std" (sample std; 0 for one value), "values"} over the known values (None where none is known)."""
    known = np.array([v for v in values if v is not None], dtype=np.float64)
    return {"mean": float(known.mean()) if known.size else None,
            "std": float(known.std(ddof=1)) if known.size > 1 else (0.0 if known.size else None),
            "values": list(values)}


def aggregate(runs: dict[str, list[dict[str, Any]]], fars: Sequence[float]) -> dict[str, Any]:
    """{"fars", "columns", "rows": {variant: {column: {"far": {key: {mean, std, values}}}}}}."""
    rows: dict[str, Any] = {}
    columns: list[str] = []
    for variant, results in runs.items():
        columns = [*results[0]["bins"], "overall"]
        row = {}
        for column in columns:
            cell = {}
            for far in fars:
                key = f"tar_at_far_{far_key(far)}"
                values = [(r["overall"] if column == "overall" else r["bins"][column])[key] for r in results]
                cell[far_key(far)] = summary(values)
            row[column] = cell
        rows[variant] = row
    return {"fars": [far_key(f) for f in fars], "columns": columns, "rows": rows, "paired": paired_differences(rows)}


DIAGNOSTIC_KEYS = ("gamma_2d", "attn_entropy_2d", "attn_entropy_3d", "attention_share", "loss_je")


def mean_diagnostics(diagnostics: dict[str, list[dict[str, float]]]) -> dict[str, dict[str, float]]:
    """{variant: {key: mean over seeds}} of the attention diagnostics each run logged last (engine.diagnostics)."""
    out: dict[str, dict[str, float]] = {}
    for variant, rows in diagnostics.items():
        means = {key: float(np.mean([r[key] for r in rows])) for key in DIAGNOSTIC_KEYS if rows and all(key in r for r in rows)}
        if means:
            out[variant] = means
    return out


def paired_differences(rows: dict[str, Any], twin: str = TWIN) -> dict[str, Any]:
    """{variant: {column: {far: {mean, std, values}}}}: variant minus twin per seed (seeds both have), in TAR units."""
    if twin not in rows:
        return {}
    paired: dict[str, Any] = {}
    for variant, row in rows.items():
        if variant == twin:
            continue
        paired[variant] = {}
        for column, cell in row.items():
            paired[variant][column] = {}
            for far, entry in cell.items():
                base = rows[twin].get(column, {}).get(far, {}).get("values", [])
                diffs = [v - b for v, b in zip(entry["values"], base) if v is not None and b is not None]
                paired[variant][column][far] = summary(diffs)
    return paired


def _cell(entry: dict[str, Any]) -> str:
    if entry["mean"] is None:
        return "n/a"
    return f"{100 * entry['mean']:.2f} ± {100 * entry['std']:.2f}"


def _signed(entry: dict[str, Any]) -> str:
    if entry["mean"] is None:
        return "n/a"
    return f"{100 * entry['mean']:+.2f} ± {100 * entry['std']:.2f}"


def ablation_markdown(table: dict[str, Any]) -> str:
    """Rows = variant, columns = pose bin x FAR; TAR in percent, mean ± std over seeds."""
    fars, columns = table["fars"], table["columns"]
    header = ["Variant"] + [f"{c} TAR@{100 * float(f):g}%" for c in columns for f in fars]
    lines = ["## Ablation: TAR by probe pose (mean ± std over seeds, %)", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for variant, row in table["rows"].items():
        lines.append("| " + " | ".join([variant] + [_cell(row[c][f]) for c in columns for f in fars]) + " |")
    if table.get("paired"):
        lines += ["", f"### Minus the 2D twin ({TWIN}), paired by seed (TAR points, mean ± std of the differences)", "",
                  "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for variant, row in table["paired"].items():
            lines.append("| " + " | ".join([variant] + [_signed(row[c][f]) for c in columns for f in fars]) + " |")
    if table.get("diagnostics"):
        keys = [k for k in DIAGNOSTIC_KEYS if any(k in d for d in table["diagnostics"].values())]
        lines += ["", "### Attention at the end of training (mean over seeds; pose3dfr.engine.diagnostics)", "",
                  "| Variant | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
        for variant, row in table["diagnostics"].items():
            lines.append(f"| {variant} | " + " | ".join(f"{row[k]:+.4f}" if k in row else "n/a" for k in keys) + " |")
    lines += ["", f"Data: {table.get('data')}; seeds: {table.get('seeds')}; steps: {table.get('steps') or 'preset'}; "
                  f"split: {table.get('split')}; schedule: {table.get('base_preset') or 'each variant preset'}"
                  + (f" + {table['config']}" if table.get("config") else "")
                  + (f" + --set {' '.join(table['set'])}" if table.get("set") else "") + "."]
    return "\n".join(lines) + "\n"


