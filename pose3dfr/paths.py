"""Where the shipped files live, resolved from the package location (works from a clone or a Space)."""

from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ASSETS_DIR = PROJECT_ROOT / "assets"
CHECKPOINTS_DIR = PROJECT_ROOT / "checkpoints"
PHOTOS_DIR = ASSETS_DIR / "photos"

FACE_LANDMARKER_TASK = ASSETS_DIR / "face_landmarker.task"
CANONICAL_FACE_MESH = ASSETS_DIR / "canonical_face_model.obj"
YUNET_ONNX = ASSETS_DIR / "face_detection_yunet_2023mar_int8bq.onnx"
