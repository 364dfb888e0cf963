"""Backbones, JAM, AdaFace head, the assembled model (learning, gradients, baseline behaviour) and checkpoints."""

from __future__ import annotations

import argparse
import json
import math

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from pose3dfr.errors import CheckpointError, InvalidImageError, InvalidScanError, Pose3DFRError
from pose3dfr.losses import Pose3DFRLoss, joint_entropy, mutual_information
from pose3dfr.models import (ModelConfig, create_model, get_backbone, list_model_configs, load_adaface_checkpoint,
                             load_model, save_model)
from pose3dfr.models.attention import JointAttention
from pose3dfr.models.heads import AdaFaceHead

# A small full model: light backbone, few points, few classes.
TINY = dict(num_classes=3, num_points=256, sa1_centres=64, sa2_centres=16, point_group_size=8)


def _batch(b: int, seed: int = 0, points: int = 256):
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(b, 3, 112, 112, generator=g)
    pts = torch.rand(b, points, 3, generator=g) * torch.tensor([16.0, 18.0, 6.0]) - torch.tensor([8.0, 9.5, 3.0])
    labels = torch.arange(b) % 3
    return images, pts, labels


# ---------------- backbones ----------------
@pytest.mark.parametrize("name,dim", [("ir18", 512), ("mobilefacenet", 128)])
@pytest.mark.parametrize("batch", [1, 8])
def test_backbone_shapes(name, dim, batch):
    net = get_backbone(name).eval()
    assert (net.input_size, net.template, net.feature_channels, net.feature_size, net.embedding_dim) == \
        (112, "arcface", 512, 7, dim)
    with torch.no_grad():
        fmap, emb = net(torch.rand(batch, 3, 112, 112))
        assert torch.equal(net.head(net.trunk(torch.zeros(batch, 3, 112, 112))),
                           net(torch.zeros(batch, 3, 112, 112))[1])
    assert fmap.shape == (batch, 512, 7, 7) and emb.shape == (batch, dim)
    assert fmap.dtype == emb.dtype == torch.float32


def test_dlib_backbone_interface_when_available():
    try:
        net = get_backbone("dlib_resnet").eval()
    except Pose3DFRError:
        pytest.skip("pose3dfr.models.dlib_resnet not importable yet")
    assert (net.input_size, net.template, net.feature_size, net.embedding_dim) == (150, "dlib", 8, 128)
    with torch.no_grad():
        fmap, emb = net(torch.rand(1, 3, 150, 150))
    assert fmap.shape == (1, net.feature_channels, 8, 8) and emb.shape == (1, 128)


def test_unknown_backbone_and_config_raise():
    with pytest.raises(Pose3DFRError, match="unknown backbone"):
        get_backbone("resnet9000")
    with pytest.raises(Pose3DFRError, match="unknown model config"):
        create_model("nope")
    with pytest.raises(Pose3DFRError, match="je_variant"):
        ModelConfig(je_variant="cross_entropy")


def test_ir18_feeds_bgr_in_minus_one_to_one():
    net = get_backbone("ir18")
    x = torch.zeros(1, 3, 2, 2)
    x[:, 0] = 1.0  # pure red
    y = net.normalise(x)
    assert torch.equal(y[:, 2], torch.ones(1, 2, 2)) and torch.equal(y[:, 0], -torch.ones(1, 2, 2))


def _adaface_ir18_state() -> dict[str, torch.Tensor]:
    """Keys and shapes of AdaFace's net.py IR-18 (input_layer / body.i.res_layer / output_layer), written out."""
    state: dict[str, torch.Tensor] = {}

    def bn(prefix: str, c: int) -> None:
        for k in ("weight", "bias", "running_mean", "running_var"):
            state[f"{prefix}.{k}"] = torch.rand(c)
        state[f"{prefix}.num_batches_tracked"] = torch.tensor(0)

    state["input_layer.0.weight"] = torch.randn(64, 3, 3, 3)
    bn("input_layer.1", 64)
    state["input_layer.2.weight"] = torch.rand(64)
    unit, cin = 0, 64
    for depth in (64, 128, 256, 512):
        for i in range(2):
            p = f"body.{unit}"
            c_in = cin if i == 0 else depth
            if c_in != depth:
                state[f"{p}.shortcut_layer.0.weight"] = torch.randn(depth, c_in, 1, 1)
                bn(f"{p}.shortcut_layer.1", depth)
            bn(f"{p}.res_layer.0", c_in)
            state[f"{p}.res_layer.1.weight"] = torch.randn(depth, c_in, 3, 3)
            bn(f"{p}.res_layer.2", depth)
            state[f"{p}.res_layer.3.weight"] = torch.rand(depth)
            state[f"{p}.res_layer.4.weight"] = torch.randn(depth, depth, 3, 3)
            bn(f"{p}.res_layer.5", depth)
            unit += 1
        cin = depth
    bn("output_layer.0", 512)
    state["output_layer.3.weight"] = torch.randn(512, 512 * 7 * 7) * 0.001
    state["output_layer.3.bias"] = torch.randn(512)
    state["output_layer.4.running_mean"] = torch.zeros(512)
    state["output_layer.4.running_var"] = torch.ones(512)
    state["output_layer.4.num_batches_tracked"] = torch.tensor(0)
    return state


