"""The heatmap as an attribution (pose3dfr.models.attribution): the written-out vector-Jacobian products equal
autograd's, the shares split the embedding as documented, and the cells sit where their receptive fields are."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pose3dfr.models import attribution, create_model

BACKBONES = ("mobilefacenet", "ir18", "sface", "dlib_resnet")
# A model whose attention changes the embedding: gamma away from 0 and a random (not zero) value convolution.
MIXING = dict(use_3d=False, use_je=False, num_classes=3, jam_gamma_init=0.7, jam_zero_value=False, flip_average=False)


def _random_statistics(model: torch.nn.Module) -> torch.nn.Module:
    """Batch norms with non-trivial running statistics (so their scales matter), in eval mode."""
    torch.manual_seed(0)
    for module in model.modules():
        if isinstance(module, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            module.running_var.uniform_(0.5, 2.0)
            module.running_mean.normal_()
    return model.eval()


def _images(model, batch: int = 2) -> torch.Tensor:
    size = model.backbone.input_size
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module", params=BACKBONES)
def attention_model(request):
    return _random_statistics(create_model("jam", backbone=request.param, **MIXING))


def test_head_layers_run_the_head_and_their_vjp_is_autograds(attention_model):
    backbone = attention_model.backbone
    fmap = torch.randn(2, backbone.feature_channels, backbone.feature_size, backbone.feature_size).relu()
    with torch.no_grad():
        assert torch.allclose(attribution.run_layers(backbone.head_layers(), fmap), backbone.head(fmap), atol=1e-5)
    v = torch.randn(2, backbone.embedding_dim)
    x = fmap.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad((backbone.head(x) * v).sum(), x)
    with torch.inference_mode():  # written out: no autograd needed
        got = attribution.chain_vjp(backbone.head_layers(), fmap, v)
    assert torch.allclose(got, expected, atol=1e-5 * float(expected.abs().max()))


def test_shares_are_integrated_gradients_with_the_attention_held(attention_model):
    """The heatmap equals autograd's integrated gradients of <e, e>/|e|^2 from the grey chip's map (midpoint
    rule, one point for an affine head), the attention A held at the chip's own."""
    model = attention_model
    images = _images(model)
    with torch.no_grad():
        z = model.backbone.trunk(images)
        attn = model.attention.attention(z, "2d")
        reference = model.backbone.trunk(torch.full_like(images[:1], attribution.REFERENCE_FILL))
        raw = model.backbone.head(model.attention.attend(z, "2d")[0])
        heat = model.embed(images).heatmaps
    steps = attribution.path_steps(model.backbone)
    v = attribution.share_direction(raw)
    total = torch.zeros_like(z)
    for alpha in (torch.arange(steps) + 0.5) / steps:
        point = (reference + alpha * (z - reference)).requires_grad_(True)
        values = model.attention.value["2d"](point).flatten(2)
        mixed = point + model.attention.gamma_of("2d") * torch.bmm(values, attn.transpose(1, 2)).view_as(point)
        (grad,) = torch.autograd.grad((model.backbone.head(mixed) * v).sum(), point)
        total = total + grad / steps
    expected = (total * (z - reference)).sum(1)
    assert heat.shape == expected.shape == (2, model.backbone.feature_size, model.backbone.feature_size)
    assert torch.allclose(heat, expected, atol=1e-4 * float(expected.abs().max()))


@pytest.mark.parametrize("backbone", ["sface", "mobilefacenet"])
def test_affine_heads_split_the_embedding_exactly(backbone):
    """Affine head: the shares add up to 1 minus the blank chip's share <e_0, e>/|e|^2 (module docstring)."""
    model = _random_statistics(create_model("jam", backbone=backbone, **MIXING))
    images = _images(model, 3)
    with torch.no_grad():
        out = model.embed(images)
        z = model.backbone.trunk(images)
        attn = model.attention.attention(z, "2d")
        raw = model.backbone.head(model.attention.attend(z, "2d")[0])
        reference = model.backbone.trunk(torch.full_like(images[:1], attribution.REFERENCE_FILL)).expand_as(z)
        path = attribution.AttentionPath(attn, model.attention.gamma_of("2d"), model.attention.value["2d"])
        blank = model.backbone.head(path.mix(reference))  # e_0: the blank map through the same head and attention
    blank_share = (blank * raw).sum(1) / (raw * raw).sum(1)
    assert torch.allclose(out.heatmaps.sum((1, 2)), 1.0 - blank_share, atol=1e-4)


def test_mirror_average_shares_add_up_as_documented():
    """With flip_average the heatmap splits u = e1/|e1| + e2/|e2| (chip and mirror): its total is 1 minus the
    blank chip's share of u, each pass's blank embedding e0_k weighted as its pass is."""
    model = _random_statistics(create_model("jam", backbone="sface", **{**MIXING, "flip_average": True}))
    images = _images(model, 2)
    with torch.no_grad():
        out = model.embed(images)
        reference = model.backbone.trunk(torch.full_like(images[:1], attribution.REFERENCE_FILL))
        u, blank = 0, 0
        for x in (images, images.flip(-1)):
            z = model.backbone.trunk(x)
            attn = model.attention.attention(z, "2d")
            raw = model.backbone.head(model.attention.attend(z, "2d")[0])
            path = attribution.AttentionPath(attn, model.attention.gamma_of("2d"), model.attention.value["2d"])
            norm = raw.norm(dim=1, keepdim=True)
            u, blank = u + raw / norm, blank + model.backbone.head(path.mix(reference.expand_as(z))) / norm
    expected = 1.0 - (blank * u).sum(1) / (u * u).sum(1)
    assert torch.allclose(out.heatmaps.sum((1, 2)), expected, atol=1e-4)
    assert torch.allclose(out.embeddings, F.normalize(u, dim=1), atol=1e-5)


