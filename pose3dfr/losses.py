"""Losses: joint entropy of paired attention values (soft 2D histogram), mutual information, the floored
joint entropy, identity CE and distillation, and `Pose3DFRLoss`, the training objective built from them.

The model returns embeddings, margin logits and attention maps; the trainer hands them to Pose3DFRLoss, so a new
regulariser is a term here and its settings in the config (ModelConfig, which checkpoints record), nothing else:

    L = L_2D + L_3D + je_weight * L_JE (+ distill_weight * L_distill)

Why more than the paper's joint entropy: H(A_2D, A_3D) alone is minimised by flat attention (every paired
entry in one joint bin) or by one-hot maps, and it does not change when the 2D/3D pairing is shuffled
(issue #18). Mutual information H(A_2D) + H(A_3D) - H(A_2D, A_3D), maximised, is zero for both trivial
maps and falls when the pairing is shuffled; the floored variant keeps JE but hinges each map's own value
entropy above a floor. ModelConfig.je_variant picks one (docs/models.md says which and why).

Attention rows of a softmax over N positions sum to 1, so values sit near 1/N. They are rescaled to
[0, 1] before binning; the default "n_squash" maps a -> N a / (1 + N a) (uniform attention -> 0.5,
no attention -> 0, strong attention -> 1), which is comparable across images and has no per-sample
min/max to jump around. "minmax" rescales each image's map to its own [min, max] instead.

The histogram is a Gaussian kernel density on `bins` centres (k + 0.5) / bins; each entry's kernel
weights are normalised over the bins, so every paired entry (a_2D[b,i,j], a_3D[b,i,j]) adds mass 1
and the joint histogram sums to 1 exactly (also differentiable everywhere).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from pose3dfr.models.config import ModelConfig

_LOG_EPS = 1e-12


def rescale_attention(attn: torch.Tensor, mode: str = "n_squash") -> torch.Tensor:
    """B x N x N attention -> values in [0, 1] (see module docstring); "none" passes values through."""
    if mode == "none":
        return attn
    if mode == "n_squash":
        scaled = attn * attn.size(-1)
        return scaled / (1 + scaled)
    if mode == "minmax":
        flat = attn.flatten(1)
        lo, hi = flat.min(1, keepdim=True).values, flat.max(1, keepdim=True).values
        return ((flat - lo) / (hi - lo).clamp_min(1e-12)).view_as(attn)
    raise ValueError(f"unknown attention rescale {mode!r}; use n_squash, minmax or none")


def soft_bin_weights(values: torch.Tensor, bins: int, bandwidth: float) -> torch.Tensor:
    """B x E values in [0, 1] -> B x E x bins Gaussian kernel weights, each row summing to 1."""
    centres = (torch.arange(bins, device=values.device, dtype=values.dtype) + 0.5) / bins
    logits = -((values[..., None] - centres) ** 2) / (2 * bandwidth ** 2)
    return torch.softmax(logits, dim=-1)  # = exp(.) / sum exp(.), stable for tiny bandwidths


def _paired_values(a_2d: torch.Tensor, a_3d: torch.Tensor, rescale: str, max_entries: int | None,
                   generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Rescaled, flattened (B x E) paired entries, a random common subset when there are more than max_entries."""
    if a_2d.shape != a_3d.shape:
        raise ValueError(f"attention maps differ in shape: {tuple(a_2d.shape)} vs {tuple(a_3d.shape)}")
    u2 = rescale_attention(a_2d, rescale).flatten(1)
    u3 = rescale_attention(a_3d, rescale).flatten(1)
    if max_entries is not None and u2.size(1) > max_entries:
        idx = torch.randperm(u2.size(1), generator=generator, device="cpu")[:max_entries].to(u2.device)
        u2, u3 = u2[:, idx], u3[:, idx]
    return u2, u3


