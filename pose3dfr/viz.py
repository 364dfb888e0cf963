"""Pictures of where an embedding comes from: the heatmap over the aligned crop (each cell's share of the
embedding, pose3dfr.models.attribution), a Plotly 3D view of the point cloud coloured the same way, and a
one-line head-pose caption. The app, the CLI and notebooks all use these same functions.

Colour scale (both pictures): a cell's share of the embedding, from 0 (cold; negative shares, which pull the
embedding away from where it points, are drawn as 0) to the face's largest share (hot). Each face is scaled
to its own largest share, so the colours compare places within a face, not faces."""

from __future__ import annotations

from typing import TYPE_CHECKING

import cv2
import numpy as np

from pose3dfr.errors import Pose3DFRError
from pose3dfr.models.attribution import CellGrid

if TYPE_CHECKING:
    import plotly.graph_objects as go

# OpenCV colour map of the overlay: JET reads well as "cold = ignored, hot = attended".
HEATMAP_COLORMAP = cv2.COLORMAP_JET
# Plotly colour scale of the 3D view; same cold-to-hot reading as the overlay.
POINT_COLORSCALE = "Jet"


def normalize_heatmap(heatmap: np.ndarray) -> np.ndarray:
    """A heatmap of shares on the colour scale [0, 1]: negative shares become 0, the largest share 1 (a map with
    no positive share is all 0); NaN/Inf are errors."""
    h = np.asarray(heatmap, dtype=np.float64)
    if h.ndim != 2 or h.size == 0:
        raise Pose3DFRError(f"heatmap must be a non-empty H x W array, got shape {h.shape}")
    if not np.isfinite(h).all():
        raise Pose3DFRError("heatmap holds NaN or Inf values")
    top = h.max()
    return np.clip(h, 0.0, None) / top if top > 0 else np.zeros_like(h)


def upsample_heatmap(heatmap: np.ndarray, width: int, height: int, grid: CellGrid | None = None) -> np.ndarray:
    """height x width float32: a map on the colour scale drawn over a width x height crop of the chip, each
    cell's value at its receptive-field centre (`grid`, pose3dfr.models.attribution.cell_grid; None: the cells
    split the crop evenly) and linear in between; beyond the outer centres the edge cells' values."""
    heat = normalize_heatmap(heatmap).astype(np.float32)
    rows, cols = heat.shape
    if grid is None:  # (chip side, stride, offset) per axis: the crop split evenly
        x_axis = (width, width / cols, (width / cols - 1.0) / 2.0)
        y_axis = (height, height / rows, (height / rows - 1.0) / 2.0)
    elif heat.shape != (grid.cells, grid.cells):
        raise Pose3DFRError(f"heatmap {heat.shape} does not fit a grid of {grid.cells} x {grid.cells} cells")
    else:
        x_axis = y_axis = (grid.size, grid.stride, grid.offset)

    def to_cells(axis: tuple[float, float, float], pixels: int) -> tuple[float, float]:
        size, stride, offset = axis  # crop pixel p is chip pixel (p + 0.5) size / pixels - 0.5, then a cell index
        return size / (pixels * stride), (0.5 * size / pixels - 0.5 - offset) / stride

    (ax, bx), (ay, by) = to_cells(x_axis, width), to_cells(y_axis, height)
    return cv2.warpAffine(heat, np.array([[ax, 0.0, bx], [0.0, ay, by]]), (width, height),
                          flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)


def overlay_heatmap(crop: np.ndarray, heatmap: np.ndarray, alpha: float = 0.5,
                    colormap: int = HEATMAP_COLORMAP, grid: CellGrid | None = None) -> np.ndarray:
    """Blend a coloured heatmap (H_F x W_F shares; module docstring's scale) over an RGB uint8 crop, each cell
    placed on its receptive-field centre (`grid`; see upsample_heatmap); alpha = heat opacity."""
    if not 0.0 <= alpha <= 1.0:
        raise Pose3DFRError(f"alpha must be in [0, 1], got {alpha}")
    crop = np.asarray(crop)
    if crop.ndim != 3 or crop.shape[2] != 3 or crop.dtype != np.uint8:
        raise Pose3DFRError(f"crop must be an H x W x 3 uint8 RGB array, got {crop.shape} {crop.dtype}")
    h, w = crop.shape[:2]
    heat = upsample_heatmap(heatmap, w, h, grid)
    heat_u8 = np.clip(heat * 255.0, 0, 255).astype(np.uint8)
    coloured = cv2.applyColorMap(heat_u8, colormap)[:, :, ::-1]  # OpenCV gives BGR
    blended = (1.0 - alpha) * crop.astype(np.float32) + alpha * coloured.astype(np.float32)
    return np.clip(blended.round(), 0, 255).astype(np.uint8)


