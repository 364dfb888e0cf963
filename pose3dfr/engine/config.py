"""Typed configs of training and evaluation, named presets, and YAML/JSON + `key=value` overrides.

Precedence (last wins): preset < `--config FILE` < `--set key=value` < explicit flags (--steps, --seed).
Every choice the paper leaves open is a named field with its reason; docs/training.md tabulates presets.
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Iterable

import yaml

from pose3dfr.data.detections import ALIGN_CHOICES
from pose3dfr.errors import Pose3DFRError
from pose3dfr.eval.config import EvalConfig

OPTIMIZERS = ("sgd", "adamw")
FREEZE = ("none", "trunk", "backbone")
SCHEDULES = ("cosine", "step", "constant")
GRAD_CLIP_MODES = ("global", "per_branch")


@dataclass
class TrainConfig:
    """Everything a training run needs besides the data path; defaults = the `full` preset."""

    preset: str = "full"  # name this config started from (recorded in checkpoints)
    model: str = "full"  # named model config of pose3dfr.models (full, jam, je, baseline-2d, ...)
    model_overrides: dict[str, Any] = field(default_factory=dict)  # ModelConfig fields, e.g. backbone
    pretrained: str | None = None  # 2D weights: AdaFace .ckpt or a pose3dfr/backbone .safetensors
    # "trunk": only the 2D feature trunk keeps its weights and BN statistics (the embedding head, attention and
    # 3D branch learn; no backward through the trunk: ~3x cheaper CPU steps); "backbone": trunk and head fixed.
    freeze: str = "none"
    # With freeze="trunk", the trunk's last N residual levels learn too (the 8 x 8 map the attention reads is
    # then no longer fixed): making dlib's last trunk level trainable lifted the 2D twin's profile TAR by ~11
    # points at +0.08 CPU-s per step (issue #18's proxy runs).
    trainable_trunk_levels: int = 0
    # Distillation towards the frozen pretrained network: distill_weight x (1 - cos(student, teacher)) on the
    # views with |yaw| <= distill_max_yaw, where the pretrained network is already right. It keeps what the
    # pretrained network knows about real faces while the renders teach the profile (docs/results.md, section 7).
    distill_weight: float = 0.0
    distill_max_yaw: float = 30.0
    backbone_lr_mult: float = 0.1  # pretrained backbone moves 10x slower than the new 3D/attention parts
    # True: the backbone's learning modules (head, trainable trunk levels) run in eval mode while they learn: batch
    # norm keeps the pretrained network's (real-photo) statistics and dropout is off, so the first training step sees
    # the network exactly as pretrained and the distillation term starts at 0. SFace's head has both (its BN1d of the
    # embedding would otherwise drift to render statistics, and dropout 0.4 would make the student differ from the
    # teacher on every view); dlib's head has neither.
    backbone_eval: bool = False
    # With pretrained weights, start each 2D class centre at its identity's mean pretrained embedding
    # (weight imprinting): a random margin head would first pull the pretrained features apart.
    imprint_head: bool = True
    imprint_images_per_identity: int = 8  # views averaged per identity (a deterministic subset: cheap)

    steps: int = 20000  # optimiser steps (not epochs: runs of different data sizes stay comparable)
    batch_size: int = 64  # per process; DDP's global batch = batch_size x world size
    optimizer: str = "sgd"  # AdaFace/ArcFace practice: SGD with momentum
    lr: float = 0.01  # fine-tuning from AdaFace weights: 1/10 of AdaFace's from-scratch 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4  # AdaFace's value
    schedule: str = "cosine"  # cosine to 0 after warmup: no milestones to tune per data size
    warmup_steps: int = 500  # linear warmup: the 3D branch and JAM start random
    lr_milestones: tuple[float, ...] = (0.6, 0.85)  # "step" schedule: fractions of `steps`
    lr_gamma: float = 0.1  # "step" schedule: factor at each milestone
    grad_clip: float | None = 5.0  # max global grad norm; guards the early AdaFace margin spikes
    # "global": one norm over all parameters; "per_branch": the 3D branch (point encoder, 3D head and margin)
    # and the rest clipped separately. Global clipping at 5 is always active (norms 130-1100), so the 3D
    # branch's gradients set the 2D step size (issue #18); per branch, each side keeps its own.
    grad_clip_mode: str = "global"
    # The attention (Q/K/V and gamma) learns at lr x this: at 1 gamma_2d stayed within 0.01 of 0 (issue #18).
    attention_lr_mult: float = 1.0
    # Steps of 3D warm-up, after which the point encoder is frozen and its per-point features cached per cloud
    # (engine.point_cache): the 3D loss saturates, and a joint step then costs about what a 2D step does.
    # 0 = the point encoder learns throughout (with point augmentation).
    freeze_3d_after: int = 0

    seed: int = 0
    # 4-D weights in channels-last memory order: SFace's depthwise convolutions ran 1.8x faster on the 2-core CPU
    # (batch 32, 112 px trunk: 5.6 s -> 3.0 s under load); outputs differ from the default order by ~1e-5.
    channels_last: bool = False
    deterministic: bool = True  # GPU: deterministic kernels (CPU runs are reproducible anyway)
    num_workers: int = 2  # DataLoader workers per process
    device: str = "auto"  # "auto" = cuda:<local rank> when available, else cpu
    cloud_points_factor: float = 2.0  # points kept per cloud (x num_points) before the random per-step subsample
    train_split: str = "train"
    val_split: str | None = "val"  # per-pose validation + calibration thresholds; None = no validation

    log_interval: int = 10  # steps between JSONL/TensorBoard rows (the progress bar updates every step)
    checkpoint_interval: int = 1000  # steps between resumable checkpoints (and one at the end)
    keep_checkpoints: int = 3  # older step checkpoints are deleted; the final model is always kept
    val_interval: int = 0  # steps between validations; 0 = once per epoch
    # validate the starting model too (step 0, fresh runs only): the baseline a run must beat to be worth using
    val_at_start: bool = True
    tensorboard: bool = True  # also log to TensorBoard when it is installed
    ddp_find_unused_parameters: bool = False  # every variant uses all its parameters; True costs a graph walk
    write_rank_hashes: bool = False  # test aid: every DDP rank writes a digest of its final weights

    # Training crops: "pipeline" = the detector + alignment crops the Verifier sees (detections cached per data
    # root), so the model trains on what users give it; "oracle" = ground-truth landmarks (analysis only; the
    # checkpoints shipped before the profile work were trained so, and lost 16-31 TAR points at 45-75 degrees
    # end to end: docs/benchmarks.md). Validation follows eval.align.
    align: str = "pipeline"
    eval: EvalConfig = field(default_factory=lambda: EvalConfig(split="val"))

    def validate(self) -> None:
        """Raise Pose3DFRError naming the field when a value cannot work."""
        if self.optimizer not in OPTIMIZERS:
            raise Pose3DFRError(f"TrainConfig.optimizer={self.optimizer!r}; choose from {OPTIMIZERS}")
        if self.freeze not in FREEZE:
            raise Pose3DFRError(f"TrainConfig.freeze={self.freeze!r}; choose from {FREEZE}")
        if self.align not in ALIGN_CHOICES:
            raise Pose3DFRError(f"TrainConfig.align={self.align!r}; choose from {ALIGN_CHOICES}")
        if self.grad_clip_mode not in GRAD_CLIP_MODES:
            raise Pose3DFRError(f"TrainConfig.grad_clip_mode={self.grad_clip_mode!r}; choose from {GRAD_CLIP_MODES}")
        if self.attention_lr_mult <= 0 or self.freeze_3d_after < 0:
            raise Pose3DFRError("TrainConfig: attention_lr_mult must be > 0 and freeze_3d_after >= 0")
        if self.schedule not in SCHEDULES:
            raise Pose3DFRError(f"TrainConfig.schedule={self.schedule!r}; choose from {SCHEDULES}")
        for name in ("steps", "batch_size", "log_interval", "checkpoint_interval", "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise Pose3DFRError(f"TrainConfig.{name}={getattr(self, name)}: must be >= 1")
        if self.lr <= 0 or self.backbone_lr_mult < 0 or self.weight_decay < 0:
            raise Pose3DFRError("TrainConfig: lr must be > 0, backbone_lr_mult and weight_decay >= 0")
        if self.imprint_images_per_identity < 1:
            raise Pose3DFRError("TrainConfig.imprint_images_per_identity must be >= 1")
        if self.trainable_trunk_levels < 0 or (self.trainable_trunk_levels and self.freeze != "trunk"):
            raise Pose3DFRError("TrainConfig.trainable_trunk_levels: must be >= 0, and > 0 only with freeze='trunk'")
        if self.distill_weight < 0 or (self.distill_weight > 0 and not self.pretrained):
            raise Pose3DFRError("TrainConfig.distill_weight: must be >= 0, and > 0 only with pretrained weights "
                                "(the teacher is the pretrained network)")
        if self.cloud_points_factor < 1:
            raise Pose3DFRError(f"TrainConfig.cloud_points_factor={self.cloud_points_factor}: must be >= 1")
        if self.warmup_steps < 0 or self.val_interval < 0 or self.num_workers < 0:
            raise Pose3DFRError("TrainConfig: warmup_steps, val_interval and num_workers must be >= 0")
        self.eval.validate()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _fast() -> dict[str, Any]:
    return {
        "model": "full",
        "model_overrides": {"backbone": "mobilefacenet", "num_points": 256, "sa1_centres": 64,
                            "sa2_centres": 16, "point_group_size": 16},
        "steps": 20, "batch_size": 4, "optimizer": "adamw", "lr": 1e-3, "weight_decay": 1e-4,
        "warmup_steps": 2, "num_workers": 0, "log_interval": 1, "checkpoint_interval": 10,
        "grad_clip": 5.0, "eval": {"split": "val", "batch_size": 8},
    }


# Named presets: overrides of TrainConfig's defaults. The four paper variants share the schedule,
# so the ablation compares only the model (docs/training.md).
PRESETS: dict[str, dict[str, Any]] = {
    "baseline-2d": {"model": "baseline-2d"},
    "jam": {"model": "jam"},
    "je": {"model": "je"},
    "full": {"model": "full"},
    "paper": {"model": "paper"},
    "fast": _fast(),
    # The paper's model on SFace and its twin (configs/sface-cpu.yaml holds their CPU schedule; docs/results.md).
    "sface-full": {"model": "sface-full"},
    "sface-2d": {"model": "sface-2d"},
}


def list_presets() -> list[str]:
    return list(PRESETS)


def preset_config(name: str) -> TrainConfig:
    """A fresh TrainConfig for a named preset."""
    if name not in PRESETS:
        raise Pose3DFRError(f"unknown preset {name!r}; choose from {list_presets()}")
    config = TrainConfig(preset=name)
    apply_overrides(config, copy.deepcopy(PRESETS[name]), where=f"preset {name}")
    return config


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Override dict from a YAML or JSON file (safe loader: plain data only)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise Pose3DFRError(f"cannot read config file {path}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise Pose3DFRError(f"config file {path} is not valid YAML/JSON: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise Pose3DFRError(f"config file {path} must hold a mapping of field: value")
    return data


def parse_set_overrides(items: Iterable[str]) -> dict[str, Any]:
    """`["steps=100", "model_overrides.backbone=ir50", "eval.fars=[0.01]"]` -> nested dict (YAML values)."""
    result: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise Pose3DFRError(f"--set {item!r}: expected key=value")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as exc:
            raise Pose3DFRError(f"--set {item!r}: value is not valid YAML ({exc})") from exc
        node = result
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return result


def apply_overrides(config: Any, overrides: dict[str, Any], where: str = "overrides") -> Any:
    """Set dataclass fields from a (nested) dict in place, checking names and value types."""
    known = {f.name: f for f in fields(config)}
    for key, value in overrides.items():
        if key not in known:
            raise Pose3DFRError(f"{where}: unknown field {key!r} of {type(config).__name__}; "
                                f"known: {sorted(known)}")
        current = getattr(config, key)
        if is_dataclass(current):
            if not isinstance(value, dict):
                raise Pose3DFRError(f"{where}: {key} must be a mapping")
            apply_overrides(current, value, f"{where}: {key}")
        elif isinstance(current, dict):
            if not isinstance(value, dict):
                raise Pose3DFRError(f"{where}: {key} must be a mapping")
            current.update(value)
        else:
            setattr(config, key, _coerce(value, current, f"{where}: {key}"))
    return config


def _coerce(value: Any, current: Any, where: str) -> Any:
    """`value` converted to the kind of the field's current value (int -> float, list -> tuple)."""
    if value is None or current is None:
        return value
    if isinstance(current, bool):
        if isinstance(value, bool):
            return value
    elif isinstance(current, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(current, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif isinstance(current, str):
        if isinstance(value, str):
            return value
    elif isinstance(current, tuple):
        if isinstance(value, (list, tuple)):
            return tuple(value)
    else:
        return value
    raise Pose3DFRError(f"{where}: expected {type(current).__name__}, got {value!r}")


def build_train_config(preset: str = "full", config_file: str | Path | None = None,
                       set_items: Iterable[str] = (), **explicit: Any) -> TrainConfig:
    """Preset, then config file, then `--set` items, then explicit keyword values (None = not given)."""
    config = preset_config(preset)
    if config_file is not None:
        apply_overrides(config, load_config_file(config_file), where=f"config file {config_file}")
    apply_overrides(config, parse_set_overrides(set_items), where="--set")
    apply_overrides(config, {k: v for k, v in explicit.items() if v is not None}, where="arguments")
    config.validate()
    return config


def train_config_from_dict(data: dict[str, Any]) -> TrainConfig:
    """Rebuild a TrainConfig saved with `to_dict` (e.g. from a checkpoint's JSON)."""
    config = TrainConfig()
    apply_overrides(config, data, where="saved config")
    return config


def dumps(config: TrainConfig) -> str:
    return json.dumps(config.to_dict(), indent=2, sort_keys=True)
