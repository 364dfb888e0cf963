"""Speed of the synthetic benchmark generator (goal: >= 50 images/s at 256 x 256 on 2 CPU cores).

Prints (1) the per-image cost of one render (rasterise, shade, JPEG encode) on one core, and (2) the
end-to-end rate of `generate_benchmark` (meshes, point clouds, images, landmarks, params, manifest) with
1 and 2 worker processes. The machine may be shared: the load average is printed next to the numbers.

    python -m benchmarks.bench_synth [--identities 4] [--image-size 256] [--repeats 60]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from pose3dfr.data.synthetic import (SynthConfig, build_head, generate_benchmark, render_head,
                                     sample_identity, sample_nuisance)


def render_rate(image_size: int, repeats: int) -> float:
    """Images per second of render_head + JPEG encoding for one identity on the yaw grid (one process)."""
    config = SynthConfig(image_size=image_size)
    head = build_head(sample_identity(0, 1))
    rng = np.random.default_rng(0)
    yaws = config.yaws()
    render_head(head, 0.0, image_size=image_size)  # warm-up
    start = time.perf_counter()
    for i in range(repeats):
        nuisance = sample_nuisance(rng, config)
        image, _, _, _ = render_head(head, yaws[i % len(yaws)], nuisance.pitch, nuisance.roll, image_size, nuisance, rng)
        cv2.imencode(".jpg", image[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, config.jpeg_quality])
    return repeats / (time.perf_counter() - start)


def generate_rate(identities: int, image_size: int, workers: int) -> tuple[float, int]:
    """(images per second, images) of a full generate_benchmark run in a temporary folder."""
    config = SynthConfig(identities=identities, image_size=image_size, workers=workers)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        generate_benchmark(Path(tmp) / "bench", config)
        elapsed = time.perf_counter() - start
    images = identities * config.expressions * len(config.yaws())
    return images / elapsed, images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--identities", type=int, default=4)
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=60)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    print(f"cpu cores: {os.cpu_count()}, load average before: {os.getloadavg()[0]:.1f}")
    rate = render_rate(args.image_size, args.repeats)
    print(f"render + JPEG, 1 process: {rate:.1f} images/s ({1000 / rate:.1f} ms/image) at {args.image_size} px")
    for workers in (1, 2):
        rate, images = generate_rate(args.identities, args.image_size, workers)
        print(f"generate_benchmark, workers={workers}: {rate:.1f} images/s ({images} images, everything written)")
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
