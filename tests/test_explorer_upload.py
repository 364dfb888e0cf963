"""The pose explorer's upload mode: the point splatter (z-buffer, culling), the yaw direction of scan renders,
and the sweep of a frontal photo + its scan through the app, including bad uploads."""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import numpy as np
import pytest

from pose3dfr.data.render import project, render_points, splat_points
from pose3dfr.data.synthetic import camera
from pose3dfr.geometry import rotation_matrix
from pose3dfr.ui import explorer, models


# ----------------------------------------------------------------------------- splatting

@pytest.mark.parametrize("near_first", [True, False])
def test_a_point_behind_another_at_the_same_pixel_is_hidden(near_first):
    near, far = [10.2, 20.1, 5.0], [9.8, 19.9, 9.0]  # both round to pixel (x 10, y 20)
    screen = np.array([near, far] if near_first else [far, near])
    fragments = splat_points(screen, 32, 32, radius=0)
    assert fragments.index[20, 10] == (0 if near_first else 1)
    assert fragments.depth[20, 10] == 5.0
    assert fragments.mask.sum() == 1


def test_render_points_shows_the_nearer_colour_and_culls_points_facing_away():
    K, Rt = np.array([[100.0, 0, 16], [0, 100.0, 16], [0, 0, 1]]), np.hstack([np.eye(3), [[0], [0], [50]]])
    points = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 5.0]])  # the first is nearer the camera (z = 50 vs 55)
    colors = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    towards_camera = np.array([[0.0, 0.0, -1.0]] * 2)
    image, fragments = render_points(points, colors, K, Rt, 32, 32, radius=2, normals=towards_camera, background=0.0)
    assert np.allclose(image[16, 16], [1.0, 0.0, 0.0]) and fragments.index[16, 16] == 0
    away = towards_camera.copy()
    away[0] *= -1  # the near point turns its back: the far one shows through
    image, fragments = render_points(points, colors, K, Rt, 32, 32, radius=2, normals=away, background=0.0)
    assert np.allclose(image[16, 16], [0.0, 0.0, 1.0]) and fragments.index[16, 16] == 1
    assert fragments.mask.sum() == 21  # one disc of radius 2 (pixel centres within 2.5 px: 21), nothing else


def test_positive_yaw_moves_the_nose_tip_to_the_image_right_as_in_geometry():
    nose, centre = np.array([[0.0, -0.5, 7.5]]), np.array([[0.0, -0.5, -3.5]])  # canonical frame (cm)
    for yaw in (-60.0, -30.0, 30.0, 60.0):
        K, Rt = camera(yaw, 0.0, 0.0, 256)
        shift = project(nose, K, Rt)[0, 0] - project(centre, K, Rt)[0, 0]
        assert np.sign(shift) == np.sign(yaw)
        # the same direction geometry.rotation_matrix gives in its OpenGL camera (x right)
        assert np.sign((rotation_matrix(yaw) @ (nose - centre)[0])[0]) == np.sign(yaw)


# ----------------------------------------------------------------------------- photo + scan

@pytest.fixture(scope="module")
def synthetic_pair(one_identity_benchmark) -> tuple[Path, Path]:
    """Frontal image and face point cloud (.ply) of identity 1 of a tiny synthetic set."""
    root = one_identity_benchmark
    return root / "images" / "1" / "1_neutral" / "1.jpg", root / "meshes" / "1" / "1_neutral_points.ply"


@pytest.fixture(scope="module")
def verifier():
    return models.MODELS.get("default")


def test_scan_renders_turn_the_way_the_pose_estimator_reads_them(photos_dir, synthetic_pair, verifier):
    """A shipped photo's colours on a synthetic scan, rendered at +-30 degrees: MediaPipe's yaw agrees in sign."""
    from pose3dfr.inference.explore import scan_subject

    subject = scan_subject(photos_dir / "obama.jpg", synthetic_pair[1], analyzer=verifier.analyzer)
    for yaw in (-30.0, 30.0):
        image, landmarks = subject.render(yaw)
        assert image.shape == (256, 256, 3) and landmarks.shape == (468, 3)
        detected = verifier.analyzer.analyze(image).select(0).yaw
        assert np.sign(detected) == np.sign(yaw) and abs(detected) > 5.0


