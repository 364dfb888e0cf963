"""Attention per view of a yaw sweep, for researchers: each view's 2D heatmap beside the 3D point heat of the
same view, and the statistics of pose3dfr.eval.attention, drawn as one PNG-ready grid (cv2 only, no browser).

The 3D point heat of a view: the model's 3D branch on the face's points registered to that view's chip (each
point pooled into the cell of the chip where the view shows it, pose3dfr.data.view_registration, as training
registers them), each point coloured by its cell's share of the 3D embedding (Pose3DFR.embed_points) and drawn
where the view's camera puts it on the chip, so the two panels of a column line up.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import cv2
import numpy as np

from pose3dfr.eval.attention import ChipReport, FaceChip
from pose3dfr.viz import HEATMAP_COLORMAP, normalize_heatmap, overlay_heatmap

# Side (px) of each panel of the grid: chips (112-150 px) a little enlarged, 13 views fit a 2100 px wide figure.
PANEL = 160
# Opacity of the heatmap over the chip in the grid (as the app's default slider, a little stronger for print).
GRID_OPACITY = 0.5
# Brightness of the chip under the 3D points, so the coloured points stand out but the face stays readable.
UNDERLAY = 0.35
# Radius (px at PANEL size) of a drawn point.
POINT_RADIUS = 2
# Text of the captions: OpenCV's plain font at this scale and line height (px).
FONT, FONT_SCALE, LINE = cv2.FONT_HERSHEY_SIMPLEX, 0.4, 15


@dataclass
class PointHeat:
    """One view's 3D point heat: where the points fall on the chip and each point's share (NaN: not seen)."""

    xyz: np.ndarray  # P x 3 the points (the render's world frame = the canonical face frame, cm)
    chip_xy: np.ndarray  # P x 2 chip pixels
    heat: np.ndarray  # P


def view_point_heat(model: Any, face: FaceChip, seed: int = 0) -> PointHeat | None:
    """The 3D branch's point heat for this view (module docstring); None without a 3D branch, points, camera
    or chip matrix."""
    import torch

    from pose3dfr.data.pointcloud import farthest_point_sample, with_features
    from pose3dfr.data.view_registration import chip_positions, view_cells

    if getattr(model, "point_encoder", None) is None or face.points is None or face.camera is None \
            or face.matrix is None:
        return None
    cfg = model.cfg
    points = np.asarray(face.points, np.float32)
    points = points[farthest_point_sample(points[:, :3], cfg.num_points, seed=seed)]
    K, Rt = face.camera
    grid = model.backbone
    cells = view_cells(with_features(points, 6), K, Rt, face.matrix, int(grid.input_size), int(grid.feature_size))
    with torch.inference_mode():
        out = model.embed_points(torch.from_numpy(with_features(points, cfg.point_features))[None],
                                 torch.from_numpy(cells)[None])
    return PointHeat(points[:, :3].copy(), chip_positions(points[:, :3], K, Rt, face.matrix),
                     out.point_attention[0].float().numpy())


def point_panel(chip: np.ndarray, points: PointHeat | None) -> np.ndarray:
    """PANEL x PANEL RGB: the dimmed chip with the view's seen points coloured by their share (the overlay's
    scale); a dark panel saying so when there are none."""
    base = cv2.resize(chip, (PANEL, PANEL), interpolation=cv2.INTER_AREA).astype(np.float32) * UNDERLAY
    panel = base.astype(np.uint8)
    if points is None:
        cv2.putText(panel, "no 3D branch", (8, PANEL // 2), FONT, FONT_SCALE, (220, 220, 220), 1, cv2.LINE_AA)
        return panel
    seen = np.isfinite(points.heat)
    if not seen.any():
        return panel
    scale = PANEL / chip.shape[0]
    level = normalize_heatmap(points.heat[seen][None])[0]  # the overlay's colour scale
    colours = cv2.applyColorMap(np.round(level * 255).astype(np.uint8)[:, None], HEATMAP_COLORMAP)[:, 0, ::-1]
    order = np.argsort(level)  # hottest drawn last
    for (x, y), colour in zip(points.chip_xy[seen][order] * scale, colours[order]):
        cv2.circle(panel, (int(round(x)), int(round(y))), POINT_RADIUS, tuple(int(c) for c in colour), -1)
    return panel


def view_caption(report: ChipReport) -> list[str]:
    """A few short lines of one view's statistics for the grid (the JSON has all of them)."""
    yaw = "?" if report.yaw is None else f"{report.yaw:+.0f}"
    heat = report.maps["heatmap"]
    lines = [f"yaw {yaw}", f"AUC {report.auc['heatmap']:.2f} (rnd {report.auc['random']:.2f})",
             f"entropy {heat['entropy']:.2f}"]
    if heat["face_mass"] is not None:
        lines.append(f"on face {heat['face_mass']:.0%}")
    if report.attention is not None:
        lines.append(f"sink {report.attention['sink_share']:.0%} {tuple(report.attention['sink_cell'])}")
    return lines


def view_column(chip: np.ndarray, report: ChipReport, grid: Any, points: PointHeat | None,
                with_points: bool) -> np.ndarray:
    """One view: caption, the chip with its heatmap (report.heatmap) and (with_points) the 3D point panel."""
    overlay = cv2.resize(overlay_heatmap(chip, report.heatmap, GRID_OPACITY, grid=grid), (PANEL, PANEL),
                         interpolation=cv2.INTER_CUBIC)
    lines = view_caption(report)
    caption = np.full((LINE * len(lines) + 6, PANEL, 3), 255, np.uint8)
    for i, text in enumerate(lines):
        cv2.putText(caption, text, (4, LINE * (i + 1)), FONT, FONT_SCALE, (0, 0, 0), 1, cv2.LINE_AA)
    parts = [caption, overlay] + ([point_panel(chip, points)] if with_points else [])
    return np.concatenate(parts, axis=0)


def sweep_grid(columns: Sequence[np.ndarray], title: str, gap: int = 4) -> np.ndarray:
    """The columns of a sweep side by side (padded to one height) under a title line; RGB uint8."""
    height = max(c.shape[0] for c in columns)
    padded = [np.pad(c, ((0, height - c.shape[0]), (0, gap), (0, 0)), constant_values=255) for c in columns]
    body = np.concatenate(padded, axis=1)
    head = np.full((2 * LINE, body.shape[1], 3), 255, np.uint8)
    cv2.putText(head, title, (4, int(1.4 * LINE)), FONT, 1.2 * FONT_SCALE, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([head, body], axis=0)
