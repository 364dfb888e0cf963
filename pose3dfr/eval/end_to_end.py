"""End to end by yaw: what a user gets from a photo, detection and alignment included (the protocol; the CLI
is `python -m benchmarks.end_to_end`, the report pose3dfr.eval.end_to_end_report).

Protocol: held-out identities; each identity enrolled with its frontal neutral render (yaw 0, first
expression); every other render is a probe (signed yaws folded to |yaw|, every 15 degrees). A photo where the
system finds no face scores -inf: a rejection that stays in the counts. Thresholds at 1% and 0.1% FAR come from
the same protocol on the validation identities (`val_split`), through the same pipeline. pose3dfr checkpoints
run the Verifier's pipeline (FaceAnalyzer detections, cached per data root as `pose3dfr eval --align pipeline`
caches them, then align_detection and model.embed), next to the oracle protocol (the same images aligned with
their ground-truth landmarks, the analysis-only alignment). The peers (pose3dfr.eval.peers) run their own
detector and alignment. Per |yaw|: face found (%), yaw and pitch error of found faces (mean absolute, degrees;
with a pose model the head-pose network's next to MediaPipe's), TAR at both FARs, impostor accept rate at the
1% threshold.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from pose3dfr.eval.config import EvalConfig
from pose3dfr.eval.metrics import far_key, threshold_at_far
from pose3dfr.eval.protocol import yaw_thresholds
from pose3dfr.eval.thresholds import ThresholdPolicy

CHECKPOINTS = ("default", "dlib-pretrained")
PEERS = ("dlib", "sface")
FARS = (1e-2, 1e-3)
QUICK_IDENTITIES = 6  # --quick: identities per split (a few minutes on 2 cores)
EMBED_BATCH = 32


@dataclass
class EndToEndConfig:
    """One end-to-end run: which data, which identities, which systems."""

    data: str = "data/synth200"  # the shared synthetic benchmark (docs/synthetic.md)
    split: str = "test"  # identities the rows are measured on
    val_split: str = "val"  # identities the thresholds come from
    max_identities: int | None = None  # identities per split (the first N); None = all
    systems: list[str] = field(default_factory=lambda: [*CHECKPOINTS, *PEERS])
    # NAME -> a pose3dfr checkpoint name or path (optionally "@field=value,..." inference overrides of its
    # ModelConfig), reported as NAME; a name in `systems` that is not a CHECKPOINTS entry nor here is a peer
    extra: dict[str, str] = field(default_factory=dict)
    no_flip: list[str] = field(default_factory=list)  # systems embedded without the mirror average
    oracle: bool = True  # also the ground-truth-landmark rows (twice the embedding work)
    pose_model: str | None = None  # head-pose network weights: its yaw error as a second pose source


# ----------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------

def open_split(root: str | Path, split: str | None, max_identities: int | None):
    """The split's identities of a benchmark root (the first `max_identities` when capped), without points."""
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
    """The render's ground-truth landmarks (the oracle alignment's)."""
    from pose3dfr.data.facescape import read_landmarks

    path = Path(record.path)
    return read_landmarks(path.with_name(f"{record.view}_landmarks.npy"))


# ----------------------------------------------------------------------------------------------
# Systems: (descriptors N x D with None for no face, similarity)
# ----------------------------------------------------------------------------------------------

def pose3dfr_embeddings(name: str, dataset: Any, detections: Any, oracle: bool, flip: bool | None = None
                        ) -> tuple[list[np.ndarray | None], Any]:
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
        attr, _, value = item.partition("=")
        setattr(verifier.model.cfg, attr, {"true": True, "false": False}.get(value.lower(), value))
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
    """A peer's descriptors of every image (None where its own detector found no face), and the loaded peer."""
    from pose3dfr.eval.peers import embed_images, make_system

    system = make_system(key)
    system.load()
    return embed_images(system, (dataset[i]["image"] for i in range(len(dataset.records)))), system


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """M x N cosine of M x D against N x D descriptors (a checkpoint without a frontal teacher)."""
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
    """The protocol's masks: "enrol" (N), "genuine" (E x N: same identity), "probe" (N: every image that does not
    enrol) and each image's "abs_yaw" (N, rounded degrees)."""
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
        from pose3dfr.headpose.estimator import HeadPoseEstimator  # the head-pose network (optional)

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

