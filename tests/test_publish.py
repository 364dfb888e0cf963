"""Publishing a run (`pose3dfr publish`), the trained checkpoints it shipped, and the shipped default (SFace)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from pose3dfr.errors import CheckpointError
from pose3dfr.paths import CHECKPOINTS_DIR

# Trained checkpoints that `pose3dfr publish` shipped in checkpoints/ (their JSON records the training command).
SHIPPED = tuple(sorted(p.stem for p in CHECKPOINTS_DIR.glob("*.json")
                       if p.with_suffix(".safetensors").is_file()
                       and "training_command" in (json.loads(p.read_text()).get("extra") or {})))
CARD_SECTIONS = ("## Intended use", "## Training", "## Held-out results", "## Calibrated thresholds",
                 "## Real photos", "## Limitations", "## Licences and citation")
BINS = ("[0,30)", "[30,60)", "[60,90)", "[90,+)")


@pytest.fixture
def tiny_run(tiny_train_run, tiny_train_data) -> tuple[Path, Path]:
    """(run folder, data root) of the session's finished 4-step tiny run (read only)."""
    return tiny_train_run, tiny_train_data


def test_publish_writes_weights_json_and_card(tiny_run, tmp_path):
    from pose3dfr.engine.publish import publish_run
    from pose3dfr.models import load_checkpoint

    run, data = tiny_run
    weights = publish_run(run, "tiny", data, "pose3dfr train --preset fast", out_dir=tmp_path, twin="tiny-2d",
                          check_photos=False)
    meta = json.loads(weights.with_suffix(".json").read_text())
    extra = meta["extra"]
    assert extra["training_command"] == "pose3dfr train --preset fast" and extra["twin"] == "tiny-2d"
    manifest = json.loads((data / "manifest.json").read_text())
    assert extra["data"]["seed"] == manifest["seed"] and len(extra["data"]["manifest_sha256"]) == 64
    assert set(extra["test_results"]["bins"]) == set(BINS) and extra["test_results"]["split"] == "test"
    assert "1e-2" in extra["calibration"]["far"]
    card = weights.with_suffix(".md").read_text()
    assert meta["weights_sha256"] in card and "pose3dfr train --preset fast" in card
    for section in ("## Intended use", "## Training", "## Held-out results", "## Attention", "## Limitations"):
        assert section in card
    removed = extra["attention_removed"]  # held-out TAR with every gamma at 0, beside the model's own
    assert set(removed["bins"]) == set(BINS) and "attention removed" in card and "gamma_2d" in card
    model, loaded, name = load_checkpoint(weights)  # the published copy loads with its sha256 checked
    assert name == "tiny" and loaded["weights_sha256"] == meta["weights_sha256"]


def test_published_weights_that_change_are_refused(tiny_run, tmp_path):
    from pose3dfr.engine.publish import publish_run
    from pose3dfr.models import load_checkpoint

    run, data = tiny_run
    weights = publish_run(run, "tiny", data, "cmd", out_dir=tmp_path, check_photos=False)
    blob = bytearray(weights.read_bytes())
    blob[-1] ^= 0xFF
    weights.write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match="sha256"):
        load_checkpoint(weights)


def test_publish_command_needs_a_finished_run(tmp_path):
    from pose3dfr.cli import main

    assert main(["publish", "--run", str(tmp_path), "--name", "x", "--data", str(tmp_path), "--command", "c"]) != 0


# ----------------------------------------------------------------------------------------------
# The shipped checkpoints (issue 9)
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_checkpoint_has_card_results_and_calibration(name):
    meta = json.loads((CHECKPOINTS_DIR / f"{name}.json").read_text())
    extra = meta["extra"]
    assert extra["training_command"].startswith("pose3dfr train") and extra["data"]["manifest_sha256"]
    for far in ("1e-2", "1e-3"):
        calibration = extra["calibration"]["far"][far]
        assert isinstance(calibration["overall"], float) and set(calibration["bins"]) == set(BINS)
    assert set(extra["test_results"]["bins"]) == set(BINS)
    card = (CHECKPOINTS_DIR / f"{name}.md").read_text()
    for section in CARD_SECTIONS:
        assert section in card, section
    assert meta["weights_sha256"] in card


def test_shipped_weights_fit_a_space_and_are_pinned():
    """Every weights file in checkpoints/ is pinned by sha256 (a truncated or altered file is refused), and all of
    them together stay small enough for a Space."""
    from pose3dfr.models.io import SHIPPED_WEIGHTS_SHA256, file_sha256

    files = sorted(CHECKPOINTS_DIR.glob("*.safetensors"))
    assert sum(p.stat().st_size for p in files) < 100 * 2**20
    for path in files:
        assert SHIPPED_WEIGHTS_SHA256[path.name] == file_sha256(path), path.name


def test_default_is_sface_as_opencv_uses_it_and_holds_on_real_photos(default_verifier):
    """Issue 31: the default is OpenCV's SFace unchanged (YuNet keypoints, no mirror average, no attention), decided
    by OpenCV's published real-photo rule at every yaw; on the shipped real photos it accepts every same-person
    pair and no different-person pair, and separates them at least as well as dlib's pretrained network."""
    from pose3dfr.eval.calibration import SFACE_RULE_COSINE
    from pose3dfr.eval.real_photos import real_photo_check
    from pose3dfr.inference.verifier import Verifier
    from pose3dfr.models.io import SHIPPED_WEIGHTS_SHA256

    model = default_verifier.model
    assert (model.cfg.backbone, model.cfg.alignment, model.cfg.flip_average) == ("sface", "keypoints", False)
    assert model.attention is None and model.routing is None
    assert default_verifier.meta["weights_sha256"] == SHIPPED_WEIGHTS_SHA256["sface.safetensors"]
    for yaw in (0.0, 45.0, 90.0):
        threshold = default_verifier.threshold(0.01, yaw=yaw)
        assert threshold.value == SFACE_RULE_COSINE and threshold.evidence == "real photos"
    check = real_photo_check(default_verifier)
    pretrained = real_photo_check(Verifier.from_pretrained("dlib-pretrained", analyzer=default_verifier.analyzer))
    assert check["auc"] >= pretrained["auc"] and check["relative_margin"] >= pretrained["relative_margin"] - 1e-6
    assert check["same_accepted"] == check["same_pairs"] and check["different_accepted"] == 0


def test_frontal_teacher_attached_at_publishing_keeps_the_trained_weights():
    """`pose3dfr publish --frontal-teacher`: a run trained without routing ships with it, weights unchanged."""
    from pose3dfr.engine.publish import with_frontal_teacher
    from pose3dfr.models import create_model

    torch.manual_seed(0)
    model = create_model("baseline-2d", backbone="dlib_resnet", num_classes=3).eval()
    routed = with_frontal_teacher(model)
    assert model.routing is None and routed.routing is not None and routed.cfg.frontal_teacher
    assert routed.state_dict().keys() == model.state_dict().keys()
    assert all(torch.equal(routed.state_dict()[k], v) for k, v in model.state_dict().items())
    images = torch.rand(2, 3, 150, 150)
    assert torch.allclose(routed.embed_trained(images).embeddings, model.embed_trained(images).embeddings)
    assert routed.embed(images).embeddings.shape == (2, 2 * 128 + 1)  # the routed form: teacher + trained + 1
