"""Pose routing with a frontal teacher (pose3dfr.models.frontal_gate): near-frontal pairs are scored by the
pretrained network, the others by the trained one, through every scoring path; and the real-photo rule
holds exactly where the pretrained network scores."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pose3dfr.eval.calibration import (DLIB_RULE_COSINE, read_real_photo_rule, teacher_real_photo_rule,
                                      trained_network_bin)
from pose3dfr.eval.thresholds import ThresholdPolicy
from pose3dfr.eval.config import EvalConfig
from pose3dfr.eval.protocol import evaluate_embeddings
from pose3dfr.inference.identify import enrol_photos, new_gallery, search_photo
from pose3dfr.inference.verifier import Verifier
from pose3dfr.models import create_model
from pose3dfr.models.frontal_gate import Routing, pair_route_yaw, routed_probes, split_routed
from pose3dfr.paths import CHECKPOINTS_DIR

DLIB_WEIGHTS = str(CHECKPOINTS_DIR / "dlib_resnet.safetensors")


@pytest.fixture(scope="module")
def routed_model():
    """A 2D model on dlib's weights with a frontal teacher, its trained head moved away from the teacher."""
    torch.manual_seed(0)
    model = create_model("baseline-2d", backbone="dlib_resnet", backbone_weights=DLIB_WEIGHTS, num_classes=4,
                         frontal_teacher=True, route_yaw=22.5)
    with torch.no_grad():
        model.backbone.fc.weight.add_(0.05 * torch.randn_like(model.backbone.fc.weight))  # "fine-tuned"
    return model.eval()


@pytest.fixture(scope="module")
def routed_verifier(routed_model, default_verifier):
    return Verifier(routed_model, {"weights_sha256": "0" * 64}, name="routed", analyzer=default_verifier.analyzer)


def _halves(model, images):
    with torch.no_grad():
        teacher = F.normalize(model.frontal.teacher(images)[1], dim=1).numpy()
        student = F.normalize(model.embed_trained(images).embeddings + model.embed_trained(images.flip(-1)).embeddings,
                              dim=1).numpy()  # ModelConfig.flip_average: the trained half averages the mirror
        routed = model.embed(images).embeddings.numpy()
    return teacher, student, routed


def test_embedding_is_the_two_networks_side_by_side(routed_model):
    teacher, student, routed = _halves(routed_model, torch.rand(3, 3, 150, 150))
    assert routed.shape == (3, 257)
    assert np.allclose(np.linalg.norm(routed, axis=1), 1.0, atol=1e-5)
    t, s = split_routed(routed)
    assert np.allclose(t, teacher, atol=1e-5) and np.allclose(s, student, atol=1e-5)
    assert not np.allclose(teacher, student, atol=1e-3)  # the test means something


def test_probe_routing_gives_the_teachers_or_the_students_cosine(routed_model):
    teacher, student, routed = _halves(routed_model, torch.rand(4, 3, 150, 150))
    routing = Routing(22.5, teacher_scale=1.7, teacher_shift=-0.9)
    probes = routed_probes(routed, [10.0, -22.0, 45.0, None], routing)
    scores = routed[:1] @ probes.T
    # frontal: the pretrained network's cosine, mapped onto the trained scale
    assert scores[0, 1] == pytest.approx(1.7 * float(teacher[0] @ teacher[1]) - 0.9, abs=1e-5)
    assert scores[0, 2] == pytest.approx(float(student[0] @ student[2]), abs=1e-5)  # profile: trained
    assert scores[0, 3] == pytest.approx(float(student[0] @ student[3]), abs=1e-5)  # pose unknown: trained
    assert np.array_equal(routed_probes(routed, [10.0] * 4, None), routed)  # no teacher: plain cosine
    assert pair_route_yaw(5.0, -40.0) == 40.0 and pair_route_yaw(None, 3.0) is None


