"""Does the heatmap show where the embedding comes from? A deletion test and the maps' statistics, per chip.

Deletion (after Petsiuk et al., "RISE", 2018): occlude the k cells a map ranks highest (their chip pixels,
`CellGrid.cell_mask`, filled with OCCLUSION_FILL) and measure how far the embedding moves, 1 - cosine to the
unoccluded embedding, for k = 1 .. N; a faithful map moves it sooner than k random cells. The area under that
curve over k / N in [0, 1] (trapezoids from (0, 0)) is the map's AUC; every ranking ends at the same point
(the whole chip grey). Rankings compared: the heatmap (`Pose3DFR.embed`: each cell's share of the embedding),
what the app drew before it (attention received, or the trunk's feature norm without attention) and random
orders. The embedding moved is the one the heatmap splits: `Pose3DFR.embed_network` (mirror-averaged where
the model does so; a frontal teacher's embedding is not part of it).

Per chip also: the map's entropy and centre of mass, the share of its positive mass on cells whose centre lies
inside the face (the convex hull of the face's landmarks in the chip), and the raw attention's sink.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import cv2
import numpy as np
import torch

from pose3dfr.geometry import pose_bin, pose_bin_labels
from pose3dfr.models.attribution import (REFERENCE_FILL, CellGrid, attention_statistics, normalised_entropy,
                                        positive_distribution)

# Grey of occluded pixels: the heatmap's blank reference chip (the zero of the 112 px backbones' input
# normalisation, within 25/255 of dlib's channel means), so an occluded cell carries (about) no signal.
OCCLUSION_FILL = REFERENCE_FILL
# Random orders per chip: their curves are averaged (the random baseline's AUC).
RANDOM_ORDERS = 2
# Occluded images embedded per forward pass.
DELETION_BATCH = 32
# Fractions of the N cells occluded at the measured steps when not every k is asked for (always k = 1 and N);
# about a tenth of the cost of k = 1..N, denser at small k where the curves differ most.
DELETION_FRACTIONS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75)


@dataclass
class FaceChip:
    """A chip the model sees, with what the statistics need."""

    chip: np.ndarray  # S x S x 3 uint8 RGB
    hull: np.ndarray | None  # K x 2 float chip pixels: convex hull of the face's landmarks (None: unknown)
    yaw: float | None  # degrees (ground truth for renders, the detector's estimate for photos)
    name: str = ""
    identity: str = ""
    matrix: np.ndarray | None = None  # 2 x 3: image pixels -> chip pixels
    camera: tuple[np.ndarray, np.ndarray] | None = None  # (K, Rt) of the render, for the 3D registration
    points: np.ndarray | None = None  # P x 6+ face points in the camera's world frame (renders)


@dataclass
class ChipReport:
    """The deletion test and map statistics of one chip."""

    name: str
    identity: str
    yaw: float | None
    bin: str | None
    ks: list[int]  # occluded cells at each step
    curves: dict[str, list[float]]  # ranking -> 1 - cosine at each k (random: mean over RANDOM_ORDERS)
    auc: dict[str, float]  # ranking -> area under its curve over k / N
    maps: dict[str, dict[str, float | None]] = field(default_factory=dict)  # map -> entropy, com_x/y, ...
    attention: dict[str, Any] | None = None  # sink cell, its share, row entropy (models with attention)
    heatmap: np.ndarray | None = None  # H_F x W_F: the heatmap (each cell's share of the embedding)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "identity": self.identity, "yaw": self.yaw, "bin": self.bin, "ks": self.ks,
                "curves": self.curves, "auc": self.auc, "maps": self.maps, "attention": self.attention,
                "heatmap": None if self.heatmap is None else np.round(self.heatmap, 5).tolist()}


def deletion_steps(cells: int, every_k: bool = False, fractions: Sequence[float] = DELETION_FRACTIONS) -> list[int]:
    """The k of the deletion curve: 1..N, or 1, N and round(f N) for each fraction f."""
    if every_k:
        return list(range(1, cells + 1))
    return sorted({1, cells, *(min(cells, max(1, round(f * cells))) for f in fractions)})


def curve_auc(ks: Sequence[int], changes: Sequence[float], cells: int) -> float:
    """Area under the deletion curve over k / N from (0, 0) to (1, change at N), by trapezoids."""
    x = np.concatenate([[0.0], np.asarray(ks, np.float64) / cells])
    y = np.concatenate([[0.0], np.asarray(changes, np.float64)])
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2.0))


def occluded(image: torch.Tensor, orders: torch.Tensor, ks: Sequence[int], grid: CellGrid) -> torch.Tensor:
    """(R K) x 3 x S x S: `image` (3 x S x S) with the first k cells of each order (R x N) filled grey."""
    mask = torch.as_tensor(grid.cell_mask()).flatten()  # S S: cell of each pixel
    rank = torch.empty_like(orders)
    rank.scatter_(1, orders, torch.arange(orders.shape[1]).expand_as(orders))  # R x N: place of each cell
    pixel_rank = rank[:, mask]  # R x S S
    hidden = torch.stack([pixel_rank < k for k in ks], 1).flatten(0, 1)  # (R K) x S S
    hidden = hidden.view(-1, 1, *image.shape[1:])
    return torch.where(hidden, torch.full_like(image, OCCLUSION_FILL), image.expand(hidden.shape[0], -1, -1, -1))


def deletion_embedder(model: Any) -> Callable[[torch.Tensor], torch.Tensor]:
    """B x 3 x S x S -> B x D unit embeddings: the embedding the heatmap splits (module docstring)."""

    def embed(images: torch.Tensor) -> torch.Tensor:
        images = images.contiguous(memory_format=torch.channels_last)  # about twice as fast on CPU, same values
        return model.embed_network(images, attribute=False).embeddings

    return embed


def embed_batches(embed: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor) -> torch.Tensor:
    return torch.cat([embed(images[i:i + DELETION_BATCH]) for i in range(0, len(images), DELETION_BATCH)])


def legacy_heat(model: Any, image: torch.Tensor) -> tuple[str, torch.Tensor]:
    """(name, N) the map the app drew before the attribution: attention received (column mean of A), or the
    trunk's feature norm for a model without attention."""
    fmap = model.backbone.trunk(image[None])
    if model.attention is not None:
        return "attention received", model.attention.attention(fmap, "2d")[0].mean(0)
    return "feature norm", fmap.flatten(2).norm(dim=1)[0]


