"""Models of pose3dfr: backbones, PointNet++ encoder, joint attention, AdaFace heads, the assembled model."""

from pose3dfr.models.config import ModelConfig
from pose3dfr.models.factory import (create_model, get_backbone, list_backbones, list_model_configs,
                                     model_config)
from pose3dfr.models.io import available_checkpoints, file_sha256, load_checkpoint, load_model, save_model
from pose3dfr.models.iresnet import load_adaface_checkpoint
from pose3dfr.models.pose3dfr import EmbedOutput, PointEmbedOutput, Pose3DFR

__all__ = [
    "available_checkpoints",
    "load_checkpoint",
    "EmbedOutput", "ModelConfig", "PointEmbedOutput", "Pose3DFR", "create_model", "file_sha256",
    "get_backbone", "list_backbones", "list_model_configs", "load_adaface_checkpoint", "load_model",
    "model_config", "save_model",
]
