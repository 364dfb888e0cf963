"""Heatmap overlay, the 3D attention figure and the pose caption (pose3dfr.viz)."""

from __future__ import annotations

import numpy as np
import pytest

from pose3dfr.errors import Pose3DFRError
from pose3dfr.viz import normalize_heatmap, overlay_heatmap, point_attention_figure, pose_annotation


@pytest.fixture()
def crop():
    return np.random.default_rng(0).integers(0, 256, (112, 112, 3), dtype=np.uint8)


def test_overlay_shape_and_alpha_extremes(crop):
    heat = np.arange(49, dtype=np.float32).reshape(7, 7)
    out = overlay_heatmap(crop, heat, alpha=0.5)
    assert out.shape == crop.shape and out.dtype == np.uint8
    assert np.array_equal(overlay_heatmap(crop, heat, alpha=0.0), crop)
    full = overlay_heatmap(crop, heat, alpha=1.0)
    assert not np.array_equal(full, crop)
    assert np.array_equal(overlay_heatmap(np.zeros_like(crop), heat, alpha=1.0), full)  # crop fully hidden


def test_overlay_hot_cell_is_red_cold_is_blue():
    heat = np.zeros((8, 8))
    heat[0, 0] = 1.0  # one hot cell in the top-left corner
    out = overlay_heatmap(np.zeros((160, 160, 3), np.uint8), heat, alpha=1.0).astype(int)
    hot, cold = out[5, 5], out[150, 150]
    assert hot[0] > hot[2]  # red dominates where attention is high (RGB order)
    assert cold[2] > cold[0]  # blue where it is low


def test_overlay_rejects_bad_input(crop):
    with pytest.raises(Pose3DFRError, match="alpha"):
        overlay_heatmap(crop, np.ones((7, 7)), alpha=1.5)
    with pytest.raises(Pose3DFRError, match="NaN"):
        overlay_heatmap(crop, np.full((7, 7), np.nan))
    with pytest.raises(Pose3DFRError, match="uint8"):
        overlay_heatmap(crop.astype(np.float32), np.ones((7, 7)))


def test_normalize_heatmap_constant_map_is_zero():
    assert np.array_equal(normalize_heatmap(np.full((3, 3), 4.0)), np.zeros((3, 3)))
    assert normalize_heatmap(np.array([[1.0, 3.0]])).tolist() == [[0.0, 1.0]]


def test_point_attention_figure_colours_points_by_attention():
    rng = np.random.default_rng(1)
    points, attention = rng.normal(size=(50, 3)), rng.random(50)
    figure = point_attention_figure(points, attention, title="probe")
    (trace,) = figure.data
    assert trace.type == "scatter3d"
    assert np.allclose(trace.x, points[:, 0]) and np.allclose(trace.z, points[:, 2])
    assert np.allclose(trace.marker.color, attention)
    assert "attention" in trace.hovertemplate and np.allclose(trace.customdata, attention)
    assert figure.layout.title.text == "probe"


def test_point_attention_figure_rejects_mismatch():
    with pytest.raises(Pose3DFRError, match="10 attention values for 5 points"):
        point_attention_figure(np.zeros((5, 3)), np.zeros(10))


def test_pose_annotation_text():
    text = pose_annotation(12.34, -4.06, 2.0, "[0,30)")
    assert text == "yaw +12.3°, pitch -4.1°, roll +2.0° (bin [0,30))"
    assert "bin" not in pose_annotation(1, 2, 3)


def test_colour_scale_runs_from_cold_to_hot_like_the_overlay():
    from pose3dfr.viz import colour_scale_stops

    stops = colour_scale_stops(5)
    assert len(stops) == 5 and all(len(c) == 7 and c.startswith("#") for c in stops)
    first, last = (tuple(int(c[i:i + 2], 16) for i in (1, 3, 5)) for c in (stops[0], stops[-1]))
    assert first[2] > first[0] and last[0] > last[2]  # JET: blue (least attended) to red (most attended)
    hot = overlay_heatmap(np.zeros((4, 4, 3), np.uint8), np.array([[0.0, 1.0]]), alpha=1.0)
    assert tuple(hot[0, -1]) == last  # the overlay's hottest pixel is the legend's right end


def test_point_attention_figure_without_attention_draws_no_colour_scale():
    figure = point_attention_figure(np.zeros((5, 3)), None, title="none")
    (trace,) = figure.data
    assert trace.marker.color == "lightgrey" and not trace.marker.showscale
