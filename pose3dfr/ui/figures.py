"""Drawings shared by the Verify and Pose explorer tabs: the 3D view and the heatmap colour legend (both show
each place's share of the embedding, pose3dfr.viz)."""

from __future__ import annotations

from typing import Any

from pose3dfr.viz import SCALE_HIGH, SCALE_LOW, SCALE_TITLE, colour_scale_stops, point_attention_figure


def attention_figure(points: Any, attention: Any, title: str = "3D attention") -> Any:
    """Plotly 3D view of the point cloud coloured by each point's share of the 3D embedding (the share of the
    cell it falls in; grey when the model has no 3D branch), or None without points."""
    if points is None:
        return None
    if attention is None:
        title = f"{title}<br><sub>this checkpoint has no 3D attention (no 3D branch): points shown in grey</sub>"
    return point_attention_figure(points, attention, title=title)


def colour_scale_html() -> str:
    """A legend of the heatmap colours (the 3D view's colour bar has the same two ends)."""
    gradient = ", ".join(colour_scale_stops())
    return ('<div style="max-width:720px;font-size:0.85em">'
            f'<div style="height:14px;border-radius:3px;background:linear-gradient(to right, {gradient})"></div>'
            f'<div style="display:flex;justify-content:space-between;white-space:nowrap"><span>{SCALE_LOW}</span>'
            f'<span>&nbsp;heatmap: each place\'s {SCALE_TITLE} (where it comes from), scaled per face&nbsp;</span>'
            f'<span>{SCALE_HIGH}</span></div></div>')
