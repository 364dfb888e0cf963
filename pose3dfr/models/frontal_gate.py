"""Pose routing with a frontal teacher: near-frontal pairs are scored by the pretrained network, the others by
the fine-tuned one.

Fine-tuning on renders teaches the profile but costs real-photo separation at every setting measured
(WiSE-FT, distillation, trained parts, and a single embedding gated by yaw: docs/results.md section 7), while
the pretrained network is what real-photo benchmarks validate for frontal faces. So a routed model keeps both:

    embedding  e = [t / 2 ; s / 2 ; 1 / sqrt(2)]          t, s: unit embeddings of the teacher and the fine-tuned net
    probe form q = [4 a_t t'/2 ; 0 ; sqrt(2) b_t]   if the pair's |yaw| < route_yaw,  else  [0 ; 4 s'/2 ; 0]
    score      e . q  =  a_t (t . t') + b_t          or   s . s'

The teacher's cosine is mapped onto the fine-tuned network's scale (a_t, b_t: impostor mean and spread matched
on validation renders, pose3dfr.eval.evaluate.fit_routing) so that one threshold per pose bin holds even when
the pose estimate sends a few profile faces to the teacher; the order of the teacher's scores is unchanged.
The yaw that routes is the face pipeline's estimate; in 1:1 verification the larger |yaw| of the two faces, in
galleries and the protocol (frontal enrolments) the probe's. Galleries store e and are searched with q, so
FAISS's inner product gives the routed score. Only inference changes: the fine-tuned half trains as any model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pose3dfr.models.backbones import Backbone

HALF = 0.5  # each unit embedding enters e at half length
CONSTANT = 1.0 / math.sqrt(2.0)  # e's last entry: |e| = 1 with the two halves


@dataclass(frozen=True)
class Routing:
    """How a frontal-teacher model scores pairs: the route yaw and the teacher score's affine map."""

    route_yaw: float
    teacher_scale: float = 1.0  # a_t
    teacher_shift: float = 0.0  # b_t

    def to_teacher(self, yaws: Sequence[float | None] | np.ndarray | None, count: int) -> np.ndarray:
        """`count` bools: which of these route yaws (None or NaN = unknown) the teacher scores."""
        yaw = np.full(count, np.nan) if yaws is None else np.array(
            [np.nan if v is None else float(v) for v in yaws], dtype=np.float64)
        return np.abs(yaw) < self.route_yaw  # NaN compares False: the fine-tuned network

    def teacher_score(self, cosine: float) -> float:
        """A teacher cosine on the routed scale (thresholds measured as teacher cosines map through this)."""
        return self.teacher_scale * cosine + self.teacher_shift


class FrontalTeacher(nn.Module):
    """The frozen pretrained backbone whose embedding forms the first half of a routed model's embedding.

    `teacher` comes loaded with a shipped file's weights (dlib's network, `checkpoints/dlib_resnet.safetensors`)
    and is kept out of the model's state dict: a checkpoint stores only what training changed."""

    def __init__(self, teacher: Backbone, route_yaw: float, teacher_scale: float = 1.0,
                 teacher_shift: float = 0.0) -> None:
        super().__init__()
        for parameter in teacher.parameters():
            parameter.requires_grad_(False)
        self._teacher = [teacher.eval()]  # a list: not a registered submodule, so not in state_dict()
        # a_t, b_t of the module docstring: ModelConfig fields, set by eval.evaluate.fit_routing
        self.routing = Routing(float(route_yaw), float(teacher_scale), float(teacher_shift))

    @property
    def teacher(self) -> Backbone:
        return self._teacher[0]

    def enrolment_form(self, images: torch.Tensor, student: torch.Tensor) -> torch.Tensor:
        """B x (2D + 1) unit embeddings e from B x 3 x S x S images and the B x D student embeddings."""
        net = self.teacher if next(self.teacher.parameters()).device == images.device else self.teacher.to(images.device)
        teacher = F.normalize(net(images)[1], dim=1)  # B x D
        constant = student.new_full((student.shape[0], 1), CONSTANT)
        return torch.cat([HALF * teacher, HALF * F.normalize(student, dim=1), constant], dim=1)


def split_routed(embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The (teacher, fine-tuned) unit embeddings inside N x (2D + 1) routed embeddings."""
    embeddings = np.asarray(embeddings, dtype=np.float32)
    half = (embeddings.shape[1] - 1) // 2
    return embeddings[:, :half] / HALF, embeddings[:, half:2 * half] / HALF


def routed_probes(embeddings: np.ndarray, yaws: Sequence[float | None] | np.ndarray | None,
                  routing: Routing | None) -> np.ndarray:
    """N x (2D + 1) probe forms q of routed embeddings (module docstring), each routed by its yaw; unchanged when
    `routing` is None (a model without a frontal teacher). A yaw of None or NaN (unknown) routes to the
    fine-tuned network."""
    if routing is None:
        return np.asarray(embeddings, dtype=np.float32)
    return probe_forms(embeddings, routing.to_teacher(yaws, len(embeddings)), routing)


def probe_forms(embeddings: np.ndarray, teacher: Sequence[bool] | np.ndarray, routing: Routing | None) -> np.ndarray:
    """N x (2D + 1) probe forms q of routed embeddings whose route is decided already (`teacher`: N bools, True
    where the teacher scores); unchanged when `routing` is None."""
    embeddings = np.asarray(embeddings, dtype=np.float32)
    if routing is None:
        return embeddings
    half = (embeddings.shape[1] - 1) // 2
    frontal = np.asarray(teacher, dtype=bool)
    out = np.zeros_like(embeddings)
    out[frontal, :half] = embeddings[frontal, :half] * (4.0 * routing.teacher_scale)
    out[frontal, -1] = math.sqrt(2.0) * routing.teacher_shift
    out[~frontal, half:2 * half] = embeddings[~frontal, half:2 * half] * 4.0
    return out


def pair_score(enrol: np.ndarray, probe: np.ndarray, routing: Routing | None, teacher: bool | None) -> float:
    """The score of one (enrolment, probe) pair of D (or routed 2D + 1) embeddings: their cosine without a
    frontal teacher, else e . q on the route decided for the pair (`teacher`; see pair_route_yaw)."""
    if routing is None:
        a, b = (v / max(float(np.linalg.norm(v)), 1e-12) for v in (enrol, probe))
        return float(np.clip(np.dot(a, b), -1.0, 1.0))
    q = probe_forms(np.asarray(probe)[None], [bool(teacher)], routing)[0]
    return float(np.clip(np.dot(enrol, q), -1.0, 1.0))  # the teacher's map can pass 1


def pair_route_yaw(enrol_yaw: float | None, probe_yaw: float | None) -> float | None:
    """The yaw that routes a 1:1 pair: the larger |yaw| of the two faces (None when either is unknown)."""
    if enrol_yaw is None or probe_yaw is None or math.isnan(enrol_yaw) or math.isnan(probe_yaw):
        return None
    return max(abs(enrol_yaw), abs(probe_yaw))
