"""Speed of the verification metrics on 10 million pair scores (target: TAR@FAR under 3 s on 2 cores).

Run: python -m benchmarks.bench_metrics [--pairs 10000000] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pairs", type=int, default=10_000_000, help="genuine + impostor scores")
    parser.add_argument("--genuine-share", type=float, default=0.01, help="share of genuine pairs")
    parser.add_argument("--threads", type=int, default=2, help="BLAS/OpenMP threads")
    args = parser.parse_args()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)

    import numpy as np

    from pose3dfr.eval import metrics

    rng = np.random.default_rng(0)
    n_gen = int(args.pairs * args.genuine_share)
    genuine = rng.normal(0.6, 0.15, n_gen)
    impostor = rng.normal(0.0, 0.15, args.pairs - n_gen)
    cases = {
        # float32 cosine scores rounded to 1e-4: realistic and heavily tied.
        "tied float32": (np.round(genuine, 4).astype(np.float32), np.round(impostor, 4).astype(np.float32)),
        "distinct float64": (genuine, impostor),  # worst case for the ROC: one point per score
    }
    for case, (gen, imp) in cases.items():
        print(f"{args.pairs:,} pair scores ({n_gen:,} genuine), {case}, {args.threads} threads")
        run_case(metrics, gen, imp)


def run_case(metrics, genuine, impostor) -> None:
    """Time each public metric once on these scores and print the result."""
    for name, call in [
        ("tar_at_far(1e-2)", lambda: metrics.tar_at_far(genuine, impostor, 1e-2)),
        ("threshold_at_far(1e-3)", lambda: metrics.threshold_at_far(genuine, impostor, 1e-3)),
        ("roc_curve", lambda: metrics.roc_curve(genuine, impostor)),
        ("auc", lambda: metrics.auc(genuine, impostor)),
        ("eer", lambda: metrics.eer(genuine, impostor)),
        ("verification_summary (2 FARs + ROC + AUC + EER)",
         lambda: metrics.verification_summary(genuine, impostor)),
    ]:
        start = time.perf_counter()
        result = call()
        elapsed = time.perf_counter() - start
        shown = f"{result:.4f}" if isinstance(result, float) else type(result).__name__
        print(f"  {name:50s} {elapsed:6.2f} s   ({shown})")

if __name__ == "__main__":
    main()
