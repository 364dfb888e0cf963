"""dlib's face descriptor ResNet (dlib_face_recognition_resnet_model_v1, dnn_face_recognition_ex.cpp) in PyTorch,
loaded from the safetensors that `pose3dfr convert-dlib` (pose3dfr.convert.dlib) writes from dlib's .dat.

Network (input 150 x 150 RGB): 7x7/2 conv 32 + affine + relu, 3x3/2 max pool (35 x 35), residual levels of
32 (3 units, 35 x 35), 64 (4 units, 17 x 17), 128 (3 units, 8 x 8: the trunk's feature map), 256 (3 units, 4 x 4)
and 256 (1 unit, 2 x 2), global average, fc 256 -> 128 without bias. Unit: relu(x + affine(conv(relu(affine(conv(x))))));
the first unit of a level uses a stride-2 first conv and adds a 2x2/2 average pool of x (no projection). dlib
adds tensors of different shapes by zero-padding the smaller one at the top left (channels and space).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from pose3dfr.errors import CheckpointError
from pose3dfr.models.attribution import avg_pool2_vjp, conv_vjp
from pose3dfr.models.backbones import Backbone, converted_weights_file
from pose3dfr.paths import CHECKPOINTS_DIR

DLIB_RESNET_WEIGHTS = CHECKPOINTS_DIR / "dlib_resnet.safetensors"
# dlib's input layer (input_rgb_image_sized<150>): pixel p in 0..255 becomes (p - mean) / 256.
RGB_MEANS = (122.782, 117.001, 104.298)
PIXEL_DIVISOR = 256.0
# (filters, residual units, first unit downsamples) per level, input end first (alevel4 .. alevel0).
LEVELS = ((32, 3, False), (64, 4, True), (128, 3, True), (256, 3, True), (256, 1, True))
# Levels run by trunk(); the last of them is the 128-filter level whose map the attention module uses.
TRUNK_LEVELS = 3


class Affine(nn.Module):
    """dlib's affine layer in conv mode (batch norm frozen to a per-channel scale and shift)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight[:, None, None] + self.bias[:, None, None]