def test_adaface_checkpoint_loads_into_ir18(tmp_path):
    state = _adaface_ir18_state()
    ckpt = {"state_dict": {**{f"model.{k}": v for k, v in state.items()},
                           "head.kernel": torch.randn(512, 10), "head.batch_mean": torch.ones(1)},
            "epoch": 3}
    path = tmp_path / "adaface_ir18.ckpt"
    torch.save(ckpt, path)
    net = load_adaface_checkpoint(get_backbone("ir18"), path)
    loaded = net.state_dict()
    assert set(loaded) == set(state)
    assert torch.equal(loaded["body.3.res_layer.4.weight"], state["body.3.res_layer.4.weight"])


def test_adaface_checkpoint_errors(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_adaface_checkpoint(get_backbone("ir18"), tmp_path / "missing.ckpt")
    wrong = tmp_path / "wrong.ckpt"
    torch.save({"state_dict": {"model.input_layer.0.weight": torch.zeros(64, 3, 3, 3)}}, wrong)
    with pytest.raises(CheckpointError, match="wrong.ckpt"):
        load_adaface_checkpoint(get_backbone("ir18"), wrong)
    pickled = tmp_path / "lightning.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": argparse.Namespace(lr=0.1)}, pickled)
    with pytest.raises(CheckpointError, match="other than tensors"):
        load_adaface_checkpoint(get_backbone("ir18"), pickled)


def test_adaface_safetensors_loads_into_ir18(tmp_path):
    state = _adaface_ir18_state()
    path = tmp_path / "adaface_ir18.safetensors"
    save_file({f"model.{k}": v for k, v in state.items()}, str(path))
    net = load_adaface_checkpoint(get_backbone("ir18"), path)
    assert torch.equal(net.state_dict()["output_layer.3.bias"], state["output_layer.3.bias"])


# ---------------- JAM ----------------
def test_jam_with_zero_gamma_returns_input_and_rows_sum_to_one():
    jam = JointAttention(16)
    z2, z3 = torch.randn(2, 16, 7, 7), torch.randn(2, 16, 7, 7)
    j2, a2, j3, a3 = jam(z2, z3)
    assert torch.equal(j2, z2) and torch.equal(j3, z3)
    assert a2.shape == a3.shape == (2, 49, 49)
    assert torch.allclose(a2.sum(-1), torch.ones(2, 49), atol=1e-5)
    assert torch.allclose(a3.sum(-1), torch.ones(2, 49), atol=1e-5)


def test_jam_shares_query_key_but_not_values():
    jam = JointAttention(16)
    with torch.no_grad():
        for g in jam.gamma.values():
            g.fill_(1.0)
    z = torch.randn(1, 16, 7, 7)
    j2, a2, j3, a3 = jam(z, z)
    assert torch.allclose(a2, a3)  # shared Q/K: same map gives the same attention in both domains
    assert not torch.allclose(j2, j3)  # separate value projections
    unshared = JointAttention(16, shared_qk=False)
    _, b2, _, b3 = unshared(z, z)
    assert not torch.allclose(b2, b3)


