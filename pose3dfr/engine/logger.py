"""What a run reports as it goes: metrics.jsonl rows, TensorBoard scalars and a progress bar, all on rank 0 only."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from pose3dfr.eval.metrics import far_key

METRICS_FILE = "metrics.jsonl"


class RunLogger:
    """JSONL rows (always) and TensorBoard scalars (when installed); inactive on ranks other than 0."""

    def __init__(self, out: Path, active: bool, tensorboard: bool) -> None:
        self.active = active
        self.file = open(out / METRICS_FILE, "a", encoding="utf-8") if active else None
        self.tb = None
        if active and tensorboard:
            try:
                # Imported here: tensorboard is optional (not in requirements.txt).
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(out / "tensorboard"))
            except ImportError:  # tensorboard not installed: JSONL only
                self.tb = None

    def log(self, row: dict[str, Any]) -> None:
        if not self.active:
            return
        self.file.write(json.dumps(row) + "\n")
        self.file.flush()
        if self.tb is not None:
            for key, value in row.items():
                if isinstance(value, (int, float)) and key != "step" and value is not None:
                    self.tb.add_scalar(key, value, row["step"])

    def close(self) -> None:
        if self.file:
            self.file.close()
        if self.tb is not None:
            self.tb.close()


def progress_bar(total: int, initial: int, active: bool) -> tqdm:
    """A tqdm bar over training steps (disabled on ranks other than 0)."""
    return tqdm(total=total, initial=initial, disable=not active, desc="train", unit="step", dynamic_ncols=True)


def flat_validation(results: dict[str, Any], fars: tuple[float, ...]) -> dict[str, Any]:
    """evaluate_model's results as one row: val/<bin or overall>/tar_at_far_<far> -> TAR."""
    row = {}
    for label, metrics in [("overall", results["overall"]), *results["bins"].items()]:
        for far in fars:
            row[f"val/{label}/tar_at_far_{far_key(far)}"] = metrics[f"tar_at_far_{far_key(far)}"]
    return row
