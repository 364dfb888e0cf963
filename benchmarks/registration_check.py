"""Does cell (i, j) of the 3D map see what cell (i, j) of the 2D map sees? (issue #18; docs/results.md section 8)

    python -m benchmarks.registration_check --data data/synth200 --split test --views 40 --align pipeline

Per |yaw|: the share of visible render landmarks whose nearest cloud point is pooled into the landmark's own
cell of the 8 x 8 dlib grid, with the paper's frontal pooling and with pose-aware registration
(pose3dfr.eval.registration_check). The cloud is the training transform's 512-point subsample, so points
about 0.8 cm apart cap the agreement below 100% even at yaw 0.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pose3dfr.eval.registration_check import agreement_markdown, registration_agreement


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--views", type=int, default=40, help="views per |yaw|")
    parser.add_argument("--align", default="pipeline", choices=("pipeline", "oracle"))
    parser.add_argument("--points", type=int, default=512)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    result = registration_agreement(args.data, args.split, max_views=args.views, align=args.align,
                                    num_points=args.points)
    print(agreement_markdown(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
