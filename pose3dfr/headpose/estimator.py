"""The shipped head-pose net on photos: `HeadPoseEstimator.predict(image, boxes)` gives each face box's yaw,
pitch, roll and 7 landmarks with visibility (pose3dfr.face.landmarks.PosePrediction), averaging each face with
its mirror image (left/right landmarks swapped, yaw and roll negated), which makes it mirror-consistent by
design. The face pipeline (pose3dfr.inference.detect) asks it about the faces MediaPipe refuses.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from pose3dfr.errors import CheckpointError, Pose3DFRError
from pose3dfr.face.landmarks import PosePrediction
from pose3dfr.geometry import euler_angles
from pose3dfr.headpose.model import (MIRROR, MIRROR_PERMUTATION, HeadPoseNet, HeadPoseNetConfig, crop_matrix,
                                     pose_crop, to_tensor)
from pose3dfr.paths import CHECKPOINTS_DIR

HEADPOSE_WEIGHTS = CHECKPOINTS_DIR / "headpose.safetensors"
# Which pose to report (docs/headpose.md, benchmarks/headpose_eval.py): MediaPipe's when it finds the face and
# its |yaw| is below this (MAE <= 4.1 deg up to 45 on synthetic faces; trained on real faces), ours
# otherwise (MediaPipe: 4.2 deg at 60 with 29% missed, 9.6 deg at 75 with 84% missed; ours <= 2.7 deg to 90).
MEDIAPIPE_MAX_YAW = 45.0


class HeadPoseEstimator:
    """The shipped head-pose net, loaded once; `predict(image, boxes)` is batched and thread-safe."""

    def __init__(self, model: HeadPoseNet, meta: dict | None = None) -> None:
        self.model = model.eval()
        self.meta = meta or {}

    @classmethod
    def load(cls, path: str | Path = HEADPOSE_WEIGHTS) -> "HeadPoseEstimator":
        """The net of a `<stem>.safetensors` + `<stem>.json` checkpoint; CheckpointError if missing or tampered."""
        from safetensors.torch import load_file

        from pose3dfr.models.io import check_shipped_weights, verified_weights

        weights, meta = verified_weights(path)
        if weights.resolve() == HEADPOSE_WEIGHTS.resolve():
            check_shipped_weights(weights)
        try:
            model = HeadPoseNet(HeadPoseNetConfig.from_dict(meta["config"]))
            model.load_state_dict(load_file(str(weights)), strict=True)
        except Exception as exc:  # safetensors / shape errors: the file does not match its config
            raise CheckpointError(f"{weights.name}: not a head-pose checkpoint matching its config "
                                  f"({str(exc)[:300]})") from None
        return cls(model, meta)

    @property
    def input_size(self) -> int:
        return self.model.cfg.input_size

    def predict(self, image: np.ndarray, boxes: np.ndarray) -> list[PosePrediction]:
        """One PosePrediction per box (N x 4+ image pixels, x0, y0, x1, y1, ...) of an H x W x 3 uint8 RGB image."""
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, np.asarray(boxes).shape[-1] if np.ndim(boxes) else 4)
        if len(boxes) == 0:
            return []
        if image.ndim != 3 or image.shape[2] != 3:
            raise Pose3DFRError(f"image of shape {image.shape}: expected H x W x 3 RGB")
        cfg = self.model.cfg
        matrices = [crop_matrix(b, cfg.input_size, cfg.crop_factor) for b in boxes]
        crops = np.stack([pose_crop(image, b, cfg.input_size, cfg.crop_factor) for b in boxes])
        rotations, marks, vis = self.predict_crops(crops)
        out = []
        for r, lm, v, m in zip(rotations, marks, vis, matrices):
            yaw, pitch, roll = euler_angles(r)
            pixels = (lm * cfg.input_size - 0.5 - m[:, 2]) / m[0, 0]
            out.append(PosePrediction(yaw, pitch, roll, np.concatenate([pixels, v[:, None]], 1)))
        return out

    def predict_crops(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(N x 3 x 3 rotations, N x K x 2 landmarks in crop units, N x K visibility) of N x S x S x 3 uint8 crops,
        each the average of the crop and its mirror image."""
        n = len(crops)
        x = to_tensor(np.concatenate([crops, crops[:, :, ::-1]]))
        with torch.inference_mode():
            rot, lm, logit = self.model(x)
        perm = list(MIRROR_PERMUTATION)
        rot = rot[:n] + MIRROR @ rot[n:] @ MIRROR
        u, _, vt = torch.linalg.svd(rot)  # nearest rotation to the sum
        d = torch.sign(torch.linalg.det(u @ vt))
        rot = u @ torch.diag_embed(torch.stack([torch.ones_like(d), torch.ones_like(d), d], 1)) @ vt
        mirrored = lm[n:][:, perm].clone()
        mirrored[..., 0] = 1.0 - mirrored[..., 0]
        lm = (lm[:n] + mirrored) / 2
        vis = (torch.sigmoid(logit[:n]) + torch.sigmoid(logit[n:][:, perm])) / 2
        return rot.double().numpy(), lm.double().numpy(), vis.double().numpy()