def test_upload_mode_sweeps_one_similarity_per_yaw(synthetic_pair):
    """Oracle alignment (the renderer's landmarks): every yaw gets a score. (dlib-pretrained: one network scores
    every yaw; the routed default scores its frontal renders with dlib's, its profiles with the fine-tuned one.)"""
    photo, scan = (str(p) for p in synthetic_pair)
    gallery, curve, cloud, sweep, grid, table = explorer.explore_endpoint(
        explorer.EXPLORER_UPLOAD, None, photo, scan, "dlib-pretrained", 0.5, "oracle")
    yaws = list(range(-90, 91, 15))
    assert sweep.yaws == yaws and len(sweep.scores) == len(yaws) == len(gallery)
    assert all(-1.0 <= s <= 1.0 for s in sweep.scores)
    assert list(curve.data[0].x) == yaws and list(curve.data[0].y) == sweep.scores
    frontal = sweep.scores[yaws.index(0)]
    assert frontal > max(sweep.scores[0], sweep.scores[-1])  # the profile is harder than the frontal render
    assert cloud is not None and len(cloud.data[0].x) == len(sweep.points)
    assert "no face found" not in gallery[yaws.index(0)][1]
    assert "oracle" in curve.layout.title.text
    assert not hasattr(sweep, "views")  # the session keeps no renders or crops, only what the 3D view needs
    # attention per view: one column per yaw in the grid, one row of statistics each (no 3D branch: no points)
    assert grid.ndim == 3 and grid.shape[1] >= len(yaws) * 160 and sweep.view_points is None
    assert table.count("\n| ") == len(yaws) and "+90°" in table and "deletion" in table.lower()


def test_explorer_attention_per_view_with_a_3d_branch(small_3d_checkpoint):
    """A model with a 3D branch: every view gets its statistics and the 3D point heat of its own registration
    (points the view does not see are NaN), and a click shows that view's points; attention=False skips it."""
    from pose3dfr.inference import explore
    from pose3dfr.inference.verifier import Verifier

    verifier = Verifier.from_pretrained(str(small_3d_checkpoint) + ".safetensors",
                                        analyzer=models.MODELS.get("default").analyzer)
    sweep = explore.explore_synthetic(verifier, 1, yaws=(0.0, 90.0), alignment="oracle")
    for view in sweep.views:
        report, heat = view.attention, view.point_heat
        assert report is not None and set(report.auc) == {"heatmap", "random"} and report.ks[0] == 1
        assert report.heatmap.shape == (7, 7) and report.maps["heatmap"]["com_in_face"] is not None
        assert heat.xyz.shape == (256, 3) and heat.heat.shape == (256,) and np.isfinite(heat.heat).any()
    frontal, profile = (np.isfinite(v.point_heat.heat).mean() for v in sweep.views)
    assert profile < frontal  # a profile sees less of the face
    grid = explorer.attention_grid(sweep, verifier)
    assert grid.shape[1] >= 2 * 160 and grid.shape[0] > 2 * 160  # caption, heatmap and 3D panel per column
    state = explorer.SweepState(sweep.yaws, sweep.scores, sweep.points, sweep.point_attention,
                                {v.yaw: (v.point_heat.xyz, v.point_heat.heat) for v in sweep.views})
    figure = explorer.sweep_attention_figure(state, 90.0)
    assert "yaw +90" in figure.layout.title.text and len(figure.data) == 2  # seen points + unseen in grey
    plain = explore.explore_synthetic(verifier, 1, yaws=(0.0,), alignment="oracle", attention=False)
    assert plain.views[0].attention is None and plain.views[0].point_heat is None


