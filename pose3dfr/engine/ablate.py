"""The paper's ablation: baseline-2d (the twin), +attention (jam), +regulariser (je), the full method and the
paper's exact variant, trained on the same data and seeds, each evaluated with the pose-binned protocol on the
test split: a table of mean +- std over seeds, and each variant's difference from the twin paired by seed
(the profile spread between seeds is 3-4 points, larger than most differences between variants)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from pose3dfr.data.facescape import FaceScapeMultiView
from pose3dfr.engine.checkpoint import FINAL_STEM
from pose3dfr.engine.config import build_train_config, preset_config
from pose3dfr.engine.distributed import resolve_device
from pose3dfr.engine.train import train
from pose3dfr.eval.evaluate import evaluate_model
from pose3dfr.eval.metrics import far_key
from pose3dfr.eval.reports import write_reports
from pose3dfr.models import load_model

VARIANTS: tuple[str, ...] = ("baseline-2d", "jam", "je", "full", "paper")
TWIN = "baseline-2d"  # the 2D-only twin every 3D variant is compared with, seed by seed


def variant_config(variant: str, seed: int, base_preset: str | None, config_file: str | Path | None,
                   set_items: Iterable[str], steps: int | None):
    """The training config of one (variant, seed): the variant's preset, or `base_preset`'s schedule
    (e.g. `fast`) with the variant's model switches, so variants differ only in the model."""
    config = build_train_config(base_preset or variant, config_file, set_items, steps=steps, seed=seed)
    config.model = preset_config(variant).model
    config.preset = f"{base_preset}:{variant}" if base_preset else variant
    return config


def ablate(data: str | Path, out: str | Path, seeds: int = 3, steps: int | None = None,
           base_preset: str | None = None, config_file: str | Path | None = None,
           set_items: Sequence[str] = (), variants: Sequence[str] = VARIANTS, split: str = "test") -> dict[str, Any]:
    """Train every variant for seeds 0..seeds-1 into out/<variant>/seed<k>, evaluate, aggregate.

    A run whose final model already exists is not trained again, nor evaluated again when its report is newer
    (re-running continues an ablation, or re-aggregates it cheaply).
    """
    out = Path(out)
    runs: dict[str, list[dict[str, Any]]] = {}
    diagnostics: dict[str, list[dict[str, float]]] = {}
    test_set = None
    eval_config = None
    for seed in range(seeds):  # seed-major: a stopped ablation has whole seeds, every variant paired
        for variant in variants:
            config = variant_config(variant, seed, base_preset, config_file, set_items, steps)
            run_dir = out / variant / f"seed{seed}"
            if not (run_dir / f"{FINAL_STEM}.json").is_file():
                train(config, data, run_dir, resume=True)
            eval_config = dataclasses.replace(config.eval, split=split, max_images=None)
            final = json.loads((run_dir / f"{FINAL_STEM}.json").read_text())
            diagnostics.setdefault(variant, []).append((final.get("extra") or {}).get("diagnostics") or {})
            report = run_dir / f"{split}_eval.json"
            if report.is_file() and report.stat().st_mtime >= (run_dir / f"{FINAL_STEM}.json").stat().st_mtime:
                runs.setdefault(variant, []).append(json.loads(report.read_text()))  # evaluated before: reused
                continue
            if test_set is None:
                test_set = FaceScapeMultiView(data, split=split, num_points=0)
            model, _ = load_model(run_dir / f"{FINAL_STEM}.safetensors")
            model.to(resolve_device(config.device))
            results = evaluate_model(model, test_set, eval_config)
            write_reports(results, report)
            runs.setdefault(variant, []).append(results)
    runs = {variant: runs[variant] for variant in variants}
    table = aggregate(runs, eval_config.fars if eval_config else (1e-2, 1e-3))
    table["diagnostics"] = mean_diagnostics(diagnostics)
    table.update(data=str(data), seeds=seeds, steps=steps, base_preset=base_preset, split=split,
                 config=str(config_file) if config_file else None, set=list(set_items))
    (out / "ablation.json").write_text(json.dumps(table, indent=2))
    (out / "ablation.md").write_text(ablation_markdown(table))
    return table


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
        lines += ["", "### Attention at the end of training (mean over seeds; pose3dfr/engine/diagnostics.py)", "",
                  "| Variant | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
        for variant, row in table["diagnostics"].items():
            lines.append(f"| {variant} | " + " | ".join(f"{row[k]:+.4f}" if k in row else "n/a" for k in keys) + " |")
    lines += ["", f"Data: {table.get('data')}; seeds: {table.get('seeds')}; steps: {table.get('steps') or 'preset'}; "
                  f"split: {table.get('split')}; schedule: {table.get('base_preset') or 'each variant preset'}"
                  + (f" + {table['config']}" if table.get("config") else "")
                  + (f" + --set {' '.join(table['set'])}" if table.get("set") else "") + "."]
    return "\n".join(lines) + "\n"


