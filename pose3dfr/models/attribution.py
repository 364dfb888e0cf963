"""Where an embedding comes from: its split over the cells of the trunk's map (the heatmap every model draws),
which chip pixels each cell stands for, and the raw attention statistics for researchers.

The joint attention J = z + gamma (W_v z + b_v) A^T is affine in the map z for the attention A it computed, and
the heads of the 112 px backbones are affine in J (SFace, IResNet: batch norm, flatten, linear, batch norm;
MobileFaceNet: a depthwise 7 x 7 convolution, batch norm, linear, batch norm). So, measured from the map z_0 of a
blank grey chip (REFERENCE_FILL) and with A held at its value, the embedding of a chip splits exactly:

    e = e_0 + sum_j c_j,     c_j = M_j (z_j - z_0j)      (M_j: the head's linear map from cell j; e_0 the blank
                                                          chip's map through the same head and attention)

and the heatmap is each cell's share of the embedding along the embedding's own direction:

    share_j = <c_j, e> / |e|^2,        sum_j share_j = 1 - <e_0, e> / |e|^2

share_j = 0.1: cell j's features (what they hold beyond a blank chip's) supply a tenth of the embedding's length;
a negative share pulls the embedding away from where it points; the rest, <e_0, e> / |e|^2, is what a blank
chip would give anyway. dlib's head (ReLU residual units before its average and linear layer) is only piecewise
affine: there c_j are integrated gradients along the straight line from z_0 (INTEGRATION_STEPS points), whose
sum approximates e - e_0. With a mirror average (ModelConfig.flip_average) e is the sum of the two unit
embeddings and the mirror image's shares are moved back onto the chip's cells (`unmirror`). The 3D branch's
shares (Pose3DFR.embed_points) are the same quantity measured from an all-zero map (no blank-scan analogue).
Each integration point costs one vector-Jacobian product of the head, written out per layer type
(`chain_vjp`), so the heatmap runs under torch.inference_mode and exports to ONNX.

The raw attention is kept for researchers (`attention_statistics`): the attention each cell receives (column
mean of the row-stochastic A), the sink (the cell receiving most) and its share, and the rows' entropy. It is
not a map of the face: trained models put most of every row on one low-activation cell whatever the face (an
attention sink, docs/attention.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

# Shares below this |e|^2 are not computed (a zero embedding has no direction); the heatmap is 0 there.
MIN_SQUARED_NORM = 1e-12
# The reference chip the 2D shares are measured from: uniform grey, the zero of SFace's, IResNet's and
# MobileFaceNet's input normalisation and within 25/255 of dlib's channel means. Measured (deletion test, 12
# renders and 2 photos): ranks cells better than a zero map for SFace, the dlib-based default and dlib alike.
REFERENCE_FILL = 0.5
# Points of the integration path for a head that is not affine (dlib's ReLU units). Measured (deletion AUC,
# dlib-pretrained, 14 chips): 1 point 0.062, 4 points 0.076, 16 points 0.075 (random cells 0.072).
INTEGRATION_STEPS = 4


# ----------------------------------------------------------------------------------------------
# Cells in chip pixels
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CellGrid:
    """Where the cells of a trunk's H_F x H_F map sit on the S x S chip: cell i (row or column) is centred on
    chip pixel offset + stride * i (pixel centres at integer coordinates)."""

    size: int  # S, the chip side (px)
    cells: int  # H_F = W_F
    stride: float  # px between neighbouring cell centres
    offset: float  # px of cell 0's centre

    @property
    def centres(self) -> np.ndarray:
        """H_F float64 pixel coordinates of the cell centres (same for rows and columns)."""
        return self.offset + self.stride * np.arange(self.cells, dtype=np.float64)

    def pixel_cells(self) -> np.ndarray:
        """S int64: the cell whose centre is nearest to each pixel row (or column); edge pixels go to the edge
        cells, so every pixel belongs to exactly one cell."""
        position = (np.arange(self.size, dtype=np.float64) - self.offset) / self.stride
        return np.clip(np.floor(position + 0.5), 0, self.cells - 1).astype(np.int64)

    def cell_mask(self) -> np.ndarray:
        """S x S int64: flat cell index row * H_F + col of every chip pixel (nearest cell centre)."""
        line = self.pixel_cells()
        return line[:, None] * self.cells + line[None, :]

    def mirror_weights(self) -> np.ndarray:
        """H_F x H_F float32 M: a row of shares of the mirror image's map, times M, is on the chip's columns.
        Mirror cell c sits at chip pixel S - 1 - centre_c; its share is split linearly between the two chip
        cells around it (the edge cell beyond the last centre), so the total is kept."""
        position = np.clip((self.size - 1 - self.centres - self.offset) / self.stride, 0, self.cells - 1)
        low = np.floor(position).astype(np.int64)
        high = np.minimum(low + 1, self.cells - 1)
        weights = np.zeros((self.cells, self.cells), np.float64)
        frac = position - low
        np.add.at(weights, (np.arange(self.cells), low), 1.0 - frac)
        np.add.at(weights, (np.arange(self.cells), high), frac)
        return weights.astype(np.float32)


def cell_grid(backbone: nn.Module) -> CellGrid:
    """The CellGrid of a backbone: its declared cell_stride / cell_offset (receptive-field centres), or the
    chip split evenly when it declares none."""
    size, cells = int(backbone.input_size), int(backbone.feature_size)
    stride = getattr(backbone, "cell_stride", None)
    if stride is None:
        stride = size / cells
        return CellGrid(size, cells, stride, (stride - 1.0) / 2.0)
    return CellGrid(size, cells, float(stride), float(backbone.cell_offset))


def unmirror(shares: torch.Tensor, grid: CellGrid) -> torch.Tensor:
    """B x H_F x W_F shares of the mirror image's map -> the same shares on the chip's cells (sum kept)."""
    weights = torch.as_tensor(grid.mirror_weights(), dtype=shares.dtype, device=shares.device)  # W x W
    return torch.matmul(shares, weights)  # B x H x W: column c of the mirror image spread over the chip's


# ----------------------------------------------------------------------------------------------
# Vector-Jacobian products of heads (reverse mode written out, so no autograd is needed)
# ----------------------------------------------------------------------------------------------

def _channel_view(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A per-channel vector shaped to broadcast over dim 1 of `like` (B x C or B x C x H x W)."""
    return t.view(1, -1, *([1] * (like.dim() - 2)))


