"""Pictures of what the model looks at: a 2D attention heatmap over the aligned crop, a Plotly 3D view
of the point cloud coloured by per-point attention, and a one-line head-pose caption. The app, the CLI
and notebooks all use these same functions."""

from __future__ import annotations

from typing import TYPE_CHECKING

import cv2
import numpy as np

from pose3dfr.errors import Pose3DFRError

if TYPE_CHECKING:
    import plotly.graph_objects as go

# OpenCV colour map of the overlay: JET reads well as "cold = ignored, hot = attended".
HEATMAP_COLORMAP = cv2.COLORMAP_JET
# Plotly colour scale of the 3D view; same cold-to-hot reading as the overlay.
POINT_COLORSCALE = "Jet"


def normalize_heatmap(heatmap: np.ndarray) -> np.ndarray:
    """Min-max scale a heatmap to [0, 1] (a constant map becomes all zeros); NaN/Inf are errors."""
    h = np.asarray(heatmap, dtype=np.float64)
    if h.ndim != 2 or h.size == 0:
        raise Pose3DFRError(f"heatmap must be a non-empty H x W array, got shape {h.shape}")
    if not np.isfinite(h).all():
        raise Pose3DFRError("heatmap holds NaN or Inf values")
    span = h.max() - h.min()
    return (h - h.min()) / span if span > 0 else np.zeros_like(h)


def overlay_heatmap(crop: np.ndarray, heatmap: np.ndarray, alpha: float = 0.5,
                    colormap: int = HEATMAP_COLORMAP) -> np.ndarray:
    """Blend a coloured heatmap (any H_F x W_F, upsampled smoothly) over an RGB uint8 crop; alpha = heat opacity."""
    if not 0.0 <= alpha <= 1.0:
        raise Pose3DFRError(f"alpha must be in [0, 1], got {alpha}")
    crop = np.asarray(crop)
    if crop.ndim != 3 or crop.shape[2] != 3 or crop.dtype != np.uint8:
        raise Pose3DFRError(f"crop must be an H x W x 3 uint8 RGB array, got {crop.shape} {crop.dtype}")
    h, w = crop.shape[:2]
    heat = cv2.resize(normalize_heatmap(heatmap).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    heat_u8 = np.clip(heat * 255.0, 0, 255).astype(np.uint8)
    coloured = cv2.applyColorMap(heat_u8, colormap)[:, :, ::-1]  # OpenCV gives BGR
    blended = (1.0 - alpha) * crop.astype(np.float32) + alpha * coloured.astype(np.float32)
    return np.clip(blended.round(), 0, 255).astype(np.uint8)


# Colour of the points when a model has no 3D attention (no colour scale is drawn then).
NO_ATTENTION_COLOUR = "lightgrey"
# Words at the two ends of every attention colour scale: both the 2D overlay and the 3D view scale each
# face's attention from its least to its most attended place (normalize_heatmap), so only order is shown.
SCALE_LOW, SCALE_HIGH = "least attended", "most attended"


def colour_scale_stops(count: int = 11, colormap: int = HEATMAP_COLORMAP) -> list[str]:
    """`count` "#rrggbb" colours of the overlay's colour map from SCALE_LOW to SCALE_HIGH (for a legend)."""
    ramp = np.linspace(0, 255, count).round().astype(np.uint8)[None, :]  # 1 x count
    colours = cv2.applyColorMap(ramp, colormap)[0, :, ::-1]  # count x 3 RGB
    return ["#" + "".join(f"{int(c):02x}" for c in rgb) for rgb in colours]


def point_attention_figure(points: np.ndarray, attention: np.ndarray | None, title: str = "3D attention",
                           marker_size: float = 3.0) -> "go.Figure":
    """Plotly 3D scatter of a P x 3(+) point cloud (canonical frame, cm) coloured by per-point attention, on
    the overlay's scale (least to most attended); `attention` None: grey points and no colour scale."""
    import plotly.graph_objects as go

    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] < 3 or len(pts) == 0:
        raise Pose3DFRError(f"points must be a non-empty P x 3 array, got shape {pts.shape}")
    position = "x %{x:.2f} cm<br>y %{y:.2f} cm<br>z %{z:.2f} cm"
    if attention is None:
        scatter = go.Scatter3d(x=pts[:, 0], y=pts[:, 1], z=pts[:, 2], mode="markers",
                               marker=dict(size=marker_size, color=NO_ATTENTION_COLOUR),
                               hovertemplate=position + "<extra></extra>")
    else:
        att = np.asarray(attention, dtype=np.float64).reshape(-1)
        if len(att) != len(pts):
            raise Pose3DFRError(f"{len(att)} attention values for {len(pts)} points")
        low, high = float(att.min()), float(att.max())
        high = high if high > low else low + 1.0  # a constant map: every point at the low end, as in 2D
        scatter = go.Scatter3d(
            x=pts[:, 0], y=pts[:, 1], z=pts[:, 2], mode="markers",
            marker=dict(size=marker_size, color=att, colorscale=POINT_COLORSCALE, cmin=low, cmax=high, showscale=True,
                        colorbar=dict(title="attention", tickvals=[low, high], ticktext=[SCALE_LOW, SCALE_HIGH],
                                      len=0.8)),
            customdata=att, hovertemplate=position + "<br>attention %{customdata:.4g}<extra></extra>")
    figure = go.Figure(scatter)
    # the canonical frame has y up and z towards the viewer: look at the face from the front
    figure.update_layout(title=title, margin=dict(l=10, r=10, t=70, b=10),
                         scene=dict(aspectmode="data", xaxis_title="x (cm)", yaxis_title="y (cm)",
                                    zaxis_title="z (cm)",
                                    camera=dict(up=dict(x=0, y=1, z=0), eye=dict(x=0.0, y=0.0, z=2.0))))
    return figure


def pose_annotation(yaw: float, pitch: float, roll: float, bin: str | None = None) -> str:
    """One-line caption of a head pose, e.g. 'yaw +12.3°, pitch -4.1°, roll +2.0° (bin [0,30))'."""
    text = f"yaw {yaw:+.1f}°, pitch {pitch:+.1f}°, roll {roll:+.1f}°"
    return f"{text} (bin {bin})" if bin else text
