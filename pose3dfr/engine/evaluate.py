"""Pose-binned verification protocol of paper.md: frontal gallery against probes binned by |yaw|.

Gallery = images with |yaw| < frontal_max_yaw; probes = every image, binned by |yaw| with
`pose3dfr.geometry.pose_bin`; pairs = gallery x probe over the split's (held-out) identities, never an
image with itself. Each image is embedded once (`model.embed`, cosine similarity of unit embeddings).
Results: TAR / threshold per FAR, AUC, EER, ROC per bin and overall, plus calibrated thresholds that
training stores in the checkpoint (extra["calibration"]) so the app can give a verdict.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from pose3dfr.engine.config import EvalConfig
from pose3dfr.engine.metrics import far_key, verification_summary
from pose3dfr.errors import DatasetError
from pose3dfr.geometry import pose_bin, pose_bin_labels

METRIC_KEYS_PER_FAR = ("tar_at_far", "threshold_at_far")


# ----------------------------------------------------------------------------------------------
# Embedding
# ----------------------------------------------------------------------------------------------

class _ModelImages(Dataset):
    """Model-ready image tensors (3 x S x S) of selected dataset entries, via `image_transform`."""

    def __init__(self, dataset: Any, indices: Sequence[int], image_transform: Callable[[dict], torch.Tensor]):
        self.dataset, self.indices, self.image_transform = dataset, list(indices), image_transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.image_transform(self.dataset[self.indices[i]])


def default_image_transform(model: torch.nn.Module, seed: int = 0, align: str = "oracle",
                            detections: Any = None) -> Callable[[dict], torch.Tensor]:
    """The evaluation transform of the data package for this model's backbone (aligned chip, no jitter);
    align="pipeline" crops from `detections` (a DetectionCache) as the Verifier does."""
    from pose3dfr.data.transforms import ModelTransform

    backbone = model.backbone
    transform = ModelTransform(template=backbone.template, size=backbone.input_size, num_points=0,
                               point_features=model.cfg.point_features, train=False, seed=seed,
                               require_points=False, align=align, detections=detections)
    return lambda sample: transform(sample)["image"]


def pipeline_detections(dataset: Any, indices: Sequence[int], analyzer: Any = None):
    """The DetectionCache of the dataset's root with every image of `indices` detected (built on first use)."""
    from pose3dfr.data.detections import DetectionCache

    root = getattr(dataset, "root", None)
    if root is None:
        raise DatasetError(f"{_source(dataset)}: pipeline alignment needs a data root for its detection cache")
    cache = DetectionCache(root, analyzer=analyzer)
    cache.ensure(dataset.records[i]["path"] for i in indices)
    return cache


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@torch.no_grad()
def embed_images(model: torch.nn.Module, dataset: Any, indices: Sequence[int], config: EvalConfig,
                 image_transform: Callable[[dict], torch.Tensor] | None = None) -> np.ndarray:
    """N x D float32 unit embeddings of dataset[indices], in batches of config.batch_size."""
    image_transform = image_transform or default_image_transform(model)
    loader = DataLoader(_ModelImages(dataset, indices, image_transform), batch_size=config.batch_size,
                        shuffle=False, num_workers=config.num_workers,
                        generator=torch.Generator())  # leaves the global RNG (training's) untouched
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        chunks = [model.embed(batch.to(device)).embeddings.float().cpu() for batch in loader]
    finally:
        model.train(was_training)
    return torch.cat(chunks).numpy() if chunks else np.zeros((0, 0), np.float32)