def test_a_pair_is_scored_on_the_route_its_threshold_was_decided_for(routed_model):
    """ThresholdPolicy.decide_pair decides the route once: the threshold says which network, the score is its."""
    teacher, student, routed = _halves(routed_model, torch.rand(2, 3, 150, 150))
    policy = ThresholdPolicy(routing=Routing(22.5, teacher_scale=1.7, teacher_shift=-0.9))
    frontal = policy.decide_pair(0.01, routed[0], routed[1], 5.0, -20.0)  # both faces below route_yaw
    assert frontal.threshold.teacher is True
    assert frontal.score == pytest.approx(1.7 * float(teacher[0] @ teacher[1]) - 0.9, abs=1e-5)
    turned = policy.decide_pair(0.01, routed[0], routed[1], 5.0, 40.0)  # the larger |yaw| routes the pair
    assert turned.threshold.teacher is False and turned.score == pytest.approx(float(student[0] @ student[1]), abs=1e-5)
    plain = ThresholdPolicy().decide_pair(0.01, student[0], 3.0 * student[1], 5.0, 40.0)  # no routing: the cosine
    assert plain.threshold.teacher is None and plain.score == pytest.approx(float(student[0] @ student[1]), abs=1e-5)
    assert plain.match == (plain.score >= plain.threshold.value)


def test_teacher_is_frozen_and_stays_in_eval_mode(routed_model):
    assert not any(p.requires_grad for p in routed_model.frontal.teacher.parameters())
    routed_model.train()
    try:
        assert not routed_model.frontal.teacher.training
    finally:
        routed_model.eval()


def test_route_yaw_is_checked():
    from pose3dfr.errors import Pose3DFRError
    from pose3dfr.models.config import ModelConfig

    with pytest.raises(Pose3DFRError, match="route_yaw"):
        ModelConfig(frontal_teacher=True, route_yaw=0.0)


def test_protocol_routes_each_probe_by_its_yaw():
    rng = np.random.default_rng(0)
    t, s = (rng.normal(size=(4, 8)) for _ in range(2))
    t, s = (x / np.linalg.norm(x, axis=1, keepdims=True) for x in (t, s))
    emb = np.hstack([t / 2, s / 2, np.full((4, 1), 1 / math.sqrt(2))])
    ids, yaws = [0, 1, 0, 1], [0.0, 0.0, 10.0, 80.0]  # two frontal gallery images, a frontal and a profile probe
    plain = evaluate_embeddings(emb, ids, yaws, EvalConfig(fars=(0.5,)))
    routed = evaluate_embeddings(emb, ids, yaws, EvalConfig(fars=(0.5,)), routing=(yaws, Routing(30.0)))
    assert plain["overall"] != routed["overall"]  # the routed scores are other numbers
    # the profile probe (index 3) against gallery image 1 (same identity): the trained network's cosine
    assert routed["bins"]["[60,90)"]["genuine_pairs"] == 1


def test_verifier_and_gallery_score_a_frontal_pair_as_dlib_does(routed_verifier, photos_dir):
    plain = Verifier.from_pretrained("dlib-pretrained", analyzer=routed_verifier.analyzer)
    a, b = photos_dir / "obama.jpg", photos_dir / "obama2.jpg"  # both near-frontal
    assert routed_verifier.verify(a, b, with_points=False).score == pytest.approx(
        plain.verify(a, b, with_points=False).score, abs=1e-5)
    gallery = new_gallery(routed_verifier)
    enrol_photos(gallery, routed_verifier, [("obama", a), ("biden", photos_dir / "biden.jpg")])
    best = search_photo(gallery, routed_verifier, b).matches[0]
    assert best.name == "obama" and best.score == pytest.approx(plain.verify(a, b, with_points=False).score, abs=1e-4)


