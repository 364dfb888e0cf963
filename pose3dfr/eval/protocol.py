"""The per-pose verification protocol of paper.md: frontal gallery against probes binned by |yaw|.

Gallery = images with |yaw| < frontal_max_yaw; probes = every image, binned by |yaw| with
`pose3dfr.geometry.pose_bin`; pairs = gallery x probe over the split's (held-out) identities, never an
image with itself. Results: TAR / threshold per FAR, AUC, EER, ROC per bin and overall, plus the calibrated
thresholds (pose3dfr.eval.calibration) that a checkpoint stores so the app can give a verdict.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from pose3dfr.errors import DatasetError
from pose3dfr.eval.calibration import calibration_from_results
from pose3dfr.eval.config import EvalConfig
from pose3dfr.eval.metrics import far_key, threshold_at_far, verification_summary
from pose3dfr.geometry import pose_bin, pose_bin_labels
from pose3dfr.models.frontal_gate import Routing, routed_probes

METRIC_KEYS_PER_FAR = ("tar_at_far", "threshold_at_far")


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
            "probe_bins": np.array([pose_bin(y, config.bin_edges) for y in yaws]), "abs_yaws": yaws,
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
    results["yaw_thresholds"] = yaw_thresholds(scores, genuine, valid, pairs["abs_yaws"], config.fars,
                                               config.threshold_yaw_step)
    results["calibration"] = calibration_from_results(results)
    return results


def yaw_thresholds(scores: np.ndarray, genuine: np.ndarray, valid: np.ndarray, abs_yaws: Sequence[float],
                   fars: Sequence[float], step: float) -> dict[str, dict[str, list[float]]]:
    """Thresholds per |yaw| group (probes whose |yaw| rounds to the same multiple of `step`), the points of the
    yaw-interpolated decision threshold: {far_key: {"yaw": [mean |yaw| of each group], "threshold": [...]}}.
    A group enters a FAR's curve only with at least 1 / far impostor pairs (one false accept expected)."""
    abs_yaws = np.abs(np.asarray(abs_yaws, dtype=np.float64))
    groups = np.round(abs_yaws / step).astype(int)
    curves: dict[str, dict[str, list[float]]] = {far_key(f): {"yaw": [], "threshold": []} for f in fars}
    for group in np.unique(groups):
        in_group = (groups == group)[None, :]
        gen_scores, imp_scores = scores[valid & genuine & in_group], scores[valid & ~genuine & in_group]
        if gen_scores.size == 0:
            continue
        anchor = float(abs_yaws[groups == group].mean())
        for far in fars:
            if imp_scores.size >= 1.0 / far:
                threshold = threshold_at_far(gen_scores, imp_scores, far)
                if math.isfinite(threshold):
                    curves[far_key(far)]["yaw"].append(round(anchor, 3))
                    curves[far_key(far)]["threshold"].append(threshold)
    return curves


def evaluate_embeddings(embeddings: np.ndarray, identities: Sequence[int], yaws: Sequence[float],
                        config: EvalConfig, source: str = "dataset", no_face: Sequence[bool] | None = None,
                        routing: tuple[Sequence[float], Routing] | None = None) -> dict[str, Any]:
    """Protocol metrics from N x D unit embeddings with each image's identity label and yaw (degrees).

    `no_face` (N bools): images where the detector found no face; their pairs score -inf (a rejection that
    stays in the counts) and "face_found" gives the found share per probe bin.
    `routing` = (N estimated yaws, the model's Routing) for a frontal-teacher model: probes are scored in their routed
    form (pose3dfr.models.frontal_gate; the gallery is frontal, so the probe's yaw routes).
    """
    config.validate()
    embeddings = np.asarray(embeddings, dtype=np.float32)
    pairs = protocol_pairs(identities, yaws, config, source)
    probes = embeddings if routing is None else routed_probes(embeddings, routing[0], routing[1])
    scores = embeddings[pairs["gallery"]] @ probes.T  # G x N cosine similarities
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