def test_jam_zero_value_starts_as_identity_and_trains_value_from_the_first_step():
    """jam_zero_value: J = z at the start with gamma 1, yet V gets a gradient at once (SAGAN's start gives none)."""
    torch.manual_seed(0)
    z = torch.randn(2, 16, 7, 7, requires_grad=True)
    zero_value = JointAttention(16, gamma_init=1.0, zero_value=True)
    sagan = JointAttention(16)
    for jam in (zero_value, sagan):
        j2, _ = jam.attend(z, "2d")
        assert torch.equal(j2, z)
        (j2 * torch.randn_like(j2)).sum().backward()
    assert zero_value.value["2d"].weight.grad.abs().sum() > 0
    assert sagan.value["2d"].weight.grad.abs().sum() == 0
    assert all(g.item() == 1.0 for g in zero_value.gamma.values())


# ---------------- AdaFace head ----------------
def test_adaface_logits_match_formula():
    head = AdaFaceHead(2, 3, m=0.4, h=0.333, s=64.0).eval()
    with torch.no_grad():
        head.kernel.copy_(torch.tensor([[1.0, 0.0, -1.0], [0.0, 1.0, 0.0]]))
        head.batch_mean.fill_(20.0)
        head.batch_std.fill_(10.0)
    emb = torch.tensor([[30.0 * math.cos(0.5), 30.0 * math.sin(0.5)]])  # norm 30, angle 0.5 rad to class 0
    logits = head(emb, torch.tensor([0]))[0]
    z_hat = max(-1.0, min(1.0, 0.333 * (30.0 - 20.0) / (10.0 + 1e-3)))
    target = 64 * (math.cos(0.5 - 0.4 * z_hat) - (0.4 + 0.4 * z_hat))
    assert logits[0].item() == pytest.approx(target, rel=1e-5)
    assert logits[1].item() == pytest.approx(64 * math.cos(math.pi / 2 - 0.5), rel=1e-5)
    assert logits[2].item() == pytest.approx(64 * math.cos(math.pi - 0.5), rel=1e-5)


def test_adaface_ema_updates_only_in_training():
    head = AdaFaceHead(4, 2, t_alpha=0.01)
    emb = torch.randn(6, 4) * 5
    norms = emb.norm(dim=1)
    head.train()(emb, torch.zeros(6, dtype=torch.long))
    assert head.batch_mean.item() == pytest.approx(0.99 * 20 + 0.01 * norms.mean().item(), rel=1e-5)
    assert head.batch_std.item() == pytest.approx(0.99 * 100 + 0.01 * norms.std().item(), rel=1e-5)
    before = head.batch_mean.clone()
    head.eval()(emb, torch.zeros(6, dtype=torch.long))
    assert torch.equal(head.batch_mean, before)


# ---------------- assembled model ----------------
def test_named_configs_exist():
    assert {"full", "jam", "je", "baseline-2d", "mobilefacenet-fast"} <= set(list_model_configs())


@pytest.mark.parametrize("batch", [1, 8])
def test_full_model_output_shapes(batch):
    model = create_model("full", **TINY).eval()
    images, points, labels = _batch(batch)
    with torch.no_grad():
        out = model(images, points, labels)
        emb = model.embed(images)
        pemb = model.embed_points(points)
    assert out["attn_2d"].shape == out["attn_3d"].shape == (batch, 49, 49)
    assert out["emb_2d"].shape == out["emb_3d"].shape == (batch, 512)
    assert out["logits"].shape == (batch, 3) and Pose3DFRLoss(model.cfg)(out, labels)["loss"].dim() == 0
    assert emb.embeddings.shape == (batch, 512) and emb.heatmaps.shape == (batch, 7, 7)
    assert torch.allclose(emb.embeddings.norm(dim=1), torch.ones(batch), atol=1e-5)
    assert torch.isfinite(emb.heatmaps).all() and emb.attention.shape == (batch, 49, 49)
    assert pemb.embeddings.shape == (batch, 512) and pemb.point_attention.shape == (batch, 256)
    assert torch.isfinite(pemb.point_attention).all()  # frontal cells: every point is seen


def test_baseline_2d_has_no_3d_terms_and_rejects_bad_images():
    model = create_model("baseline-2d", backbone="mobilefacenet", num_classes=3).eval()
    images, _, labels = _batch(2)
    out = model(images, None, labels)
    assert out["attn_2d"] is None and out["attn_3d"] is None and out["emb_3d"] is None and out["logits_3d"] is None
    losses = Pose3DFRLoss(model.cfg)(out, labels)
    assert losses["loss_3d"].item() == 0 and losses["loss_je"].item() == 0
    assert torch.equal(losses["loss"], losses["loss_2d"])
    with pytest.raises(InvalidImageError, match="112"):
        model.embed(torch.rand(1, 3, 64, 64))


