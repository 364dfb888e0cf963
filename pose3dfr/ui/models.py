"""Checkpoints the app offers (only those in checkpoints/ and the built-ins) and the shared, lazily loaded
models; what a checkpoint's JSON records about its thresholds and held-out results."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import gradio as gr

from pose3dfr.errors import CheckpointError
from pose3dfr.eval.calibration import recorded_tar
from pose3dfr.inference.verifier import Verifier
from pose3dfr.models.io import DEFAULT_CHECKPOINT as BUILTIN_CHECKPOINT  # the built-in alias of sface-pretrained
from pose3dfr.models.io import available_checkpoints, read_meta
from pose3dfr.paths import CHECKPOINTS_DIR
from pose3dfr.ui.common import echo, user_error


def list_checkpoints(directory: Path | None = None) -> list[str]:
    """Checkpoint names offered: the built-ins ("default", "dlib-pretrained", "sface-pretrained") and each
    `<name>.safetensors` with its `<name>.json` in checkpoints/."""
    return available_checkpoints(CHECKPOINTS_DIR if directory is None else directory)


def default_checkpoint() -> str:
    """POSE3DFR_CHECKPOINT if it names an offered checkpoint, else "default"."""
    wanted = os.environ.get("POSE3DFR_CHECKPOINT")
    return wanted if wanted in list_checkpoints() else BUILTIN_CHECKPOINT


def resolve_checkpoint(name: str | None) -> str:
    """`name` if it is one of the checkpoints in checkpoints/, else a gr.Error (no paths, no traversal)."""
    names = list_checkpoints()
    if not name:
        raise gr.Error("Choose a checkpoint.", print_exception=False)
    if name not in names:
        raise user_error(f"Unknown checkpoint {echo(name)}; available: {', '.join(names)}.")
    return name


def load_verifier(name: str) -> Any:
    """The library's Verifier for checkpoint `name` (loaded on first use: the app starts without a model).

    Files are passed as an absolute stem inside checkpoints/, so nothing outside it can be picked up."""
    stem = CHECKPOINTS_DIR / name
    if (CHECKPOINTS_DIR / f"{name}.safetensors").is_file():
        return Verifier.from_pretrained(stem)
    return Verifier.from_pretrained(name)  # the built-in "default"


@dataclass
class _Entry:
    key: tuple[str, int]
    model: Any


class ModelCache:
    """Loads each checkpoint once, lazily, and shares it between requests (thread-safe loading; the
    Verifier itself is thread-safe). A checkpoint file that changes on disk (e.g. a training run
    finished) is reloaded on next use."""

    def __init__(self, loader: Callable[[str], Any]):
        self._loader = loader
        self._guard = threading.Lock()
        self._load_locks: dict[str, threading.Lock] = {}
        self._entries: dict[str, _Entry] = {}

    def _key(self, name: str) -> tuple[str, int]:
        path = CHECKPOINTS_DIR / f"{name}.safetensors"
        return name, path.stat().st_mtime_ns if path.exists() else 0

    def get(self, name: str) -> Any:
        """The shared model of `name`, loading it first if needed (loading one name never blocks another)."""
        with self._guard:
            load_lock = self._load_locks.setdefault(name, threading.Lock())
        with load_lock:
            key = self._key(name)
            entry = self._entries.get(name)
            if entry is None or entry.key != key:
                entry = _Entry(key, self._loader(name))
                self._entries[name] = entry
            return entry.model


MODELS = ModelCache(lambda name: load_verifier(name))


def checkpoint_tar(name: str, pose_bin: str, far: float) -> float | None:
    """TAR at `far` for probes in `pose_bin` recorded in the checkpoint's JSON (held-out results), if any."""
    try:
        return recorded_tar(read_meta(CHECKPOINTS_DIR / name), pose_bin, far)
    except CheckpointError:
        return None


def refresh_checkpoints(current: str | None) -> dict:
    """Dropdown update listing checkpoints/ now (a finished training run appears here)."""
    names = list_checkpoints()
    value = current if current in names else default_checkpoint()
    return gr.update(choices=names, value=value)


def checkpoint_dropdown() -> gr.Dropdown:
    return gr.Dropdown(choices=list_checkpoints(), value=default_checkpoint(), label="checkpoint",
                       info="from checkpoints/", allow_custom_value=True)  # resolve_checkpoint confines it
