"""Heatmap overlay, the 3D attention figure and the pose caption (pose3dfr.viz)."""

from __future__ import annotations

import numpy as np
import pytest

from pose3dfr.errors import Pose3DFRError
from pose3dfr.viz import normalize_heatmap, overlay_heatmap, point_attention_figure, pose_annotation, upsample_heatmap


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


def test_normalize_heatmap_scales_shares_from_zero_to_the_largest():
    """The colour scale: 0 (and negative shares) cold, the face's largest share hot."""
    assert np.array_equal(normalize_heatmap(np.full((3, 3), 4.0)), np.ones((3, 3)))
    assert np.allclose(normalize_heatmap(np.array([[1.0, 3.0]])), [[1 / 3, 1.0]])
    assert normalize_heatmap(np.array([[-1.0, 2.0]])).tolist() == [[0.0, 1.0]]
    assert np.array_equal(normalize_heatmap(np.array([[-1.0, -2.0]])), np.zeros((1, 2)))  # no positive share


def test_overlay_places_each_cell_on_its_receptive_field_centre():
    """SFace's cell i sits on chip pixel 16 i, dlib's on 16 i + 18 (pose3dfr.models.attribution.CellGrid), also
    when the crop is drawn larger than the chip; without a grid the cells split the crop evenly."""
    from pose3dfr.models.attribution import CellGrid

    hot = np.zeros((7, 7))
    hot[0, 0] = 1.0
    sface = CellGrid(112, 7, 16.0, 0.0)
    heat = upsample_heatmap(hot, 112, 112, sface)
    assert heat[0, 0] == pytest.approx(1.0) and heat[0, 16] == pytest.approx(0.0) and heat[8, 0] == pytest.approx(0.5)
    large = upsample_heatmap(hot, 224, 224, sface)  # the same chip shown at twice the size
    assert large[0, 0] == pytest.approx(1.0) and large[0, 32] == pytest.approx(0.0, abs=0.04)
    even = upsample_heatmap(hot, 112, 112)
    assert even[7, 7] == pytest.approx(1.0, abs=0.07) and even[0, 16] > 0.4  # cell 0 centred on pixel 7.5
    dlib_hot = np.zeros((8, 8))
    dlib_hot[0, 0] = 1.0
    dlib = upsample_heatmap(dlib_hot, 150, 150, CellGrid(150, 8, 16.0, 18.0))
    assert dlib[18, 18] == pytest.approx(1.0) and dlib[34, 34] == pytest.approx(0.0) and dlib[5, 5] == 1.0
    with pytest.raises(Pose3DFRError, match="grid"):
        upsample_heatmap(np.zeros((8, 8)), 112, 112, sface)


def test_point_attention_figure_colours_points_by_attention():
    rng = np.random.default_rng(1)
    points, attention = rng.normal(size=(50, 3)), rng.random(50)
    figure = point_attention_figure(points, attention, title="probe")
    (trace,) = figure.data
    assert trace.type == "scatter3d"
    assert np.allclose(trace.x, points[:, 0]) and np.allclose(trace.z, points[:, 2])
    assert np.allclose(trace.marker.color, attention)
    assert "share" in trace.hovertemplate and np.allclose(trace.customdata, attention)
    assert figure.layout.title.text == "probe"


def test_point_attention_figure_scale_starts_at_zero_and_greys_unseen_points():
    points = np.random.default_rng(2).normal(size=(6, 3))
    heat = np.array([-0.1, 0.0, 0.05, 0.2, np.nan, np.nan])  # two points the view does not see
    seen, unseen = point_attention_figure(points, heat).data
    assert np.allclose(seen.marker.color, [0.0, 0.0, 0.05, 0.2]) and seen.marker.cmin == 0.0
    assert seen.marker.cmax == pytest.approx(0.2) and "share" in seen.hovertemplate
    assert len(unseen.x) == 2 and unseen.marker.color == "lightgrey"


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
    assert first[2] > first[0] and last[0] > last[2]  # JET: blue (no share) to red (the largest share)
    hot = overlay_heatmap(np.zeros((4, 4, 3), np.uint8), np.array([[0.0, 1.0]]), alpha=1.0)
    assert tuple(hot[0, -1]) == last  # the overlay's hottest pixel is the legend's right end


def test_point_attention_figure_without_attention_draws_no_colour_scale():
    figure = point_attention_figure(np.zeros((5, 3)), None, title="none")
    (trace,) = figure.data
    assert trace.marker.color == "lightgrey" and not trace.marker.showscale
