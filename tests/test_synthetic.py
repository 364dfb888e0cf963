"""Synthetic benchmark generator: layout, determinism, camera/pose agreement, point clouds, landmarks, identities."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pose3dfr.errors import Pose3DFRError
from pose3dfr.geometry import CV_TO_GL, euler_angles
from pose3dfr.face.mesh import load_canonical_mesh
from pose3dfr.data.synthetic import (EXPRESSIONS, SynthConfig, apply_expression, generate_benchmark, identity_mask,
                                     render_identity_view, sample_identity)

TINY = SynthConfig(identities=3, expressions=2, yaw_step=45.0, image_size=64, points=256, texture_size=128,
                   seed=7, contact_sheet_thumb=32)
VIEW_KEYS = ("K", "Rt", "distortion", "width", "height", "matches", "valid", "sn", "ori")


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth") / "bench"
    manifest = generate_benchmark(root, TINY)
    assert manifest == root / "manifest.json"
    return root


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_layout_and_params(bench):
    manifest = json.loads((bench / "manifest.json").read_text())
    assert manifest["units"] == "cm" and manifest["seed"] == 7 and manifest["version"]
    assert manifest["expressions"] == ["1_neutral", "2_smile"] and manifest["yaws"] == [-90, -45, 0, 45, 90]
    assert (bench / "contact_sheet.png").is_file()
    for identity in ("1", "2", "3"):
        for expression in manifest["expressions"]:
            assert (bench / "meshes" / identity / f"{expression}.ply").is_file()
            assert (bench / "meshes" / identity / f"{expression}_points.ply").is_file()
            folder = bench / "images" / identity / expression
            params = json.loads((folder / "params.json").read_text())
            assert len(params) == 5 * len(VIEW_KEYS)
            for view in range(5):
                assert all(f"{view}_{key}" in params for key in VIEW_KEYS)
                assert np.asarray(params[f"{view}_K"]).shape == (4, 4)
                assert np.asarray(params[f"{view}_Rt"]).shape == (3, 4)
                assert params[f"{view}_valid"] is True and params[f"{view}_width"] == 64
                landmarks = np.load(folder / f"{view}_landmarks.npy", allow_pickle=False)
                assert landmarks.shape == (468, 3) and landmarks.dtype == np.float32
                assert f"images/{identity}/{expression}/{view}.jpg" in manifest["views"]
    assert len(manifest["views"]) == 3 * 2 * 5


def test_splits_are_disjoint_and_cover_all_identities(bench):
    splits = json.loads((bench / "manifest.json").read_text())["splits"]
    members = splits["train"] + splits["val"] + splits["test"]
    assert sorted(members) == ["1", "2", "3"] and len(set(members)) == 3
    assert len(splits["test"]) >= 1 and len(splits["train"]) >= 1


def test_same_seed_gives_identical_bytes_whatever_the_workers(bench, tmp_path):
    again = generate_benchmark(tmp_path / "again", SynthConfig(**{**TINY.__dict__, "workers": 2})).parent
    assert _files(again) == _files(bench)
    other = generate_benchmark(tmp_path / "other", SynthConfig(**{**TINY.__dict__, "seed": 8, "identities": 1,
                                                                  "expressions": 1})).parent
    assert (other / "images/1/1_neutral/2.jpg").read_bytes() != (bench / "images/1/1_neutral/2.jpg").read_bytes()


def test_pose_from_camera_matches_manifest(bench):
    manifest = json.loads((bench / "manifest.json").read_text())
    for rel, pose in manifest["views"].items():
        path = bench / rel
        params = json.loads((path.parent / "params.json").read_text())
        rt = np.asarray(params[f"{path.stem}_Rt"])
        yaw, pitch, roll = euler_angles(CV_TO_GL @ rt[:, :3])
        assert abs(yaw - pose["yaw"]) < 1.0 and abs(pitch - pose["pitch"]) < 1.0 and abs(roll - pose["roll"]) < 1.0
        assert abs(pose["pitch"]) <= TINY.pitch_jitter and abs(pose["roll"]) <= TINY.roll_jitter


def test_point_clouds_are_in_the_canonical_frame(bench):
    from pose3dfr.data.pointcloud import read_point_cloud

    canonical = load_canonical_mesh().vertices
    points = read_point_cloud(bench / "meshes/1/1_neutral_points.ply")
    assert points.shape == (256, 9)
    xyz, normals, rgb = points[:, :3], points[:, 3:6], points[:, 6:]
    assert np.linalg.norm(xyz.mean(0) - canonical.mean(0)) < 2.0  # cm
    extent = xyz.max(0) - xyz.min(0)
    assert (extent > [12, 14, 6]).all() and (extent < [20, 24, 14]).all()  # a face in cm, not mm or m
    assert np.allclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-3)
    assert normals[:, 2].mean() > 0.5  # the face looks along +z
    assert (rgb >= 0).all() and (rgb <= 1).all() and rgb.std() > 0.01


def test_landmarks_inside_image_and_visibility_follows_yaw(bench):
    folder = bench / "images/1/1_neutral"
    frontal = np.load(folder / "2_landmarks.npy")
    profile = np.load(folder / "4_landmarks.npy")
    assert (frontal[:, :2] >= 0).all() and (frontal[:, :2] < 64).all()
    assert frontal[:, 2].mean() > 0.9
    assert profile[:, 2].mean() < 0.75
    assert set(np.unique(profile[:, 2])) <= {0.0, 1.0}


def test_yaw_sign_convention_in_renders():
    image, landmarks = render_identity_view(1, 45.0, image_size=96, seed=7)
    assert image.shape == (96, 96, 3) and image.dtype == np.uint8
    nose, centre = landmarks[1, 0], landmarks[[234, 454], 0].mean()
    assert nose > centre + 3  # yaw > 0 turns the face to the image right
    _, mirrored = render_identity_view(1, -45.0, image_size=96, seed=7)
    assert mirrored[1, 0] < mirrored[[234, 454], 0].mean() - 3


def test_identities_differ_in_shape_and_keep_it_through_expressions():
    a = identity_mask(sample_identity(7, 1))
    b = identity_mask(sample_identity(7, 2))
    assert np.sqrt(((a - b) ** 2).sum(1).mean()) > 0.2  # cm RMS
    assert np.array_equal(a, identity_mask(sample_identity(7, 1)))
    upper = load_canonical_mesh().vertices[:, 1] > 1.0  # forehead, eyes, nose bridge: rigid for mouth moves
    stretched = apply_expression(a, "3_mouth_stretch")
    assert np.abs(stretched[:468][upper] - a[:468][upper]).max() < 0.05
    assert np.abs(stretched[152] - a[152]).max() > 1.0  # the chin drops


def test_expressions_use_facescape_names():
    assert EXPRESSIONS[:3] == ("1_neutral", "2_smile", "3_mouth_stretch")
    with pytest.raises(Pose3DFRError, match="unknown expression"):
        apply_expression(identity_mask(sample_identity(0, 1)), "9_wink")


def test_bad_config_and_foreign_folder_are_refused(tmp_path):
    with pytest.raises(Pose3DFRError, match="identities"):
        generate_benchmark(tmp_path / "x", SynthConfig(identities=0))
    with pytest.raises(Pose3DFRError, match="expressions"):
        generate_benchmark(tmp_path / "x", SynthConfig(expressions=99))
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(Pose3DFRError, match="not empty"):
        generate_benchmark(tmp_path / "mine", TINY)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_facescape_loader_reads_the_benchmark(bench):
    from pose3dfr.data.facescape import FaceScapeMultiView

    data = FaceScapeMultiView(bench, num_points=64)
    assert len(data) == 30 and data.num_identities == 3
    sample = data[2]
    assert sample["image"].shape == (64, 64, 3) and sample["points"].shape[0] == 64
    assert abs(sample["yaw"]) < 1.0 and sample["landmarks"].shape == (468, 3)


def test_cli_synth_writes_a_benchmark(tmp_path, capsys):
    from pose3dfr.cli import main

    code = main(["synth", "--out", str(tmp_path / "cli"), "--identities", "1", "--expressions", "1",
                 "--yaw-step", "90", "--image-size", "32", "--points", "64"])
    assert code == 0 and "manifest" in capsys.readouterr().out
    manifest = json.loads((tmp_path / "cli" / "manifest.json").read_text())
    assert manifest["arguments"]["image_size"] == 32 and len(manifest["views"]) == 3