def test_pipeline_sweep_scores_renders_as_verify_does_and_draws_the_threshold():
    """The default sweep runs each render through detection, pose and alignment; a render where no face is
    found is a rejection (score None, a gap in the curve), and the decision threshold is drawn."""
    from pose3dfr.inference import explore

    verifier = models.MODELS.get("default")
    yaws = (0.0, 45.0, 90.0)
    sweep = explore.explore_synthetic(verifier, 1, yaws=yaws)
    assert sweep.alignment == "pipeline" and sweep.yaws == list(yaws)
    frontal = sweep.views[0]
    assert frontal.score is not None and frontal.score > sweep.threshold and frontal.detected_yaw is not None
    assert abs(frontal.detected_yaw) < 15
    for view in sweep.views:
        assert (view.score is None) == (view.crop is None)
        assert view.score is None or -1.0 <= view.score <= 1.0
    direct = verifier.verify(explore.synthetic_subject(1).enrollment, sweep.views[1].image, with_points=False)
    assert sweep.views[1].score == pytest.approx(direct.score, abs=1e-6)  # the same pipeline as Verify
    figure = explorer.sweep_figure(sweep)
    assert any(shape.y0 == pytest.approx(sweep.threshold) for shape in figure.layout.shapes)
    assert sweep.threshold == verifier.threshold(explore.SWEEP_FAR).value
    with pytest.raises(Exception, match="alignment"):
        explore.explore_synthetic(verifier, 1, yaws=yaws, alignment="guess")


def _write_ply(path: Path, xyz: np.ndarray) -> Path:
    from pose3dfr.data.pointcloud import save_point_cloud

    return save_point_cloud(path, xyz.astype(np.float32))


def _bad_scans(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    garbage = tmp_path / "garbage.ply"
    garbage.write_bytes(b"this is not a scan\n" * 10)
    points = np.random.default_rng(0).normal(size=(4000, 3))
    nan = _write_ply(tmp_path / "nan.ply", np.full_like(points, np.nan))
    sparse = _write_ply(tmp_path / "sparse.ply", points[:100])
    blob = _write_ply(tmp_path / "blob.ply", points)  # a cloud of noise: no face surface to align to
    return {"garbage": (garbage, "not a PLY file"), "nan": (nan, "NaN"), "sparse": (sparse, "at least"),
            "blob": (blob, "does not look like a face")}


def test_bad_uploads_give_readable_errors_and_the_app_keeps_serving(tmp_path, synthetic_pair):
    from PIL import Image

    photo, scan = synthetic_pair
    for name, (path, words) in _bad_scans(tmp_path).items():
        with pytest.raises(gr.Error) as exc:
            explorer.explore_endpoint(explorer.EXPLORER_UPLOAD, None, str(photo), str(path), "default", 0.5)
        assert path.name in exc.value.message and words in exc.value.message, (name, exc.value.message)
    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((200, 200, 3), 128, np.uint8)).save(blank)
    with pytest.raises(gr.Error, match="blank.png: no face found"):
        explorer.explore_endpoint(explorer.EXPLORER_UPLOAD, None, str(blank), str(scan), "default", 0.5)
    with pytest.raises(gr.Error, match="Upload the 3D scan"):
        explorer.explore_endpoint(explorer.EXPLORER_UPLOAD, None, str(photo), None, "default", 0.5)
    with pytest.raises(gr.Error, match="numbered from 1"):
        explorer.explore_endpoint(explorer.EXPLORER_SYNTHETIC, 0, None, None, "default", 0.5)


def test_explorer_mode_radio_shows_the_uploads_only_in_upload_mode():
    identity, uploads = explorer.toggle_explorer_mode(explorer.EXPLORER_UPLOAD)
    assert identity["visible"] is False and uploads["visible"] is True
    identity, uploads = explorer.toggle_explorer_mode(explorer.EXPLORER_SYNTHETIC)
    assert identity["visible"] is True and uploads["visible"] is False
