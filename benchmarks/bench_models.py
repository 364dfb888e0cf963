"""CPU latency of the model parts: embed() per backbone at batch 1 and 32, the point encoder at 1k/2k/4k points.

Usage: python -m benchmarks.bench_models [--threads 2] [--write-doc docs/models.md]
Prints a markdown table; --write-doc replaces the block between the bench markers in that page.
Timings are the median and the minimum of several runs under torch.inference_mode on CPU.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
from pathlib import Path

import torch

from benchmarks.harness import wall_times_ms
from pose3dfr.errors import Pose3DFRError
from pose3dfr.models import create_model
from pose3dfr.models.point_encoder import PointEncoder, ball_query, farthest_point_sample

START, END = "<!-- bench:start -->", "<!-- bench:end -->"


def time_ms(fn, repeats: int, warmup: int = 2) -> tuple[float, float]:
    """(median, min) wall time of fn() in milliseconds; min is the best guess of the cost on an idle CPU."""
    times = wall_times_ms(fn, repeats, warmup)
    return statistics.median(times), min(times)


def bench_embed(backbone: str) -> list[tuple[str, str, tuple[float, float]]]:
    """embed() of the full model (2D path incl. JAM) at batch 1 and 32."""
    try:
        model = create_model("full", backbone=backbone).eval()
    except Pose3DFRError as exc:
        print(f"skip {backbone}: {exc}", file=sys.stderr)
        return []
    size = model.backbone.input_size
    rows = []
    for batch, repeats in ((1, 15), (32, 3)):
        images = torch.rand(batch, 3, size, size)
        with torch.inference_mode():
            ms = time_ms(lambda: model.embed(images), repeats)
        rows.append((f"embed {backbone} ({size}px)", f"batch {batch}", ms))
    return rows


def bench_points() -> list[tuple[str, str, tuple[float, float]]]:
    """PointNet++ encoder + grid reshaping (ir18 map size) on one cloud of 1024/2048/4096 points."""
    rows = []
    for points in (1024, 2048, 4096):
        enc = PointEncoder(512, 7, sa1_centres=min(512, points // 4) if points < 2048 else 512).eval()
        cloud = torch.rand(1, points, 3) * torch.tensor([16.0, 18.0, 6.0]) - torch.tensor([8.0, 9.5, 3.0])
        with torch.inference_mode():
            ms = time_ms(lambda: enc(cloud), 10)
        rows.append(("point encoder (grid, 512x7x7)", f"{points} pts, batch 1", ms))
        if points == 2048:
            rows += _point_breakdown(enc, cloud)
    return rows


def _point_breakdown(enc: PointEncoder, cloud: torch.Tensor) -> list[tuple[str, str, tuple[float, float]]]:
    """Where the encoder's time goes: sampling (FPS, sequential) and grouping vs the rest."""
    xyz = cloud[..., :3].contiguous()
    with torch.inference_mode():
        fps = time_ms(lambda: farthest_point_sample(xyz, enc.sa1.centres), 10)
        centres = xyz[:, farthest_point_sample(xyz, enc.sa1.centres)[0]]
        group = time_ms(lambda: ball_query(xyz, centres, enc.sa1.radius, enc.sa1.group_size), 10)
    return [("  of which SA1 farthest point sampling", "2048 -> 512", fps),
            ("  of which SA1 ball query", "512 x 32 of 2048", group)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--backbones", nargs="+", default=["ir18", "ir50", "mobilefacenet", "dlib_resnet"])
    parser.add_argument("--write-doc", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rows = [row for name in args.backbones for row in bench_embed(name)] + bench_points()
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    lines = [f"torch {torch.__version__}, {args.threads} threads, {os.cpu_count()} CPUs "
             f"({platform.processor() or platform.machine()}), load average during the run (1/5/15 min): {load}",
             "", "| what | input | median ms | min ms |", "|---|---|---|---|"]
    lines += [f"| {what} | {inp} | {ms[0]:.1f} | {ms[1]:.1f} |" for what, inp, ms in rows]
    table = "\n".join(lines)
    print(table)
    if args.write_doc:
        text = args.write_doc.read_text()
        head, _, rest = text.partition(START)
        _, _, tail = rest.partition(END)
        args.write_doc.write_text(f"{head}{START}\n{table}\n{END}{tail}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