# Colour of the points when a model has no 3D attention (no colour scale is drawn then).
NO_ATTENTION_COLOUR = "lightgrey"
# Words at the two ends of the colour scale of the 2D overlay and the 3D view (module docstring).
SCALE_LOW, SCALE_HIGH = "no share", "the face's largest share"
# What the scale measures, in a few words (legends and colour bars).
SCALE_TITLE = "share of the embedding"


def colour_scale_stops(count: int = 11, colormap: int = HEATMAP_COLORMAP) -> list[str]:
    """`count` "#rrggbb" colours of the overlay's colour map from SCALE_LOW to SCALE_HIGH (for a legend)."""
    ramp = np.linspace(0, 255, count).round().astype(np.uint8)[None, :]  # 1 x count
    colours = cv2.applyColorMap(ramp, colormap)[0, :, ::-1]  # count x 3 RGB
    return ["#" + "".join(f"{int(c):02x}" for c in rgb) for rgb in colours]


def point_attention_figure(points: np.ndarray, attention: np.ndarray | None, title: str = "3D attention",
                           marker_size: float = 3.0) -> "go.Figure":
    """Plotly 3D scatter of a P x 3(+) point cloud (canonical frame, cm) coloured by each point's share of the 3D
    embedding (its cell's, pose3dfr.models.Pose3DFR.embed_points) on the overlay's scale; NaN (a point the
    view does not see) and `attention` None: grey points (None: no colour scale)."""
    import plotly.graph_objects as go

    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] < 3 or len(pts) == 0:
        raise Pose3DFRError(f"points must be a non-empty P x 3 array, got shape {pts.shape}")
    if attention is None:
        return _point_figure([_grey_points(go, pts, marker_size)], title)
    att = np.asarray(attention, dtype=np.float64).reshape(-1)
    if len(att) != len(pts):
        raise Pose3DFRError(f"{len(att)} attention values for {len(pts)} points")
    seen = np.isfinite(att)
    shown = np.clip(att[seen], 0.0, None)
    high = float(shown.max()) if seen.any() and shown.max() > 0 else 1.0  # no positive share: all at 0, as in 2D
    traces = [go.Scatter3d(
        x=pts[seen, 0], y=pts[seen, 1], z=pts[seen, 2], mode="markers", name="seen",
        marker=dict(size=marker_size, color=shown, colorscale=POINT_COLORSCALE, cmin=0.0, cmax=high, showscale=True,
                    colorbar=dict(title=SCALE_TITLE, tickvals=[0.0, high],
                                  ticktext=[SCALE_LOW, f"{SCALE_HIGH} ({high:.1%})"], len=0.8)),
        customdata=att[seen], hovertemplate=_POSITION + "<br>share %{customdata:.2%}<extra></extra>")]
    if not seen.all():
        traces.append(_grey_points(go, pts[~seen], marker_size, "not seen from this view"))
    return _point_figure(traces, title)


_POSITION = "x %{x:.2f} cm<br>y %{y:.2f} cm<br>z %{z:.2f} cm"


def _grey_points(go, pts: np.ndarray, marker_size: float, name: str = "points") -> "go.Scatter3d":
    return go.Scatter3d(x=pts[:, 0], y=pts[:, 1], z=pts[:, 2], mode="markers", name=name,
                        marker=dict(size=marker_size, color=NO_ATTENTION_COLOUR),
                        hovertemplate=_POSITION + "<extra></extra>")


def _point_figure(traces: list, title: str) -> "go.Figure":
    import plotly.graph_objects as go

    figure = go.Figure(traces)
    # the canonical frame has y up and z towards the viewer: look at the face from the front
    figure.update_layout(title=title, margin=dict(l=10, r=10, t=70, b=10), showlegend=len(traces) > 1,
                         scene=dict(aspectmode="data", xaxis_title="x (cm)", yaxis_title="y (cm)",
                                    zaxis_title="z (cm)",
                                    camera=dict(up=dict(x=0, y=1, z=0), eye=dict(x=0.0, y=0.0, z=2.0))))
    return figure


def pose_annotation(yaw: float, pitch: float, roll: float, bin: str | None = None) -> str:
    """One-line caption of a head pose, e.g. 'yaw +12.3°, pitch -4.1°, roll +2.0° (bin [0,30))'."""
    text = f"yaw {yaw:+.1f}°, pitch {pitch:+.1f}°, roll {roll:+.1f}°"
    return f"{text} (bin {bin})" if bin else text