def test_old_real_photo_rules_keep_their_scope():
    """Entries written before the scope field: "bins" covers only its bins, "route": "teacher" only teacher pairs;
    neither claims a real-photo FAR."""
    binned = read_real_photo_rule({"real_photos": {"threshold": 0.9, "far": 0.01, "bins": ["[0,30)"], "source": "x"}})
    assert binned.scope == "bins" and binned.far is None
    assert binned.covers("[0,30)", None) and not binned.covers("[60,90)", None) and not binned.covers(None, None)
    assert read_real_photo_rule({"far": {}}) is None
    assert math.isclose(DLIB_RULE_COSINE, 1 - 0.36 / (2 * 1.41 ** 2))
    teacher_rule = read_real_photo_rule({"real_photos": teacher_real_photo_rule(Routing(22.5, 2.0, -1.0))})
    assert teacher_rule.scope == "teacher" and teacher_rule.covers("[30,60)", True)
    assert not teacher_rule.covers("[0,30)", False)
    policy = ThresholdPolicy(None, teacher_rule, Routing(22.5, 2.0, -1.0))
    assert policy.decide(0.01, 10.0, 5.0).value == pytest.approx(2.0 * DLIB_RULE_COSINE - 1.0)  # the routed scale
    assert trained_network_bin("[0,30)", 22.5) == "[30,60)" and trained_network_bin("[60,90)", 22.5) == "[60,90)"


def test_verifier_says_which_threshold_it_used(routed_model):
    bins = {"[0,30)": 0.6, "[30,60)": 0.45, "[60,90)": 0.4}
    meta = {"extra": {"calibration": {"far": {"1e-2": {"overall": 0.5, "bins": bins}},
                                      "calibrated_on": "synthetic validation renders",
                                      "real_photos": teacher_real_photo_rule(routed_model.routing)}}}
    verifier = Verifier(routed_model, meta, name="routed")
    frontal = verifier.policy.decide(0.01, -10.0, 2.0, probe_bin="[0,30)")  # both faces below route_yaw: teacher
    assert frontal.value == pytest.approx(DLIB_RULE_COSINE) and "real photos" in frontal.source  # affine = identity
    profile = verifier.policy.decide(0.01, 70.0, 2.0, probe_bin="[60,90)")
    assert profile.value == pytest.approx(0.4) and "synthetic validation renders" in profile.source
    assert profile.evidence == "synthetic renders" and not profile.far_measured  # never a real-photo rate
    # 25 degrees: the trained network scores it, so the [0,30) threshold (teacher-scored in calibration) is not
    # its own; the first bin the trained network scores gives it
    assert verifier.policy.decide(0.01, 25.0, 2.0, probe_bin="[0,30)").value == pytest.approx(0.45)


def test_verifier_interpolates_the_yaw_curve_at_the_probe_yaw(routed_model):
    """With a yaw curve the probe's threshold follows its estimated |yaw| (no jump at a bin edge); the trained
    network of a frontal-teacher model uses only the points at or above route_yaw."""
    curve = {"yaw": [0.0, 30.0, 75.0, 90.0], "threshold": [0.7, 0.5, 0.6, 0.45]}
    meta = {"extra": {"calibration": {"far": {"1e-2": {"overall": 0.5, "bins": {"[60,90)": 0.58, "[90,+)": 0.45},
                                                       "yaw_curve": curve}},
                                      "calibrated_on": "synthetic validation renders"}}}
    verifier = Verifier(routed_model, meta, name="routed")
    near_profile = verifier.policy.decide(0.01, -85.0, 2.0, probe_bin="[60,90)")  # the [60,90) bin: 0.58
    assert near_profile.value == pytest.approx(0.6 + (0.45 - 0.6) * 10 / 15)
    assert "interpolated at |yaw| 85 deg between the thresholds at 75 deg and 90 deg" in near_profile.source
    assert verifier.policy.decide(0.01, 120.0, 2.0, probe_bin="[90,+)").value == pytest.approx(0.45)  # constant
    # 25 degrees, trained network: the 0-degree point (teacher-scored in calibration) is not used
    assert verifier.policy.decide(0.01, 25.0, 2.0, probe_bin="[0,30)").value == pytest.approx(0.5)
    assert verifier.policy.decide(0.01, None, 2.0, probe_bin="[90,+)").value == pytest.approx(0.45)  # no yaw: bin
    binned = Verifier(routed_model, meta, name="routed", per_bin_threshold=False)
    assert binned.policy.decide(0.01, -85.0, 2.0, probe_bin="[60,90)").value == pytest.approx(0.5)  # overall only

