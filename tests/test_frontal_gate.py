"""The frontal teacher (pose3dfr.models.frontal_gate): near-frontal faces keep the pretrained network's
embedding, profile faces get the trained one, and the real-photo rule holds exactly where that is so."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pose3dfr.eval.calibration import DLIB_RULE_COSINE, dlib_real_photo_rule, real_photo_threshold
from pose3dfr.inference.verifier import Verifier
from pose3dfr.models import create_model
from pose3dfr.paths import CHECKPOINTS_DIR

DLIB_WEIGHTS = str(CHECKPOINTS_DIR / "dlib_resnet.safetensors")


@pytest.fixture(scope="module")
def gated_model():
    """A 2D model on dlib's weights with a frontal teacher, its trained head moved away from the teacher."""
    torch.manual_seed(0)
    model = create_model("baseline-2d", backbone="dlib_resnet", backbone_weights=DLIB_WEIGHTS, num_classes=4,
                         frontal_teacher=True, gate_start=30.0, gate_end=50.0)
    with torch.no_grad():
        model.backbone.fc.weight.add_(0.05 * torch.randn_like(model.backbone.fc.weight))  # "fine-tuned"
    return model.eval()


def test_student_weight_ramps_with_absolute_yaw(gated_model):
    w = gated_model.frontal.student_weight(torch.tensor([0.0, 29.0, -30.0, 40.0, -50.0, 90.0, float("nan")]))
    assert w.tolist() == pytest.approx([0.0, 0.0, 0.0, 0.5, 1.0, 1.0, 1.0])


def test_frontal_faces_get_the_teachers_embedding_and_profiles_the_students(gated_model):
    images = torch.rand(3, 3, 150, 150)
    with torch.no_grad():
        teacher = F.normalize(gated_model.frontal.teacher(images)[1], dim=1)
        student = F.normalize(gated_model.backbone(images)[1], dim=1)
        mixed = gated_model.embed(images, yaw=torch.tensor([5.0, 90.0, 40.0])).embeddings
        unknown = gated_model.embed(images).embeddings
    assert torch.allclose(mixed[0], teacher[0], atol=1e-5)  # frontal: exactly the pretrained network
    assert torch.allclose(mixed[1], student[1], atol=1e-5)  # profile: the trained network
    assert not torch.allclose(mixed[2], teacher[2], atol=1e-3) and not torch.allclose(mixed[2], student[2], atol=1e-3)
    assert torch.allclose(unknown, student, atol=1e-5)  # pose unknown: the trained network alone
    assert not torch.allclose(teacher[0], student[0], atol=1e-3)  # the test means something


def test_teacher_is_frozen_and_stays_in_eval_mode(gated_model):
    assert not any(p.requires_grad for p in gated_model.frontal.teacher.parameters())
    gated_model.train()
    try:
        assert not gated_model.frontal.teacher.training
    finally:
        gated_model.eval()


def test_gate_config_is_checked():
    from pose3dfr.errors import Pose3DFRError
    from pose3dfr.models.config import ModelConfig

    with pytest.raises(Pose3DFRError, match="gate_start"):
        ModelConfig(frontal_teacher=True, gate_start=50.0, gate_end=30.0)


def test_real_photo_rule_covers_only_its_bins_and_far():
    calibration = {"far": {"1e-2": {"overall": 0.95, "bins": {"[0,30)": 0.96}}}, "real_photos": dlib_real_photo_rule()}
    assert real_photo_threshold(calibration, "[0,30)", 0.01)[0] == pytest.approx(DLIB_RULE_COSINE)
    assert real_photo_threshold(calibration, "[60,90)", 0.01) is None
    assert real_photo_threshold(calibration, "[0,30)", 0.001) is None
    assert real_photo_threshold(calibration, None, 0.01) is None
    assert real_photo_threshold({"far": {}}, "[0,30)", 0.01) is None
    assert math.isclose(DLIB_RULE_COSINE, 1 - 0.36 / (2 * 1.41 ** 2))


def test_verifier_says_which_threshold_it_used(gated_model):
    meta = {"extra": {"calibration": {"far": {"1e-2": {"overall": 0.5, "bins": {"[0,30)": 0.6, "[60,90)": 0.4}}},
                                      "calibrated_on": "synthetic validation renders",
                                      "real_photos": dlib_real_photo_rule()}}}
    verifier = Verifier(gated_model, meta, name="gated")
    frontal, profile = verifier.threshold(0.01, "[0,30)"), verifier.threshold(0.01, "[60,90)")
    assert frontal.value == pytest.approx(DLIB_RULE_COSINE) and "real photos" in frontal.source
    assert profile.value == pytest.approx(0.4) and "synthetic validation renders" in profile.source


def test_verifier_gates_on_the_pipelines_pose(gated_model, photos_dir):
    verifier = Verifier(gated_model, {}, name="gated")
    plain = Verifier.from_pretrained("dlib-pretrained", analyzer=verifier.analyzer)
    a = verifier.embed(photos_dir / "obama.jpg")  # a frontal photo: MediaPipe's yaw is well below 30
    b = plain.embed(photos_dir / "obama.jpg")
    assert np.abs(a - b).max() < 1e-5