def joint_histogram(a_2d: torch.Tensor, a_3d: torch.Tensor, bins: int = 16, bandwidth: float = 1.0 / 32,
                    rescale: str = "n_squash", max_entries: int | None = 4096,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """Soft joint histogram P(a_2D, a_3D): B x bins x bins, each summing to 1 (rows: 2D bins, cols: 3D)."""
    u2, u3 = _paired_values(a_2d, a_3d, rescale, max_entries, generator)
    w2 = soft_bin_weights(u2, bins, bandwidth)  # B x E x K
    w3 = soft_bin_weights(u3, bins, bandwidth)
    return torch.einsum("bek,bel->bkl", w2, w3) / u2.size(1)


def _entropy(p: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    return -(p * torch.log(p.clamp_min(_LOG_EPS))).sum(dim=dims)


def joint_entropy(a_2d: torch.Tensor, a_3d: torch.Tensor, bins: int = 16, bandwidth: float = 1.0 / 32,
                  rescale: str = "n_squash", max_entries: int | None = 4096,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """H(A_2D, A_3D) in nats from the soft joint histogram of paired entries; mean over the batch."""
    p = joint_histogram(a_2d, a_3d, bins, bandwidth, rescale, max_entries, generator)
    return _entropy(p, (1, 2)).mean()


def mutual_information(a_2d: torch.Tensor, a_3d: torch.Tensor, bins: int = 16, bandwidth: float = 1.0 / 32,
                       rescale: str = "n_squash", max_entries: int | None = 4096,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """I = H(A_2D) + H(A_3D) - H(A_2D, A_3D) in nats (marginals from the same joint histogram); batch mean."""
    h2, h3, joint = value_entropies(a_2d, a_3d, bins, bandwidth, rescale, max_entries, generator)
    return h2 + h3 - joint


def value_entropies(a_2d: torch.Tensor, a_3d: torch.Tensor, bins: int = 16, bandwidth: float = 1.0 / 32,
                    rescale: str = "n_squash", max_entries: int | None = 4096,
                    generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(H(A_2D), H(A_3D), H(A_2D, A_3D)) in nats, batch means, from one soft joint histogram.

    H(A_d) is the entropy of the map's own values: 0 when every entry sits in one bin (a flat map, or a
    one-hot map at N -> infinity), so a floor on it rules out both trivial minima of the joint entropy."""
    p = joint_histogram(a_2d, a_3d, bins, bandwidth, rescale, max_entries, generator)
    return _entropy(p.sum(2), (1,)).mean(), _entropy(p.sum(1), (1,)).mean(), _entropy(p, (1, 2)).mean()


def floored_joint_entropy(a_2d: torch.Tensor, a_3d: torch.Tensor, floor: float, bins: int = 16,
                          bandwidth: float = 1.0 / 32, rescale: str = "n_squash", max_entries: int | None = 4096,
                          generator: torch.Generator | None = None) -> torch.Tensor:
    """H(A_2D, A_3D) + sum_d relu(floor - H(A_d)): the paper's joint entropy, with each map kept from
    collapsing to a single value bin (flat or one-hot) by a hinge on its own value entropy (nats)."""
    h2, h3, joint = value_entropies(a_2d, a_3d, bins, bandwidth, rescale, max_entries, generator)
    return joint + F.relu(floor - h2) + F.relu(floor - h3)


def attention_row_entropy(attn: torch.Tensor) -> torch.Tensor:
    """Mean entropy of the rows of B x N x N attention, as a fraction of the uniform maximum log N (1 = flat)."""
    rows = -(attn * torch.log(attn.clamp_min(_LOG_EPS))).sum(-1)  # B x N
    return rows.mean() / torch.log(torch.tensor(float(attn.size(-1)), device=attn.device))


def identity_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross entropy on AdaFace margin logits (the per-domain identity loss L_2D / L_3D)."""
    return F.cross_entropy(logits, labels.long())


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean 1 - cos(student, teacher) over a batch of B x D embeddings (0 for an empty batch)."""
    if student.shape[0] == 0:
        return student.new_zeros(())
    return (1.0 - F.cosine_similarity(student, teacher, dim=1)).mean()


class Pose3DFRLoss:
    """The training objective of a Pose3DFR model (module docstring), from its forward pass's outputs.

    `config`: the model's ModelConfig (use_je and the je_* settings); `distill_weight`: the weight of the
    distillation term towards a frozen pretrained network (TrainConfig.distill_weight; 0 = off)."""

    def __init__(self, config: ModelConfig, distill_weight: float = 0.0) -> None:
        self.config = config
        self.distill_weight = float(distill_weight)

    def attention_regulariser(self, a_2d: torch.Tensor, a_3d: torch.Tensor) -> torch.Tensor:
        """The regulariser added with weight je_weight (minimised): joint entropy, -MI, or the floored JE."""
        cfg = self.config
        args = dict(bins=cfg.je_bins, bandwidth=cfg.je_bandwidth, rescale=cfg.je_rescale,
                    max_entries=cfg.je_max_entries)
        if cfg.je_variant == "mutual_information":
            return -mutual_information(a_2d, a_3d, **args)
        if cfg.je_variant == "floored_joint_entropy":
            return floored_joint_entropy(a_2d, a_3d, cfg.je_entropy_floor, **args)
        return joint_entropy(a_2d, a_3d, **args)

    def __call__(self, out: Mapping[str, Any], labels: torch.Tensor, distill_rows: torch.Tensor | None = None,
                 distill_target: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """{"loss", "loss_2d", "loss_3d", "loss_je"} (+ "loss_distill" with a target) of a forward pass's `out`
        (logits, logits_3d, attn_2d, attn_3d, emb_2d) for B `labels`. Distillation: `distill_target` (n x D, the
        pretrained network's embeddings) for the B bools `distill_rows` of the batch."""
        logits, logits_3d, a_2d, a_3d = out["logits"], out.get("logits_3d"), out.get("attn_2d"), out.get("attn_3d")
        zero = logits.new_zeros(())
        loss_2d = identity_loss(logits, labels)
        loss_3d = identity_loss(logits_3d, labels) if logits_3d is not None else zero
        use_je = self.config.use_je and a_2d is not None and a_3d is not None
        loss_je = self.attention_regulariser(a_2d, a_3d) if use_je else zero
        losses = {"loss": loss_2d + loss_3d + self.config.je_weight * loss_je, "loss_2d": loss_2d,
                  "loss_3d": loss_3d, "loss_je": loss_je}
        if distill_target is not None:
            losses["loss_distill"] = distillation_loss(out["emb_2d"][distill_rows], distill_target)
            losses["loss"] = losses["loss"] + self.distill_weight * losses["loss_distill"]
        return losses
