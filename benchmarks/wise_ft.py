"""Real-photo separation of a fine-tuned checkpoint interpolated towards the pretrained dlib network
(WiSE-FT, Wortsman et al., CVPR 2022; the interpolation is pose3dfr.eval.wise_ft).

    python -m benchmarks.wise_ft --checkpoint runs/pipeline/full-separate-head/seed0/model.safetensors

Prints, per alpha, the real-photo check (pose3dfr.eval.real_photos, as `pose3dfr photos`): AUC, the margin
(lowest same-person minus highest different-person cosine) and the scale-free relative margin. The
interpolated weights keep the fine-tuned checkpoint's thresholds, so only the separation columns are meaningful.
"""

from __future__ import annotations

import argparse
import sys

import torch

from pose3dfr.eval.real_photos import real_photo_check
from pose3dfr.eval.wise_ft import ALPHAS, interpolate
from pose3dfr.inference.verifier import Verifier
from pose3dfr.models.io import load_checkpoint, pretrained_dlib_model


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
