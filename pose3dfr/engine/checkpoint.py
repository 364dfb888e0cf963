"""A run folder's files: step checkpoints (weights + training state) and the final model, written atomically.

Layout under --out: checkpoints/step_<N>.{train.safetensors,safetensors,json} and model.{safetensors,json}.
Training state (optimiser moments, scheduler, every RNG) is flat tensors in safetensors plus JSON
metadata: nothing is pickled. A step checkpoint counts only once its JSON exists (written last), so a
run killed at any moment resumes from its newest complete checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from pose3dfr.errors import CheckpointError
from pose3dfr.models.io import checkpoint_paths, save_model, verified_weights

CHECKPOINT_DIR = "checkpoints"
FINAL_STEM = "model"
_STEP_RE = re.compile(r"^step_(\d+)\.json$")
TRAIN_STATE_SUFFIX = ".train.safetensors"


# ----------------------------------------------------------------------------------------------
# RNG and optimiser state as tensors + JSON
# ----------------------------------------------------------------------------------------------

def _rng_tensors() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = state
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    tensors["rng.numpy.keys"] = torch.from_numpy(np.asarray(keys, dtype=np.int64))
    version, internal, gauss = random.getstate()
    tensors["rng.python"] = torch.tensor(internal, dtype=torch.int64)
    meta = {"numpy": [kind, int(pos), int(has_gauss), float(cached)], "python": [version, gauss]}
    return tensors, meta


def _restore_rng(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    cuda = sorted(k for k in tensors if k.startswith("rng.cuda."))
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([tensors[k] for k in cuda])
    kind, pos, has_gauss, cached = meta["numpy"]
    np.random.set_state((kind, tensors["rng.numpy.keys"].numpy().astype(np.uint32), pos, has_gauss, cached))
    version, gauss = meta["python"]
    random.setstate((version, tuple(int(x) for x in tensors["rng.python"].tolist()), gauss))


def _training_state(optimizer: torch.optim.Optimizer, scheduler: Any, step: int
                    ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Optimiser/scheduler/RNG state as flat tensors + JSON-able metadata."""
    tensors: dict[str, torch.Tensor] = {}
    optim = optimizer.state_dict()
    plain_state: dict[str, dict[str, Any]] = {}
    for index, entry in optim["state"].items():
        for name, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{index}.{name}"] = value.detach().cpu().contiguous()
            else:
                plain_state.setdefault(str(index), {})[name] = value
    rng, rng_meta = _rng_tensors()
    tensors.update(rng)
    meta = {"step": step, "param_groups": optim["param_groups"], "plain_state": plain_state,
            "scheduler": scheduler.state_dict(), "rng": rng_meta}
    return tensors, meta


def _restore_training_state(path: Path, optimizer: torch.optim.Optimizer, scheduler: Any) -> int:
    """Load a .train.safetensors file into optimiser, scheduler and RNGs; returns its step."""
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = json.loads(fh.metadata()["state"])
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except Exception as exc:  # safetensors raises its own types for truncated / foreign files
        raise CheckpointError(f"{path}: unreadable training state ({exc})") from None
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    for index, entry in meta["plain_state"].items():
        state.setdefault(int(index), {}).update(entry)
    try:
        optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    except (ValueError, KeyError) as exc:
        raise CheckpointError(f"{path}: optimiser state does not fit this model/config ({exc})") from None
    scheduler.load_state_dict(meta["scheduler"])
    _restore_rng(tensors, meta["rng"])
    return int(meta["step"])


# ----------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------

def atomic_save_model(model: torch.nn.Module, stem: Path, extra: dict[str, Any]) -> None:
    """save_model into a temporary folder beside `stem`, then os.replace weights, then the JSON."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=stem.parent, prefix=".tmp_") as tmp:
        save_model(model, Path(tmp) / stem.name, extra=extra)
        os.replace(Path(tmp) / f"{stem.name}.safetensors", stem.with_name(stem.name + ".safetensors"))
        os.replace(Path(tmp) / f"{stem.name}.json", stem.with_name(stem.name + ".json"))


def save_checkpoint(out: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
                    step: int, extra: dict[str, Any], keep: int) -> Path:
    """checkpoints/step_<N>.train.safetensors, then .safetensors, then .json (the JSON marks it complete)."""
    folder = out / CHECKPOINT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    stem = folder / f"step_{step:08d}"
    tensors, meta = _training_state(optimizer, scheduler, step)
    tmp = folder / f".tmp_{stem.name}{TRAIN_STATE_SUFFIX}"
    save_file(tensors, str(tmp), metadata={"state": json.dumps(meta)})
    os.replace(tmp, stem.with_name(stem.name + TRAIN_STATE_SUFFIX))
    atomic_save_model(model, stem, extra)
    for old in sorted(_complete_checkpoints(out))[:-keep]:
        for suffix in (".json", ".safetensors", TRAIN_STATE_SUFFIX):
            old[1].with_name(old[1].name + suffix).unlink(missing_ok=True)
    return stem


# ----------------------------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------------------------

def _complete_checkpoints(out: Path) -> list[tuple[int, Path]]:
    folder = out / CHECKPOINT_DIR
    if not folder.is_dir():
        return []
    found = []
    for path in folder.iterdir():
        match = _STEP_RE.match(path.name)
        stem = path.with_suffix("")
        if match and all(stem.with_name(stem.name + s).is_file() for s in (".safetensors", TRAIN_STATE_SUFFIX)):
            found.append((int(match.group(1)), stem))
    return sorted(found)


def latest_checkpoint(out: str | Path) -> Path | None:
    """Stem of the newest complete step checkpoint under out/checkpoints, or None."""
    found = _complete_checkpoints(Path(out))
    return found[-1][1] if found else None


def resume_from(stem: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any) -> int:
    """Load step checkpoint `stem` (weights sha256-checked) into model, optimiser, scheduler and RNGs; its step."""
    weights, _ = verified_weights(stem)
    try:
        model.load_state_dict(load_file(str(weights)), strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{weights}: does not fit the configured model: {str(exc)[:300]}") from None
    return _restore_training_state(stem.with_name(stem.name + TRAIN_STATE_SUFFIX), optimizer, scheduler)


def load_backbone(model: torch.nn.Module, path: str | Path) -> None:
    """Copy the backbone.* tensors of pose3dfr checkpoint `path` into model.backbone (shapes must match)."""
    weights, _ = checkpoint_paths(path)
    state = {k[len("backbone."):]: v for k, v in load_file(str(weights)).items() if k.startswith("backbone.")}
    try:
        model.backbone.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{weights}: backbone does not match {model.cfg.backbone!r}: {str(exc)[:300]}") from None


def state_dict_digest(model: torch.nn.Module) -> str:
    """sha256 over every tensor of the state dict (names and raw bytes, sorted by name)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
