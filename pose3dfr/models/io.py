"""Checkpoints as <stem>.safetensors (tensors) + <stem>.json (config, extra, sha256); nothing is unpickled.

The JSON records the weights file's sha256, so a truncated or altered weights file is refused with
CheckpointError before any tensor is used.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from pose3dfr.errors import CheckpointError, Pose3DFRError
from pose3dfr.models.config import ModelConfig

FORMAT = 1


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def checkpoint_paths(path: str | Path) -> tuple[Path, Path]:
    """(<stem>.safetensors, <stem>.json) from the stem, the .safetensors or the .json path."""
    path = Path(path)
    stem = path.with_suffix("") if path.suffix in (".safetensors", ".json") else path
    return stem.with_name(stem.name + ".safetensors"), stem.with_name(stem.name + ".json")


def save_model(model: torch.nn.Module, path_stem: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Write <stem>.safetensors and <stem>.json for a Pose3DFR model; returns the .safetensors path."""
    weights, meta_path = checkpoint_paths(path_stem)
    weights.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    save_file(tensors, str(weights), metadata={"format": str(FORMAT)})
    meta = {"format": FORMAT, "config": asdict(model.cfg), "extra": extra, "weights_sha256": file_sha256(weights)}
    meta_path.write_text(json.dumps(meta, indent=2, sort_keys=True))
    return weights


def read_meta(path: str | Path) -> dict[str, Any]:
    """The checkpoint's JSON (config, extra, format, weights_sha256); CheckpointError when missing or malformed."""
    _, meta_path = checkpoint_paths(path)
    try:
        meta = json.loads(meta_path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{meta_path}: checkpoint config (.json) not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{meta_path}: not a readable checkpoint config ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or not isinstance(meta.get("config"), dict):
        raise CheckpointError(f"{meta_path}: not a pose3dfr checkpoint config of format {FORMAT}")
    return meta


def load_model(path: str | Path, verify: bool = True) -> tuple[torch.nn.Module, dict[str, Any]]:
    """(model in eval mode, meta) from a checkpoint; `path` is the stem, the .safetensors or the .json."""
    from pose3dfr.models.pose3dfr import Pose3DFR

    weights, _ = checkpoint_paths(path)
    meta = read_meta(path)
    if not weights.is_file():
        raise CheckpointError(f"{weights}: checkpoint weights (.safetensors) not found")
    if verify and meta.get("weights_sha256") and file_sha256(weights) != meta["weights_sha256"]:
        raise CheckpointError(f"{weights}: sha256 does not match its .json (truncated or modified file)")
    try:
        cfg = ModelConfig.from_dict(meta["config"])
        model = Pose3DFR(cfg, load_pretrained=False)
    except Pose3DFRError as exc:
        raise CheckpointError(f"{weights}: config does not build a model ({exc})") from None
    try:
        state = load_file(str(weights))
    except Exception as exc:  # safetensors raises its own error types for bad headers / short files
        raise CheckpointError(f"{weights}: not a readable safetensors file ({exc})") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{weights}: weights do not match the config: {str(exc)[:500]}") from None
    return model.eval(), meta
