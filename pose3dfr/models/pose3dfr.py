"""The assembled model: 2D backbone + PointNet++ branch + joint attention + AdaFace heads.

    z_2D = backbone.trunk(image)            z_3D = point_encoder(points)       (C x H_F x W_F each)
    J_d, A_d = JAM(z_d)                     emb_d = head(J_d)                  logits_d = AdaFace(emb_d, labels)

The forward pass returns embeddings, margin logits and attention maps; the loss over them
(L = L_2D + L_3D + lambda * L_JE) is pose3dfr.losses.Pose3DFRLoss, which the trainer calls. Config flags switch
off the 3D branch, the shared attention and the JE term, so the 2D-only baseline and the ablations are this same
code. Inference needs only `embed(images)` (2D).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from pose3dfr.errors import CheckpointError, InvalidImageError, InvalidScanError, Pose3DFRError
from pose3dfr.models import attribution
from pose3dfr.models.attention import JointAttention
from pose3dfr.models.backbones import get_backbone
from pose3dfr.models.config import ModelConfig
from pose3dfr.models.frontal_gate import FrontalTeacher, Routing
from pose3dfr.models.heads import AdaFaceHead
from pose3dfr.models.iresnet import Flatten, IResNet, load_adaface_checkpoint
from pose3dfr.models.point_encoder import PointEncoder
from pose3dfr.paths import CHECKPOINTS_DIR


@dataclass
class EmbedOutput:
    """2D embeddings (B x D, unit length), heatmaps (B x H_F x W_F: each cell's signed share of the embedding,
    pose3dfr.models.attribution; None when not asked for) and the chip's raw 2D attention (B x N x N, None
    without an attention module), for researchers (attribution.attention_statistics)."""

    embeddings: torch.Tensor
    heatmaps: torch.Tensor | None
    attention: torch.Tensor | None = None


@dataclass
class PointEmbedOutput:
    """3D embeddings (B x D, unit length) and per-point heat (B x P): the share of the 3D embedding that the
    cell of the point supplies (pose3dfr.models.attribution; NaN for a point the view does not see)."""

    embeddings: torch.Tensor
    point_attention: torch.Tensor


@dataclass
class _MapPass:
    """One pass of a map through attention and head: what the embedding's attribution needs."""

    fmap: torch.Tensor  # B x C x H_F x W_F, the map before attention (z)
    attention: torch.Tensor | None  # B x N x N
    raw: torch.Tensor  # B x D, the head's output, not normalised


class CompressionHead(nn.Module):
    """A separate 3D head (used only when share_head=False): BN2d, flatten, FC, BN1d, like IResNet's; with
    `reduce_to` a 1x1 conv first brings the map to that many channels (ModelConfig.head_3d_channels)."""

    def __init__(self, channels: int, size: int, embedding_dim: int, reduce_to: int | None = None) -> None:
        super().__init__()
        reduce = [nn.Conv2d(channels, reduce_to, 1, bias=False)] if reduce_to else []
        width = reduce_to or channels
        self.layers = nn.Sequential(nn.BatchNorm2d(channels), *reduce, Flatten(), nn.Linear(width * size * size,
                                    embedding_dim), nn.BatchNorm1d(embedding_dim, affine=False))

    head_affine = True  # BN2d, flatten, linear, BN1d (models/attribution.py)

    def forward(self, fmap: torch.Tensor) -> torch.Tensor:
        return self.layers(fmap)

    def head_layers(self) -> list[nn.Module]:
        """forward() as a chain of layers (pose3dfr.models.attribution)."""
        return [self.layers]


