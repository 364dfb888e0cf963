"""Training engine: configs and overrides, schedule, determinism, resume, checkpoints, pretrained/frozen
backbone, DDP on 2 CPU processes, and the ablation table. Tiny data, the `fast` preset, a few steps."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from conftest import TINY_TRAIN, free_port, tiny_train_config
from pose3dfr.cli import main
from pose3dfr.data.facescape import FaceScapeMultiView
from pose3dfr.engine import ablate as ablate_mod
from pose3dfr.engine.checkpoint import latest_checkpoint, state_dict_digest
from pose3dfr.engine.config import (PRESETS, TrainConfig, build_train_config, parse_set_overrides,
                                    preset_config, train_config_from_dict)
from pose3dfr.engine.train import build_model, build_optimizer, imprint_head, lr_factor, train
from pose3dfr.errors import CheckpointError, DatasetError, Pose3DFRError
from pose3dfr.eval.evaluate import default_image_transform
from pose3dfr.models import load_model
from pose3dfr.paths import PROJECT_ROOT


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


# ----------------------------------------------------------------------------------------------
# Config
# ----------------------------------------------------------------------------------------------

def test_presets_differ_only_where_documented():
    variants = ("baseline-2d", "jam", "je", "full", "paper", "sface-full", "sface-2d")
    assert set(PRESETS) == {*variants, "fast"}
    assert {name: preset_config(name).model for name in variants} == {name: name for name in variants}
    schedules = {(c.optimizer, c.lr, c.schedule, c.steps, c.batch_size) for c in map(preset_config, variants)}
    assert len(schedules) == 1  # the ablation's variants share one schedule
    fast = preset_config("fast")
    assert fast.model_overrides["backbone"] == "mobilefacenet" and fast.steps < 100


def test_override_precedence_file_then_set_then_arguments(tmp_path):
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text("lr: 0.5\nsteps: 7\neval:\n  fars: [0.1]\nmodel_overrides:\n  backbone: ir50\n")
    config = build_train_config("fast", yaml_file, ["steps=9", "model_overrides.je_weight=0.2"], steps=11, seed=None)
    assert config.lr == 0.5 and config.steps == 11 and config.seed == 0
    assert config.eval.fars == (0.1,)
    assert config.model_overrides["backbone"] == "ir50" and config.model_overrides["je_weight"] == 0.2
    assert config.model_overrides["num_points"] == PRESETS["fast"]["model_overrides"]["num_points"]
    json_file = tmp_path / "c.json"
    json_file.write_text(json.dumps({"optimizer": "adamw", "lr": 3}))
    assert build_train_config("full", json_file).lr == 3.0
    assert train_config_from_dict(config.to_dict()) == config


@pytest.mark.parametrize("items,match", [
    (["nosuchfield=1"], "unknown field 'nosuchfield'"),
    (["steps=many"], "steps: expected int"),
    (["optimizer=rmsprop"], "optimizer"),
    (["eval.fars=[2.0]"], "fars"),
    (["steps"], "expected key=value"),
])
def test_bad_overrides_raise(items, match):
    with pytest.raises(Pose3DFRError, match=match):
        build_train_config("fast", set_items=items)


def test_bad_preset_and_config_file(tmp_path):
    with pytest.raises(Pose3DFRError, match="unknown preset 'fastest'"):
        preset_config("fastest")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- just\n- a list\n")
    with pytest.raises(Pose3DFRError, match="bad.yaml"):
        build_train_config("fast", bad)
    with pytest.raises(Pose3DFRError, match="missing.yaml"):
        build_train_config("fast", tmp_path / "missing.yaml")


def test_set_values_are_parsed_as_yaml():
    assert parse_set_overrides(["a=1", "b=0.5", "c=true", "d.e=[1, 2]", "f=text", "g="]) == {
        "a": 1, "b": 0.5, "c": True, "d": {"e": [1, 2]}, "f": "text", "g": None}


def test_learning_rate_schedules():
    config = TrainConfig(steps=100, warmup_steps=10, schedule="cosine")
    factors = [lr_factor(s, config) for s in range(100)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert factors[10] == pytest.approx(1.0) and factors[99] < 0.01
    assert all(a >= b for a, b in zip(factors[10:], factors[11:]))
    step = TrainConfig(steps=100, warmup_steps=0, schedule="step", lr_milestones=(0.5, 0.8), lr_gamma=0.1)
    assert [lr_factor(s, step) for s in (0, 49, 50, 79, 80)] == pytest.approx([1, 1, 0.1, 0.1, 0.01])


# ----------------------------------------------------------------------------------------------
# Training, determinism, resume, checkpoints
# ----------------------------------------------------------------------------------------------

def test_run_writes_checkpoints_logs_and_calibration(tiny_train_run):
    assert (tiny_train_run / "model.safetensors").is_file()
    meta = json.loads((tiny_train_run / "model.json").read_text())
    assert meta["config"]["backbone"] == "mobilefacenet" and meta["config"]["num_classes"] == 4
    extra = meta["extra"]
    assert extra["step"] == 4 and extra["train_config"]["preset"] == "fast"
    calibration = extra["calibration"]["far"]
    assert set(calibration) == {"1e-2", "1e-3"}
    assert set(calibration["1e-2"]["bins"]) == {"[0,30)", "[30,60)", "[60,90)", "[90,+)"}
    assert isinstance(calibration["1e-2"]["overall"], float)
    rows = [json.loads(line) for line in (tiny_train_run / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "loss" in r]
    assert [r["step"] for r in steps] == [1, 2, 3, 4]
    assert all({"loss_2d", "loss_3d", "loss_je", "lr", "samples_per_s"} <= set(r) for r in steps)
    assert any("val/[90,+)/tar_at_far_1e-2" in r for r in rows)
    assert any(r["step"] == 0 and "val/overall/tar_at_far_1e-2" in r for r in rows)  # the starting model
    stems = sorted(p.name for p in (tiny_train_run / "checkpoints").iterdir())
    assert stems == [f"step_0000000{s}{x}" for s in (2, 4) for x in (".json", ".safetensors", ".train.safetensors")]


def test_training_state_is_plain_safetensors(tiny_train_run):
    with safe_open(str(tiny_train_run / "checkpoints" / "step_00000004.train.safetensors"), framework="pt") as fh:
        meta = json.loads(fh.metadata()["state"])
        keys = set(fh.keys())
    assert meta["step"] == 4 and "rng.torch" in keys
    assert any(k.startswith("optimizer.") for k in keys)  # AdamW moments
    assert not list(tiny_train_run.rglob("*.pt")) and not list(tiny_train_run.rglob("*.pth"))


def test_same_seed_same_weights_and_resume_matches_uninterrupted_run(tiny_train_run, tiny_train_data, tmp_path):
    out = tmp_path / "resumed"
    summary = train(tiny_train_config(4, "checkpoint_interval=2"), tiny_train_data, out, stop_at_step=2)
    assert summary["finished"] is False and not (out / "model.safetensors").exists()
    assert latest_checkpoint(out).name == "step_00000002"
    train(tiny_train_config(4, "checkpoint_interval=2"), tiny_train_data, out, resume=True)
    reference, resumed = weights(tiny_train_run / "model.safetensors"), weights(out / "model.safetensors")
    assert reference.keys() == resumed.keys()
    for name in reference:
        torch.testing.assert_close(resumed[name], reference[name], rtol=1e-5, atol=1e-6, msg=name)
    # Training changed the weights (the comparison above is not trivially true).
    first = weights(tiny_train_run / "checkpoints" / "step_00000002.safetensors")
    assert any(not torch.equal(first[k], reference[k]) for k in reference if reference[k].is_floating_point())


def test_incomplete_or_tampered_checkpoints(tiny_train_run, tiny_train_data, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(tiny_train_run, out)
    (out / "checkpoints" / "step_00000004.json").unlink()  # killed while writing: no JSON yet
    assert latest_checkpoint(out).name == "step_00000002"
    with open(out / "checkpoints" / "step_00000002.safetensors", "r+b") as fh:
        fh.seek(-8, os.SEEK_END)
        fh.write(b"\x00" * 8)
    with pytest.raises(CheckpointError, match="step_00000002.safetensors: sha256"):
        train(tiny_train_config(4, "checkpoint_interval=2"), tiny_train_data, out, resume=True)


def test_missing_split_and_too_small_data(tiny_train_data, tmp_path):
    with pytest.raises(DatasetError, match="no split 'nosuch'"):
        train(tiny_train_config(2, "train_split=nosuch"), tiny_train_data, tmp_path / "a")
    with pytest.raises(DatasetError, match="fewer than one global batch"):
        train(tiny_train_config(2, "batch_size=64"), tiny_train_data, tmp_path / "b")


def test_pretrained_backbone_frozen(tiny_train_run, tiny_train_data, tmp_path):
    pretrained = tiny_train_run / "model.safetensors"
    config = tiny_train_config(2, f"pretrained={pretrained}", "freeze=backbone", "model=baseline-2d")
    train(config, tiny_train_data, tmp_path)
    before, after = weights(pretrained), weights(tmp_path / "model.safetensors")
    backbone = [k for k in after if k.startswith("backbone.")]
    assert backbone
    for name in backbone:  # weights and BN statistics unchanged
        assert torch.equal(after[name], before[name]), name
    assert any(not torch.equal(after[k], before[k]) for k in after if k.startswith("margin_2d.") and k in before)


def test_pretrained_trunk_frozen_head_learns(tiny_train_run, tiny_train_data, tmp_path):
    pretrained = tiny_train_run / "model.safetensors"
    config = tiny_train_config(2, f"pretrained={pretrained}", "freeze=trunk", "model=baseline-2d")
    train(config, tiny_train_data, tmp_path)
    before, after = weights(pretrained), weights(tmp_path / "model.safetensors")
    head = ("backbone.output_layer.",)  # the head_modules of the fast preset's MobileFaceNet
    trunk = [k for k in after if k.startswith("backbone.") and not k.startswith(head)]
    assert trunk
    for name in trunk:  # trunk weights and BN statistics unchanged
        assert torch.equal(after[name], before[name]), name
    assert any(not torch.equal(after[k], before[k]) for k in after if k.startswith(head))


def test_imprinted_head_is_each_identitys_mean_embedding(tiny_train_run, tiny_train_data):
    model, _ = load_model(tiny_train_run / "model.safetensors")
    images = FaceScapeMultiView(tiny_train_data, split="train", num_points=0)
    imprint_head(model, images, per_identity=100, seed=0, device=torch.device("cpu"))  # 100 >= views: all
    transform = default_image_transform(model)
    for label in range(images.num_identities):
        views = torch.stack([transform(images[i]) for i, r in enumerate(images.records) if r.identity == label])
        expected = torch.nn.functional.normalize(model.embed(views).embeddings.mean(0), dim=0)
        assert torch.allclose(model.margin_2d.kernel[:, label], expected, atol=1e-5)


def test_pretrained_backbone_lower_learning_rate(tiny_train_run):
    config = tiny_train_config(2, f"pretrained={tiny_train_run / 'model.safetensors'}", "backbone_lr_mult=0.25")
    model = build_model(config, 4)
    reference = weights(tiny_train_run / "model.safetensors")
    for name, tensor in model.backbone.state_dict().items():
        assert torch.equal(tensor, reference[f"backbone.{name}"])
    groups = {g["name"]: g["lr"] for g in build_optimizer(model, config).param_groups}
    assert groups["backbone"] == pytest.approx(0.25 * groups["rest"])


def test_unreadable_pretrained_file_is_a_checkpoint_error(tmp_path):
    bogus = tmp_path / "adaface.ckpt"
    bogus.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="adaface.ckpt"):
        build_model(tiny_train_config(2, f"pretrained={bogus}", "model_overrides.backbone=ir18"), 4)


# ----------------------------------------------------------------------------------------------
# Distributed (2 CPU processes, gloo)
# ----------------------------------------------------------------------------------------------

def test_ddp_two_processes_end_with_identical_weights(tiny_train_data, tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(PROJECT_ROOT)}
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
               "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
               "-m", "pose3dfr.cli", "train", "--preset", "fast", "--data", str(tiny_train_data), "--out", str(out),
               "--steps", "2", "--set", "write_rank_hashes=true", "--set", "val_split=null"]
    command += [a for item in TINY_TRAIN for a in ("--set", item)]
    result = subprocess.run(command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    hashes = [(out / "ranks" / f"rank{r}.sha256").read_text() for r in (0, 1)]
    assert hashes[0] == hashes[1]
    assert "2 process(es)" in result.stdout
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == [1, 2]  # one writer: rank 0
    model, _ = load_model(out / "model.safetensors")
    assert state_dict_digest(model) == hashes[0]


# ----------------------------------------------------------------------------------------------
# Ablation
# ----------------------------------------------------------------------------------------------

def test_variant_configs_share_schedule_and_differ_in_model():
    configs = {v: ablate_mod.variant_config(v, 1, "fast", None, TINY_TRAIN, 3) for v in ablate_mod.VARIANTS}
    assert {c.model for c in configs.values()} == set(ablate_mod.VARIANTS)
    assert {(c.steps, c.seed, c.lr, c.batch_size, c.model_overrides["backbone"]) for c in configs.values()} == {
        (3, 1, PRESETS["fast"]["lr"], 2, "mobilefacenet")}


def test_aggregate_mean_and_std_over_seeds():
    def result(value):
        bins = {"[0,30)": {"tar_at_far_1e-2": value}, "[90,+)": {"tar_at_far_1e-2": None}}
        return {"bins": bins, "overall": {"tar_at_far_1e-2": value / 2}}

    from pose3dfr.eval.seeds import ablation_markdown, aggregate

    table = aggregate({"full": [result(0.5), result(0.7)]}, [0.01])
    cell = table["rows"]["full"]["[0,30)"]["1e-2"]
    assert cell["mean"] == pytest.approx(0.6) and cell["std"] == pytest.approx(np.std([0.5, 0.7], ddof=1))
    assert table["rows"]["full"]["[90,+)"]["1e-2"]["mean"] is None
    assert table["columns"] == ["[0,30)", "[90,+)", "overall"]
    markdown = ablation_markdown(table)
    assert "60.00 ± 14.14" in markdown and "n/a" in markdown


def test_ablate_command_trains_the_four_variants_and_writes_table(tiny_train_data, tmp_path):
    out = tmp_path / "ablation"
    args = ["ablate", "--data", str(tiny_train_data), "--out", str(out), "--seeds", "1", "--steps", "1",
            "--preset", "fast", "--set", "val_split=null"] + [a for item in TINY_TRAIN for a in ("--set", item)]
    assert main(args) == 0
    table = json.loads((out / "ablation.json").read_text())
    assert list(table["rows"]) == list(ablate_mod.VARIANTS)
    assert table["columns"] == ["[0,30)", "[30,60)", "[60,90)", "[90,+)", "overall"]
    for variant in ablate_mod.VARIANTS:
        run = out / variant / "seed0"
        assert (run / "model.safetensors").is_file() and (run / "test_eval.json").is_file()
        evaluation = json.loads((run / "test_eval.json").read_text())
        cell = table["rows"][variant]["[90,+)"]["1e-2"]
        assert cell["values"] == [evaluation["bins"]["[90,+)"]["tar_at_far_1e-2"]] and cell["std"] == 0.0
    markdown = (out / "ablation.md").read_text()
    assert all(f"| {variant} |" in markdown for variant in ablate_mod.VARIANTS)
    assert "[90,+) TAR@1%" in markdown and "[90,+) TAR@0.1%" in markdown
    configs = {v: json.loads((out / v / "seed0" / "model.json").read_text())["config"] for v in ablate_mod.VARIANTS}
    assert configs["baseline-2d"]["use_3d"] is False
    assert (configs["jam"]["use_jam"], configs["jam"]["use_je"]) == (True, False)
    assert (configs["je"]["use_jam"], configs["je"]["use_je"]) == (False, True)
    assert (configs["full"]["use_jam"], configs["full"]["use_je"]) == (True, True)
    # Re-running reuses finished runs instead of training them again.
    before = (out / "full" / "seed0" / "model.safetensors").stat().st_mtime_ns
    assert main(args + ["--variants", "full"]) == 0
    assert list(json.loads((out / "ablation.json").read_text())["rows"]) == ["full"]
    assert (out / "full" / "seed0" / "model.safetensors").stat().st_mtime_ns == before


def test_attention_diagnostics_are_logged_and_kept(tiny_train_run):
    """Issue #18: gamma, attention row entropy, the embedding share it changes and each loss's gradient at the
    attention land in metrics.jsonl on every log step and in the final model's JSON."""
    rows = [json.loads(line) for line in (tiny_train_run / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "loss" in r]
    keys = {"gamma_2d", "gamma_3d", "attn_entropy_2d", "attn_entropy_3d", "attention_share", "grad_attention_2d",
            "grad_attention_3d", "grad_attention_je", "grad_norm_all"}
    assert all(keys <= set(r) for r in steps)
    assert all(0.0 <= r["attn_entropy_2d"] <= 1.0 + 1e-6 and r["grad_attention_je"] >= 0 for r in steps)
    assert steps[-1]["gamma_2d"] != 0.0  # gamma learns
    diagnostics = json.loads((tiny_train_run / "model.json").read_text())["extra"]["diagnostics"]
    assert keys <= set(diagnostics) and diagnostics["gamma_2d"] == pytest.approx(steps[-1]["gamma_2d"])


def test_frozen_3d_branch_uses_cached_features_and_stops_learning(tiny_train_data, tmp_path):
    """freeze_3d_after: the point encoder learns for the warm-up steps, then keeps its weights while the rest
    learns on the cached features (registered cells included)."""
    config = tiny_train_config(4, "checkpoint_interval=2", "freeze_3d_after=2", "val_split=null",
                               "attention_lr_mult=10", "grad_clip_mode=per_branch", "model_overrides.jam_gamma_init=0.1")
    train(config, tiny_train_data, tmp_path)
    at_freeze = weights(tmp_path / "checkpoints" / "step_00000002.safetensors")
    final = weights(tmp_path / "model.safetensors")
    encoder = [k for k in final if k.startswith("point_encoder.")]
    assert encoder and all(torch.equal(at_freeze[k], final[k]) for k in encoder)
    learning = [k for k in final if k.startswith("attention.") or k.startswith("head_3d.")]
    assert any(not torch.equal(at_freeze[k], final[k]) for k in learning)
    gamma = final["attention.gamma.2d"].item()
    assert gamma != pytest.approx(0.1, abs=1e-9)  # started at jam_gamma_init and learned
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert all({"grad_norm_2d", "grad_norm_3d"} <= set(r) for r in rows if "loss" in r)  # clipped per branch


def test_frozen_point_features_are_computed_once_per_cloud():
    """engine.point_cache: freeze() stops the point encoder learning; lookup() runs it once per cloud key."""
    from pose3dfr.engine.point_cache import FrozenPointFeatures
    from pose3dfr.models import create_model

    torch.manual_seed(0)
    model = create_model("full", backbone="mobilefacenet", num_points=64, sa1_centres=16, sa2_centres=4,
                         point_group_size=4, num_classes=2).train()
    FrozenPointFeatures.freeze(model)
    assert not model.point_encoder.training
    assert all(not p.requires_grad for p in model.point_encoder.parameters())
    cache, points = FrozenPointFeatures(), torch.randn(2, 64, 3)
    calls = []
    original = model.point_encoder.point_features_of
    model.point_encoder.point_features_of = lambda x: calls.append(len(x)) or original(x)
    first = cache.lookup(model, points, ["a/1/0", "b/1/0"])
    again = cache.lookup(model, points[[1, 0]], ["b/1/0", "a/1/0"])
    assert calls == [2] and torch.equal(again, first[[1, 0]])  # second batch entirely from the cache
    assert torch.allclose(first, original(points), atol=1e-6)