@torch.no_grad()
def evaluate_point_branch(model: torch.nn.Module, dataset: Any, config: EvalConfig) -> dict[str, Any]:
    """Verification by the 3D branch alone: one embedding per (identity, expression) cloud, every pair of
    clouds compared (same identity, other expression = genuine). Measures how much identity the shape holds.

    `dataset` must load clouds (num_points > 0); results have the keys of evaluate_embeddings' "overall".
    """
    from pose3dfr.data.transforms import ModelTransform

    cfg = model.cfg
    transform = ModelTransform(model.backbone.template, model.backbone.input_size, cfg.num_points,
                               cfg.point_features, train=False, require_points=True)
    first: dict[tuple[int, str], int] = {}
    for index, record in enumerate(dataset.records):
        first.setdefault((record.identity, record.expression), index)
    clouds = torch.stack([torch.as_tensor(transform(dataset[i])["points"]) for i in first.values()])  # K x P x F
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        embeddings = torch.cat([model.embed_points(chunk.to(device)).embeddings.cpu()
                                for chunk in clouds.split(config.batch_size)]).numpy()
    finally:
        model.train(was_training)
    identities = [identity for identity, _ in first]
    results = evaluate_embeddings(embeddings, identities, np.zeros(len(identities)), config, "point clouds")
    return {**results["overall"], "clouds": len(identities)}


# ----------------------------------------------------------------------------------------------
# Protocol on embeddings
# ----------------------------------------------------------------------------------------------

def select_images(records: Sequence[Any], config: EvalConfig) -> list[int]:
    """Indices of the images the protocol uses: all with a known yaw, or a deterministic subset."""
    usable = [i for i, r in enumerate(records) if r["yaw"] is not None and math.isfinite(r["yaw"])]
    if config.max_images is not None and len(usable) > config.max_images:
        rng = np.random.default_rng(0)  # fixed: validation sees the same images every time
        usable = sorted(rng.choice(usable, size=config.max_images, replace=False).tolist())
    return usable


def protocol_pairs(identities: Sequence[Any], yaws: Sequence[float], config: EvalConfig,
                   source: str = "dataset") -> dict[str, Any]:
    """The protocol's pairs: gallery indices (G), G x N genuine and valid (never an image with itself)
    masks, each image's probe bin label (N) and the bin labels."""
    identities, yaws = np.asarray(identities), np.abs(np.asarray(yaws, dtype=np.float64))
    gallery = np.flatnonzero(yaws < config.frontal_max_yaw)
    if gallery.size == 0:
        raise DatasetError(f"{source}: no frontal gallery image (|yaw| < {config.frontal_max_yaw}) among "
                           f"{len(yaws)} images")
    return {"gallery": gallery, "genuine": identities[gallery][:, None] == identities[None, :],
            "valid": gallery[:, None] != np.arange(len(yaws))[None, :],
            "probe_bins": np.array([pose_bin(y, config.bin_edges) for y in yaws]),
            "labels": pose_bin_labels(config.bin_edges), "identities": int(np.unique(identities).size)}


def evaluate_scores(scores: np.ndarray, pairs: dict[str, Any], config: EvalConfig) -> dict[str, Any]:
    """Protocol metrics from a G x N score matrix (gallery x all images; -inf allowed = a certain non-match)."""
    genuine, valid, probe_bins, labels = pairs["genuine"], pairs["valid"], pairs["probe_bins"], pairs["labels"]
    overall = _summary(scores, genuine, valid, config)
    bins = {label: _summary(scores[:, probe_bins == label], genuine[:, probe_bins == label],
                            valid[:, probe_bins == label], config) for label in labels}
    results: dict[str, Any] = {
        "overall": _metrics_only(overall),
        "bins": {label: _metrics_only(s) for label, s in bins.items()},
        "roc": {"overall": overall.get("roc"), **{label: s.get("roc") for label, s in bins.items()}},
        "protocol": {"fars": list(config.fars), "bin_edges": list(config.bin_edges),
                     "frontal_max_yaw": config.frontal_max_yaw, "images": int(len(probe_bins)),
                     "gallery_images": int(pairs["gallery"].size), "identities": pairs["identities"],
                     "probe_images": {label: int((probe_bins == label).sum()) for label in labels}},
    }
    results["calibration"] = calibration_from_results(results)
    return results


