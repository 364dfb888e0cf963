"""pose3dfr against what users would pick instead: dlib's ResNet (the face_recognition pipeline) and OpenCV SFace.

Accuracy: the pose-binned protocol of pose3dfr.eval.evaluate (frontal gallery |yaw| < 15 against probes
binned by |yaw|, held-out identities) on a synthetic benchmark, each system with its own detector and
alignment; a detection failure gives its pairs score -inf (a non-match) and is counted per bin. Also the
shipped real photos (Obama-Obama vs Obama-Biden). Speed: load time, verify latency (detect + align + embed,
both images), embed latency at batch 1 and 32, peak memory, each system in its own subprocess.

    pip install --no-deps -r requirements-bench.txt
    python -m benchmarks.peers --data data/synth200 [--split test] [--checkpoint default] [--threads 2]
        [--repeats 20] [--max-identities N] [--systems ours,dlib,sface] [--out docs/benchmarks.md]

Writes docs/benchmarks.md, docs/benchmarks_tar.html and docs/benchmarks_tar.png. The systems are
pose3dfr.eval.peers, the accuracy protocol pose3dfr.eval.peer_protocol, the page pose3dfr.eval.peer_report;
the speed measurement is this script's.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from benchmarks.harness import command_line, set_threads, wall_times_ms
from pose3dfr.eval.config import EvalConfig
from pose3dfr.eval.peer_protocol import load_benchmark, photo_scores, run_accuracy
from pose3dfr.eval.peer_report import write_report
from pose3dfr.eval.peers import make_system, system_available
from pose3dfr.eval.shipped_photos import SPEED_PHOTOS
from pose3dfr.face.image_io import load_image
from pose3dfr.paths import PHOTOS_DIR, PROJECT_ROOT

SYSTEMS = ("ours", "dlib", "sface")


# ----------------------------------------------------------------------------------------------
# Speed: each system alone in a subprocess (peak memory of that system only)
# ----------------------------------------------------------------------------------------------

def _timed(fn, repeats: int, warmup: int) -> dict[str, float]:
    """Median and 95th percentile of `repeats` timed calls of fn() (milliseconds)."""
    times = wall_times_ms(fn, repeats, warmup)
    return {"median_ms": float(np.median(times)), "p95_ms": float(np.percentile(times, 95)), "repeats": repeats}


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MiB: VmHWM on Linux, else ru_maxrss.

    Not ru_maxrss on Linux: it survives exec, so a worker started by a parent that had loaded every system
    would report the parent's peak (all three systems showed the same 872 MiB that way)."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0  # kB
    scale = 1024.0 * 1024.0 if sys.platform == "darwin" else 1024.0  # bytes on macOS, KiB elsewhere
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale


def speed_worker(key: str, checkpoint: str, threads: int, repeats: int, warmup: int) -> dict[str, Any]:
    """Load time, verify and embed latencies and peak RSS of one system, measured in this process."""
    set_threads(threads)
    enroll, probe = (load_image(PHOTOS_DIR / name) for name in SPEED_PHOTOS)
    baseline_mb = peak_rss_mb()
    system = make_system(key, checkpoint)
    start = time.perf_counter()
    system.load()
    if key == "ours":
        set_threads(threads)  # torch is imported by load()
    load_s = time.perf_counter() - start
    chip = system.detect_align(enroll)
    if chip is None:
        raise RuntimeError(f"{key}: no face found in {SPEED_PHOTOS[0]}")
    return {"label": system.label, "load_s": load_s,
            "verify": _timed(lambda: system.verify(enroll, probe), repeats, warmup),
            "embed_b1": _timed(lambda: system.embed_batch([chip]), repeats, warmup),
            "embed_b32": _timed(lambda: system.embed_batch([chip] * 32), max(3, repeats // 4), 1),
            "baseline_rss_mb": baseline_mb,
            "peak_rss_mb": peak_rss_mb()}


def run_speed(key: str, args: argparse.Namespace) -> dict[str, Any]:
    """speed_worker in a fresh interpreter, so each system's peak memory is its own."""
    command = [sys.executable, "-m", "benchmarks.peers", "--speed-worker", key, "--checkpoint", args.checkpoint,
               "--threads", str(args.threads), "--repeats", str(args.repeats), "--warmup", str(args.warmup)]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), OPENBLAS_NUM_THREADS=str(args.threads),
               MKL_NUM_THREADS=str(args.threads))
    # from the repository root, where `-m` finds benchmarks/
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=PROJECT_ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"speed worker {key} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------

def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="synthetic benchmark root (manifest.json); omit to skip accuracy")
    parser.add_argument("--split", default="test", help="manifest split of held-out identities ('all' = every identity)")
    parser.add_argument("--max-identities", type=int, default=None, help="cap on identities (the first N of the split)")
    parser.add_argument("--checkpoint", default="default", help="our Verifier.from_pretrained name or path")
    parser.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated subset of " + ",".join(SYSTEMS))
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for torch, OpenCV and dlib's BLAS")
    parser.add_argument("--repeats", type=int, default=20, help="timed calls per latency (batch 32: a quarter)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls before each latency")
    parser.add_argument("--no-speed", action="store_true", help="skip the speed and memory part")
    parser.add_argument("--no-photos", action="store_true", help="skip the real-photo pairs")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--speed-worker", choices=SYSTEMS, help=argparse.SUPPRESS)  # internal: one system's speed
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.speed_worker:
        print(json.dumps(speed_worker(args.speed_worker, args.checkpoint, args.threads, args.repeats, args.warmup)))
        return 0
    load_average = os.getloadavg()
    set_threads(args.threads)
    keys = []
    for key in args.systems.split(","):
        reason = system_available(key)
        print(f"{key}: skipped, {reason}" if reason else f"{key}: included", flush=True)
        if reason is None:
            keys.append(key)
    accuracy, photos, speed, labels, kinds, data_info = {}, {}, {}, {}, {}, ""
    if args.data:
        dataset, indices = load_benchmark(args.data, None if args.split == "all" else args.split, args.max_identities)
        data_info = (f"`{args.data}`, split `{args.split}`: {dataset.num_identities} identities, {len(indices)} images "
                     f"(probes), gallery = images with \\|yaw\\| < {EvalConfig().frontal_max_yaw:g}.")
        print(data_info, flush=True)
    for key in keys:
        system = make_system(key, args.checkpoint)
        system.load()
        set_threads(args.threads)
        labels[key], kinds[key] = system.label, system.score
        if args.data:
            accuracy[key] = run_accuracy(system, dataset, indices)
            print(f"{system.label}: accuracy in {accuracy[key]['seconds']:.0f} s", flush=True)
        if not args.no_photos:
            photos[key] = photo_scores(system)
        del system
    for key in keys if not args.no_speed else []:
        start = time.perf_counter()
        speed[key] = run_speed(key, args)
        print(f"{labels[key]}: verify {speed[key]['verify']['median_ms']:.0f} ms, peak {speed[key]['peak_rss_mb']:.0f} MiB,"
              f" speed part in {time.perf_counter() - start:.0f} s", flush=True)
    written = write_report(args.out, command_line("peers", argv), args.threads, load_average, accuracy, photos,
                           speed, labels, kinds, data_info)
    print(args.out.read_text())
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
