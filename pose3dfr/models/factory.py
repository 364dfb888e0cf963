"""Named backbones and named model configs: `get_backbone(name)`, `create_model(name_or_config, **overrides)`.

Backbones are registered by import string so optional ones (dlib_resnet) are only imported on use.
"""

from __future__ import annotations

import importlib
from dataclasses import replace
from typing import Any

from torch import nn

from pose3dfr.errors import Pose3DFRError
from pose3dfr.models.config import ModelConfig

BACKBONES: dict[str, str] = {
    "ir18": "pose3dfr.models.iresnet:ir18",
    "ir50": "pose3dfr.models.iresnet:ir50",
    "mobilefacenet": "pose3dfr.models.mobilefacenet:mobilefacenet",
    "dlib_resnet": "pose3dfr.models.dlib_resnet:DlibResNet",
}

# Named configs: overrides of ModelConfig's defaults (ir18, full method). `backbone=` works with any name.
MODEL_CONFIGS: dict[str, dict[str, Any]] = {
    "full": {},  # 2D + 3D, shared attention (JAM), joint-entropy loss: the paper's method
    "jam": {"use_je": False},  # + JAM only
    "je": {"use_jam": False},  # + JE only: per-domain (unshared) attention maps tied by the JE loss
    "mi": {"je_variant": "mutual_information"},  # full, with -MI instead of joint entropy (ablation)
    "global-reshape": {"reshape": "global"},  # full, with the linear (non-geometric) reshaping block
    "baseline-3d": {"use_jam": False, "use_je": False},  # both identity losses, no attention
    "baseline-2d": {"use_3d": False, "use_jam": False, "use_je": False},  # 2D-only (same backbone/schedule)
    "mobilefacenet-fast": {"backbone": "mobilefacenet", "num_points": 1024, "sa1_centres": 256,
                           "sa2_centres": 64},  # small full model for CPU runs and smoke tests
}


def list_backbones() -> list[str]:
    """Names get_backbone accepts."""
    return sorted(BACKBONES)


def get_backbone(name: str, **kw: Any) -> nn.Module:
    """Build a backbone by name (see BACKBONES); keyword arguments go to its constructor."""
    try:
        target = BACKBONES[name]
    except KeyError:
        raise Pose3DFRError(f"unknown backbone {name!r}; choose from {list_backbones()}") from None
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise Pose3DFRError(f"backbone {name!r} is not available ({exc})") from None
    return getattr(module, attr)(**kw)


def list_model_configs() -> list[str]:
    """Names create_model / model_config accept."""
    return list(MODEL_CONFIGS)


def model_config(name_or_config: str | ModelConfig, **overrides: Any) -> ModelConfig:
    """A ModelConfig from a name in MODEL_CONFIGS (or a config) with field overrides applied."""
    if isinstance(name_or_config, ModelConfig):
        return replace(name_or_config, **overrides)
    try:
        base = MODEL_CONFIGS[name_or_config]
    except KeyError:
        raise Pose3DFRError(f"unknown model config {name_or_config!r}; choose from {list_model_configs()}") from None
    return ModelConfig.from_dict({**base, **overrides})


def create_model(name_or_config: str | ModelConfig = "full", **overrides: Any) -> nn.Module:
    """Build a Pose3DFR model from a named config (or a ModelConfig) plus overrides."""
    from pose3dfr.models.pose3dfr import Pose3DFR

    return Pose3DFR(model_config(name_or_config, **overrides))
