"""OpenCV Zoo's SFace face recognition network (face_recognition_sface_2021dec, Apache-2.0) in PyTorch.

Network (input 112 x 112 RGB, ArcFace 5-point chip; an MXNet MobileNet-v1 trained with the SFace loss):
(255 x - 127.5) / 128, a 3x3 conv of 32 at full resolution, then 13 depthwise-separable units (3x3
depthwise + 1x1 pointwise, each conv followed by batch norm and PReLU) grouped by output size: 64 (112),
128 (56), 256 (28), 512 (14; 6 units) and 1024 (7: the trunk's feature map). Head: batch norm of the map,
dropout, flatten, linear 50176 -> 128, batch norm: the 128-D "fc1" that OpenCV's FaceRecognizerSF returns.

The weights ship as converted by `pose3dfr convert-sface` (pose3dfr.convert.sface): the int8 values,
block scales and zero points of the original ONNX file, dequantised at load exactly as ONNX's
DequantizeLinear does, so the float32 weights equal the original graph's bit for bit.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from pose3dfr.errors import CheckpointError
from pose3dfr.models.backbones import Backbone, converted_weights_file
from pose3dfr.paths import CHECKPOINTS_DIR

SFACE_WEIGHTS = CHECKPOINTS_DIR / "sface.safetensors"
# The graph's input normalisation (its Sub and Mul constants): pixel p in 0..255 becomes (p - 127.5) / 128.
PIXEL_MEAN = 127.5
PIXEL_SCALE = 0.0078125
CONV_BN_EPS = 1e-3  # epsilon of every convolution's batch norm in the graph
HEAD_BN_EPS = 2e-5  # epsilon of the head's two batch norms (bn1 and fc1)
DROPOUT = 0.4  # the graph's Dropout ratio (training only; identity in eval mode)
STEM_CHANNELS = 32
# (output channels, stride of the depthwise conv) of units conv_2 .. conv_14, one tuple per output resolution.
STAGES: tuple[tuple[tuple[int, int], ...], ...] = (
    ((64, 1),),                               # 112 x 112
    ((128, 2), (128, 1)),                     # 56 x 56
    ((256, 2), (256, 1)),                     # 28 x 28
    ((512, 2),) + ((512, 1),) * 5,            # 14 x 14
    ((1024, 2), (1024, 1)),                   # 7 x 7: the trunk's feature map
)
# Suffixes of a quantised tensor's three parts in the weights file (see pose3dfr.convert.sface).
QUANT_PARTS = ("quantized", "scales", "zero_point")


class ConvBNPReLU(nn.Module):
    """Conv (no bias) + batch norm + PReLU: the graph's Conv / BatchNormalization / PRelu triple."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=CONV_BN_EPS)
        self.prelu = nn.PReLU(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.prelu(self.bn(self.conv(x)))

    @torch.no_grad()
    def fold_batch_norm(self) -> None:
        """Fold the (eval-mode) batch norm into the conv's weight and a bias: the same function, one op fewer."""
        if not isinstance(self.bn, nn.BatchNorm2d):
            return
        scale = self.bn.weight / torch.sqrt(self.bn.running_var + self.bn.eps)  # C_out
        conv = self.conv
        fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                          groups=conv.groups, bias=True)
        fused.weight.copy_(conv.weight * scale[:, None, None, None])
        fused.bias.copy_(self.bn.bias - self.bn.running_mean * scale)
        self.conv, self.bn = fused, nn.Identity()