def padded_add(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib's add_prev: sum of two B x C x H x W tensors, the smaller zero-padded at the end of C, H and W."""
    shape = [max(sa, sb) for sa, sb in zip(a.shape[1:], b.shape[1:])]

    def grow(t: torch.Tensor) -> torch.Tensor:
        c, h, w = t.shape[1:]
        return F.pad(t, (0, shape[2] - w, 0, shape[1] - h, 0, shape[0] - c)) if [c, h, w] != shape else t

    return grow(a) + grow(b)


class ResidualUnit(nn.Module):
    """dlib's ares / ares_down: relu(block(x) + skip(x)), skip = identity or 2x2/2 average pool."""

    def __init__(self, in_channels: int, channels: int, downsample: bool) -> None:
        super().__init__()
        stride = 2 if downsample else 1
        # dlib pads k // 2 for stride 1 and 0 otherwise.
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=stride, padding=0 if downsample else 1)
        self.affine1 = Affine(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.affine2 = Affine(channels)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.affine2(self.conv2(F.relu(self.affine1(self.conv1(x)))))
        skip = F.avg_pool2d(x, 2, 2) if self.downsample else x
        return F.relu(padded_add(y, skip))

    def vjp(self, x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        """d(<grad, unit(x)>)/dx at x, written out (pose3dfr.models.attribution): the ReLU gates of this input,
        padded_add's gradient cropped back to each operand."""
        a1 = self.affine1(self.conv1(x))
        y = self.affine2(self.conv2(F.relu(a1)))
        skip = F.avg_pool2d(x, 2, 2) if self.downsample else x
        g = grad * (padded_add(y, skip) > 0).to(grad.dtype)
        g_y = g[:, :y.shape[1], :y.shape[2], :y.shape[3]] * self.affine2.weight[:, None, None]
        g_a1 = conv_vjp(self.conv2, a1, g_y) * (a1 > 0).to(g.dtype) * self.affine1.weight[:, None, None]
        g_skip = g[:, :skip.shape[1], :skip.shape[2], :skip.shape[3]]
        g_skip = avg_pool2_vjp(x, g_skip) if self.downsample else g_skip
        return conv_vjp(self.conv1, x, g_a1) + g_skip


class DlibResNet(Backbone):
    """dlib's 128-D face descriptor network; input B x 3 x 150 x 150 RGB in [0, 1], descriptors not normalised
    (dlib compares them by Euclidean distance, same person below 0.6)."""

    input_size = 150
    template = "dlib"
    feature_channels = 128
    feature_size = 8
    embedding_dim = 128
    # Receptive-field centres of the 8 x 8 map: the unpadded stride-2 convolutions put cell i on chip pixel
    # 16 i + 25, the 2 x 2 average pools of the skip paths on 16 i + 11; the midpoint is used. (An even split
    # of the 150 px chip, 18.75 px per cell, would stretch the grid by 17%.)
    cell_stride = 16.0
    cell_offset = 18.0
    head_affine = False  # head(): ReLU residual units before the average and fc

    def __init__(self, weights: str | Path | None = None) -> None:
        super().__init__()
        self.stem_conv = nn.Conv2d(3, 32, 7, stride=2)
        self.stem_affine = Affine(32)
        stages, channels = [], 32
        for filters, units, downsample in LEVELS:
            stage = [ResidualUnit(channels if i == 0 else filters, filters, downsample and i == 0) for i in range(units)]
            stages.append(nn.Sequential(*stage))
            channels = filters
        self.stages = nn.ModuleList(stages)
        self.fc = nn.Linear(256, self.embedding_dim, bias=False)
        self.register_buffer("rgb_mean", torch.tensor(RGB_MEANS).view(1, 3, 1, 1), persistent=False)
        if weights is not None:
            self.load_pretrained(weights)

    @classmethod
    def pretrained(cls, path: str | Path = DLIB_RESNET_WEIGHTS) -> "DlibResNet":
        """The network with dlib's trained weights (the shipped converted file by default), in eval mode."""
        return cls(weights=path).eval()

    def load_pretrained(self, path: str | Path = DLIB_RESNET_WEIGHTS) -> None:
        """Load converted dlib weights (safetensors) into this module; CheckpointError if they do not fit."""
        self.load_state_dict(load_weights(path))

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """[0, 1] RGB to dlib's input scaling: (255 x - mean) / 256."""
        return (x * 255.0 - self.rgb_mean) / PIXEL_DIVISOR

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        """B x 3 x 150 x 150 in [0, 1] -> B x 128 x 8 x 8 (output of the 128-filter level)."""
        h = F.max_pool2d(F.relu(self.stem_affine(self.stem_conv(self.normalise(x)))), 3, 2)  # B x 32 x 35 x 35
        for stage in self.stages[:TRUNK_LEVELS]:
            h = stage(h)
        return h

    def head(self, fmap: torch.Tensor) -> torch.Tensor:
        """B x 128 x 8 x 8 -> B x 128 descriptor (256-filter levels, global average, fc without bias)."""
        h = fmap
        for stage in self.stages[TRUNK_LEVELS:]:
            h = stage(h)  # B x 256 x 4 x 4, then B x 256 x 2 x 2
        return self.fc(h.mean(dim=(2, 3)))

    def head_modules(self) -> list[nn.Module]:
        """The modules head() runs (trainable when training freezes only the trunk)."""
        return [*self.stages[TRUNK_LEVELS:], self.fc]

    def head_layers(self) -> list[nn.Module]:
        """head() as a chain of layers (pose3dfr.models.attribution): residual units, global average, fc."""
        return [*self.stages[TRUNK_LEVELS:], nn.AdaptiveAvgPool2d(1), nn.Flatten(), self.fc]

    def trunk_tail_modules(self, levels: int) -> list[nn.Module]:
        """The last `levels` residual levels that trunk() runs (0..3), input end last."""
        if not 0 <= levels <= TRUNK_LEVELS:
            raise ValueError(f"levels={levels}: the trunk has {TRUNK_LEVELS} residual levels")
        return list(self.stages[TRUNK_LEVELS - levels:TRUNK_LEVELS])


def load_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """A DlibResNet state dict from a safetensors file, checked against the architecture; CheckpointError if not."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = converted_weights_file(path, "DlibResNet", "dlib's .dat", "pose3dfr convert-dlib")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path.name}: unreadable safetensors file: {exc}") from None
    expected = {k: tuple(v.shape) for k, v in DlibResNet().state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state.items()}
    if got != expected:
        missing, extra = sorted(expected.keys() - got.keys()), sorted(got.keys() - expected.keys())
        wrong = sorted(k for k in expected.keys() & got.keys() if expected[k] != got[k])
        raise CheckpointError(f"{path.name}: not DlibResNet weights (missing {missing[:3]}, unexpected {extra[:3]}, "
                              f"wrong shapes {wrong[:3]})")
    return state
