"""Verification metrics against brute-force references (random and heavily tied scores, edge cases)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pose3dfr.eval import metrics
from pose3dfr.errors import Pose3DFRError


def brute_operating_point(genuine, impostor, far):
    """Best (TAR, threshold) by trying every threshold that can matter (each score and +inf)."""
    genuine, impostor = list(map(float, genuine)), list(map(float, impostor))
    best_tar, best_t = -1.0, None
    for t in sorted(set(genuine) | set(impostor) | {float("inf")}):
        far_t = sum(s >= t for s in impostor) / len(impostor)
        tar_t = sum(s >= t for s in genuine) / len(genuine)
        if far_t <= far and tar_t > best_tar:
            best_tar, best_t = tar_t, t
    return best_tar, best_t


def brute_roc(genuine, impostor):
    points = [(0.0, 0.0)]
    for t in sorted(set(genuine) | set(impostor), reverse=True):
        points.append((sum(s >= t for s in impostor) / len(impostor), sum(s >= t for s in genuine) / len(genuine)))
    return points


def brute_auc(genuine, impostor):
    wins = sum((g > i) + 0.5 * (g == i) for g in genuine for i in impostor)
    return wins / (len(genuine) * len(impostor))


def brute_eer(genuine, impostor):
    """Crossing of FAR and FRR along the ROC polyline, segment by segment."""
    points = brute_roc(genuine, impostor)
    for (f0, t0), (f1, t1) in zip(points, points[1:]):
        g0, g1 = f0 - (1 - t0), f1 - (1 - t1)
        if g0 < 0 <= g1:
            return f0 + (-g0 / (g1 - g0)) * (f1 - f0)
    raise AssertionError("no crossing")


def rates(genuine, impostor, t):
    return np.mean(np.asarray(genuine) >= t), np.mean(np.asarray(impostor) >= t)


scores_strategy = st.lists(st.integers(0, 6).map(lambda k: k / 6.0), min_size=1, max_size=25)
far_strategy = st.sampled_from([0.0, 0.001, 0.01, 0.1, 0.2, 1 / 3, 0.5, 0.99, 1.0])


@settings(max_examples=150, deadline=None)
@given(genuine=scores_strategy, impostor=scores_strategy, far=far_strategy)
def test_tar_at_far_matches_brute_force_on_heavily_tied_scores(genuine, impostor, far):
    expected_tar, _ = brute_operating_point(genuine, impostor, far)
    assert metrics.tar_at_far(genuine, impostor, far) == pytest.approx(expected_tar, abs=1e-12)
    # The threshold returned reproduces that TAR within the FAR bound on the same scores.
    t = metrics.threshold_at_far(genuine, impostor, far)
    tar_t, far_t = rates(genuine, impostor, t)
    assert far_t <= far
    assert tar_t == pytest.approx(expected_tar, abs=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_random_continuous_scores_match_brute_force(seed):
    rng = np.random.default_rng(seed)
    genuine = rng.normal(0.6, 0.2, size=int(rng.integers(20, 80)))
    impostor = rng.normal(0.1, 0.2, size=int(rng.integers(100, 400)))
    for far in (0.0, 0.001, 0.01, 0.05, 0.3):
        assert metrics.tar_at_far(genuine, impostor, far) == pytest.approx(
            brute_operating_point(genuine, impostor, far)[0], abs=1e-12)
    far_points, tar_points, thresholds = metrics.roc_curve(genuine, impostor)
    np.testing.assert_allclose(np.c_[far_points, tar_points], brute_roc(genuine, impostor))
    assert np.all(np.diff(thresholds) < 0)
    assert metrics.auc(genuine, impostor) == pytest.approx(brute_auc(genuine, impostor))
    assert metrics.eer(genuine, impostor) == pytest.approx(brute_eer(genuine, impostor))


@settings(max_examples=80, deadline=None)
@given(genuine=scores_strategy, impostor=scores_strategy)
def test_auc_and_eer_match_brute_force_with_ties(genuine, impostor):
    assert metrics.auc(genuine, impostor) == pytest.approx(brute_auc(genuine, impostor))
    assert metrics.eer(genuine, impostor) == pytest.approx(brute_eer(genuine, impostor))


def test_far_zero_accepts_only_genuine_above_every_impostor():
    genuine = [0.95, 0.9, 0.7, 0.7]
    impostor = [0.1, 0.7, 0.3]
    assert metrics.tar_at_far(genuine, impostor, 0.0) == 0.5
    t = metrics.threshold_at_far(genuine, impostor, 0.0)
    assert 0.7 < t <= 0.9


def test_all_scores_tied():
    genuine, impostor = [0.5] * 10, [0.5] * 30
    # Any threshold accepting one pair accepts them all (FAR 1), so below FAR 1 nothing is accepted.
    assert metrics.tar_at_far(genuine, impostor, 0.01) == 0.0
    assert metrics.tar_at_far(genuine, impostor, 0.999) == 0.0
    assert metrics.tar_at_far(genuine, impostor, 1.0) == 1.0
    assert metrics.auc(genuine, impostor) == pytest.approx(0.5)
    assert metrics.eer(genuine, impostor) == pytest.approx(0.5)
    assert metrics.threshold_at_far(genuine, impostor, 0.01) > 0.5


def test_perfect_separation():
    genuine, impostor = np.linspace(0.6, 1.0, 50), np.linspace(-1.0, 0.5, 500)
    assert metrics.tar_at_far(genuine, impostor, 0.0) == 1.0
    assert metrics.auc(genuine, impostor) == 1.0
    assert metrics.eer(genuine, impostor) == 0.0


@pytest.mark.parametrize("function", [metrics.tar_at_far, metrics.threshold_at_far])
def test_empty_input_raises_clear_error(function):
    with pytest.raises(Pose3DFRError, match="genuine_scores is empty"):
        function([], [0.1, 0.2], 0.01)
    with pytest.raises(Pose3DFRError, match="impostor_scores is empty"):
        function([0.1], np.array([]), 0.01)


def test_bad_inputs_raise():
    with pytest.raises(Pose3DFRError, match="NaN"):
        metrics.auc([0.1, float("nan")], [0.2])
    with pytest.raises(Pose3DFRError, match="far"):
        metrics.tar_at_far([0.1], [0.2], -0.1)
    with pytest.raises(Pose3DFRError, match="impostor_scores is empty"):
        metrics.roc_curve([0.3], [])


def test_operating_points_several_fars_match_single_calls():
    rng = np.random.default_rng(7)
    genuine, impostor = rng.random(300) + 0.3, rng.random(3000)
    fars = [1e-3, 1e-2, 1e-1]
    tars, thresholds = metrics.SortedScores.from_scores(genuine, impostor).operating_points(fars)
    for far, tar, threshold in zip(fars, tars, thresholds):
        assert tar == metrics.tar_at_far(genuine, impostor, far)
        assert threshold == metrics.threshold_at_far(genuine, impostor, far)


def test_verification_summary_keys_and_thinned_roc():
    rng = np.random.default_rng(3)
    genuine, impostor = rng.normal(1, 1, 400), rng.normal(0, 1, 4000)
    summary = metrics.verification_summary(genuine, impostor, fars=(1e-2, 1e-3), roc_points=50)
    assert summary["tar_at_far_1e-2"] == metrics.tar_at_far(genuine, impostor, 1e-2)
    assert summary["threshold_at_far_1e-3"] == metrics.threshold_at_far(genuine, impostor, 1e-3)
    assert summary["genuine_pairs"] == 400 and summary["impostor_pairs"] == 4000
    assert summary["auc"] == pytest.approx(metrics.auc(genuine, impostor))
    roc = summary["roc"]
    assert len(roc["far"]) == 50 and roc["far"][0] == 0.0 and roc["far"][-1] == 1.0
    assert np.all(np.diff(roc["far"]) >= 0) and np.all(np.diff(roc["tar"]) >= 0)


@pytest.mark.parametrize("far,key", [(0.01, "1e-2"), (0.001, "1e-3"), (0.05, "5e-2"), (0.1, "1e-1")])
def test_far_key(far, key):
    assert metrics.far_key(far) == key
