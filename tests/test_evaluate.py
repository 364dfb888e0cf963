"""Pose-binned verification protocol: pairs, bins, self-pairs, calibration, reports, the eval command."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from pose3dfr.eval import metrics
from pose3dfr.eval.config import EvalConfig
from pose3dfr.eval.calibration import calibration_from_results
from pose3dfr.eval.protocol import evaluate_embeddings
from pose3dfr.eval.evaluate import evaluate_model
from pose3dfr.eval.reports import results_markdown, write_reports
from pose3dfr.errors import DatasetError
from pose3dfr.geometry import pose_bin, pose_bin_labels

# ----------------------------------------------------------------------------------------------
# Protocol on given embeddings
# ----------------------------------------------------------------------------------------------

def brute_force_pairs(embeddings, identities, yaws, config):
    """(bin -> (genuine scores, impostor scores)) by looping over gallery x probe pairs."""
    labels = pose_bin_labels(config.bin_edges)
    pairs = {label: ([], []) for label in [*labels, "overall"]}
    for g in range(len(yaws)):
        if abs(yaws[g]) >= config.frontal_max_yaw:
            continue
        for p in range(len(yaws)):
            if p == g:
                continue
            score = float(np.dot(embeddings[g], embeddings[p]))
            side = 0 if identities[g] == identities[p] else 1
            edges = [e for e in config.bin_edges if abs(yaws[p]) >= e]
            label = labels[len(edges) - 1]
            pairs[label][side].append(score)
            pairs["overall"][side].append(score)
    return pairs


def random_protocol_inputs(seed: int = 0, images: int = 60):
    rng = np.random.default_rng(seed)
    identities = rng.integers(0, 6, images)
    centres = rng.normal(size=(6, 16))
    embeddings = centres[identities] + 0.8 * rng.normal(size=(images, 16))
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    yaws = rng.choice([0.0, -10.0, 14.9, 15.0, 29.9, 30.0, -45.0, 60.0, 75.0, 90.0, -120.0], images)
    return embeddings.astype(np.float32), identities, yaws


def test_pairs_bins_and_metrics_match_brute_force():
    embeddings, identities, yaws = random_protocol_inputs()
    config = EvalConfig()
    results = evaluate_embeddings(embeddings, identities, yaws, config)
    expected = brute_force_pairs(embeddings, identities, yaws, config)
    for label, (genuine, impostor) in expected.items():
        got = results["overall"] if label == "overall" else results["bins"][label]
        assert got["genuine_pairs"] == len(genuine) and got["impostor_pairs"] == len(impostor)
        assert got["tar_at_far_1e-2"] == pytest.approx(metrics.tar_at_far(genuine, impostor, 1e-2))
        assert got["tar_at_far_1e-3"] == pytest.approx(metrics.tar_at_far(genuine, impostor, 1e-3))
        assert got["threshold_at_far_1e-2"] == pytest.approx(metrics.threshold_at_far(genuine, impostor, 1e-2), abs=1e-6)
        assert got["auc"] == pytest.approx(metrics.auc(genuine, impostor), abs=1e-6)
        assert got["eer"] == pytest.approx(metrics.eer(genuine, impostor), abs=1e-6)
    assert list(results["bins"]) == ["[0,30)", "[30,60)", "[60,90)", "[90,+)"]
    gallery = int(np.sum(np.abs(yaws) < 15))
    assert results["protocol"]["gallery_images"] == gallery
    # gallery x probe pairs minus each gallery image paired with itself
    assert results["overall"]["genuine_pairs"] + results["overall"]["impostor_pairs"] == gallery * len(yaws) - gallery


def test_identical_image_is_never_paired_with_itself():
    # Two images of one identity, both frontal: only the 2 cross pairs are genuine, never a self pair
    # (a self pair would score exactly 1 and inflate TAR).
    embeddings = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]], dtype=np.float32)
    results = evaluate_embeddings(embeddings, [0, 0, 1], [0.0, 5.0, 40.0], EvalConfig())
    assert results["overall"]["genuine_pairs"] == 2
    assert results["overall"]["impostor_pairs"] == 2
    assert results["bins"]["[0,30)"]["genuine_pairs"] == 2


def test_configurable_bins_and_fars_and_empty_bins():
    embeddings, identities, yaws = random_protocol_inputs(seed=1)
    config = EvalConfig(bin_edges=(0.0, 45.0), fars=(0.05,))
    results = evaluate_embeddings(embeddings, identities, yaws, config)
    assert list(results["bins"]) == ["[0,45)", "[45,+)"]
    assert "tar_at_far_5e-2" in results["overall"] and "tar_at_far_1e-2" not in results["overall"]
    # A bin with no probe reports counts 0 and metrics None instead of failing.
    frontal_only = evaluate_embeddings(embeddings[:10], identities[:10], np.zeros(10), EvalConfig())
    assert frontal_only["bins"]["[90,+)"] == {
        "tar_at_far_1e-2": None, "threshold_at_far_1e-2": None, "tar_at_far_1e-3": None,
        "threshold_at_far_1e-3": None, "auc": None, "eer": None, "genuine_pairs": 0, "impostor_pairs": 0}


def test_no_frontal_gallery_is_a_dataset_error():
    embeddings, identities, _ = random_protocol_inputs()
    with pytest.raises(DatasetError, match="no frontal gallery"):
        evaluate_embeddings(embeddings, identities, np.full(len(identities), 50.0), EvalConfig(), "my_data")


def test_calibration_thresholds_reproduce_the_far_bound():
    embeddings, identities, yaws = random_protocol_inputs(seed=2, images=120)
    results = evaluate_embeddings(embeddings, identities, yaws, EvalConfig(fars=(0.01, 0.1)))
    calibration = calibration_from_results(results)
    assert set(calibration["far"]) == {"1e-2", "1e-1"}
    pairs = brute_force_pairs(embeddings, identities, yaws, EvalConfig())
    for key, far in (("1e-2", 0.01), ("1e-1", 0.1)):
        entry = calibration["far"][key]
        assert set(entry["bins"]) == set(results["bins"])
        genuine, impostor = map(np.asarray, pairs["overall"])
        t = entry["overall"]
        assert np.mean(impostor >= t) <= far
        assert np.mean(genuine >= t) == pytest.approx(results["overall"][f"tar_at_far_{key}"])
    assert results["calibration"] == calibration


def test_yaw_curve_points_are_each_yaw_groups_threshold():
    """The calibration's yaw curve: one point per |yaw| group (rounded to threshold_yaw_step), at the group's
    mean |yaw|, each the threshold of that group's own pairs; a group with fewer than 1 / FAR impostor pairs
    is left out of that FAR's curve."""
    embeddings, identities, yaws = random_protocol_inputs(seed=3, images=160)
    config = EvalConfig(fars=(0.001, 0.1))
    results = evaluate_embeddings(embeddings, identities, yaws, config)
    curve = results["calibration"]["far"]["1e-1"]["yaw_curve"]
    assert curve["yaw"] == sorted(curve["yaw"]) and len(curve["yaw"]) >= 5
    gallery = np.abs(yaws) < config.frontal_max_yaw
    groups = np.round(np.abs(yaws) / config.threshold_yaw_step)
    for anchor, threshold in zip(curve["yaw"], curve["threshold"]):
        group = groups == round(anchor / config.threshold_yaw_step)
        assert anchor == pytest.approx(np.abs(yaws[group]).mean(), abs=1e-3)
        scores = (embeddings[gallery] @ embeddings.T)[:, group]  # as the protocol computes them (float32 ties)
        valid = np.flatnonzero(gallery)[:, None] != np.flatnonzero(group)[None, :]
        genuine = identities[gallery][:, None] == identities[group][None, :]
        assert threshold == metrics.threshold_at_far(scores[valid & genuine], scores[valid & ~genuine], 0.1)
    strict = results["calibration"]["far"]["1e-3"]["yaw_curve"]["yaw"]
    assert 0 < len(strict) < len(curve["yaw"])  # most groups have under 1000 impostor pairs


