"""A model over a data set through the per-pose protocol (pose3dfr.eval.protocol): embed each image once,
with the crops the Verifier would make ("pipeline": detections cached per data root) or ground-truth
crops ("oracle", analysis only), then score. Also the 3D branch on its own (`evaluate_point_branch`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from pose3dfr.data.detections import DetectionCache
from pose3dfr.data.facescape import FaceScapeMultiView
from pose3dfr.data.transforms import ModelTransform
from pose3dfr.errors import DatasetError
from pose3dfr.eval.config import EvalConfig
from pose3dfr.eval.protocol import evaluate_embeddings, protocol_pairs, select_images
from pose3dfr.models.frontal_gate import split_routed
from pose3dfr.inference.detect import FaceAnalyzer
from pose3dfr.inference.faces import DetectorConfig


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
    backbone = model.backbone
    transform = ModelTransform(template=backbone.template, size=backbone.input_size, num_points=0,
                               point_features=model.cfg.point_features, train=False, seed=seed,
                               require_points=False, align=align, detections=detections,
                               alignment=model.cfg.alignment)
    return lambda sample: transform(sample)["image"]


def pipeline_detections(dataset: Any, indices: Sequence[int], analyzer: Any = None):
    """The DetectionCache of the dataset's root with every image of `indices` detected (built on first use)."""
    root = getattr(dataset, "root", None)
    if root is None:
        raise DatasetError(f"{_source(dataset)}: pipeline alignment needs a data root for its detection cache")
    cache = DetectionCache(root, analyzer=analyzer, make_analyzer=FaceAnalyzer, config=DetectorConfig())
    cache.ensure(dataset.records[i]["path"] for i in indices)
    return cache


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
        chunks = [model.embed(batch.to(device), attribute=False).embeddings.float().cpu() for batch in loader]
    finally:
        model.train(was_training)
    return torch.cat(chunks).numpy() if chunks else np.zeros((0, 0), np.float32)


@torch.no_grad()
def evaluate_point_branch(model: torch.nn.Module, dataset: Any, config: EvalConfig) -> dict[str, Any]:
    """Verification by the 3D branch alone: one embedding per (identity, expression) cloud, every pair of
    clouds compared (same identity, other expression = genuine). Measures how much identity the shape holds.

    `dataset` must load clouds (num_points > 0); results have the keys of evaluate_embeddings' "overall".
    """
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
# Whole model on a dataset
# ----------------------------------------------------------------------------------------------

def evaluate_split(model: torch.nn.Module, data: str | Path, config: EvalConfig) -> dict[str, Any]:
    """The protocol on the `config.split` images of a FaceScape-layout root (no point clouds needed)."""
    return evaluate_model(model, FaceScapeMultiView(data, split=config.split, num_points=0), config)


def evaluate_model(model: torch.nn.Module, dataset: Any, config: EvalConfig | None = None,
                   image_transform: Callable[[dict], torch.Tensor] | None = None) -> dict[str, Any]:
    """Run the protocol on a dataset with `.records` (identity, yaw) whose items are raw samples.

    Without `image_transform`, crops follow config.align: "pipeline" (the Verifier's detector + alignment,
    detections cached per data root; no face = rejection) or "oracle" (ground-truth landmarks)."""
    config = config or EvalConfig(align="oracle")
    config.validate()
    records, custom = dataset.records, image_transform is not None
    indices, embeddings, no_face, routing = _protocol_embeddings(model, dataset, config, image_transform)
    results = evaluate_embeddings(embeddings, [records[i]["identity"] for i in indices],
                                  [records[i]["yaw"] for i in indices], config, _source(dataset), no_face, routing)
    results["protocol"]["align"] = "custom" if custom else config.align
    return results


def _protocol_embeddings(model: torch.nn.Module, dataset: Any, config: EvalConfig,
                         image_transform: Callable[[dict], torch.Tensor] | None):
    """(indices, N x D embeddings, no-face flags or None, routing or None) of the protocol's images."""
    records = dataset.records
    indices = select_images(records, config)
    if not indices:
        raise DatasetError(f"{_source(dataset)}: no image with a known yaw to evaluate")
    no_face, custom, detections = None, image_transform is not None, None
    if not custom and config.align == "pipeline":
        detections = pipeline_detections(dataset, indices)
        image_transform = default_image_transform(model, align="pipeline", detections=detections)
        no_face = [detections.get(records[i]["path"]) is None for i in indices]
    embeddings = embed_images(model, dataset, indices, config, image_transform)
    route = getattr(model, "routing", None)  # a frontal-teacher model scores by the pose the pipeline saw
    routing = None if route is None else (image_yaws(records, indices, "oracle" if custom else config.align,
                                                     detections), route)
    return indices, embeddings, no_face, routing


def fit_routing(model: torch.nn.Module, data: str | Path, config: EvalConfig | None = None) -> dict[str, float]:
    """Map a frontal-teacher model's teacher cosine onto its fine-tuned network's scale (frontal_gate.Routing):
    a_t, b_t such that the teacher's impostor scores get the fine-tuned network's impostor mean and spread on
    the `config.split` images (default: validation, through the pipeline). Sets them on the model; returns them."""
    config = config or EvalConfig(split="val", align="pipeline")
    dataset = FaceScapeMultiView(data, split=config.split, num_points=0)
    indices, embeddings, no_face, _ = _protocol_embeddings(model, dataset, config, None)
    records = dataset.records
    pairs = protocol_pairs([records[i]["identity"] for i in indices], [records[i]["yaw"] for i in indices], config)
    impostor = pairs["valid"] & ~pairs["genuine"]
    if no_face is not None:
        found = ~np.asarray(no_face, dtype=bool)
        impostor &= found[pairs["gallery"]][:, None] & found[None, :]
    teacher, student = split_routed(embeddings)
    t = (teacher[pairs["gallery"]] @ teacher.T)[impostor]
    s = (student[pairs["gallery"]] @ student.T)[impostor]
    scale = float(s.std() / max(t.std(), 1e-6))
    shift = float(s.mean() - scale * t.mean())
    model.set_teacher_affine(scale, shift)
    return {"teacher_scale": scale, "teacher_shift": shift, "split": config.split, "impostor_pairs": int(t.size)}


def image_yaws(records: Sequence[Any], indices: Sequence[int], align: str, detections: Any = None) -> np.ndarray:
    """N yaws (degrees, NaN = unknown) known for records[indices]: the face pipeline's estimate with
    align="pipeline" (what the Verifier would know), the ground truth with "oracle"; they route a
    frontal-teacher model's scores."""
    if align == "pipeline":
        rows = [detections.get(records[i]["path"]) for i in indices]
        return np.array([np.nan if r is None or r.pose is None else r.pose[0] for r in rows], np.float32)
    return np.array([np.nan if records[i]["yaw"] is None else records[i]["yaw"] for i in indices], np.float32)


def _source(dataset: Any) -> str:
    return str(getattr(dataset, "root", None) or type(dataset).__name__)
