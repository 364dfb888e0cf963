"""The 2D backbone contract and its registry: `Backbone` (trunk/head/forward) and `get_backbone(name)`.

Every backbone maps B x 3 x S x S RGB in [0, 1] to a feature map (`trunk`, where the joint attention
attaches) and the map to an embedding (`head`). Backbones are registered by import string, so optional
ones (dlib_resnet, sface) are imported only on use; the registry lives here, below the assembled model, so
`pose3dfr.models.pose3dfr` and `pose3dfr.models.factory` never import each other.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pose3dfr.errors import CheckpointError, Pose3DFRError

BACKBONES: dict[str, str] = {
    "ir18": "pose3dfr.models.iresnet:ir18",
    "ir50": "pose3dfr.models.iresnet:ir50",
    "mobilefacenet": "pose3dfr.models.mobilefacenet:mobilefacenet",
    "dlib_resnet": "pose3dfr.models.dlib_resnet:DlibResNet",
    "sface": "pose3dfr.models.sface:SFace",
}


class Backbone(nn.Module):
    """Base class of the 2D backbones: subclasses set the class attributes and implement `trunk`/`head`."""

    input_size: int  # side S of the square aligned chip
    template: str  # alignment template of the chip ("arcface" or "dlib")
    feature_channels: int  # C of the trunk's feature map
    feature_size: int  # H_F = W_F of the trunk's feature map
    embedding_dim: int  # D of the head's embedding
    # Where the map's cells sit on the chip (pose3dfr.models.attribution.CellGrid): cell i is centred on pixel
    # cell_offset + cell_stride * i, the centre of its receptive field. None: the chip split evenly.
    cell_stride: float | None = None
    cell_offset: float = 0.0
    # head() is affine in the map: the heatmap's attribution is exact with one point (models/attribution.py).
    head_affine: bool = False

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        """B x 3 x S x S RGB [0, 1] -> B x C x H_F x W_F feature map."""
        raise NotImplementedError

    def head(self, fmap: torch.Tensor) -> torch.Tensor:
        """B x C x H_F x W_F -> B x D embedding (not normalised)."""
        raise NotImplementedError

    def head_modules(self) -> list[nn.Module]:
        """The modules `head` runs (trainable when training freezes only the trunk)."""
        raise NotImplementedError

    def head_layers(self) -> list[nn.Module]:
        """`head` as a chain of layers, run in order (pose3dfr.models.attribution differentiates it for the
        heatmap: each layer a type attribution.layer_vjp knows, or a module with its own `vjp`)."""
        raise NotImplementedError(f"{type(self).__name__} does not list its head's layers")

    def trunk_tail_modules(self, levels: int) -> list[nn.Module]:
        """The last `levels` stages of the trunk (trainable with TrainConfig.trainable_trunk_levels)."""
        if levels == 0:
            return []
        raise NotImplementedError(f"{type(self).__name__} does not split its trunk into levels")

    def fuse_for_inference(self) -> None:
        """Make inference cheaper in place without changing the function (e.g. fold batch norms); a module fused so
        is for inference only. Backbones with nothing to fuse keep this no-op."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(feature map, embedding) of a batch of chips."""
        fmap = self.trunk(x)
        return fmap, self.head(fmap)


def converted_weights_file(path: str | Path, network: str, source: str, command: str) -> Path:
    """`path` as a Path if it names an existing .safetensors file, else CheckpointError saying how `command` makes one
    from `source` (a pretrained network's weights are converted by the CLI, never downloaded)."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise CheckpointError(f"{path.name}: {network} weights must be a .safetensors file "
                              f"(convert {source} with `{command}`)")
    if not path.is_file():
        raise CheckpointError(f"{path}: no such weights file (run `{command} --out {path}`)")
    return path


def list_backbones() -> list[str]:
    """Names get_backbone accepts."""
    return sorted(BACKBONES)


def get_backbone(name: str, **kw: Any) -> Backbone:
    """Build a backbone by name (see BACKBONES); keyword arguments go to its constructor."""
    try:
        target = BACKBONES[name]
    except KeyError:
        raise Pose3DFRError(f"unknown backbone {name!r}; choose from {list_backbones()}") from None
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise Pose3DFRError(f"backbone {name!r} is not available ({exc})") from None
    return getattr(module, attr)(**kw)