def run(config: EndToEndConfig) -> dict[str, Any]:
    """The rows of every system in `config.systems` (results as `python -m benchmarks.end_to_end` writes them)."""
    from pose3dfr.eval.evaluate import pipeline_detections

    test, val = (open_split(config.data, s, config.max_identities) for s in (config.split, config.val_split))
    sets = {"val": val, "test": test}
    t0 = time.perf_counter()
    detections = {k: pipeline_detections(d, range(len(d.records))) for k, d in sets.items()}
    print(f"detections ready in {time.perf_counter() - t0:.0f} s", flush=True)
    p = {k: pairs(d.records) for k, d in sets.items()}
    truth = np.array([[r.yaw, r.pitch] for r in test.records])
    poses = pipeline_poses(test, detections["test"], config.pose_model)
    results: dict[str, Any] = {"identities": {k: d.num_identities for k, d in sets.items()},
                               "images": {k: len(d.records) for k, d in sets.items()}, "systems": {}}
    for key in config.systems:
        start = time.perf_counter()
        for variant, (emb, similarity, pose_sources) in system_variants(key, config, sets, detections, poses).items():
            scores = {k: score_matrix(emb[k], p[k]["enrol"], similarity[k]) for k in sets}
            results["systems"][f"{key}/{variant}"] = system_rows(key, variant, scores, p, emb["test"], poses,
                                                                 pose_sources, truth)
        results["systems"][f"{key}/pipeline"]["seconds"] = time.perf_counter() - start
        print(f"{key}: {time.perf_counter() - start:.0f} s", flush=True)
    return results


def system_variants(key: str, config: EndToEndConfig, sets: dict[str, Any], detections: dict[str, Any],
                    poses: dict[str, np.ndarray]) -> dict[str, tuple[dict, dict, dict]]:
    """{variant: (embeddings per set, similarity per set, pose sources of its rows)}: a pose3dfr checkpoint's
    "pipeline" (and "oracle") crops, a peer's own pipeline."""
    from pose3dfr.eval.evaluate import image_yaws

    variants = {}
    if key in CHECKPOINTS or key in config.extra:
        for oracle in (False, True) if config.oracle else (False,):
            emb, similarity = {}, {}
            for k, d in sets.items():
                emb[k], route = pose3dfr_embeddings(config.extra.get(key, key), d, detections[k], oracle,
                                                    False if key in config.no_flip else None)
                known = image_yaws(d.records, range(len(d.records)), "oracle" if oracle else "pipeline",
                                   detections[k])
                similarity[k] = routed_cosine(route, known)
            variants["oracle" if oracle else "pipeline"] = (emb, similarity, poses if not oracle else {})
    else:
        emb, system = {}, None
        for k, d in sets.items():
            emb[k], system = peer_embeddings(key, d)
        variants["pipeline"] = (emb, {k: system.similarity for k in sets}, {})
    return variants


def system_rows(key: str, variant: str, scores: dict[str, np.ndarray], p: dict[str, dict[str, np.ndarray]],
                test_embeddings: Sequence[np.ndarray | None], poses: dict[str, np.ndarray],
                pose_sources: dict[str, np.ndarray], truth: np.ndarray) -> dict[str, Any]:
    """One system variant's thresholds from validation and its per-yaw rows on test (`scores`: "val" and
    "test" E x N matrices)."""
    thresholds = val_thresholds(scores["val"], p["val"])
    # pose3dfr decides by the yaw curve at the pipeline's own yaw estimate, as the Verifier does (the oracle
    # variant: at the true yaw); peers have no pose, so one threshold
    curve = val_calibration(scores["val"], p["val"]) if key not in PEERS else None
    yaws = truth[:, 0] if variant == "oracle" else poses["pipeline"][:, 0]
    found = np.array([e is not None for e in test_embeddings])
    return {"thresholds_from_val": thresholds, "yaw_curve_from_val": curve,
            "val_impostor_accept_0.01": float(
                (scores["val"][~p["val"]["genuine"] & p["val"]["probe"][None]] >= thresholds["0.01"]).mean()),
            "by_yaw": per_yaw(scores["test"], p["test"], probe_thresholds(thresholds, curve, yaws), found,
                              pose_sources, truth)}


def missing_systems(config: EndToEndConfig) -> dict[str, str]:
    """{peer: why it cannot run} for the peers of `config.systems` whose packages are missing."""
    from pose3dfr.eval.peers import peer_available

    missing = {s: peer_available(s) for s in config.systems if s in PEERS}
    return {s: why for s, why in missing.items() if why}
