"""IResNet (IR-18 / IR-50) with AdaFace's module names, so AdaFace checkpoints load without renaming.

Layout follows AdaFace's net.py (mk-minchul/AdaFace): `input_layer` (conv3x3 + BN + PReLU),
`body` (BasicBlockIR units with `shortcut_layer` / `res_layer`), `output_layer`
(BN2d, Dropout, Flatten, Linear(512*7*7, 512), BN1d without affine). AdaFace feeds BGR images
scaled to [-1, 1]; `trunk` does that conversion from the project's RGB [0, 1] tensors.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
from torch import nn

from pose3dfr.errors import CheckpointError
from pose3dfr.models.backbones import Backbone

# Units per stage (64, 128, 256, 512 channels), as AdaFace's get_blocks.
_STAGE_UNITS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 14, 3), 100: (3, 13, 30, 3)}
_STAGE_CHANNELS = (64, 128, 256, 512)


class Flatten(nn.Module):
    """B x C x H x W -> B x (C H W) (a module so output_layer indices match AdaFace's)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.size(0), -1)

    def vjp(self, x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        """The gradient reshaped back to the input's shape (pose3dfr.models.attribution)."""
        return grad.reshape(x.shape)


class BasicBlockIR(nn.Module):
    """Improved residual unit: BN-conv-BN-PReLU-conv(stride)-BN plus an identity/projection shortcut."""

    def __init__(self, in_channel: int, depth: int, stride: int) -> None:
        super().__init__()
        if in_channel == depth:
            self.shortcut_layer: nn.Module = nn.MaxPool2d(1, stride)
        else:
            self.shortcut_layer = nn.Sequential(nn.Conv2d(in_channel, depth, (1, 1), stride, bias=False),
                                                nn.BatchNorm2d(depth))
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(in_channel),
            nn.Conv2d(in_channel, depth, (3, 3), (1, 1), 1, bias=False),
            nn.BatchNorm2d(depth),
            nn.PReLU(depth),
            nn.Conv2d(depth, depth, (3, 3), stride, 1, bias=False),
            nn.BatchNorm2d(depth),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


class IResNet(Backbone):
    """IResNet backbone for 112 x 112 ArcFace-aligned chips; fmap 512 x 7 x 7, embedding 512."""

    input_size = 112
    template = "arcface"
    feature_channels = 512
    feature_size = 7
    embedding_dim = 512
    # Stride-2 units (3 x 3 convolutions padded by 1, 1 x 1 shortcuts) centre output i on input 2 i: cell i of
    # the 7 x 7 map sits on chip pixel 16 i.
    cell_stride = 16.0
    cell_offset = 0.0
    head_affine = True  # head(): batch norm, dropout, flatten, linear, batch norm

    def __init__(self, num_layers: int = 18, bgr: bool = True, dropout: float = 0.4) -> None:
        super().__init__()
        if num_layers not in _STAGE_UNITS:
            raise ValueError(f"IResNet depth {num_layers} not supported; choose from {sorted(_STAGE_UNITS)}")
        self.num_layers = num_layers
        self.bgr = bgr  # AdaFace weights were trained on BGR input
        self.input_layer = nn.Sequential(nn.Conv2d(3, 64, (3, 3), 1, 1, bias=False), nn.BatchNorm2d(64),
                                         nn.PReLU(64))
        units: list[nn.Module] = []
        in_channel = 64
        for depth, count in zip(_STAGE_CHANNELS, _STAGE_UNITS[num_layers]):
            units.append(BasicBlockIR(in_channel, depth, 2))
            units.extend(BasicBlockIR(depth, depth, 1) for _ in range(count - 1))
            in_channel = depth
        self.body = nn.Sequential(*units)
        c, s, d = self.feature_channels, self.feature_size, self.embedding_dim
        self.output_layer = nn.Sequential(nn.BatchNorm2d(c), nn.Dropout(dropout), Flatten(),
                                          nn.Linear(c * s * s, d), nn.BatchNorm1d(d, affine=False))
        _init_weights(self)

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """RGB [0, 1] -> AdaFace input: BGR (if self.bgr) scaled to [-1, 1]."""
        if self.bgr:
            x = x.flip(1)
        return (x - 0.5) / 0.5

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        """B x 3 x 112 x 112 RGB [0, 1] -> B x 512 x 7 x 7 feature map (last IR stage)."""
        return self.body(self.input_layer(self.normalise(x)))

    def head(self, fmap: torch.Tensor) -> torch.Tensor:
        """B x 512 x 7 x 7 -> B x 512 embedding (not normalised; its norm drives AdaFace's margin)."""
        return self.output_layer(fmap)

    def head_modules(self) -> list[nn.Module]:
        """The modules head() runs (trainable when training freezes only the trunk)."""
        return [self.output_layer]

    def head_layers(self) -> list[nn.Module]:
        """head() as a chain of layers (pose3dfr.models.attribution)."""
        return [self.output_layer]


def _init_weights(module: nn.Module) -> None:
    """Kaiming-normal convs/linears, unit BN, as AdaFace's initialize_weights."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def ir18(**kw) -> IResNet:
    """IR-18 (the paper's 2D branch)."""
    return IResNet(18, **kw)


def ir50(**kw) -> IResNet:
    """IR-50 (AdaFace's most used public checkpoint size)."""
    return IResNet(50, **kw)


def adaface_state_dict(checkpoint: dict) -> dict[str, torch.Tensor]:
    """The backbone part of an AdaFace Lightning checkpoint: `state_dict` keys starting `model.`, prefix removed."""
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise CheckpointError("AdaFace checkpoint holds no state_dict")
    out = {k[len("model."):]: v for k, v in state.items() if k.startswith("model.")}
    if not out:
        raise CheckpointError("AdaFace checkpoint has no keys starting with 'model.'")
    return out


def _read_checkpoint(path: Path) -> dict:
    """A checkpoint's top-level dict: .safetensors read as tensors, anything else via torch.load(weights_only=True)."""
    if not path.is_file():
        raise CheckpointError(f"{path}: AdaFace checkpoint not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return {"state_dict": load_file(str(path))}
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{path}: holds objects other than tensors, which weights_only loading refuses ({str(exc)[:200]}); "
            "in a trusted environment save its ['state_dict'] alone (torch.save or safetensors) and load that"
        ) from None
    except Exception as exc:  # corrupt zip, truncated file, bad safetensors header
        raise CheckpointError(f"{path}: cannot read AdaFace checkpoint ({type(exc).__name__}: {exc})") from None


def load_adaface_checkpoint(backbone: IResNet, path: str | Path) -> IResNet:
    """Load an AdaFace checkpoint (.ckpt/.pt via weights_only torch.load, or .safetensors) into `backbone`, strictly.

    Keys are taken from `state_dict` entries starting with `model.` (Lightning layout), prefix removed.
    """
    path = Path(path)
    checkpoint = _read_checkpoint(path)
    try:
        state = adaface_state_dict(checkpoint)
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    try:
        backbone.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: does not match {type(backbone).__name__}-{backbone.num_layers}: "
                              f"{str(exc)[:500]}") from None
    return backbone
