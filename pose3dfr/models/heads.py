"""AdaFace margin classifier (Kim et al., CVPR 2022), as paper.md states it; one per domain.

With z_hat = clip(h (||z|| - mu) / (sigma + eps), -1, 1) (mu, sigma: EMA of batch feature norms):
target logit s * [cos(clip(theta_y - m z_hat, eps, pi - eps)) - (m + m z_hat)], others s * cos(theta_j).
Buffer names (batch_mean, batch_std) and kernel layout (D x classes) follow AdaFace's head.py.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class AdaFaceHead(nn.Module):
    """Maps un-normalised embeddings (B x D) and labels (B) to margin logits (B x classes)."""

    def __init__(self, embedding_dim: int, num_classes: int, m: float = 0.4, h: float = 0.333,
                 s: float = 64.0, t_alpha: float = 0.01, eps: float = 1e-3, init_from_batch: bool = False) -> None:
        super().__init__()
        self.m, self.h, self.s, self.t_alpha, self.eps = m, h, s, t_alpha, eps
        self.init_from_batch = init_from_batch  # first training batch sets the statistics (not AdaFace's 20 / 100)
        self.kernel = nn.Parameter(torch.empty(embedding_dim, num_classes))
        with torch.no_grad():  # AdaFace's init: uniform, unit columns
            self.kernel.uniform_(-1, 1).renorm_(2, 1, 1e-5).mul_(1e5)
        self.register_buffer("batch_mean", torch.ones(1) * 20)  # AdaFace's initial statistics
        self.register_buffer("batch_std", torch.ones(1) * 100)

    def cosine(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Cosine between each embedding and each class centre, clamped away from +-1 for acos."""
        cos = F.normalize(embeddings, dim=1) @ F.normalize(self.kernel, dim=0)
        return cos.clamp(-1 + self.eps, 1 - self.eps)

    def margin_scaler(self, norms: torch.Tensor) -> torch.Tensor:
        """z_hat in [-1, 1] from the feature norms (B); updates the EMA statistics in training mode."""
        safe = norms.detach().clamp(min=0.001, max=100)
        if self.training:
            with torch.no_grad():
                std = safe.std() if safe.numel() > 1 else torch.zeros((), device=safe.device)
                if self.init_from_batch and self._at_initial_statistics():
                    self.batch_mean.copy_(safe.mean())
                    self.batch_std.copy_(std)
                else:
                    self.batch_mean.mul_(1 - self.t_alpha).add_(self.t_alpha * safe.mean())
                    self.batch_std.mul_(1 - self.t_alpha).add_(self.t_alpha * std)
        z_hat = (safe - self.batch_mean) / (self.batch_std + self.eps) * self.h
        return z_hat.clamp(-1, 1)

    def _at_initial_statistics(self) -> bool:
        """Still AdaFace's starting values (no training batch seen): a resumed run's statistics are kept."""
        return bool(self.batch_mean.item() == 20.0 and self.batch_std.item() == 100.0)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Margin logits for the labelled class; plain s * cos without labels (e.g. for evaluation)."""
        cos = self.cosine(embeddings)
        if labels is None:
            return self.s * cos
        z_hat = self.margin_scaler(embeddings.norm(dim=1))  # B
        target = F.one_hot(labels.long(), cos.size(1)).to(cos.dtype)  # B x classes
        theta = cos.acos() - target * (self.m * z_hat)[:, None]  # g_angular = -m z_hat
        cos_m = theta.clamp(self.eps, math.pi - self.eps).cos()
        cos_m = cos_m - target * (self.m + self.m * z_hat)[:, None]  # g_additive
        return self.s * cos_m