@pytest.mark.parametrize("config", ["baseline-2d", "jam"])
def test_embed_keeps_backbone_embedding_at_start(config):
    model = create_model(config, backbone="mobilefacenet", use_3d=False, use_je=False, num_classes=3,
                         flip_average=False).eval()
    images = _batch(2)[0]
    with torch.no_grad():
        expected = F.normalize(model.backbone(images)[1], dim=1)
        assert torch.equal(model.embed(images).embeddings, expected)


def test_flip_average_embeds_a_photo_and_its_mirror_alike():
    """ModelConfig.flip_average: the embedding is the normalised sum of the chip's and its mirror's, so a photo
    and its mirror image get the same embedding (training and the frontal teacher are unchanged)."""
    model = create_model("jam", backbone="mobilefacenet", use_3d=False, use_je=False, num_classes=3).eval()
    assert model.cfg.flip_average
    images = _batch(2)[0]
    with torch.no_grad():
        plain, mirrored = model.embed_trained(images).embeddings, model.embed_trained(images.flip(-1)).embeddings
        out = model.embed(images)
        assert torch.allclose(out.embeddings, F.normalize(plain + mirrored, dim=1), atol=1e-6)
        assert torch.allclose(model.embed(images.flip(-1)).embeddings, out.embeddings, atol=1e-5)
        assert not torch.allclose(plain, mirrored, atol=1e-3)  # the mirror is a different input here
        # the heatmap splits the averaged embedding, the same for a photo and its mirror: the same total
        assert torch.allclose(model.embed(images.flip(-1)).heatmaps.sum((1, 2)), out.heatmaps.sum((1, 2)), atol=1e-4)


def test_checkpoints_written_before_flip_average_embed_without_it(tmp_path):
    """A checkpoint whose config predates the field loads with flip_average off: its calibration still holds."""
    import json

    from pose3dfr.models.io import load_model, save_model

    model = create_model("baseline-2d", backbone="mobilefacenet", use_3d=False, use_je=False, num_classes=3)
    path = save_model(model, tmp_path / "old")
    meta_path = path.with_suffix(".json")
    meta = json.loads(meta_path.read_text())
    assert meta["config"]["flip_average"] is True
    del meta["config"]["flip_average"]
    meta_path.write_text(json.dumps(meta))
    loaded, _ = load_model(path)
    assert loaded.cfg.flip_average is False


def _grad_report(model) -> tuple[list[str], list[str]]:
    missing, nonfinite = [], []
    for name, p in model.named_parameters():
        if p.grad is None or p.grad.abs().sum() == 0:
            missing.append(name)
        elif not torch.isfinite(p.grad).all():
            nonfinite.append(name)
    return missing, nonfinite


def test_model_learns_and_every_parameter_gets_a_gradient():
    torch.manual_seed(0)
    model = create_model("mobilefacenet-fast", **TINY).train()
    objective = Pose3DFRLoss(model.cfg)
    images, points, labels = _batch(2, seed=3)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for step in range(4):
        opt.zero_grad()
        out = objective(model(images, points, labels), labels)
        out["loss"].backward()
        if step == 1:  # after one step gamma != 0, so value projections receive gradients too
            missing, nonfinite = _grad_report(model)
            assert not nonfinite
            # empty_cell only learns where a cell is empty in this batch; the separate 3D head's biases before its
            # final BatchNorm1d are constant shifts that the BatchNorm removes (zero gradient by construction)
            dead = ("empty_cell", "head_3d.layers.0.bias", "head_3d.layers.2.bias")
            assert [n for n in missing if not n.endswith(dead)] == []
        opt.step()
        losses.append(out["loss"].item())
    assert losses[-1] < losses[0]
    assert all(math.isfinite(x) for x in losses)
    assert model.attention.gamma["2d"].item() != 0