def test_without_attention_the_shares_are_the_head_split():
    """No attention module: share_j = <M_j (z_j - z0_j), e> / |e|^2, checked by zeroing one cell's difference."""
    model = _random_statistics(create_model("baseline-2d", backbone="ir18", num_classes=3, flip_average=False))
    images = _images(model, 1)
    with torch.no_grad():
        heat = model.embed(images).heatmaps[0]
        z = model.backbone.trunk(images)
        reference = model.backbone.trunk(torch.full_like(images, attribution.REFERENCE_FILL))
        raw = model.backbone.head(z)
        kept = z.clone()
        kept[:, :, 3, 4] = reference[:, :, 3, 4]  # cell (3, 4) as the blank chip has it
        change = raw - model.backbone.head(kept)
    assert float((change * raw).sum() / (raw * raw).sum()) == pytest.approx(float(heat[3, 4]), rel=1e-3, abs=1e-6)


def test_cell_grids_follow_the_receptive_fields():
    sface = attribution.cell_grid(create_model("baseline-2d", backbone="sface", num_classes=3).backbone)
    assert sface.centres.tolist() == [0, 16, 32, 48, 64, 80, 96]  # 3 x 3 stride-2 convolutions padded by 1
    line = sface.pixel_cells()
    assert line[0] == 0 and line[8] == 1 and line[111] == 6 and len(line) == 112
    mask = sface.cell_mask()
    assert mask.shape == (112, 112) and set(np.unique(mask)) == set(range(49))
    dlib = attribution.cell_grid(create_model("baseline-2d", backbone="dlib_resnet", num_classes=3).backbone)
    assert dlib.centres[0] == 18 and dlib.centres[-1] == 130
    assert np.allclose(dlib.mirror_weights().sum(1), 1.0)  # each mirror cell's share kept whole
    assert np.argmax(dlib.mirror_weights(), axis=1).tolist() == list(range(7, -1, -1))  # 8 cells: nearly exact
    shares = torch.arange(49, dtype=torch.float32).view(1, 7, 7)
    assert float(attribution.unmirror(shares, sface).sum()) == pytest.approx(float(shares.sum()))


def test_attention_statistics_name_the_sink():
    attention = torch.full((1, 4, 4), 0.1)
    attention[0, :, 2] = 0.7  # every row looks at cell 2
    stats = attribution.attention_statistics(attention)
    assert int(stats.sink[0]) == 2 and float(stats.sink_share[0]) == pytest.approx(0.7)
    assert torch.allclose(stats.received.sum(1), torch.ones(1))
    uniform = attribution.attention_statistics(torch.full((1, 4, 4), 0.25))
    assert float(uniform.row_entropy[0]) == pytest.approx(1.0) and float(stats.row_entropy[0]) < 1.0


def test_point_heat_is_the_share_of_each_points_cell():
    """embed_points: each point carries its cell's share of the 3D embedding; an unseen point is NaN."""
    model = create_model("full", backbone="mobilefacenet", num_classes=3, num_points=64, sa1_centres=16,
                         sa2_centres=8, point_group_size=8).eval()
    points = torch.randn(1, 64, 3) * 4
    cells = torch.randint(0, 49, (1, 64))
    cells[0, :5] = -1
    with torch.no_grad():
        out = model.embed_points(points, cells)
        again = model.embed_points(points, cells)
    heat = out.point_attention[0]
    assert torch.isnan(heat[:5]).all() and torch.isfinite(heat[5:]).all()
    same_cell = cells[0] == cells[0, 5]
    assert torch.allclose(heat[same_cell], heat[5].expand(int(same_cell.sum())))
    assert torch.equal(heat[5:], again.point_attention[0, 5:])
    assert torch.allclose(out.embeddings.norm(dim=1), torch.ones(1), atol=1e-5)
    assert F.normalize(out.embeddings, dim=1).shape == (1, model.backbone.embedding_dim)


def test_the_blank_chips_map_is_computed_once_and_follows_the_weights(monkeypatch):
    """Under inference mode the reference map (a whole trunk pass) is reused across calls, and recomputed once the
    trunk's weights change in place (an optimiser step, load_state_dict), so heatmaps never use stale weights."""
    model = _random_statistics(create_model("baseline-2d", backbone="mobilefacenet", num_classes=3,
                                            flip_average=False)).eval()
    chips = torch.rand(2, 3, 112, 112)
    calls = []
    trunk = model.backbone.trunk
    monkeypatch.setattr(model.backbone, "trunk", lambda x: calls.append(x.shape[0]) or trunk(x))
    with torch.inference_mode():
        first = model.embed(chips).heatmaps
        again = model.embed(chips).heatmaps
    assert calls == [2, 1, 2]  # chips, blank chip, chips: the blank chip's map came from the cache the second time
    torch.testing.assert_close(first, again)
    with torch.no_grad():
        next(model.backbone.parameters()).mul_(0.5)  # an in-place weight change
    with torch.inference_mode():
        changed = model.embed(chips).heatmaps
        fresh = model.heatmaps(chips)
    assert calls[3:] == [2, 1, 2]  # the changed weights' blank map was computed again ...
    torch.testing.assert_close(changed, fresh)  # ... and it is the one a fresh computation gives
