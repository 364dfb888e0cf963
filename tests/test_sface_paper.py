"""The paper's model on the SFace base (issue 33): the named configs `sface-full` and `sface-2d` start exactly as
pretrained SFace (the zero value start), build and train a few steps on the tiny benchmark with the CPU recipe
(configs/sface-cpu.yaml)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from conftest import TINY_TRAIN
from pose3dfr.engine.config import build_train_config
from pose3dfr.engine.train import build_model, train
from pose3dfr.models.io import pretrained_sface_model
from pose3dfr.paths import PROJECT_ROOT

SFACE_CONFIGS = ("sface-full", "sface-2d")
RECIPE = PROJECT_ROOT / "configs" / "sface-cpu.yaml"
# The tiny benchmark's 64 px renders, cropped on their ground-truth landmarks (no detector run), a few steps.
TINY_SFACE = [*TINY_TRAIN, "align=oracle", "eval.align=oracle", "warmup_steps=1", "freeze_3d_after=1",
              "num_workers=0", "imprint_images_per_identity=2", "checkpoint_interval=100"]


def recipe_config(preset: str, steps: int = 3, *extra: str):
    """The shipped CPU recipe for `preset`, shrunk to the tiny benchmark."""
    return build_train_config(preset, RECIPE, [*TINY_SFACE, *extra], steps=steps)


@pytest.fixture(scope="module")
def sface():
    return pretrained_sface_model()[0]


@pytest.mark.parametrize("preset", SFACE_CONFIGS)
def test_step_zero_is_pretrained_sface(preset, sface):
    """Built as training builds it (SFace's weights, its head, an imprinted margin head aside), the 2D embedding is
    SFace's own, bit for bit, and so are the crops it asks for (YuNet's keypoints, no mirror average)."""
    model = build_model(recipe_config(preset), num_classes=4).eval()
    assert model.cfg.backbone == "sface" and model.cfg.alignment == "keypoints" and not model.cfg.flip_average
    torch.manual_seed(0)
    chips = torch.rand(3, 3, 112, 112)
    with torch.no_grad():
        assert torch.equal(model.embed(chips).embeddings, sface.embed(chips).embeddings)


def test_step_zero_attention_is_on_the_path(sface):
    """In `sface-full` the attention is in the embedding's path from the start (gamma 1, value conv at 0): J = z
    exactly, yet any value the conv learns reaches the embedding."""
    model = build_model(recipe_config("sface-full"), num_classes=4).eval()
    assert model.cfg.use_3d and model.cfg.use_jam and model.cfg.use_je and not model.cfg.share_head
    assert model.attention.gamma["2d"].item() == 1.0
    assert model.head_3d.layers[-2].in_features == 128 * 49  # the 3D head reads SFace's map reduced to 128 channels
    torch.manual_seed(0)
    chips = torch.rand(3, 3, 112, 112)
    with torch.no_grad():
        fmap = model.backbone.trunk(chips)
        attended, attn = model.attention.attend(fmap, "2d")
        assert torch.equal(attended, fmap) and attn.shape == (3, 49, 49)
        torch.nn.init.normal_(model.attention.value["2d"].weight, std=0.01)
        moved = model.embed(chips).embeddings
    assert (moved - sface.embed(chips).embeddings).norm(dim=1).min() > 1e-3


@pytest.mark.parametrize("preset", SFACE_CONFIGS)
def test_sface_configs_train_a_few_steps(preset, tiny_train_data, tmp_path):
    """The recipe trains: SFace's trunk stays as shipped, its head learns, the attention (sface-full) moves, and the
    run logs its speed."""
    summary = train(recipe_config(preset, 3), tiny_train_data, tmp_path)
    assert summary["finished"]
    after = load_file(str(tmp_path / "model.safetensors"))
    start = build_model(recipe_config(preset), num_classes=4).state_dict()
    trunk = [k for k in start if k.startswith(("backbone.stem.", "backbone.stages."))]
    assert trunk and all(torch.equal(after[k], start[k]) for k in trunk)  # weights and BN statistics
    assert not torch.equal(after["backbone.fc.weight"], start["backbone.fc.weight"])
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "samples_per_s" in r]
    assert steps and all(r["samples_per_s"] > 0 for r in steps)
    if preset == "sface-full":
        assert after["attention.gamma.2d"].item() != 1.0 and after["attention.value.2d.weight"].abs().sum() > 0
        assert "gamma_2d" in steps[-1] and steps[-1]["loss_3d"] > 0
    else:
        assert not any(k.startswith(("attention.", "point_encoder.")) for k in after)