class Pose3DFR(nn.Module):
    """Pose-robust 2D face recognition trained with 3D (Peace, Hu, Riggan, FG 2025); see module docstring."""

    def __init__(self, cfg: ModelConfig, load_pretrained: bool = True) -> None:
        super().__init__()
        self.backbone = get_backbone(cfg.backbone)
        dim = self.backbone.embedding_dim
        if cfg.embedding_dim is not None and cfg.embedding_dim != dim:
            raise CheckpointError(f"ModelConfig.embedding_dim={cfg.embedding_dim} but backbone "
                                  f"{cfg.backbone!r} gives {dim}")
        self.cfg = replace(cfg, embedding_dim=dim)
        if cfg.backbone_weights and load_pretrained:
            self._load_backbone_weights(cfg.backbone_weights)
        channels, size = self.backbone.feature_channels, self.backbone.feature_size
        self.point_encoder = self._build_point_encoder(cfg, channels, size) if cfg.use_3d else None
        self.attention = None
        if cfg.has_attention:
            domains = ("2d", "3d") if cfg.use_3d else ("2d",)
            self.attention = JointAttention(channels, domains, cfg.jam_reduction, shared_qk=cfg.use_jam,
                                            shared_gamma=cfg.jam_shared_gamma, scaled=cfg.jam_scaled,
                                            gamma_init=cfg.jam_gamma_init, zero_value=cfg.jam_zero_value)
        self.head_3d = (CompressionHead(channels, size, dim, cfg.head_3d_channels)
                        if cfg.use_3d and not cfg.share_head else None)
        self.margin_2d = self._margin_head(cfg, dim)
        self.margin_3d = self._margin_head(cfg, dim) if cfg.use_3d else None
        self.frontal = None
        self._reference_cache: tuple[tuple, torch.Tensor] | None = None  # (key, blank chip's map): see _reference_map
        if cfg.frontal_teacher:
            teacher = get_backbone(cfg.backbone)
            _load_weights_into(teacher, cfg.backbone, str(resolve_teacher_weights(cfg.teacher_weights)))
            self.frontal = FrontalTeacher(teacher, cfg.route_yaw, cfg.teacher_scale, cfg.teacher_shift)

    # ----- construction helpers -----
    def _build_point_encoder(self, cfg: ModelConfig, channels: int, size: int) -> PointEncoder:
        return PointEncoder(channels, size, self.backbone.template, self.backbone.input_size, cfg.point_features,
                            cfg.reshape, cfg.sa1_centres, cfg.sa1_radius, cfg.sa2_centres, cfg.sa2_radius,
                            cfg.point_group_size)

    @staticmethod
    def _margin_head(cfg: ModelConfig, dim: int) -> AdaFaceHead:
        return AdaFaceHead(dim, cfg.num_classes, cfg.adaface_m, cfg.adaface_h, cfg.adaface_s, cfg.adaface_t_alpha,
                           init_from_batch=cfg.adaface_norm_from_batch)

    def _load_backbone_weights(self, path: str) -> None:
        _load_weights_into(self.backbone, self.cfg.backbone, path)

    # ----- pieces -----
    def check_images(self, images: torch.Tensor) -> None:
        """Raise InvalidImageError unless images is B x 3 x S x S floating point with S = backbone input size."""
        s = self.backbone.input_size
        if images.dim() != 4 or tuple(images.shape[1:]) != (3, s, s) or not images.is_floating_point():
            raise InvalidImageError(f"images: expected a float B x 3 x {s} x {s} tensor (RGB in [0, 1]), "
                                    f"got {images.dtype} {tuple(images.shape)}")

    def _attend(self, fmap: torch.Tensor, domain: str) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.attention is None:
            return fmap, None
        return self.attention.attend(fmap, domain)

    def _head(self, fmap: torch.Tensor, domain: str) -> torch.Tensor:
        if domain == "3d" and self.head_3d is not None:
            return self.head_3d(fmap)
        return self.backbone.head(fmap)

    # ----- training -----
    def forward(self, images: torch.Tensor, points: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, cells: torch.Tensor | None = None,
                point_features: torch.Tensor | None = None) -> dict[str, torch.Tensor | None]:
        """Training pass. Keys: attn_2d, attn_3d (B x N x N or None), emb_2d, emb_3d (B x D or None), logits,
        logits_3d (B x classes margin logits; plain s * cos without labels; None without a 3D branch), fmap_2d;
        pose3dfr.losses.Pose3DFRLoss turns them into the loss. (A frontal teacher takes no part in training.)

        cells: B x P registered cells of the points in each image's view (pose3dfr.data.view_registration);
        point_features: B x P x Cp cached PointNet++ features of those points (a frozen 3D branch), which
        skips the point network and builds the 3D map from them and the cells."""
        self.check_images(images)
        fmap = self.backbone.trunk(images)  # B x C x H_F x W_F
        j2, a2 = self._attend(fmap, "2d")
        emb2 = self._head(j2, "2d")
        emb3 = a3 = None
        if self.point_encoder is not None:
            j3, a3 = self._attend(self._point_map(points, cells, point_features), "3d")
            emb3 = self._head(j3, "3d")
        logits = self.margin_2d(emb2, labels)
        logits3 = self.margin_3d(emb3, labels) if self.margin_3d is not None and emb3 is not None else None
        return {"attn_2d": a2, "attn_3d": a3, "emb_2d": emb2, "emb_3d": emb3, "fmap_2d": fmap,
                "logits": logits, "logits_3d": logits3}

    def _point_map(self, points: torch.Tensor | None, cells: torch.Tensor | None,
                   point_features: torch.Tensor | None) -> torch.Tensor:
        """The 3D map z_3D: from the points, or from cached per-point features and their cells."""
        if point_features is not None:
            if cells is None:
                raise InvalidScanError("point_features: cached point features need their registered cells")
            return self.point_encoder.map_from_point_features(point_features, cells)
        if points is None:
            raise InvalidScanError("points: the 3D branch is on (use_3d) but no points were given")
        return self.point_encoder(points, cells)[0]

    # ----- inference -----
    def set_teacher_affine(self, scale: float, shift: float) -> None:
        """Map the frontal teacher's cosine as scale * cosine + shift (recorded in cfg, so checkpoints keep it)."""
        self.cfg = replace(self.cfg, teacher_scale=float(scale), teacher_shift=float(shift))
        self.frontal.routing = Routing(self.cfg.route_yaw, self.cfg.teacher_scale, self.cfg.teacher_shift)

    @property
    def routing(self) -> "Routing | None":
        """How pairs are scored with a frontal teacher (pose3dfr.models.frontal_gate); None without one (cosine)."""
        return None if self.frontal is None else self.frontal.routing

    def embed(self, images: torch.Tensor, attribute: bool = True) -> EmbedOutput:
        """2D only: unit embeddings, heatmaps (each cell's share of the embedding; attribute=False skips them)
        and the chip's raw attention; with cfg.flip_average the mean of the chip's and its mirror's embedding.

        With a frontal teacher the embedding is the routed e = [teacher / 2 ; trained / 2 ; 1 / sqrt(2)]
        (2D + 1 values; score probes with pose3dfr.models.frontal_gate.routed_probes); the heatmap is that of
        the trained network's embedding (`embed_network`), which scores every pair the teacher does not."""
        out = self.embed_network(images, attribute)
        if self.frontal is None:
            return out
        return EmbedOutput(self.frontal.enrolment_form(images, out.embeddings), out.heatmaps, out.attention)

    def embed_network(self, images: torch.Tensor, attribute: bool = True) -> EmbedOutput:
        """embed() without a frontal teacher's routing: the trained network's embedding (mirror-averaged with
        cfg.flip_average), its heatmap and the chip's raw attention."""
        self.check_images(images)
        passes = self._passes_2d(images)
        total = sum(F.normalize(p.raw, dim=1) for p in passes)  # B x D
        heat = self._heatmaps(images, passes, total) if attribute else None
        embeddings = total if len(passes) == 1 else F.normalize(total, dim=1)  # bit for bit as before attribution
        return EmbedOutput(embeddings, heat, passes[0].attention)

    def heatmaps(self, images: torch.Tensor, blank_reference: bool = True, steps: int | None = None) -> torch.Tensor:
        """B x H_F x W_F: embed_network's heatmap, measured from the blank chip's map (or, blank_reference=False,
        from a zero map) with `steps` integration points (default attribution.path_steps): the choices compared by
        `python -m benchmarks.attention_faithfulness --variants`."""
        self.check_images(images)
        passes = self._passes_2d(images)
        total = sum(F.normalize(p.raw, dim=1) for p in passes)
        return self._heatmaps(images, passes, total, blank_reference, steps)

    def _passes_2d(self, images: torch.Tensor) -> list[_MapPass]:
        """The chip's pass, and its mirror image's with cfg.flip_average (ModelConfig.flip_average)."""
        return [self._pass_2d(images)] + ([self._pass_2d(images.flip(-1))] if self.cfg.flip_average else [])

    def _heatmaps(self, images: torch.Tensor, passes: list[_MapPass], total: torch.Tensor,
                  blank_reference: bool = True, steps: int | None = None) -> torch.Tensor:
        """Each pass's shares of total = e1 / |e1| (+ e2 / |e2|), |e_k| held fixed; the mirror's moved back."""
        v = attribution.share_direction(total)
        reference = self._reference_map(images) if blank_reference else None  # a grey chip is its own mirror
        heat = 0
        for k, p in enumerate(passes):
            shares = self._shares_2d(p, v / p.raw.norm(dim=1, keepdim=True).clamp_min(1e-12), reference, steps)
            heat = heat + (attribution.unmirror(shares, self.cell_grid) if k else shares)
        return heat

    def embed_trained(self, images: torch.Tensor) -> EmbedOutput:
        """One pass of the trained network (no mirror average, no frontal teacher): what training and imprinting
        see; heatmap: each cell's share of this embedding."""
        self.check_images(images)
        single = self._pass_2d(images)
        heat = self._shares_2d(single, attribution.share_direction(single.raw), self._reference_map(images))
        return EmbedOutput(F.normalize(single.raw, dim=1), heat, single.attention)

    @property
    def cell_grid(self) -> attribution.CellGrid:
        """Where the 2D map's cells sit on the chip (pose3dfr.models.attribution.CellGrid)."""
        return attribution.cell_grid(self.backbone)

    def _pass_2d(self, images: torch.Tensor) -> _MapPass:
        fmap = self.backbone.trunk(images)  # B x C x H_F x W_F
        attended, attn = self._attend(fmap, "2d")
        return _MapPass(fmap, attn, self.backbone.head(attended))

    def _reference_map(self, images: torch.Tensor) -> torch.Tensor:
        """1 x C x H_F x W_F: the trunk's map of a blank grey chip, what the 2D shares are measured from.

        Under inference mode it is computed once and reused while the trunk's weights are unchanged (the key holds
        their in-place version counters): it is a whole trunk pass, as costly as the chip's own."""
        key = (tuple(images.shape[1:]), images.dtype, images.device, self.training,
               tuple(int(t._version) for t in itertools.chain(self.backbone.parameters(), self.backbone.buffers())))
        cacheable = torch.is_inference_mode_enabled()
        if cacheable and self._reference_cache is not None and self._reference_cache[0] == key:
            return self._reference_cache[1]
        blank = torch.full((1, *images.shape[1:]), attribution.REFERENCE_FILL, dtype=images.dtype,
                           device=images.device)
        reference = self.backbone.trunk(blank)
        self._reference_cache = (key, reference) if cacheable else None
        return reference

    def _shares_2d(self, p: _MapPass, v: torch.Tensor, reference: torch.Tensor | None,
                   steps: int | None = None) -> torch.Tensor:
        """B x H_F x W_F: <c_j, v> of every cell (attribution.cell_shares, from `reference`: None = zeros)."""
        shares = attribution.cell_shares(self.backbone.head_layers(), p.fmap, v, self._path(p, "2d"), reference,
                                         steps or attribution.path_steps(self.backbone))
        return shares.view(-1, p.fmap.size(2), p.fmap.size(3))

    def _path(self, p: _MapPass, domain: str) -> attribution.AttentionPath | None:
        if p.attention is None:
            return None
        return attribution.AttentionPath(p.attention, self.attention.gamma_of(domain), self.attention.value[domain])

    def embed_points(self, points: torch.Tensor, cells: torch.Tensor | None = None) -> PointEmbedOutput:
        """3D branch: unit embeddings and each point's heat, the share of the 3D embedding its cell supplies.
        cells (B x P, pose3dfr.data.view_registration) registers the points to one view's chip (-1: unseen,
        heat NaN); without them each point goes to its frontal cell."""
        if self.point_encoder is None:
            raise Pose3DFRError("points: this model has no 3D branch (use_3d=False); embed_points needs one")
        fmap, cell = self.point_encoder(points, cells)
        attended, attn = self._attend(fmap, "3d")
        raw = self._head(attended, "3d")
        p = _MapPass(fmap, attn, raw)
        head = self.head_3d if self.head_3d is not None else self.backbone
        shares = attribution.cell_shares(head.head_layers(), fmap, attribution.share_direction(raw),
                                         self._path(p, "3d"), steps=attribution.path_steps(head))  # B x N
        heat = torch.gather(shares, 1, cell.clamp_min(0))
        heat = torch.where(cell >= 0, heat, torch.full_like(heat, float("nan")))
        return PointEmbedOutput(F.normalize(raw, dim=1), heat)


def _load_weights_into(backbone: nn.Module, name: str, path: str) -> None:
    """Pretrained weights into a backbone: its own loader (dlib's safetensors) or an AdaFace checkpoint. A backbone
    built on the meta device (models.io's shape check before loading a checkpoint) holds no data: nothing to load."""
    if any(p.is_meta for p in backbone.parameters()):
        return
    if hasattr(backbone, "load_pretrained"):
        backbone.load_pretrained(path)
    elif isinstance(backbone, IResNet):
        load_adaface_checkpoint(backbone, path)
    else:
        raise CheckpointError(f"{path}: backbone {name!r} has no pretrained-weights loader")


def resolve_teacher_weights(name: str) -> Path:
    """The frontal teacher's weights file: a name in checkpoints/ (the shipped dlib network) or a path."""
    path = Path(name)
    return path if path.is_absolute() or path.exists() else CHECKPOINTS_DIR / path