class SeparableUnit(nn.Module):
    """3x3 depthwise conv (stride 1 or 2) then 1x1 pointwise conv, each with batch norm and PReLU."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.dw = ConvBNPReLU(cin, cin, 3, stride, groups=cin)
        self.pw = ConvBNPReLU(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pw(self.dw(x))


class SFace(Backbone):
    """SFace's 128-D face embedding network; input B x 3 x 112 x 112 RGB in [0, 1] (OpenCV feeds the graph RGB:
    FaceRecognizerSF::feature calls blobFromImage with swapRB=true on its BGR chip), output not normalised
    (OpenCV compares unit-normalised embeddings: same person at cosine >= 0.363)."""

    input_size = 112
    template = "arcface"
    feature_channels = 1024
    feature_size = 7
    embedding_dim = 128
    # Every stride-2 convolution is 3 x 3 padded by 1, so output i is centred on input 2 i; four of them put
    # cell i of the 7 x 7 map on chip pixel 16 i (0 .. 96), half a cell up-left of an even split of the chip.
    cell_stride = 16.0
    cell_offset = 0.0
    head_affine = True  # head(): bn1, dropout, flatten, fc, batch norm

    def __init__(self, weights: str | Path | None = None) -> None:
        super().__init__()
        self.stem = ConvBNPReLU(3, STEM_CHANNELS, 3)
        stages, cin = [], STEM_CHANNELS
        for stage in STAGES:
            units = []
            for cout, stride in stage:
                units.append(SeparableUnit(cin, cout, stride))
                cin = cout
            stages.append(nn.Sequential(*units))
        self.stages = nn.ModuleList(stages)
        c, s, d = self.feature_channels, self.feature_size, self.embedding_dim
        self.bn1 = nn.BatchNorm2d(c, eps=HEAD_BN_EPS)
        self.dropout = nn.Dropout(DROPOUT)
        self.fc = nn.Linear(c * s * s, d)
        self.features = nn.BatchNorm1d(d, eps=HEAD_BN_EPS)
        if weights is not None:
            self.load_pretrained(weights)

    @classmethod
    def pretrained(cls, path: str | Path = SFACE_WEIGHTS) -> "SFace":
        """The network with OpenCV Zoo's trained weights (the shipped converted file by default), in eval mode."""
        state = load_weights(path)
        with torch.device("meta"):  # no random init of weights about to be replaced (60 ms of the fc's 6.4 M)
            model = cls()
        model.load_state_dict(state, assign=True)
        return model.eval()

    def load_pretrained(self, path: str | Path = SFACE_WEIGHTS) -> None:
        """Load converted SFace weights (safetensors) into this module; CheckpointError if they do not fit."""
        self.load_state_dict(load_weights(path))

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """[0, 1] RGB to the graph's input scaling: (255 x - 127.5) / 128, channels kept in RGB order."""
        return (x * 255.0 - PIXEL_MEAN) * PIXEL_SCALE

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        """B x 3 x 112 x 112 RGB [0, 1] -> B x 1024 x 7 x 7 (the last unit's PReLU output)."""
        h = self.stem(self.normalise(x))  # B x 32 x 112 x 112
        for stage in self.stages:
            h = stage(h)
        return h

    def head(self, fmap: torch.Tensor) -> torch.Tensor:
        """B x 1024 x 7 x 7 -> B x 128 embedding (bn1, dropout, flatten, fc, batch norm = the graph's fc1)."""
        return self.features(self.fc(self.dropout(self.bn1(fmap)).flatten(1)))

    def head_modules(self) -> list[nn.Module]:
        """The modules head() runs (trainable when training freezes only the trunk)."""
        return [self.bn1, self.dropout, self.fc, self.features]

    def head_layers(self) -> list[nn.Module]:
        """head() as a chain of layers (pose3dfr.models.attribution)."""
        return [self.bn1, self.dropout, nn.Flatten(), self.fc, self.features]

    def fuse_for_inference(self) -> None:
        """Fold every trunk batch norm into its conv (inference only: the module can no longer be trained as SFace
        was; its state dict changes). The embedding is unchanged up to float rounding (tests/test_sface.py)."""
        for module in self.modules():
            if isinstance(module, ConvBNPReLU):
                module.fold_batch_norm()

    def trunk_tail_modules(self, levels: int) -> list[nn.Module]:
        """The last `levels` resolution stages of the trunk (0..5), input end first."""
        if not 0 <= levels <= len(self.stages):
            raise ValueError(f"levels={levels}: the trunk has {len(self.stages)} stages")
        return list(self.stages[len(self.stages) - levels:])