def test_je_variant_and_ablation_switches():
    images, points, labels = _batch(2)
    mi = create_model("full", backbone="mobilefacenet", **TINY).eval()  # the default regulariser is MI
    out = mi(images, points, labels)
    loss_je = Pose3DFRLoss(mi.cfg)(out, labels)["loss_je"]
    expected = -mutual_information(out["attn_2d"], out["attn_3d"], bins=16, bandwidth=1 / 32)
    assert loss_je.item() == pytest.approx(expected.item(), abs=1e-6)
    assert loss_je.item() != pytest.approx(
        joint_entropy(out["attn_2d"], out["attn_3d"], bins=16, bandwidth=1 / 32).item(), abs=1e-3)
    paper = create_model("paper", backbone="mobilefacenet", **TINY).eval()
    paper.load_state_dict(mi.state_dict(), strict=False)  # the paper shares the head: no head_3d
    out = paper(images, points, labels)
    assert Pose3DFRLoss(paper.cfg)(out, labels)["loss_je"].item() == pytest.approx(
        joint_entropy(out["attn_2d"], out["attn_3d"], bins=16, bandwidth=1 / 32).item(), abs=1e-6)
    je_only = create_model("je", backbone="mobilefacenet", **TINY)
    assert set(je_only.attention.query) == {"2d", "3d"}  # per-domain query/key without JAM
    no_je = create_model("jam", backbone="mobilefacenet", **TINY).eval()
    assert Pose3DFRLoss(no_je.cfg)(no_je(images, points, labels), labels)["loss_je"].item() == 0
    with pytest.raises(InvalidScanError, match="points"):
        no_je(images, None, labels)


# ---------------- checkpoints ----------------
def _tiny_model():
    torch.manual_seed(1)
    model = create_model("mobilefacenet-fast", **TINY)
    model.train()(*_batch(2))  # move BN / AdaFace statistics away from their initial values
    with torch.no_grad():
        model.attention.gamma["2d"].fill_(0.3)
    return model.eval()


def test_save_load_embed_identical(tmp_path):
    model = _tiny_model()
    save_model(model, tmp_path / "ckpt", extra={"epoch": 2})
    images, points, _ = _batch(2, seed=9)
    loaded, meta = load_model(tmp_path / "ckpt")
    assert meta["extra"] == {"epoch": 2} and meta["config"]["backbone"] == "mobilefacenet"
    assert not loaded.training
    with torch.no_grad():
        assert torch.equal(loaded.embed(images).embeddings, model.embed(images).embeddings)
        assert torch.equal(loaded.embed_points(points).embeddings, model.embed_points(points).embeddings)
    reference = loaded.state_dict()
    for path in (tmp_path / "ckpt.safetensors", tmp_path / "ckpt.json"):
        other = load_model(path)[0].state_dict()
        assert all(torch.equal(other[k], v) for k, v in reference.items())


def test_checkpoint_errors(tmp_path):
    model = _tiny_model()
    weights = save_model(model, tmp_path / "ckpt")
    data = weights.read_bytes()
    with pytest.raises(CheckpointError, match="not found"):
        load_model(tmp_path / "other")
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="ckpt.safetensors"):
        load_model(weights)
    with pytest.raises(CheckpointError, match="safetensors"):
        load_model(weights, verify=False)  # truncated file caught by the reader too
    weights.write_bytes(data)
    meta_path = tmp_path / "ckpt.json"
    meta = json.loads(meta_path.read_text())
    meta["config"]["num_classes"] = 7
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="do not match"):
        load_model(tmp_path / "ckpt")
    meta_path.write_text("{not json")
    with pytest.raises(CheckpointError, match="ckpt.json"):
        load_model(tmp_path / "ckpt")


def test_attention_removed_is_gamma_zero_and_restores_it():
    """JointAttention.removed(): inside, the model embeds as with gamma = 0 (J = z); after, gamma is back."""
    torch.manual_seed(0)
    model = create_model("full", backbone="mobilefacenet", jam_gamma_init=0.5, **TINY).eval()
    images, _, _ = _batch(2)
    with_attention = model.embed(images).embeddings
    with model.attention.removed():
        removed = model.embed(images).embeddings
        assert all(g.item() == 0.0 for g in model.attention.gamma.values())
    assert all(g.item() == 0.5 for g in model.attention.gamma.values())
    def plain_of(x):
        return torch.nn.functional.normalize(model.backbone.head(model.backbone.trunk(x)), dim=1)

    plain = torch.nn.functional.normalize(plain_of(images) + plain_of(images.flip(-1)), dim=1)  # flip_average
    assert torch.allclose(removed, plain, atol=1e-6) and not torch.allclose(with_attention, removed, atol=1e-4)
