"""The model factory's registry and named configs, and the IResNet definitions behind `ir18`/`ir50`."""

from __future__ import annotations

import pytest

from pose3dfr.errors import Pose3DFRError
from pose3dfr.models import factory, iresnet


def test_registry_names_every_backbone_and_paper_variant():
    assert {"ir18", "ir50", "mobilefacenet", "dlib_resnet", "sface"} <= set(factory.list_backbones())
    assert {"full", "jam", "je", "baseline-2d"} <= set(factory.list_model_configs())


def test_paper_variants_differ_only_in_their_switches():
    full, base = factory.model_config("full"), factory.model_config("baseline-2d")
    assert (full.use_3d, full.use_jam, full.use_je) == (True, True, True)
    assert (base.use_3d, base.use_jam, base.use_je) == (False, False, False)
    assert factory.model_config("full", je_weight=0.5).je_weight == 0.5


def test_unknown_names_raise_clearly():
    with pytest.raises((Pose3DFRError, KeyError, ValueError), match="nope"):
        factory.get_backbone("nope")
    with pytest.raises((Pose3DFRError, KeyError, ValueError), match="nope"):
        factory.model_config("nope")


def test_ir50_is_deeper_than_ir18_with_the_same_interface():
    small, big = iresnet.ir18(), iresnet.ir50()
    assert len(big.body) > len(small.body)
    for net in (small, big):
        assert (net.input_size, net.feature_channels, net.feature_size, net.embedding_dim) == (112, 512, 7, 512)


@pytest.mark.parametrize("name", ["ir18", "mobilefacenet", "dlib_resnet", "sface"])
def test_every_backbone_follows_the_backbone_contract(name):
    import torch

    from pose3dfr.models.backbones import Backbone, get_backbone

    net = get_backbone(name).eval()
    assert isinstance(net, Backbone)
    x = torch.rand(2, 3, net.input_size, net.input_size)
    with torch.no_grad():
        fmap, embedding = net(x)
    assert fmap.shape == (2, net.feature_channels, net.feature_size, net.feature_size)
    assert embedding.shape == (2, net.embedding_dim)
    assert torch.allclose(embedding, net.head(net.trunk(x)))
