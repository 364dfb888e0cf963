"""Attention diagnostics logged during training: is the paper's mechanism reaching the 2D embedding?

Issue #18 found the attention inert in the shipped model (gamma_2d about 0, rows flat, the embedding
unchanged by it) without any log saying so. Every log step now records, in metrics.jsonl:
gamma_<d> (the attention's mixing weight per domain), attn_entropy_<d> (mean row entropy of A_d as a
fraction of log N: 1 = flat), attention_share (||head(J_2D) - head(z_2D)|| / ||head(J_2D)||: how much of
the 2D embedding the attention changes) and grad_attention_<loss> (the gradient norm that each loss sends
to the attention's parameters); the training step adds grad_norm_<group> (the gradient norm of each clipping
group before clipping: all, or 2d and 3d). The run's final JSON keeps the last row (`diagnostics`).
"""

from __future__ import annotations

from typing import Any

import torch

from pose3dfr.losses import attention_row_entropy

LOSS_NAMES = ("loss_2d", "loss_3d", "loss_je")


@torch.no_grad()
def attention_state(model: torch.nn.Module, result: dict[str, Any]) -> dict[str, float]:
    """gamma per domain, row entropy per map and the embedding share the attention changes (cheap)."""
    if model.attention is None:
        return {}
    row: dict[str, float] = {f"gamma_{k}": float(v.detach()) for k, v in model.attention.gamma.items()}
    for domain in ("2d", "3d"):
        attn = result.get(f"attn_{domain}")
        if attn is not None:
            row[f"attn_entropy_{domain}"] = float(attention_row_entropy(attn.detach()))
    fmap = result.get("fmap_2d")
    if fmap is not None and result.get("emb_2d") is not None:
        attended = result["emb_2d"].detach()
        plain = model.backbone.head(fmap.detach())
        row["attention_share"] = float(((attended - plain).norm(dim=1) / attended.norm(dim=1).clamp_min(1e-12)).mean())
    return row


def attention_gradients(model: torch.nn.Module, result: dict[str, Any]) -> dict[str, float]:
    """Norm of each loss's gradient at the attention's parameters (before the optimiser step's backward)."""
    if model.attention is None:
        return {}
    params = [p for p in model.attention.parameters() if p.requires_grad]
    row: dict[str, float] = {}
    for name in LOSS_NAMES:
        loss = result.get(name)
        if loss is None or not loss.requires_grad:
            continue
        grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
        total = sum(float(g.pow(2).sum()) for g in grads if g is not None)
        row[f"grad_attention_{name[len('loss_'):]}"] = total ** 0.5
    return row
