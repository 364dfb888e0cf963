"""The threshold policy (pose3dfr.eval.thresholds): real-photo evidence first for real photos, render thresholds only
where nothing else exists and never as a real-photo rate, the same kind of evidence at every FAR, FAR monotonic."""

from __future__ import annotations

import math

import pytest

from pose3dfr.eval.calibration import (DLIB_RULE_COSINE, SFACE_RULE_COSINE, published_real_photo_rule,
                                      read_real_photo_rule)
from pose3dfr.eval.thresholds import (EVIDENCE_NONE, EVIDENCE_REAL, EVIDENCE_RENDERS, FALLBACK_COSINE,
                                      ThresholdPolicy, check_far)
from pose3dfr.errors import Pose3DFRError
from pose3dfr.models.io import available_checkpoints, load_checkpoint

YAWS = (None, 0.0, 20.0, -35.0, 50.0, 70.0, -88.0, 90.0, 120.0)
CURVE = {"yaw": [0.0, 45.0, 90.0], "threshold": [0.7, 0.6, 0.5]}
RENDERS = {"far": {"1e-2": {"overall": 0.6, "bins": {"[0,30)": 0.7, "[90,+)": 0.5}, "yaw_curve": CURVE},
                   "1e-3": {"overall": 0.8, "bins": {"[0,30)": 0.85, "[90,+)": 0.7}}},
           "calibrated_on": "synthetic validation renders"}


def test_a_published_rule_decides_real_photos_at_every_yaw_and_far():
    rule = read_real_photo_rule({"real_photos": published_real_photo_rule("sface")})
    policy = ThresholdPolicy(RENDERS, rule)
    for far in (0.01, 0.001):
        for yaw in YAWS:
            threshold = policy.decide(far, yaw, 0.0)
            assert threshold.value == SFACE_RULE_COSINE and threshold.evidence == EVIDENCE_REAL
            assert not threshold.far_measured  # OpenCV states no FAR for its operating point
            assert "not stated upstream nor measured here" in threshold.source and f"{far:g}" in threshold.source
    # the render benchmarks still get the render thresholds of the same checkpoint
    rendered = policy.decide(0.01, 45.0, 0.0, population="renders")
    assert rendered.value == pytest.approx(0.6) and rendered.evidence == EVIDENCE_RENDERS and rendered.far_measured


def test_render_thresholds_are_never_offered_as_a_real_photo_rate():
    policy = ThresholdPolicy(RENDERS, None)
    real = policy.decide(0.01, -45.0, 0.0)
    assert real.value == pytest.approx(0.6) and real.evidence == EVIDENCE_RENDERS and not real.far_measured
    assert "renders only" in real.source and "real photos is unknown" in real.source
    assert "interpolated at |yaw| 45 deg" not in real.source  # 45 is a curve point
    assert policy.decide(0.01, 67.5, 0.0).value == pytest.approx(0.55)  # the yaw curve, interpolated
    assert policy.decide(0.01, None, probe_bin="[90,+)").value == pytest.approx(0.5)  # no yaw: the bin
    assert policy.decide(0.002, 0.0).far == 0.001  # the nearest calibrated FAR, reported as used
    assert ThresholdPolicy(RENDERS, None, per_yaw=False).decide(0.01, 90.0).value == pytest.approx(0.6)


def test_a_measured_real_threshold_says_when_the_far_asked_was_not_measured():
    rule = read_real_photo_rule({"real_photos": {"threshold": 0.4, "far": 0.01, "scope": "all", "source": "ours"}})
    policy = ThresholdPolicy(RENDERS, rule)
    at_one = policy.decide(0.01, 80.0)
    assert at_one.far_measured and at_one.evidence == EVIDENCE_REAL and "FAR 0.01 measured on real photos" in \
        at_one.source
    at_tenth = policy.decide(0.001, 80.0)  # same kind of evidence, and the answer says what is missing
    assert at_tenth.evidence == EVIDENCE_REAL and at_tenth.value == 0.4 and not at_tenth.far_measured
    assert "no real-photo threshold at FAR 0.001" in at_tenth.source


def test_no_evidence_falls_back_and_says_so():
    threshold = ThresholdPolicy().decide(0.01, 10.0)
    assert threshold.value == FALLBACK_COSINE and threshold.evidence == EVIDENCE_NONE and not threshold.calibrated
    with pytest.raises(Pose3DFRError):
        check_far(1.5)
    with pytest.raises(Pose3DFRError):
        ThresholdPolicy().decide(0.01, population="people")


def test_pretrained_networks_decide_with_their_published_rule_without_a_calibration():
    policy = ThresholdPolicy.for_checkpoint({"extra": {"pretrained": True}}, backbone="dlib_resnet")
    assert policy.decide(0.001, 85.0).value == pytest.approx(DLIB_RULE_COSINE)
    assert ThresholdPolicy.for_checkpoint({"extra": {}}, backbone="dlib_resnet").real_rule is None  # fine-tuned


@pytest.mark.parametrize("name", available_checkpoints())
def test_every_offered_checkpoint_is_far_monotonic_and_says_what_its_threshold_rests_on(name):
    model, meta, _ = load_checkpoint(name)
    policy = ThresholdPolicy.for_checkpoint(meta, getattr(model, "routing", None), backbone=model.cfg.backbone)
    for population in ("real", "renders"):
        for yaw in YAWS:
            loose, strict = (policy.decide(far, yaw, 0.0, population=population) for far in (0.01, 0.001))
            assert strict.value >= loose.value - 1e-9, (name, population, yaw)
            assert strict.evidence == loose.evidence  # the same kind of evidence at both FARs
            assert strict.evidence in (EVIDENCE_REAL, EVIDENCE_RENDERS) and strict.source
            assert math.isfinite(strict.value)
            if population == "real" and policy.real_rule is not None and policy.real_rule.scope == "all":
                assert loose.evidence == EVIDENCE_REAL
