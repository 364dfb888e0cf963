"""A frozen 3D branch with cached per-point features: the cheap joint step of a longer schedule.

The 3D identity loss saturates on the training clouds within a few hundred steps, while the point network
is most of a joint step's CPU time. After TrainConfig.freeze_3d_after steps the point encoder stops
learning (eval mode, no gradients) and each cloud's PointNet++ features are computed once and reused; the
3D map is then pooled from them with each view's registered cells (pose3dfr.data.view_registration), so it
still follows the view. The training transform keeps each cloud's deterministic subsample
(ModelTransform(fixed_points=True)), so the cached features are those of exactly the points in the batch.
"""

from __future__ import annotations

import torch


class FrozenPointFeatures:
    """Per-point features of each cloud (keyed by the batch's cloud_key), computed on first use."""

    def __init__(self) -> None:
        self.features: dict[str, torch.Tensor] = {}

    @staticmethod
    def freeze(model: torch.nn.Module) -> None:
        """Stop the point encoder learning: no gradients, BatchNorm statistics fixed."""
        for parameter in model.point_encoder.parameters():
            parameter.requires_grad_(False)
        model.point_encoder.eval()

    @torch.no_grad()
    def lookup(self, model: torch.nn.Module, points: torch.Tensor, keys: list[str]) -> torch.Tensor:
        """B x P x Cp features of the batch's clouds (B x P x F points), from the cache or computed now."""
        missing = [i for i, key in enumerate(keys) if key not in self.features]
        if missing:
            computed = model.point_encoder.point_features_of(points[missing])
            for i, row in zip(missing, computed):
                self.features[keys[i]] = row
        return torch.stack([self.features[key] for key in keys])
