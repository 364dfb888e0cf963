"""Named model configs: `model_config(name)` and `create_model(name_or_config, **overrides)`.

The backbone registry (`get_backbone`) lives in pose3dfr.models.backbones and is re-exported here.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from pose3dfr.errors import Pose3DFRError
from pose3dfr.models.backbones import BACKBONES, get_backbone, list_backbones  # noqa: F401  (re-exported)
from pose3dfr.models.config import ModelConfig
from pose3dfr.models.pose3dfr import Pose3DFR

# What both SFace variants share: the network as OpenCV uses it on real photos, so a fine-tune starts from it.
SFACE_BASE: dict[str, Any] = {
    "backbone": "sface",  # 112 px MobileNet-style network trained on real faces; trunk map 1024 x 7 x 7, as the paper's
    "alignment": "keypoints",  # YuNet's five keypoints at every yaw: OpenCV's alignCrop, the Verifier's SFace crops
    "flip_average": False,  # SFace's embedding as OpenCV computes it (no mirror average), so step 0 is sface-pretrained
}

# Named configs: overrides of ModelConfig's defaults (ir18, full method). `backbone=` works with any name.
MODEL_CONFIGS: dict[str, dict[str, Any]] = {
    "full": {},  # 2D + 3D, shared attention (JAM), the attention regulariser (MI by default), registered 3D grid
    "jam": {"use_je": False},  # + JAM only
    "je": {"use_jam": False},  # + regulariser only: per-domain (unshared) attention maps tied by the regulariser
    # the paper's exact variant: joint entropy, shared head, 3D map pooled on the frontal grid
    "paper": {"je_variant": "joint_entropy", "share_head": True, "view_registration": False},
    "global-reshape": {"reshape": "global"},  # full, with the linear (non-geometric) reshaping block
    "baseline-3d": {"use_jam": False, "use_je": False},  # both identity losses, no attention
    "baseline-2d": {"use_3d": False, "use_jam": False, "use_je": False},  # 2D-only (same backbone/schedule)
    "mobilefacenet-fast": {"backbone": "mobilefacenet", "num_points": 1024, "sa1_centres": 256,
                           "sa2_centres": 64},  # small full model for CPU runs and smoke tests
    # The paper's model on OpenCV's SFace (issue 33): JAM, the 3D branch and the regulariser on SFace's 1024 x 7 x 7
    # trunk map, started so that the 2D embedding is SFace's own at step 0 (tests/test_sface_paper.py).
    "sface-full": {**SFACE_BASE,
                   "jam_zero_value": True,  # value conv at 0: J = z at step 0 whatever gamma is (SFace's embedding)
                   "jam_gamma_init": 1.0,  # with V at 0, gamma 1 lets V learn from step 1 (docs/results.md, section 8)
                   "head_3d_channels": 128},  # 3D head FC on 128 x 7 x 7, not 1024 x 7 x 7: 0.8 M weights, not 6.4 M
    "sface-2d": {**SFACE_BASE, "use_3d": False, "use_jam": False, "use_je": False},  # its twin: no 3D, no attention
}


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


def create_model(name_or_config: str | ModelConfig = "full", **overrides: Any) -> Pose3DFR:
    """Build a Pose3DFR model from a named config (or a ModelConfig) plus overrides."""
    return Pose3DFR(model_config(name_or_config, **overrides))