Ranking = Callable[[Any, torch.Tensor], torch.Tensor]  # (model, 3 x S x S chip) -> N scores, higher first


@torch.inference_mode()
def chip_report(model: Any, face: FaceChip, every_k: bool = False, seed: int = 0,
                random_orders: int = RANDOM_ORDERS, fractions: Sequence[float] = DELETION_FRACTIONS,
                previous: bool = True, extra: dict[str, Ranking] | None = None) -> ChipReport:
    """The deletion curves (heatmap, with `previous` the map the app drew before, random, and any `extra`
    rankings) and the map statistics of one chip; k = 1..N with every_k, else 1, N and the `fractions` of N."""
    grid = model.cell_grid
    image = torch.from_numpy(np.ascontiguousarray(face.chip)).permute(2, 0, 1).float().div(255.0)  # 3 x S x S
    out = model.embed_network(image[None])
    heat = out.heatmaps[0].flatten()  # N
    cells = heat.numel()
    ks = deletion_steps(cells, every_k, fractions)
    rng = torch.Generator().manual_seed(seed)
    orders = {"heatmap": heat.argsort(descending=True)[None],
              "random": torch.stack([torch.randperm(cells, generator=rng) for _ in range(random_orders)])}
    maps = {"heatmap": map_statistics(out.heatmaps[0], grid, face.hull)}
    if previous:
        old_name, old = legacy_heat(model, image)
        orders[old_name] = old.argsort(descending=True)[None]
        maps[old_name] = map_statistics(old.view_as(out.heatmaps[0]), grid, face.hull)
    for name, rank in (extra or {}).items():
        scores = rank(model, image).flatten()
        orders[name] = scores.argsort(descending=True)[None]
        maps[name] = map_statistics(scores.view_as(out.heatmaps[0]), grid, face.hull)
    embed = deletion_embedder(model)
    names = list(orders)
    batch = torch.cat([occluded(image, orders[n], ks[:-1], grid) for n in names])  # k = N is one shared image
    changes = 1.0 - embed_batches(embed, torch.cat([batch, torch.full_like(image, OCCLUSION_FILL)[None]])) @ \
        out.embeddings[0]
    last = float(changes[-1])
    curves, start = {}, 0
    for name in names:
        count = len(orders[name]) * (len(ks) - 1)
        rows = changes[start:start + count].view(len(orders[name]), len(ks) - 1).mean(0)
        curves[name] = [float(c) for c in rows] + [last]
        start += count
    attention = None
    if out.attention is not None:
        stats = attention_statistics(out.attention)
        sink = int(stats.sink[0])
        attention = {"sink_cell": list(divmod(sink, grid.cells)), "sink_share": float(stats.sink_share[0]),
                     "row_entropy": float(stats.row_entropy[0])}
    return ChipReport(face.name, face.identity, face.yaw, None if face.yaw is None else pose_bin(face.yaw), ks,
                      curves, {n: curve_auc(ks, c, cells) for n, c in curves.items()}, maps, attention,
                      out.heatmaps[0].float().numpy())


