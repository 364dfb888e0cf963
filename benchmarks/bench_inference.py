"""Latency of real-photo inference on CPU: `Verifier.verify` on two photos (detection, landmarks, alignment,
embedding, overlays and the pseudo point cloud included), its parts, and one embedding of an aligned crop.

    python -m benchmarks.bench_inference [--threads 2] [--repeats 20] [--checkpoint default]

Goals (issue 6): verify < 250 ms, embed of an aligned crop < 60 ms, with 2 threads. Prints a markdown table
(median and 90th percentile, ms) for docs/inference.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
from typing import Callable

import cv2
import numpy as np
import torch

from pose3dfr.face.image_io import load_image
from pose3dfr.inference.verifier import Verifier
from pose3dfr.paths import PHOTOS_DIR
from benchmarks.harness import wall_times_ms


def timed(fn: Callable[[], object], repeats: int, warmup: int = 2) -> tuple[float, float]:
    """(median, 90th percentile) wall time of fn() in milliseconds."""
    times = wall_times_ms(fn, repeats, warmup)
    return statistics.median(times), float(np.percentile(times, 90))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--checkpoint", default="default")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)

    verifier = Verifier.from_pretrained(args.checkpoint)
    enroll, probe = str(PHOTOS_DIR / "obama.jpg"), str(PHOTOS_DIR / "obama2.jpg")
    image = load_image(enroll)
    crop = verifier.verify(enroll, probe).enroll.crop
    batch = torch.from_numpy(crop[None]).permute(0, 3, 1, 2).float() / 255.0  # 1 x 3 x S x S

    def embed_crop() -> None:
        with torch.inference_mode():
            verifier.model.embed(batch)

    rows = [
        ("verify(obama.jpg, obama2.jpg), all included", lambda: verifier.verify(enroll, probe), 250),
        ("verify without the pseudo point cloud", lambda: verifier.verify(enroll, probe, with_points=False), None),
        ("load_image(obama.jpg) (910 x 1137 JPEG)", lambda: load_image(enroll), None),
        ("FaceAnalyzer.analyze (YuNet + landmarker), one photo", lambda: verifier.analyzer.analyze(image), None),
        (f"model.embed of one aligned {verifier.input_size} px crop", embed_crop, 60),
    ]
    print(f"checkpoint: {verifier.name}; torch {torch.__version__}, {args.threads} threads; "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.1f} at start; {args.repeats} repeats")
    print("| step | median ms | p90 ms | goal ms |")
    print("|---|---:|---:|---:|")
    for label, fn, goal in rows:
        median, p90 = timed(fn, args.repeats)
        print(f"| {label} | {median:.1f} | {p90:.1f} | {goal or ''} |")


if __name__ == "__main__":
    main()
