"""WiSE-FT (Wortsman et al., CVPR 2022): a fine-tuned checkpoint interpolated towards the pretrained dlib network,
theta(alpha) = (1 - alpha) theta_pretrained + alpha theta_finetuned for every weight the two share (the backbone);
the joint attention's gamma, which starts at 0, is scaled by alpha, so alpha = 0 is the pretrained network and
alpha = 1 the fine-tuned one. Measured by `python -m benchmarks.wise_ft` and `python -m benchmarks.finetune_recipes`.
"""

from __future__ import annotations

import copy

import torch

ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0)  # the interpolation points `python -m benchmarks.wise_ft` reports


def interpolate(finetuned: torch.nn.Module, pretrained: torch.nn.Module, alpha: float) -> torch.nn.Module:
    """A copy of `finetuned` with its shared weights moved (1 - alpha) of the way back to `pretrained`."""
    model = copy.deepcopy(finetuned)
    start, state = pretrained.state_dict(), model.state_dict()
    for key, value in finetuned.state_dict().items():
        if key in start and start[key].shape == value.shape and value.is_floating_point():
            state[key] = (1 - alpha) * start[key] + alpha * value
        elif key.startswith("attention.gamma"):
            state[key] = alpha * value
    model.load_state_dict(state)
    return model.eval()