def map_statistics(heat: torch.Tensor, grid: CellGrid, hull: np.ndarray | None) -> dict[str, float | None]:
    """Entropy of the map's positive mass (0: one cell, 1: uniform), its centre of mass (fractions of the chip
    side), whether that lies inside the face hull, and the mass on cells centred inside it (None: no hull)."""
    p = positive_distribution(heat.reshape(1, -1).double())[0].numpy()  # N
    centres = grid.centres
    ys, xs = np.meshgrid(centres, centres, indexing="ij")
    xy = np.stack([xs.ravel(), ys.ravel()], 1)  # N x 2 chip pixels
    com = p @ xy
    stats: dict[str, float | None] = {"entropy": float(normalised_entropy(torch.from_numpy(p))),
                                      "com_x": float(com[0] / grid.size), "com_y": float(com[1] / grid.size),
                                      "com_in_face": None, "face_mass": None}
    if hull is not None and len(hull) >= 3:
        contour = np.asarray(hull, np.float32).reshape(-1, 1, 2)
        inside = np.array([cv2.pointPolygonTest(contour, (float(x), float(y)), False) >= 0 for x, y in xy])
        stats["com_in_face"] = float(cv2.pointPolygonTest(contour, (float(com[0]), float(com[1])), False) >= 0)
        stats["face_mass"] = float(p[inside].sum())
    return stats


def face_hull(landmarks: np.ndarray | None, matrix: np.ndarray) -> np.ndarray | None:
    """K x 2 convex hull in chip pixels of landmarks (L x 2+, photo pixels; a third column, when present, is
    visibility: renders' landmarks) mapped by the chip's 2 x 3 matrix; None without 3 usable landmarks."""
    if landmarks is None:
        return None
    marks = np.asarray(landmarks, np.float64)
    if marks.shape[1] >= 3 and set(np.unique(marks[:, 2])) <= {0.0, 1.0}:
        marks = marks[marks[:, 2] > 0]
    if len(marks) < 3:
        return None
    chip = marks[:, :2] @ np.asarray(matrix, np.float64)[:, :2].T + np.asarray(matrix, np.float64)[:, 2]
    return cv2.convexHull(chip.astype(np.float32)).reshape(-1, 2)


# ----------------------------------------------------------------------------------------------
# Summaries
# ----------------------------------------------------------------------------------------------

def summarise(reports: Iterable[ChipReport]) -> dict[str, dict[str, Any]]:
    """Per |yaw| bin (and "all"): chips, mean AUC per ranking, the heatmap's gain over random (mean and the
    fraction of chips where it is above), and the mean map / attention statistics."""
    reports = list(reports)
    groups: dict[str, list[ChipReport]] = {"all": reports}
    for label in pose_bin_labels():
        members = [r for r in reports if r.bin == label]
        if members:
            groups[label] = members
    return {label: _summary(members) for label, members in groups.items() if members}


def _mean(values: Iterable[float | None]) -> float | None:
    kept = [float(v) for v in values if v is not None]
    return float(np.mean(kept)) if kept else None


def _summary(reports: list[ChipReport]) -> dict[str, Any]:
    rankings = list(reports[0].auc)
    gains = [r.auc["heatmap"] - r.auc["random"] for r in reports]
    out: dict[str, Any] = {"chips": len(reports), "auc": {n: _mean(r.auc.get(n) for r in reports) for n in rankings},
                           "gain_over_random": _mean(gains),
                           "beats_random": float(np.mean([g > 0 for g in gains]))}
    out["maps"] = {m: {k: _mean(r.maps[m][k] for r in reports) for k in reports[0].maps[m]} for m in reports[0].maps}
    if reports[0].attention is not None:
        out["attention"] = {k: _mean(r.attention[k] for r in reports) for k in ("sink_share", "row_entropy")}
        cells = [tuple(r.attention["sink_cell"]) for r in reports]
        top = max(set(cells), key=cells.count)
        out["attention"]["commonest_sink"] = list(top)
        out["attention"]["commonest_sink_fraction"] = cells.count(top) / len(cells)
    return out
