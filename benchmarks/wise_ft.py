"""Real-photo separation of a fine-tuned checkpoint interpolated towards the pretrained dlib network
(WiSE-FT, Wortsman et al., CVPR 2022): theta(alpha) = (1 - alpha) theta_pretrained + alpha theta_finetuned
for every weight the two share (the backbone); the joint attention's gamma, which starts at 0, is scaled by
alpha, so alpha = 0 is the pretrained network and alpha = 1 the fine-tuned one.

    python benchmarks/wise_ft.py --checkpoint runs/pipeline/full-separate-head/seed0/model.safetensors

Prints, per alpha, the real-photo check (pose3dfr.eval.real_photos, as `pose3dfr photos`): AUC, the margin
(lowest same-person minus highest different-person cosine) and the scale-free relative margin. The
interpolated weights keep the fine-tuned checkpoint's thresholds, so only the separation columns are meaningful.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a clone without installing

from pose3dfr.eval.real_photos import real_photo_check  # noqa: E402
from pose3dfr.inference.verifier import Verifier  # noqa: E402
from pose3dfr.models.io import load_checkpoint, pretrained_dlib_model  # noqa: E402

ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0)


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="fine-tuned checkpoint (name or path)")
    parser.add_argument("--alphas", type=float, nargs="+", default=list(ALPHAS))
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    finetuned, meta, name = load_checkpoint(args.checkpoint)
    pretrained, _ = pretrained_dlib_model()
    print(f"| alpha | AUC | margin | relative margin | separated |  ({name})\n|---|---|---|---|---|")
    for alpha in args.alphas:
        with torch.no_grad():
            check = real_photo_check(Verifier(interpolate(finetuned, pretrained, alpha), meta, name=name))
        print(f"| {alpha:g} | {check['auc']:.3f} | {check['margin']:+.3f} | {check['relative_margin']:+.3f} | "
              f"{'yes' if check['separated'] else 'no'} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
