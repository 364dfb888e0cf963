"""The frontal teacher: a frozen copy of the pretrained 2D backbone that embeds near-frontal views.

Fine-tuning on renders teaches the profile but costs real-photo separation (issue #19). The pretrained
network already handles frontal real faces, so near-frontal views keep its embedding and the trained
network takes over with |yaw|:

    w = clamp((|yaw| - gate_start) / (gate_end - gate_start), 0, 1)       (unknown yaw: w = 1)
    emb = w * student + (1 - w) * teacher * |student| / |teacher|         (direction mixed, student norm kept)

Training sees the same mix, so the identity centres settle on the pretrained frontal embeddings and the
trained network learns to bring profile views to them. The yaw comes from the face pipeline at inference
(MediaPipe below 45 degrees, our head-pose net beyond) and from the renders' ground truth in training.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from pose3dfr.models.backbones import Backbone


class FrontalTeacher(nn.Module):
    """Holds the frozen teacher backbone and mixes its embedding into the trained one by |yaw|."""

    def __init__(self, teacher: Backbone, gate_start: float, gate_end: float) -> None:
        super().__init__()
        self.teacher = teacher
        self.gate_start, self.gate_end = float(gate_start), float(gate_end)
        for parameter in self.teacher.parameters():
            parameter.requires_grad_(False)
        self.teacher.eval()

    def train(self, mode: bool = True) -> "FrontalTeacher":
        """The teacher never leaves eval mode (its statistics are the pretrained network's)."""
        super().train(mode)
        self.teacher.eval()
        return self

    def student_weight(self, yaw: torch.Tensor) -> torch.Tensor:
        """B weights in [0, 1] of the trained network for B yaws in degrees (NaN = unknown -> 1)."""
        w = ((yaw.abs() - self.gate_start) / (self.gate_end - self.gate_start)).clamp(0.0, 1.0)
        return torch.where(torch.isnan(yaw), torch.ones_like(w), w)

    def mix(self, student: torch.Tensor, images: torch.Tensor,
            yaw: torch.Tensor | Sequence[float] | None) -> torch.Tensor:
        """B x D embeddings with near-frontal rows moved to the teacher's direction (student's norm kept).

        The teacher runs only on the rows that need it; without `yaw` the student is returned unchanged.
        """
        if yaw is None:
            return student
        w = self.student_weight(torch.as_tensor(yaw, dtype=student.dtype, device=student.device).reshape(-1))
        if torch.compiler.is_exporting():  # ONNX: no data-dependent branches, the teacher runs on every row
            teacher = F.normalize(self.teacher(images)[1], dim=1) * student.norm(dim=1, keepdim=True)
            return w[:, None] * student + (1.0 - w[:, None]) * teacher
        needs = w < 1.0
        if not bool(needs.any()):
            return student
        with torch.no_grad():
            teacher = self.teacher(images[needs])[1]  # n x D
        norm = student[needs].norm(dim=1, keepdim=True)
        mixed_rows = w[needs, None] * student[needs] + (1.0 - w[needs, None]) * F.normalize(teacher, dim=1) * norm
        out = student.clone()
        out[needs] = mixed_rows
        return out