def evaluate_embeddings(embeddings: np.ndarray, identities: Sequence[int], yaws: Sequence[float],
                        config: EvalConfig, source: str = "dataset", no_face: Sequence[bool] | None = None
                        ) -> dict[str, Any]:
    """Protocol metrics from N x D unit embeddings with each image's identity label and yaw (degrees).

    `no_face` (N bools): images where the detector found no face; their pairs score -inf (a rejection that
    stays in the counts) and "face_found" gives the found share per probe bin.
    """
    config.validate()
    embeddings = np.asarray(embeddings, dtype=np.float32)
    pairs = protocol_pairs(identities, yaws, config, source)
    scores = embeddings[pairs["gallery"]] @ embeddings.T  # G x N cosine similarities
    if no_face is None:
        return evaluate_scores(scores, pairs, config)
    failed = np.asarray(no_face, dtype=bool)
    scores = scores.astype(np.float64)
    scores[failed[pairs["gallery"]], :] = -np.inf
    scores[:, failed] = -np.inf
    results = evaluate_scores(scores, pairs, config)
    found = {label: float(1 - failed[pairs["probe_bins"] == label].mean()) if (pairs["probe_bins"] == label).any()
             else None for label in pairs["labels"]}
    results["face_found"] = {**found, "overall": float(1 - failed.mean())}
    return results


def _summary(scores: np.ndarray, genuine: np.ndarray, valid: np.ndarray, config: EvalConfig) -> dict[str, Any]:
    """verification_summary of the valid pairs; metrics None when a class has no pair."""
    gen_scores, imp_scores = scores[valid & genuine], scores[valid & ~genuine]
    if gen_scores.size == 0 or imp_scores.size == 0:
        empty: dict[str, Any] = {f"{k}_{far_key(f)}": None for f in config.fars for k in METRIC_KEYS_PER_FAR}
        empty.update(auc=None, eer=None, genuine_pairs=int(gen_scores.size), impostor_pairs=int(imp_scores.size),
                     roc=None)
        return empty
    return verification_summary(gen_scores, imp_scores, config.fars, config.roc_points)


def _metrics_only(summary: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in summary.items() if k != "roc"}


def calibration_from_results(results: dict[str, Any]) -> dict[str, Any]:
    """{"far": {"1e-2": {"overall": t, "bins": {"[0,30)": t, ...}}}}: thresholds the app applies."""
    fars = results["protocol"]["fars"]
    calibration: dict[str, Any] = {"far": {}, "metric": "cosine", "accept": "score >= threshold"}
    for far in fars:
        key = f"threshold_at_far_{far_key(far)}"
        calibration["far"][far_key(far)] = {
            "overall": results["overall"][key],
            "bins": {label: metrics[key] for label, metrics in results["bins"].items()},
        }
    return calibration


# ----------------------------------------------------------------------------------------------
# Whole model on a dataset
# ----------------------------------------------------------------------------------------------

def evaluate_split(model: torch.nn.Module, data: str | Path, config: EvalConfig) -> dict[str, Any]:
    """The protocol on the `config.split` images of a FaceScape-layout root (no point clouds needed)."""
    from pose3dfr.data.facescape import FaceScapeMultiView

    return evaluate_model(model, FaceScapeMultiView(data, split=config.split, num_points=0), config)


def evaluate_model(model: torch.nn.Module, dataset: Any, config: EvalConfig | None = None,
                   image_transform: Callable[[dict], torch.Tensor] | None = None) -> dict[str, Any]:
    """Run the protocol on a dataset with `.records` (identity, yaw) whose items are raw samples.

    Without `image_transform`, crops follow config.align: "pipeline" (the Verifier's detector + alignment,
    detections cached per data root; no face = rejection) or "oracle" (ground-truth landmarks)."""
    config = config or EvalConfig(align="oracle")
    config.validate()
    records = dataset.records
    indices = select_images(records, config)
    if not indices:
        raise DatasetError(f"{_source(dataset)}: no image with a known yaw to evaluate")
    no_face, custom = None, image_transform is not None
    if not custom and config.align == "pipeline":
        detections = pipeline_detections(dataset, indices)
        image_transform = default_image_transform(model, align="pipeline", detections=detections)
        no_face = [detections.get(records[i]["path"]) is None for i in indices]
    embeddings = embed_images(model, dataset, indices, config, image_transform)
    results = evaluate_embeddings(embeddings, [records[i]["identity"] for i in indices],
                                  [records[i]["yaw"] for i in indices], config, _source(dataset), no_face)
    results["protocol"]["align"] = "custom" if custom else config.align
    return results


