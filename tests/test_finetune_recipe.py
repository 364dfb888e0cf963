"""The fine-tuning recipe's knobs: trainable last trunk levels and distillation towards the pretrained network."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from conftest import tiny_train_config
from pose3dfr.engine.train import build_model, pretrained_teacher, train
from pose3dfr.errors import Pose3DFRError
from pose3dfr.losses import distillation_loss
from pose3dfr.models.dlib_resnet import DlibResNet
from pose3dfr.paths import CHECKPOINTS_DIR

DLIB = [f"pretrained={CHECKPOINTS_DIR / 'dlib_resnet.safetensors'}", "model_overrides.backbone=dlib_resnet",
        "model=baseline-2d", "freeze=trunk", "align=oracle", "eval.align=oracle", "val_split=null",
        "imprint_images_per_identity=1"]


def test_distillation_loss_is_zero_when_equal_and_grows_with_the_angle():
    a = torch.nn.functional.normalize(torch.randn(5, 8), dim=1)
    assert distillation_loss(a, a).item() == pytest.approx(0.0, abs=1e-6)
    assert distillation_loss(a, -a).item() == pytest.approx(2.0, abs=1e-5)
    assert distillation_loss(a, 3.0 * a).item() == pytest.approx(0.0, abs=1e-6)  # scale-free
    assert distillation_loss(a[:0], a[:0]).item() == 0.0


def test_trunk_tail_modules_are_the_last_trunk_levels():
    net = DlibResNet()
    assert net.trunk_tail_modules(0) == []
    assert net.trunk_tail_modules(1) == [net.stages[2]]
    assert net.trunk_tail_modules(3) == list(net.stages[:3])
    with pytest.raises(ValueError):
        net.trunk_tail_modules(4)


def test_config_rejects_knobs_that_cannot_work():
    with pytest.raises(Pose3DFRError, match="trainable_trunk_levels"):
        tiny_train_config(2, "trainable_trunk_levels=1", "freeze=none").validate()
    with pytest.raises(Pose3DFRError, match="distill_weight"):
        tiny_train_config(2, "distill_weight=1.0").validate()  # no pretrained network to distil from


def test_last_trunk_level_learns_and_earlier_ones_stay(tiny_train_data, tmp_path):
    config = tiny_train_config(2, *DLIB, "trainable_trunk_levels=1", "lr=0.01")
    train(config, tiny_train_data, tmp_path)
    before, after = load_file(str(CHECKPOINTS_DIR / "dlib_resnet.safetensors")), load_file(str(tmp_path / "model.safetensors"))
    frozen = [k for k in before if k.startswith(("stem", "stages.0.", "stages.1."))]
    learning = [k for k in before if k.startswith("stages.2.")]
    assert frozen and learning
    assert all(torch.equal(after[f"backbone.{k}"], before[k]) for k in frozen)
    assert any(not torch.equal(after[f"backbone.{k}"], before[k]) for k in learning)


def test_distillation_teacher_is_the_frozen_pretrained_network_and_is_logged(tiny_train_data, tmp_path):
    config = tiny_train_config(2, *DLIB, "distill_weight=5.0", "distill_max_yaw=90", "log_interval=1")
    model = build_model(config, 4)
    teacher = pretrained_teacher(model, config)
    assert teacher is not None and not any(p.requires_grad for p in teacher.parameters())
    reference = load_file(str(CHECKPOINTS_DIR / "dlib_resnet.safetensors"))
    assert all(torch.equal(teacher.state_dict()[k], v) for k, v in reference.items())
    assert pretrained_teacher(model, tiny_train_config(2, *DLIB)) is None  # weight 0: no teacher, no cost

    train(config, tiny_train_data, tmp_path)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    distilled = [r["loss_distill"] for r in rows if "loss_distill" in r]
    assert distilled and all(0.0 <= d <= 2.0 for d in distilled)
