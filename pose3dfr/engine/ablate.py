"""The paper's ablation: baseline-2d (the twin), +attention (jam), +regulariser (je), the full method and the
paper's exact variant, trained on the same data and seeds, each evaluated with the pose-binned protocol on the
test split: a table of mean +- std over seeds, and each variant's difference from the twin paired by seed
(the profile spread between seeds is 3-4 points, larger than most differences between variants)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Iterable, Sequence


from pose3dfr.data.facescape import FaceScapeMultiView
from pose3dfr.engine.checkpoint import FINAL_STEM
from pose3dfr.engine.config import build_train_config, preset_config
from pose3dfr.engine.distributed import resolve_device
from pose3dfr.engine.train import train
from pose3dfr.eval.evaluate import evaluate_model
from pose3dfr.eval.reports import write_reports
from pose3dfr.eval.seeds import ablation_markdown, aggregate, mean_diagnostics
from pose3dfr.models import load_model

VARIANTS: tuple[str, ...] = ("baseline-2d", "jam", "je", "full", "paper")


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
