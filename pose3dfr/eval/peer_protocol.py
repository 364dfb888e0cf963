"""pose3dfr against its peers on one protocol: the pose-binned protocol of pose3dfr.eval.protocol (frontal
gallery |yaw| < 15 against probes binned by |yaw|, held-out identities), each system with its own detector and
alignment, where a detection failure gives its pairs score -inf (a non-match) and is counted per bin; and the
shipped real-photo pairs (Obama-Obama vs Obama-Biden). The CLI is `python -m benchmarks.peers`, the report
pose3dfr.eval.peer_report."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from pose3dfr.eval.config import EvalConfig
from pose3dfr.eval.end_to_end import open_split
from pose3dfr.eval.peers import System, embed_images
from pose3dfr.eval.protocol import evaluate_scores, protocol_pairs, select_images
from pose3dfr.eval.shipped_photos import GENUINE_PHOTO_PAIRS, IMPOSTOR_PHOTO_PAIRS
from pose3dfr.face.image_io import load_image
from pose3dfr.paths import PHOTOS_DIR

FAILURE = "failure"  # key of the per-bin detection-failure rates


def protocol_results(system: System, embeddings: Sequence[np.ndarray | None], identities: Sequence[Any],
                     yaws: Sequence[float], config: EvalConfig | None = None) -> dict[str, Any]:
    """Metrics per |yaw| bin and overall with pose3dfr.eval.evaluate's own pairs and metrics, except that a
    pair with a detection failure on either side scores -inf: a non-match that stays in the counts.
    `failure` holds the share of probe images per bin (and of gallery images) with no face found.
    """
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
    dataset = open_split(root, split, max_identities)
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