def conv_vjp(conv: nn.Conv2d, x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """d(<grad, conv(x)>)/dx for a Conv2d (bias-free part): a transposed convolution sized back to x."""
    stride, padding, dilation = conv.stride, conv.padding, conv.dilation
    extra = []
    for axis in (0, 1):
        k = conv.weight.shape[2 + axis]
        produced = (grad.shape[2 + axis] - 1) * stride[axis] - 2 * padding[axis] + dilation[axis] * (k - 1) + 1
        extra.append(x.shape[2 + axis] - produced)  # input rows/cols the convolution never read
    return F.conv_transpose2d(grad, conv.weight, None, stride, padding, tuple(extra), conv.groups, dilation)


def avg_pool2_vjp(x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """VJP of a 2 x 2 / 2 average pool (no padding): each output's gradient spread over its 4 inputs."""
    spread = grad.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3) * 0.25
    return F.pad(spread, (0, x.shape[3] - spread.shape[3], 0, x.shape[2] - spread.shape[2]))


def layer_vjp(layer: nn.Module, x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """d(<grad, layer(x)>)/dx of one head layer at input x (eval mode: batch norms use running statistics).
    A module with its own `vjp(x, grad)` method (a composite such as dlib's residual unit) is asked first."""
    if hasattr(layer, "vjp"):
        return layer.vjp(x, grad)
    if isinstance(layer, (nn.Dropout, nn.Identity)):
        return grad
    if isinstance(layer, nn.Flatten):
        return grad.reshape(x.shape)
    if isinstance(layer, (nn.BatchNorm1d, nn.BatchNorm2d)):
        scale = torch.rsqrt(layer.running_var + layer.eps)
        if layer.weight is not None:
            scale = scale * layer.weight
        return grad * _channel_view(scale, grad)
    if isinstance(layer, nn.Linear):
        return grad @ layer.weight
    if isinstance(layer, nn.Conv2d):
        return conv_vjp(layer, x, grad)
    if isinstance(layer, nn.PReLU):
        slope = layer.weight if layer.weight.numel() == 1 else _channel_view(layer.weight, x)
        return grad * torch.where(x > 0, torch.ones_like(x), slope.expand_as(x))
    if isinstance(layer, nn.ReLU):
        return grad * (x > 0).to(grad.dtype)
    if isinstance(layer, nn.AdaptiveAvgPool2d) and layer.output_size in (1, (1, 1)):
        return grad.expand(x.shape) / (x.shape[2] * x.shape[3])
    raise NotImplementedError(f"no vector-Jacobian product for head layer {type(layer).__name__}")


def expand_layers(layers: Sequence[nn.Module]) -> list[nn.Module]:
    """Layers in the order they run, nn.Sequential containers opened."""
    out: list[nn.Module] = []
    for layer in layers:
        out.extend(expand_layers(list(layer)) if isinstance(layer, nn.Sequential) else [layer])
    return out


def run_layers(layers: Sequence[nn.Module], x: torch.Tensor) -> torch.Tensor:
    """The head as a chain: what `chain_vjp` differentiates (equals the backbone's head(x))."""
    for layer in expand_layers(layers):
        x = layer(x)
    return x


def chain_vjp(layers: Sequence[nn.Module], x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """(d e / d x)^T v for e = run_layers(layers, x): B x D vectors v -> B x (shape of x)."""
    layers = expand_layers(layers)
    inputs = []
    for layer in layers:
        inputs.append(x)
        x = layer(x)
    grad = v
    for layer, inp in zip(reversed(layers), reversed(inputs)):
        grad = layer_vjp(layer, inp, grad)
    return grad


# ----------------------------------------------------------------------------------------------
# Shares of the embedding per cell
# ----------------------------------------------------------------------------------------------

@dataclass
class AttentionPath:
    """How the joint attention mixed one domain's map: J = z + gamma (W_v z + b_v) A^T."""

    attention: torch.Tensor  # B x N x N, row i: where cell i looks
    gamma: torch.Tensor  # scalar (1-element) mixing weight
    value: nn.Conv2d  # the 1 x 1 value convolution (W_v, b_v)

    def mix(self, z: torch.Tensor) -> torch.Tensor:
        """J of maps z (R B x C x H x W, R a multiple of the batch) with this attention held fixed."""
        repeats = z.shape[0] // self.attention.shape[0]
        values = self.value(z).flatten(2)  # R B x C x N
        mixed = torch.bmm(values, self.attention.repeat(repeats, 1, 1).transpose(1, 2)).view_as(z)
        return z + self.gamma.reshape(()) * mixed


def path_steps(head_owner: nn.Module) -> int:
    """Points of the integration path: 1 for a head declared affine (exact), INTEGRATION_STEPS otherwise."""
    return 1 if getattr(head_owner, "head_affine", False) else INTEGRATION_STEPS


def cell_shares(head_layers: Sequence[nn.Module], fmap: torch.Tensor, v: torch.Tensor,
                path: AttentionPath | None = None, reference: torch.Tensor | None = None,
                steps: int = 1) -> torch.Tensor:
    """B x N: <c_j, v> for every cell j of `fmap` (B x C x H x W), c_j the contribution of cell j's difference
    from `reference` (1 or B x C x H x W; default zeros) to the embedding the head computes from the map (with
    the attention `path`, held fixed): integrated gradients along the straight line from the reference, by the
    midpoint rule with `steps` points (one is exact for an affine head). With v = e / |e|^2: the cells' shares."""
    ref = torch.zeros_like(fmap) if reference is None else reference.expand_as(fmap)
    diff = fmap - ref  # B x C x H x W
    alphas = (torch.arange(steps, dtype=fmap.dtype, device=fmap.device) + 0.5) / steps
    points = (ref[None] + alphas.view(-1, 1, 1, 1, 1) * diff[None]).flatten(0, 1)  # steps B x C x H x W
    heads_input = points if path is None else path.mix(points)
    g = chain_vjp(head_layers, heads_input, v.repeat(steps, 1))  # steps B x C x H x W: d<v, e>/dJ
    g = g.view(steps, *fmap.shape).mean(0).flatten(2)  # B x C x N, averaged along the path
    d = diff.flatten(2)
    shares = (g * d).sum(1)  # the residual path J = z + ...
    if path is not None:  # + gamma sum_i A_ij <g_i, W_v d_j>: cell j's value, sent to every cell i that looks at it
        looked_at = torch.bmm(g, path.attention)  # B x C x N: sum_i g_i A_ij
        values = F.conv2d(diff, path.value.weight).flatten(2)  # B x C x N, W_v d (the bias cancels)
        shares = shares + path.gamma.reshape(()) * (looked_at * values).sum(1)
    return shares


def share_direction(embedding: torch.Tensor) -> torch.Tensor:
    """B x D: e / |e|^2, the v of `cell_shares` that makes shares fractions of the embedding (0 for e = 0)."""
    squared = (embedding * embedding).sum(1, keepdim=True)
    return torch.where(squared > MIN_SQUARED_NORM, embedding / squared.clamp_min(MIN_SQUARED_NORM),
                       torch.zeros_like(embedding))


# ----------------------------------------------------------------------------------------------
# Statistics of maps and of the raw attention
# ----------------------------------------------------------------------------------------------

def positive_distribution(shares: torch.Tensor) -> torch.Tensor:
    """B x N: the positive shares as a distribution over cells (uniform when no share is positive)."""
    positive = shares.flatten(1).clamp_min(0)
    total = positive.sum(1, keepdim=True)
    uniform = torch.full_like(positive, 1.0 / positive.shape[1])
    return torch.where(total > 0, positive / total.clamp_min(1e-30), uniform)


def normalised_entropy(p: torch.Tensor) -> torch.Tensor:
    """Entropy of the distributions in the last dimension over ln(their length): 0 = one cell, 1 = uniform."""
    h = -(p * torch.log(p.clamp_min(1e-30))).sum(-1)
    return h / math.log(p.shape[-1])


@dataclass
class AttentionStats:
    """Raw statistics of a B x N x N row-stochastic attention (what researchers inspect beside the heatmap)."""

    received: torch.Tensor  # B x N: column mean, the attention each cell receives (sums to 1 over cells)
    sink: torch.Tensor  # B int64: the cell receiving most
    sink_share: torch.Tensor  # B: the sink's share of all attention (received[sink])
    row_entropy: torch.Tensor  # B: mean over rows of each row's normalised entropy (0 one cell, 1 uniform)


def attention_statistics(attention: torch.Tensor) -> AttentionStats:
    """AttentionStats of B x N x N attention maps."""
    received = attention.mean(1)
    share, sink = received.max(1)
    return AttentionStats(received, sink, share, normalised_entropy(attention).mean(1))
