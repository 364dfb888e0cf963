"""Joint Attention Mapping (JAM): SAGAN self-attention whose query/key 1x1 convs are shared by 2D and 3D.

    A_d = softmax(Q(z_d) K(z_d)^T / sqrt(d))      N x N, N = H_F W_F, rows sum to 1
    J_d = gamma_d * V_d(z_d) A_d^T + z_d          gamma_d initialised at 0 (SAGAN; ModelConfig.jam_gamma_init),
                                                  or V_d at 0 and gamma_d at 1 (ModelConfig.jam_zero_value)

Choice: one gamma per domain by default (the 2D map comes from a pretrained backbone, the 3D map from
a fresh encoder; they may need different mixing). `shared_qk=False` gives each domain its own query
and key (the "+JE only" ablation: attention maps exist for the loss but are not jointly computed).
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn

DOMAINS = ("2d", "3d")


class JointAttention(nn.Module):
    """SAGAN-style attention over a C x H x W map for each domain; returns (attended map, B x N x N attention)."""

    def __init__(self, channels: int, domains: tuple[str, ...] = DOMAINS, reduction: int = 8,
                 shared_qk: bool = True, shared_gamma: bool = False, scaled: bool = True,
                 gamma_init: float = 0.0, zero_value: bool = False) -> None:
        super().__init__()
        self.domains = tuple(domains)
        self.shared_qk = shared_qk
        self.shared_gamma = shared_gamma
        self.qk_channels = max(1, channels // reduction)
        self.scale = 1.0 / math.sqrt(self.qk_channels) if scaled else 1.0
        qk_keys = ("shared",) if shared_qk else self.domains
        self.query = nn.ModuleDict({k: nn.Conv2d(channels, self.qk_channels, 1) for k in qk_keys})
        self.key = nn.ModuleDict({k: nn.Conv2d(channels, self.qk_channels, 1) for k in qk_keys})
        self.value = nn.ModuleDict({d: nn.Conv2d(channels, channels, 1) for d in self.domains})
        if zero_value:  # J_d = z_d at the start for any gamma, and V learns from step 1 (ModelConfig.jam_zero_value)
            for conv in self.value.values():
                nn.init.zeros_(conv.weight)
                nn.init.zeros_(conv.bias)
        gamma_keys = ("shared",) if shared_gamma else self.domains
        self.gamma = nn.ParameterDict({k: nn.Parameter(torch.full((1,), float(gamma_init))) for k in gamma_keys})

    def attention(self, z: torch.Tensor, domain: str) -> torch.Tensor:
        """B x C x H x W -> B x N x N row-stochastic attention (row i: where position i looks)."""
        k = "shared" if self.shared_qk else domain
        q = self.query[k](z).flatten(2)  # B x d x N
        key = self.key[k](z).flatten(2)  # B x d x N
        energy = torch.bmm(q.transpose(1, 2), key) * self.scale  # B x N x N
        return torch.softmax(energy, dim=-1)

    def attend(self, z: torch.Tensor, domain: str) -> tuple[torch.Tensor, torch.Tensor]:
        """One domain: (J_d B x C x H x W, A_d B x N x N)."""
        if domain not in self.domains:
            raise KeyError(f"JointAttention has no domain {domain!r}; it has {self.domains}")
        attn = self.attention(z, domain)
        v = self.value[domain](z).flatten(2)  # B x C x N
        out = torch.bmm(v, attn.transpose(1, 2)).view_as(z)  # out[:, :, i] = sum_j A[i, j] v[:, :, j]
        return self.gamma_of(domain) * out + z, attn

    def gamma_of(self, domain: str) -> nn.Parameter:
        """The mixing weight gamma_d of a domain (shared or its own)."""
        return self.gamma["shared" if self.shared_gamma else domain]

    def forward(self, z_2d: torch.Tensor, z_3d: torch.Tensor | None = None):
        """Both domains at once: (J_2D, A_2D, J_3D, A_3D); the 3D pair is None without z_3d."""
        j2, a2 = self.attend(z_2d, "2d")
        if z_3d is None:
            return j2, a2, None, None
        j3, a3 = self.attend(z_3d, "3d")
        return j2, a2, j3, a3

    @contextmanager
    def removed(self) -> Iterator[None]:
        """Within the block every gamma is 0, so J_d = z_d: the model as if it had no attention (an ablation at
        test time: does the attention change the embedding's accuracy?)."""
        saved = {k: g.detach().clone() for k, g in self.gamma.items()}
        try:
            with torch.no_grad():
                for g in self.gamma.values():
                    g.zero_()
            yield
        finally:
            with torch.no_grad():
                for k, g in self.gamma.items():
                    g.copy_(saved[k])