def dequantize_blocked(quantized: torch.Tensor, scales: torch.Tensor, zero_point: torch.Tensor, axis: int,
                       block_size: int) -> torch.Tensor:
    """ONNX DequantizeLinear with blocked scales: (q - zero_point) * scale, each scale and zero point covering
    `block_size` consecutive entries along `axis` (the last block may be shorter). The difference of two 8-bit
    integers is exact in float32, so the one rounding is the product's, as in onnxruntime."""
    if quantized.dtype not in (torch.int8, torch.uint8) or not 0 <= axis < quantized.dim():
        raise CheckpointError(f"quantised tensor {quantized.dtype} {tuple(quantized.shape)}: not 8-bit integers, "
                              f"or no axis {axis}")
    n = quantized.shape[axis]
    blocks = list(quantized.shape)
    blocks[axis] = -(-n // block_size) if 0 < block_size <= n else -1  # a block longer than the axis is refused
    if list(scales.shape) != blocks or zero_point.shape != scales.shape:
        raise CheckpointError(f"quantised tensor {tuple(quantized.shape)}: scales {tuple(scales.shape)} and zero "
                              f"points {tuple(zero_point.shape)} do not fit blocks of {block_size} along axis {axis}")
    q = quantized.movedim(axis, -1).to(torch.float32)  # ... x n
    q = F.pad(q, (0, blocks[axis] * block_size - n)).unflatten(-1, (blocks[axis], block_size))  # ... x nb x block
    zero, scale = (t.movedim(axis, -1).to(torch.float32)[..., None] for t in (zero_point, scales))
    return ((q - zero) * scale).flatten(-2)[..., :n].movedim(-1, axis)


def load_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """An SFace float32 state dict from a `pose3dfr convert-sface` safetensors file, quantised tensors dequantised
    here; CheckpointError if the file is missing, unreadable or not SFace's."""
    from safetensors import SafetensorError, safe_open

    path = converted_weights_file(path, "SFace", "OpenCV Zoo's ONNX file", "pose3dfr convert-sface")
    try:
        with safe_open(str(path), framework="pt") as fh:
            stored = {key: fh.get_tensor(key) for key in fh.keys()}
            info = json.loads((fh.metadata() or {}).get("pose3dfr", "{}"))
        blocks = {key: (int(v["axis"]), int(v["block_size"])) for key, v in info.get("quantized", {}).items()}
    except (SafetensorError, OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        raise CheckpointError(f"{path.name}: unreadable SFace weights file: {exc}") from None
    with torch.device("meta"):  # names and shapes only
        model_state = SFace().state_dict()
    state = {key: stored.pop(key) for key in list(stored) if key.rsplit(".", 1)[-1] not in QUANT_PARTS}
    for key, (axis, block) in blocks.items():
        parts = [stored.pop(f"{key}.{part}", None) for part in QUANT_PARTS]
        if key not in model_state or any(p is None for p in parts):
            raise CheckpointError(f"{path.name}: quantised tensor {key!r} is not an SFace weight or lacks a part")
        values = dequantize_blocked(*parts, axis, block)
        if values.numel() != model_state[key].numel():
            raise CheckpointError(f"{path.name}: {key} holds {values.numel()} values, SFace's has "
                                  f"{model_state[key].numel()}")
        state[key] = values.reshape(model_state[key].shape)
    counters = {k: torch.zeros((), dtype=torch.long) for k in model_state if k.endswith("num_batches_tracked")}
    _check_fits(path, {**state, **counters}, model_state, unexpected=sorted(stored))
    return {**state, **counters}


def _check_fits(path: Path, state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor],
                unexpected: list[str]) -> None:
    """CheckpointError naming what is missing, extra or mis-shaped unless `state` matches `expected` exactly."""
    got = {k: (tuple(v.shape), v.dtype) for k, v in state.items()}
    want = {k: (tuple(v.shape), v.dtype) for k, v in expected.items()}
    if got != want or unexpected:
        missing = sorted(want.keys() - got.keys())
        extra = sorted(got.keys() - want.keys()) + unexpected
        wrong = sorted(k for k in want.keys() & got.keys() if want[k] != got[k])
        raise CheckpointError(f"{path.name}: not SFace weights (missing {missing[:3]}, unexpected {extra[:3]}, "
                              f"wrong shape or type {wrong[:3]})")
