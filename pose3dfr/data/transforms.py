"""Sample dict (any loader) -> model tensors: an aligned face chip and a fixed-size point cloud."""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
import torch

from pose3dfr.data.view_registration import mirror_cells, view_cells
from pose3dfr.errors import DatasetError


class ModelTransform:
    """Turn a loader sample into {"image": 3 x S x S float32 in [0, 1], "points": P x F float32,
    "label": int, "yaw": float (NaN when unknown)}.

    align="pipeline": the image is aligned as the Verifier aligns a photo (align_detection on the face
    detector's cached detection of that image, `detections`: a pose3dfr.data.detections.DetectionCache);
    an image where no face was found is reported with "face_found": False and, at evaluation, resized whole
    (a rejection); in training it keeps its ground-truth crop (the Verifier never embeds such a view).
    align="oracle" (analysis only): aligned from the sample's ground-truth landmarks (align_face, auto);
    without landmarks the image is taken as a face crop and resized.
    Points: farthest-point downsampling at evaluation (deterministic), random subsampling in training.
    train=True also adds augmentation: point jitter, point dropout, and a horizontal flip that mirrors
    the image and the points' x (normals too) together and negates yaw, so 2D and 3D stay consistent.
    fixed_points=True keeps each cloud's deterministic subsample in training too (no jitter or dropout), so a
    frozen 3D branch's per-point features can be cached under "cloud_key" (the flip is part of the key).
    grid=H_F registers the points to the view (pose3dfr.data.view_registration): "cells" holds each point's
    cell of the H_F x H_F grid of this very chip (-1: not seen), when the sample carries its "camera".
    """

    # Training augmentation strengths (cm, fractions); small so the face shape stays recognisable.
    jitter_sigma_cm: float = 0.02  # per-point Gaussian noise, about a scanner's noise
    jitter_clip_cm: float = 0.05
    max_dropout: float = 0.2  # fraction of points replaced by a copy of the first point (PointNet++ style)
    flip_probability: float = 0.5

    def __init__(self, template: str = "arcface", size: int | None = None, num_points: int = 2048,
                 point_features: int = 9, train: bool = False, seed: int = 0, require_points: bool = True,
                 align: str = "oracle", detections: Any = None, grid: int | None = None,
                 fixed_points: bool = False, alignment: str = "pipeline") -> None:
        from pose3dfr.data.detections import ALIGN_CHOICES
        from pose3dfr.face.align import TEMPLATES

        if template not in TEMPLATES:
            raise ValueError(f"unknown template {template!r}; choose from {sorted(TEMPLATES)}")
        if align not in ALIGN_CHOICES:
            raise ValueError(f"unknown align {align!r}; choose from {ALIGN_CHOICES}")
        if align == "pipeline" and detections is None:
            raise ValueError("align='pipeline' needs the data root's DetectionCache (detections=...)")
        self.align = align
        self.alignment = alignment  # align_detection's rule for pipeline crops (ModelConfig.alignment)
        self.detections = detections
        self.template = template
        self.size = size or TEMPLATES[template].size
        self.num_points = num_points
        self.point_features = point_features
        self.train = train
        self.seed = seed
        self.require_points = require_points  # False: samples without points give "points": None
        self.grid = grid
        self.fixed_points = fixed_points
        self._subsamples: dict[tuple, np.ndarray] = {}  # (identity, expression, size) -> subsample indices
        self._rng: np.random.Generator | None = None
        self._rng_pid: int | None = None

    def __call__(self, sample: dict[str, Any], rng: np.random.Generator | None = None) -> dict[str, Any]:
        """Model tensors of one sample; `rng` pins the training augmentation (default: a per-process generator)."""
        rng = rng if rng is not None else (self._generator() if self.train else None)

        aligned, face_found = self._chip(sample)
        chip = aligned.image  # S x S x 3 uint8
        points, cells = self._points(sample, rng, aligned.matrix)
        yaw = float("nan") if sample.get("yaw") is None else float(sample["yaw"])
        flipped = bool(self.train and rng.random() < self.flip_probability)
        if flipped:
            chip = chip[:, ::-1]
            if points is not None:
                points = _mirror_x(points)
            if cells is not None:
                cells = mirror_cells(cells, self.grid)
            yaw = -yaw
        image = torch.from_numpy(np.ascontiguousarray(chip).transpose(2, 0, 1).astype(np.float32) / 255.0)
        out = {"image": image, "points": None if points is None else torch.from_numpy(points),
               "label": int(sample["identity"]), "yaw": yaw, "face_found": face_found,
               "cells": None if cells is None else torch.from_numpy(cells), "chip_matrix": aligned.matrix}
        if self.fixed_points:
            out["cloud_key"] = f"{sample.get('identity_name', sample['identity'])}/{sample.get('expression')}/{int(flipped)}"
        return out

    def _chip(self, sample: dict[str, Any]) -> tuple[Any, bool]:
        """The AlignedFace (chip and its matrix) and whether a face was found (always True for the oracle)."""
        from pose3dfr.data.detections import pipeline_chip
        from pose3dfr.face.align import align_face

        landmarks = sample.get("landmarks")
        if self.align == "pipeline":
            detection = self.detections.get(sample["path"])
            if detection is None and self.train and landmarks is not None:
                # no face found: at test time the Verifier rejects such a view, so no crop of it is ever seen;
                # training keeps the view with its ground-truth crop rather than learn from a resized frame
                return align_face(sample["image"], np.asarray(landmarks)[:, :2], self.template, self.size), False
            if detection is None:
                return align_face(sample["image"], None, self.template, self.size), False
            return pipeline_chip(sample["image"], detection, self.template, self.size, self.alignment), True
        return align_face(sample["image"], None if landmarks is None else np.asarray(landmarks)[:, :2],
                          self.template, self.size), True

    def _points(self, sample: dict[str, Any], rng: np.random.Generator | None,
                chip_matrix: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
        """(P x F points, P cells or None): the subsample, its view registration, then augmentation."""
        from pose3dfr.data.pointcloud import farthest_point_sample, random_sample, with_features

        raw = sample.get("points")
        if raw is None:
            if self.require_points:
                raise DatasetError(f"{sample.get('path', 'sample')}: no point cloud for this sample")
            return None, None
        raw = np.asarray(raw, dtype=np.float32)
        if self.train and not self.fixed_points:
            raw = raw[random_sample(len(raw), self.num_points, seed=int(rng.integers(2**31)))]
        elif len(raw) != self.num_points:
            raw = raw[self._fixed_subsample(sample, raw, farthest_point_sample)]
        cells = self._cells(sample, raw, chip_matrix)
        points = with_features(raw, self.point_features)
        if self.train and not self.fixed_points:
            points = self._augment(points, rng)
        return np.ascontiguousarray(points), cells

    def _fixed_subsample(self, sample: dict[str, Any], raw: np.ndarray, fps: Any) -> np.ndarray:
        """The cloud's deterministic farthest-point subsample, computed once per cloud (clouds repeat across views)."""
        key = (sample.get("identity_name", sample.get("identity")), sample.get("expression"), len(raw))
        if key[0] is None or key[1] is None:
            return fps(raw[:, :3], self.num_points, seed=self.seed)
        if key not in self._subsamples:
            self._subsamples[key] = fps(raw[:, :3], self.num_points, seed=self.seed)
        return self._subsamples[key]

    def _cells(self, sample: dict[str, Any], raw: np.ndarray, chip_matrix: np.ndarray) -> np.ndarray | None:
        """Each point's cell in this view's chip (grid set and the sample's camera known), else None."""
        from pose3dfr.data.pointcloud import with_features

        camera = sample.get("camera")
        if self.grid is None or camera is None:
            return None
        return view_cells(with_features(raw, 6), camera["K"], camera["Rt"], chip_matrix, self.size, self.grid)

    def _augment(self, points: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        points = points.copy()
        noise = np.clip(rng.normal(0.0, self.jitter_sigma_cm, (len(points), 3)), -self.jitter_clip_cm, self.jitter_clip_cm)
        points[:, :3] += noise.astype(np.float32)
        dropped = rng.random(len(points)) < rng.random() * self.max_dropout
        points[dropped] = points[0]
        return points

    def _generator(self) -> np.random.Generator:
        """A generator per process: data-loader workers (forked copies) each draw different augmentations."""
        if self._rng is None or self._rng_pid != os.getpid():
            info = torch.utils.data.get_worker_info()
            self._rng = np.random.default_rng([self.seed, 0 if info is None else info.id + 1, os.getpid()])
            self._rng_pid = os.getpid()
        return self._rng


def _mirror_x(points: np.ndarray) -> np.ndarray:
    """Mirror a cloud about the canonical face's symmetry plane x = 0 (xyz and normals)."""
    out = points.copy()
    out[:, 0] = -out[:, 0]
    if out.shape[1] >= 6:
        out[:, 3] = -out[:, 3]
    return out


def collate(batch: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack ModelTransform outputs: images B x 3 x S x S, points B x P x F (None if every sample lacks
    them), cells B x P int64 (None unless every sample has them), labels B int64, yaw B float32 (NaN where
    unknown), cloud_key (list of B, with fixed_points)."""
    points = [b["points"] for b in batch]
    if any(p is None for p in points) and not all(p is None for p in points):
        raise DatasetError("a batch mixes samples with and without point clouds")
    cells = [b.get("cells") for b in batch]
    out = {
        "image": torch.stack([b["image"] for b in batch]),
        "points": None if points[0] is None else torch.stack(points),
        "cells": torch.stack(cells) if all(c is not None for c in cells) else None,
        "label": torch.tensor([b["label"] for b in batch], dtype=torch.long),
        "yaw": torch.tensor([b["yaw"] if b["yaw"] is not None else math.nan for b in batch], dtype=torch.float32),
    }
    if all("cloud_key" in b for b in batch):
        out["cloud_key"] = [b["cloud_key"] for b in batch]
    return out