def test_reports_written(tmp_path):
    embeddings, identities, yaws = random_protocol_inputs()
    results = evaluate_embeddings(embeddings, identities, yaws, EvalConfig())
    written = write_reports(results, tmp_path / "out" / "eval.json")
    loaded = json.loads(written["json"].read_text())
    assert set(loaded) >= {"overall", "bins", "roc", "calibration", "protocol"}
    table = written["markdown"].read_text()
    assert table == results_markdown(results)
    assert all(label in table for label in ["[0,30)", "[30,60)", "[60,90)", "[90,+)", "overall"])
    assert f"{100 * results['overall']['tar_at_far_1e-2']:.2f}" in table
    html = written["html"].read_text()
    assert "plotly" in html.lower() and "[90,+)" in html


# ----------------------------------------------------------------------------------------------
# A real model on a data set
# ----------------------------------------------------------------------------------------------

def tiny_model(**overrides):
    from pose3dfr.models import create_model

    torch.manual_seed(0)
    kw = dict(backbone="mobilefacenet", num_classes=4)
    kw.update(overrides)
    return create_model("baseline-2d", **kw).eval()


def test_evaluate_model_embeds_each_image_once(tiny_benchmark):
    from pose3dfr.data.facescape import FaceScapeMultiView

    dataset = FaceScapeMultiView(tiny_benchmark, split="test", num_points=0)
    model = tiny_model()
    seen = []
    original = model.embed
    model.embed = lambda images, **kw: seen.append(len(images)) or original(images, **kw)
    results = evaluate_model(model, dataset, EvalConfig(batch_size=3))
    assert sum(seen) == len(dataset) and max(seen) <= 3
    records = dataset.records
    gallery = [r for r in records if abs(r.yaw) < 15]
    assert results["protocol"]["gallery_images"] == len(gallery) > 0
    assert results["protocol"]["probe_images"] == {
        label: sum(pose_bin(r.yaw) == label for r in records) for label in pose_bin_labels()}
    profile_genuine = sum(g.identity == p.identity for g in gallery for p in records if abs(p.yaw) >= 90)
    assert results["bins"]["[90,+)"]["genuine_pairs"] == profile_genuine > 0
    assert results["bins"]["[60,90)"]["genuine_pairs"] == 0  # yaw step 45: no probe there
    assert results["bins"]["[60,90)"]["tar_at_far_1e-2"] is None
    assert 0.0 <= results["overall"]["auc"] <= 1.0