def _source(dataset: Any) -> str:
    return str(getattr(dataset, "root", None) or type(dataset).__name__)


# ----------------------------------------------------------------------------------------------
# Reports
# ----------------------------------------------------------------------------------------------

def _fmt(value: Any, percent: bool = True) -> str:
    if value is None:
        return "n/a"
    return f"{100 * value:.2f}" if percent else f"{value:.4f}"


def results_markdown(results: dict[str, Any], title: str = "Verification by probe pose") -> str:
    """A Markdown table: one row per pose bin and overall; TAR in percent."""
    fars = results["protocol"]["fars"]
    header = (["Probe yaw bin", "Genuine pairs", "Impostor pairs"]
              + [f"TAR@{100 * f:g}%FAR" for f in fars] + ["AUC", "EER (%)"])
    lines = [f"## {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    rows = [*results["bins"].items(), ("overall", results["overall"])]
    for label, m in rows:
        cells = [label, str(m["genuine_pairs"]), str(m["impostor_pairs"])]
        cells += [_fmt(m[f"tar_at_far_{far_key(f)}"]) for f in fars]
        cells += [_fmt(m["auc"], percent=False), _fmt(m["eer"])]
        lines.append("| " + " | ".join(cells) + " |")
    warnings = far_warnings(results)
    if warnings:
        lines += [""] + [f"Warning: {w}" for w in warnings]
    p = results["protocol"]
    lines += ["", f"Gallery: {p['gallery_images']} frontal images (|yaw| < {p['frontal_max_yaw']:g}); "
                  f"{p['images']} probe images of {p['identities']} identities; accept when cosine >= threshold."]
    return "\n".join(lines) + "\n"


# Impostor pairs per 1/FAR needed before a TAR at that FAR is a measurement: with fewer than 10 / FAR
# pairs, fewer than 10 impostors lie above the threshold and a single pair moves it.
MIN_IMPOSTORS_PER_INVERSE_FAR = 10


def far_warnings(results: dict[str, Any]) -> list[str]:
    """One line per FAR and pose bin (or overall) whose impostor pairs are too few to measure that FAR."""
    warnings = []
    rows = [*results["bins"].items(), ("overall", results["overall"])]
    for far in results["protocol"]["fars"]:
        needed = math.ceil(MIN_IMPOSTORS_PER_INVERSE_FAR / far)
        short = [f"{label} ({m['impostor_pairs']:,})" for label, m in rows if m["impostor_pairs"] < needed]
        if short:
            warnings.append(f"TAR at FAR {100 * far:g}% is not measured reliably where there are fewer than "
                            f"{needed:,} impostor pairs (10 / FAR): {', '.join(short)}.")
    return warnings


def roc_figure(results: dict[str, Any], title: str = "ROC by probe pose"):
    """Plotly figure: TAR against FAR (log axis), one curve per pose bin and overall."""
    import plotly.graph_objects as go

    figure = go.Figure()
    for label, roc in results["roc"].items():
        if roc is None:
            continue
        far = np.asarray(roc["far"])
        keep = far > 0  # a log axis cannot show FAR = 0
        figure.add_trace(go.Scatter(x=far[keep], y=np.asarray(roc["tar"])[keep], mode="lines", name=label))
    for far in results["protocol"]["fars"]:
        figure.add_vline(x=far, line_dash="dot", line_color="grey")
    figure.update_layout(title=title, xaxis_title="False accept rate", yaxis_title="True accept rate",
                         xaxis_type="log", yaxis_range=[0, 1.01], template="plotly_white")
    return figure


def write_reports(results: dict[str, Any], json_path: str | Path) -> dict[str, Path]:
    """JSON at json_path, plus <stem>.md, <stem>_roc.html and <stem>_roc.png (PNG only with kaleido)."""
    json_path = Path(json_path)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    written = {"json": json_path, "markdown": json_path.with_suffix(".md"),
               "html": json_path.with_name(json_path.stem + "_roc.html")}
    json_path.write_text(json.dumps(results, indent=2))
    written["markdown"].write_text(results_markdown(results))
    figure = roc_figure(results)
    figure.write_html(written["html"], include_plotlyjs="cdn")
    if importlib.util.find_spec("kaleido") is not None:
        png = json_path.with_name(json_path.stem + "_roc.png")
        try:
            figure.write_image(png)
            written["png"] = png
        except Exception:  # kaleido present but without a usable browser: the PNG is optional
            pass
    return written


# ----------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------

def eval_command(args: argparse.Namespace) -> int:
    """`pose3dfr eval --checkpoint FILE --data DIR --json OUT [--split test]`."""
    from pose3dfr.models import load_checkpoint

    config = EvalConfig(split=args.split, batch_size=args.batch_size, num_workers=args.num_workers,
                        device=args.device, align=getattr(args, "align", "pipeline"))
    if args.fars:
        config.fars = tuple(args.fars)
    model, _, _ = load_checkpoint(args.checkpoint)
    model.to(resolve_device(config.device))
    results = evaluate_split(model, args.data, config)
    results["checkpoint"] = str(args.checkpoint)
    results["data"] = str(args.data)
    written = write_reports(results, args.json)
    print(results_markdown(results))
    print("wrote " + ", ".join(str(p) for p in written.values()))
    return 0


def calibration_file(model: torch.nn.Module, data: str | Path, config: EvalConfig, command: str = "") -> dict[str, Any]:
    """The checkpoint calibration (extra["calibration"]) measured on `config.split` through config.align,
    with what it was calibrated on: the JSON `pose3dfr calibrate` writes (e.g. checkpoints/dlib-pretrained.calibration.json)."""
    from pose3dfr.models.io import CALIBRATED_ON_SYNTHETIC

    results = evaluate_split(model, data, config)
    calibration = dict(results["calibration"])
    manifest = Path(data) / "manifest.json"
    synthetic = manifest.is_file() and "synthetic" in str(json.loads(manifest.read_text()).get("generator", ""))
    calibration.update(calibrated_on=CALIBRATED_ON_SYNTHETIC if synthetic else f"the {config.split} split",
                       align=config.align, split=config.split, identities=results["protocol"]["identities"],
                       images=results["protocol"]["images"], command=command)
    if "face_found" in results:
        calibration["face_found"] = results["face_found"]
    return {"calibration": calibration, "overall": results["overall"], "bins": results["bins"]}


def calibrate_command(args: argparse.Namespace) -> int:
    """`pose3dfr calibrate --checkpoint NAME --data DIR --out FILE [--split val] [--align pipeline]`."""
    from pose3dfr.models import load_checkpoint

    config = EvalConfig(split=args.split, align=args.align, device=args.device)
    model, _, _ = load_checkpoint(args.checkpoint)
    model.to(resolve_device(config.device))
    command = (f"pose3dfr calibrate --checkpoint {args.checkpoint} --data {args.data_name or args.data} "
               f"--split {args.split} --align {args.align} --out {args.out_name or args.out}")
    written = calibration_file(model, args.data, config, command)
    Path(args.out).write_text(json.dumps(written, indent=1) + "\n")
    for far, entry in written["calibration"]["far"].items():
        print(f"FAR {far}: threshold {entry['overall']:.4f}")
    print(f"wrote {args.out}")
    return 0