def test_point_branch_pairs_every_cloud_across_expressions(tiny_benchmark):
    from pose3dfr.data.facescape import FaceScapeMultiView
    from pose3dfr.eval.evaluate import evaluate_point_branch
    from pose3dfr.models import create_model

    model = create_model("full", backbone="mobilefacenet", num_points=128, sa1_centres=32, sa2_centres=8,
                         point_group_size=8, num_classes=4)
    dataset = FaceScapeMultiView(tiny_benchmark, split="test", num_points=128)
    results = evaluate_point_branch(model, dataset, EvalConfig(batch_size=3))
    clouds = 2 * 2  # 2 test identities x 2 expressions
    assert results["clouds"] == clouds
    # every ordered pair of distinct clouds: same identity (other expression) is genuine
    assert results["genuine_pairs"] == 2 * 2 and results["impostor_pairs"] == clouds * (clouds - 1) - 4
    assert 0.0 <= results["auc"] <= 1.0


def test_eval_command_writes_json(tiny_benchmark, tmp_path):
    from pose3dfr.cli import main
    from pose3dfr.models import save_model

    save_model(tiny_model(), tmp_path / "ckpt" / "model")
    out = tmp_path / "eval" / "result.json"
    assert main(["eval", "--checkpoint", str(tmp_path / "ckpt" / "model.safetensors"),
                 "--data", str(tiny_benchmark), "--json", str(out), "--split", "test"]) == 0
    results = json.loads(out.read_text())
    assert set(results["bins"]) == {"[0,30)", "[30,60)", "[60,90)", "[90,+)"}
    for key in ("tar_at_far_1e-2", "tar_at_far_1e-3", "threshold_at_far_1e-2", "threshold_at_far_1e-3",
                "auc", "eer", "genuine_pairs", "impostor_pairs"):
        assert key in results["overall"]
    assert out.with_suffix(".md").is_file() and out.with_name("result_roc.html").is_file()


def test_eval_command_bad_split_is_reported(tiny_benchmark, tmp_path, capsys):
    from pose3dfr.cli import main
    from pose3dfr.models import save_model

    save_model(tiny_model(), tmp_path / "model")
    code = main(["eval", "--checkpoint", str(tmp_path / "model.json"), "--data", str(tiny_benchmark),
                 "--json", str(tmp_path / "r.json"), "--split", "nosuchsplit"])
    assert code == 1
    assert "nosuchsplit" in capsys.readouterr().err


def test_no_face_images_are_rejections_that_stay_in_the_counts():
    """evaluate_embeddings(no_face=...): an image without a face scores -inf against everything (TAR drops, the
    pair counts stay) and face_found reports the share per probe bin."""
    rng = np.random.default_rng(0)
    identities = np.repeat(np.arange(6), 4)
    yaws = np.tile([0.0, 10.0, 45.0, 80.0], 6)
    centres = rng.normal(size=(6, 16))
    embeddings = centres[identities] + 0.05 * rng.normal(size=(24, 16))
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    config = EvalConfig()
    full = evaluate_embeddings(embeddings, identities, yaws, config)
    no_face = yaws == 80.0
    no_face[::8] |= True  # and a few frontal (gallery) images
    part = evaluate_embeddings(embeddings, identities, yaws, config, no_face=no_face)
    label = "[60,90)"
    assert full["bins"][label]["tar_at_far_1e-2"] == 1.0 and part["bins"][label]["tar_at_far_1e-2"] == 0.0
    assert part["bins"][label]["genuine_pairs"] == full["bins"][label]["genuine_pairs"]
    assert part["face_found"][label] == 0.0 and part["face_found"]["[0,30)"] < 1.0
    assert 0 < part["face_found"]["overall"] < 1


def test_eval_config_align_is_checked():
    with pytest.raises(Exception, match="align"):
        EvalConfig(align="ground-truth").validate()
    assert EvalConfig().align == "pipeline"
