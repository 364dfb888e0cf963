"""Data loaders on tiny fixtures in the FaceScape layout: layout, poses, point clouds, bad data, transforms."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from scipy.spatial import cKDTree

from pose3dfr.data import pointcloud as pc
from pose3dfr.data.facescape import FaceScapeMultiView
from pose3dfr.data.folder import FolderDataset
from pose3dfr.face.mesh import load_canonical_mesh
from pose3dfr.data.transforms import ModelTransform, collate
from pose3dfr.errors import DatasetError
from pose3dfr.geometry import CV_TO_GL, rotation_matrix
from pose3dfr.face.align import align_face

# view -> (yaw, pitch, roll, valid); view 3 has an unreliable camera and must be skipped
VIEWS = {"0": (0.0, 0.0, 0.0, True), "1": (35.0, 5.0, -3.0, True), "2": (-70.0, -10.0, 4.0, True), "3": (20.0, 0.0, 0.0, False)}
IDENTITIES = ("2", "10")
EXPRESSIONS = ("1_neutral", "2_smile")
SIZE, FOCAL = 96, 5.0  # image side (px); pixels per cm of the orthographic landmark projection
MM_OFFSET = np.array([12.0, -40.0, 900.0])  # a real FaceScape mesh sits far from the canonical origin


def _mesh_vertices(identity: str) -> np.ndarray:
    """Canonical mesh in mm, widened per identity so the identities differ."""
    vertices = load_canonical_mesh().vertices * [{"2": 1.04, "10": 1.12}[identity], 1.0, 1.0]
    return vertices * 10.0 + MM_OFFSET


def _landmarks(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """468 x 3 (x, y, visible): canonical vertices rotated to the view and projected orthographically."""
    rotated = load_canonical_mesh().vertices @ rotation_matrix(yaw, pitch, roll).T
    xy = np.stack([SIZE / 2 + FOCAL * rotated[:, 0], SIZE / 2 - FOCAL * rotated[:, 1]], axis=1)
    return np.concatenate([xy, np.ones((len(xy), 1))], axis=1).astype(np.float32)


def make_facescape(root: Path, units_cm: bool = False, distortion: bool = False) -> Path:
    """A tiny FaceScape-layout data set: 2 identities x 2 expressions x 4 views (one invalid)."""
    rng = np.random.default_rng(0)
    mesh = load_canonical_mesh()
    for identity in IDENTITIES:
        for expression in EXPRESSIONS:
            folder = root / "images" / identity / expression
            folder.mkdir(parents=True)
            params = {}
            for view, (yaw, pitch, roll, valid) in VIEWS.items():
                pixels = rng.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{view}.jpg", quality=95)
                np.save(folder / f"{view}_landmarks.npy", _landmarks(yaw, pitch, roll))
                rt = np.zeros((3, 4))
                rt[:, :3] = CV_TO_GL @ rotation_matrix(yaw, pitch, roll)
                rt[:, 3] = [0.0, 0.0, 600.0]
                K = [[800.0, 0, SIZE / 2, 0], [0, 800.0, SIZE / 2, 0], [0, 0, 1, 0], [0, 0, 0, 1]]
                params.update({f"{view}_K": K, f"{view}_Rt": rt.tolist(), f"{view}_width": SIZE, f"{view}_height": SIZE,
                               f"{view}_distortion": [0.05 if distortion else 0.0, 0, 0, 0, 0], f"{view}_valid": valid,
                               f"{view}_matches": 100, f"{view}_sn": "cam", f"{view}_ori": f"{view}.jpg"})
            (folder / "params.json").write_text(json.dumps(params))
            vertices = _mesh_vertices(identity) / (10.0 if units_cm else 1.0)
            pc.save_mesh(root / "meshes" / identity / f"{expression}.ply", vertices, mesh.faces)
    if units_cm:
        (root / "manifest.json").write_text(json.dumps({"units": "cm", "splits": {"train": ["2"], "test": ["10"]}}))
    return root


@pytest.fixture(scope="module")
def facescape(tmp_path_factory) -> Path:
    return make_facescape(tmp_path_factory.mktemp("facescape"))


def test_layout_is_read_and_invalid_views_skipped(facescape):
    data = FaceScapeMultiView(facescape, num_points=64)
    assert len(data) == len(IDENTITIES) * len(EXPRESSIONS) * 3
    assert {r.view for r in data.records} == {"0", "1", "2"}  # view 3 has V_valid false
    assert data.num_identities == 2
    assert data.identity_names == ["2", "10"]  # numeric order, not "10" < "2"
    assert {(r.identity_name, r.identity) for r in data.records} == {("2", 0), ("10", 1)}
    assert {r.expression for r in data.records} == set(EXPRESSIONS)
    sample = data[0]
    assert sample["image"].shape == (SIZE, SIZE, 3) and sample["image"].dtype == np.uint8
    assert sample["landmarks"].shape == (468, 3)
    assert sample["points"].shape == (64, 9) and sample["points"].dtype == np.float32
    assert sample["path"] == data.records[0].path and data.records[0]["yaw"] == data.records[0].yaw


def test_pose_recovered_from_rt(facescape):
    data = FaceScapeMultiView(facescape, num_points=0)
    for record in data.records:
        yaw, pitch, roll, _ = VIEWS[record.view]
        assert record.yaw == pytest.approx(yaw, abs=1.0)
        assert record.pitch == pytest.approx(pitch, abs=1.0)
        assert record.roll == pytest.approx(roll, abs=1.0)


def test_mm_meshes_are_brought_to_the_canonical_frame(facescape):
    data = FaceScapeMultiView(facescape, identities=["2"], num_points=256)
    points = data[0]["points"]
    np.testing.assert_allclose(points[:, :3].mean(0), pc.canonical_centroid(), atol=0.05)
    canonical = pc.canonical_points()[:, :3]
    assert cKDTree(canonical).query(points[:, :3])[0].mean() < 0.3  # identity "2" is the canonical face, 4% wider
    assert data.points("2", "1_neutral") is data.points("2", "1_neutral")  # cached per (identity, expression)


def test_cm_manifest_points_used_as_they_are_and_splits(tmp_path):
    root = make_facescape(tmp_path / "syn", units_cm=True)
    data = FaceScapeMultiView(root, split="test", num_points=128)
    assert data.identity_names == ["10"] and {r.identity for r in data.records} == {0}
    mesh_cm = _mesh_vertices("10") / 10.0
    assert cKDTree(mesh_cm).query(data[0]["points"][:, :3])[0].max() < 1.5  # not moved or rescaled
    with pytest.raises(DatasetError, match="no split"):
        FaceScapeMultiView(root, split="validation")


def test_ready_point_cloud_beside_the_mesh_is_preferred(tmp_path):
    root = make_facescape(tmp_path / "syn", units_cm=True)
    ready = np.random.default_rng(0).normal(0, 3, (500, 9)).astype(np.float32)
    ready[:, 6:] = 0.25
    pc.save_point_cloud(root / "meshes" / "2" / "1_neutral_points.ply", ready)
    data = FaceScapeMultiView(root, identities=[2], expressions=["neutral"], num_points=100)
    points = data[0]["points"]
    assert cKDTree(ready[:, :3]).query(points[:, :3])[0].max() < 1e-4
    np.testing.assert_allclose(points[:, 6:], 0.25, atol=1 / 255)


def test_filters_by_identity_and_expression(facescape):
    data = FaceScapeMultiView(facescape, identities=[10], expressions=[2], num_points=0)
    assert {(r.identity_name, r.expression, r.identity) for r in data.records} == {("10", "2_smile", 0)}
    with pytest.raises(DatasetError, match="not found"):
        FaceScapeMultiView(facescape, identities=["99"], num_points=0)


def test_images_with_distortion_are_undistorted(tmp_path):
    root = make_facescape(tmp_path / "dist", distortion=True)
    data = FaceScapeMultiView(root, num_points=0)
    plain = np.asarray(Image.open(data.records[0].path).convert("RGB"))
    image = data[0]["image"]
    assert image.shape == plain.shape and not np.array_equal(image, plain)


def test_folder_and_facescape_loaders_agree(facescape, tmp_path):
    face_data = FaceScapeMultiView(facescape, expressions=["1_neutral"], num_points=256)
    for record in face_data.records:
        folder = tmp_path / "folder" / record.identity_name
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(record.path, folder / f"{record.view}.jpg")
        shutil.copy(Path(record.path).with_name(f"{record.view}_landmarks.npy"), folder / f"{record.view}_landmarks.npy")
        (folder / f"{record.view}_pose.json").write_text(json.dumps({"yaw": record.yaw, "pitch": record.pitch, "roll": record.roll}))
        shutil.copy(facescape / "meshes" / record.identity_name / "1_neutral.ply", folder / "scan.ply")
    # the scans are the FaceScape meshes (mm): scaled and centred like the FaceScape loader does
    folder_data = FolderDataset(tmp_path / "folder", num_points=256, align_scans=False, scan_units="mm")
    dense = FaceScapeMultiView(facescape, expressions=["1_neutral"], num_points=2048)  # reference surface
    assert folder_data.identity_names == face_data.identity_names and len(folder_data) == len(face_data)
    by_key = {(r.identity_name, r.view): i for i, r in enumerate(folder_data.records)}
    for index, record in enumerate(face_data.records):
        a, b = face_data[index], folder_data[by_key[(record.identity_name, record.view)]]
        np.testing.assert_array_equal(a["image"], b["image"])
        np.testing.assert_array_equal(a["landmarks"], b["landmarks"])
        assert (a["identity"], a["identity_name"]) == (b["identity"], b["identity_name"])
        assert a["yaw"] == pytest.approx(b["yaw"])
        assert a["points"].shape == b["points"].shape
        surface = dense.points(record.identity_name, "1_neutral")[:, :3]
        assert cKDTree(surface).query(b["points"][:, :3])[0].mean() < 0.3  # the same face in the same frame (cm)


# ---- bad data: a DatasetError naming the file --------------------------------------------------

def test_folder_scans_are_aligned_to_the_canonical_face(facescape, tmp_path):
    folder = tmp_path / "folder" / "7"
    folder.mkdir(parents=True)
    shutil.copy(sorted((facescape / "images" / "2" / "1_neutral").glob("*.jpg"))[0], folder / "a.jpg")
    shutil.copy(facescape / "meshes" / "2" / "1_neutral.ply", folder / "scan.ply")  # mm, far from the origin
    sample = FolderDataset(tmp_path / "folder", num_points=256)[0]
    assert sample["yaw"] is None and sample["landmarks"] is None and sample["identity_name"] == "7"
    assert cKDTree(pc.canonical_points()[:, :3]).query(sample["points"][:, :3])[0].mean() < 0.3


def test_missing_params_json(tmp_path):
    root = make_facescape(tmp_path / "bad")
    (root / "images" / "10" / "2_smile" / "params.json").unlink()
    with pytest.raises(DatasetError, match=r"10.2_smile.params\.json"):
        FaceScapeMultiView(root)


def test_truncated_image(tmp_path):
    root = make_facescape(tmp_path / "bad")
    data = FaceScapeMultiView(root, num_points=0)
    path = Path(data.records[1].path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(DatasetError, match=path.name):
        data[1]


def test_empty_mesh(tmp_path):
    root = make_facescape(tmp_path / "bad")
    mesh = root / "meshes" / "2" / "1_neutral.ply"
    mesh.write_bytes(b"ply\nformat ascii 1.0\nelement vertex 0\nproperty float x\nproperty float y\nproperty float z\n"
                     b"element face 0\nproperty list uchar int vertex_indices\nend_header\n")
    data = FaceScapeMultiView(root, identities=["2"], expressions=["1_neutral"], num_points=32)
    with pytest.raises(DatasetError, match="1_neutral.ply"):
        data[0]


def test_missing_mesh_and_pickled_landmarks(tmp_path):
    root = make_facescape(tmp_path / "bad")
    (root / "meshes" / "10" / "2_smile.ply").unlink()
    data = FaceScapeMultiView(root, identities=["10"], expressions=["2_smile"], num_points=32)
    with pytest.raises(DatasetError, match="2_smile.ply"):
        data[0]
    landmarks = Path(data.records[0].path).with_name("0_landmarks.npy")
    np.save(landmarks, np.array([{"not": "an array"}], dtype=object), allow_pickle=True)
    with pytest.raises(DatasetError, match="0_landmarks.npy"):
        FaceScapeMultiView(root, identities=["10"], expressions=["2_smile"], num_points=0)[0]


# ---- transforms ---------------------------------------------------------------------------------

def test_model_transform_shapes_and_aligned_chip(facescape):
    data = FaceScapeMultiView(facescape, identities=["10"], num_points=300)
    transform = ModelTransform("arcface", num_points=128, point_features=6)
    sample = data[0]
    out = transform(sample)
    assert out["image"].shape == (3, 112, 112) and out["image"].dtype == torch.float32
    assert 0.0 <= float(out["image"].min()) and float(out["image"].max()) <= 1.0
    chip = align_face(sample["image"], sample["landmarks"][:, :2], "arcface", 112).image
    np.testing.assert_allclose(out["image"].permute(1, 2, 0).numpy(), chip / 255.0, atol=1e-6)
    assert out["points"].shape == (128, 6) and out["label"] == sample["identity"] and out["yaw"] == pytest.approx(sample["yaw"])
    dlib = ModelTransform("dlib", num_points=64)(sample)
    assert dlib["image"].shape == (3, 150, 150) and dlib["points"].shape == (64, 9)
    batch = collate([out, transform(data[1])])
    assert batch["image"].shape == (2, 3, 112, 112) and batch["points"].shape == (2, 128, 6)
    assert batch["label"].dtype == torch.long and batch["yaw"].shape == (2,)


def test_training_transform_flips_image_and_points_together(facescape):
    data = FaceScapeMultiView(facescape, identities=["2"], num_points=200)
    sample = data[0]
    plain = ModelTransform(num_points=200)(sample)
    transform = ModelTransform(num_points=200, train=True, seed=1)
    flipped = unflipped = 0
    for _ in range(12):
        out = transform(sample)
        assert out["points"].shape == (200, 9)
        mirrored = torch.equal(out["image"], plain["image"].flip(-1))
        assert mirrored or torch.equal(out["image"], plain["image"])
        assert out["yaw"] == pytest.approx(-sample["yaw"] if mirrored else sample["yaw"], abs=1e-6)
        reference = sample["points"][:, :3] * ([-1.0, 1.0, 1.0] if mirrored else 1.0)
        assert cKDTree(reference).query(out["points"][:, :3].numpy())[0].max() < 0.1  # jitter is small
        flipped, unflipped = flipped + mirrored, unflipped + (not mirrored)
    assert flipped and unflipped


def test_sample_without_points_is_an_error_unless_allowed(facescape):
    sample = FaceScapeMultiView(facescape, identities=["2"], num_points=0)[0]
    with pytest.raises(DatasetError, match=Path(sample["path"]).name):
        ModelTransform()(sample)
    assert ModelTransform(require_points=False)(sample)["points"] is None


def test_reads_the_synthetic_generator_output(tiny_benchmark):
    # the generator's own output (conftest's tiny benchmark, shared with the other tests that need one)
    data = FaceScapeMultiView(tiny_benchmark, num_points=128)
    assert data.num_identities >= 2 and len(data) >= 2
    sample = data[0]
    assert sample["image"].ndim == 3 and sample["landmarks"].shape[0] >= 468
    assert sample["points"].shape == (128, 9) and np.isfinite(sample["points"]).all()
    # its identities are deformed canonical faces written in cm: the points sit on the canonical face
    assert cKDTree(pc.canonical_points()[:, :3]).query(sample["points"][:, :3])[0].mean() < 1.5


# ---- ARL-VTF (assumed layout, see pose3dfr/data/arlvtf.py) -------------------------------------

@pytest.fixture()
def arlvtf_root(tmp_path, photos_dir) -> Path:
    for subject, photo in (("101", "obama.jpg"), ("102", "biden.jpg")):
        folder = tmp_path / "arl" / "dev" / subject / "baseline"
        folder.mkdir(parents=True)
        shutil.copy(photos_dir / photo, folder / f"BAS_RGB2_{subject}_baseline_0.png")
        shutil.copy(photos_dir / photo, folder / f"FLIR_USB_{subject}_baseline_0.png")  # thermal: ignored
    return tmp_path / "arl"


def test_arlvtf_reads_visible_images_and_protocol_lists(arlvtf_root):
    from pose3dfr.data.arlvtf import ARLVTF

    data = ARLVTF(arlvtf_root, num_points=0, estimate_pose=False)
    assert data.identity_names == ["101", "102"] and len(data) == 2
    assert all("BAS_RGB2" in r.path and r.expression == "baseline" for r in data.records)
    probe = arlvtf_root / "probe.txt"
    probe.write_text("path,subject,yaw\ndev/101/baseline/BAS_RGB2_101_baseline_0.png,101,35\n"
                     "dev/102/baseline/FLIR_USB_102_baseline_0.png,102\n")
    listed = ARLVTF(arlvtf_root, list_file=probe, num_points=0, estimate_pose=False)
    assert [(r.identity_name, r.yaw) for r in listed.records] == [("101", 35.0)]
    probe.write_text("dev/101/baseline/BAS_RGB2_missing.png 101\n")
    with pytest.raises(DatasetError, match="BAS_RGB2_missing.png"):
        ARLVTF(arlvtf_root, list_file=probe)


def test_arlvtf_estimates_pose_and_builds_pseudo_point_clouds(arlvtf_root):
    from pose3dfr.data.arlvtf import ARLVTF

    from pose3dfr.inference.detect import FaceAnalyzer

    sample = ARLVTF(arlvtf_root, identities=["101"], num_points=64, analyzer=FaceAnalyzer())[0]
    assert abs(sample["yaw"]) < 30 and sample["landmarks"].shape == (468, 3)
    assert sample["points"].shape == (64, 9) and np.isfinite(sample["points"]).all()


def test_training_augmentation_is_pinned_by_a_given_rng(facescape):
    sample = FaceScapeMultiView(facescape, num_points=300)[0]
    transform = ModelTransform(num_points=200, train=True, seed=1)
    a = transform(sample, rng=np.random.default_rng([7, 0, 3]))
    b = transform(sample, rng=np.random.default_rng([7, 0, 3]))
    c = transform(sample, rng=np.random.default_rng([7, 1, 3]))
    assert torch.equal(a["points"], b["points"]) and torch.equal(a["image"], b["image"])
    assert not torch.equal(a["points"], c["points"])


def _turned_prediction(yaw: float):
    """A head-pose net answer for a canonical face turned by `yaw`, drawn at 6 px per cm around (70, 90)."""
    from pose3dfr.face.landmarks import PosePrediction, profile_landmarks
    from pose3dfr.face.mesh import load_canonical_mesh
    from pose3dfr.geometry import rotation_matrix

    v = load_canonical_mesh().vertices[:468] @ rotation_matrix(yaw).T
    marks = profile_landmarks(np.stack([v[:, 0] * 6 + 70, -v[:, 1] * 6 + 90, np.ones(len(v))], axis=1))
    return PosePrediction(yaw, 0.0, 0.0, marks)


class _FakeFace:
    def __init__(self, box, landmarks):
        self.bbox, self.score, self.landmarks = np.asarray(box, float), 0.9, landmarks
        self.keypoints = np.tile(self.bbox[:2], (5, 1))
        self.pose, self.yaw, self.pitch, self.roll = None, None, None, None
        self.pose_source = "none"
        self.net_prediction = _turned_prediction(80.0)


class _FakeAnalyzer:
    """FaceAnalyzer's contract for DetectionCache: analyze(image, name).select(0); no face in 'blank' images."""

    config = None

    def __init__(self):
        self.calls = 0

    def analyze(self, image, name="image"):
        from types import SimpleNamespace

        from pose3dfr.errors import NoFaceError

        self.calls += 1
        if image.max() == image.min():
            raise NoFaceError(f"{name}: no face found")
        return SimpleNamespace(select=lambda i: _FakeFace([20, 30, 120, 150], None))


def test_detection_cache_is_built_once_saved_safely_and_drives_pipeline_crops(tmp_path):
    from pose3dfr.data.detections import DetectionCache
    from pose3dfr.data.transforms import ModelTransform
    from pose3dfr.face.align import align_detection

    rng = np.random.default_rng(0)
    face, blank = rng.integers(0, 255, (200, 160, 3), dtype=np.uint8), np.full((200, 160, 3), 7, np.uint8)
    paths = [tmp_path / "a.png", tmp_path / "b.png"]
    for path, image in zip(paths, (face, blank)):
        cv2.imwrite(str(path), image[:, :, ::-1])
    analyzer = _FakeAnalyzer()
    cache = DetectionCache(tmp_path, analyzer=analyzer)
    assert cache.path.parent == tmp_path.resolve() and cache.path.name.startswith("detections_")
    assert cache.ensure(paths, progress=False) == 2 and cache.ensure(paths, progress=False) == 0
    assert analyzer.calls == 2
    with np.load(cache.path, allow_pickle=False) as data:  # plain arrays only
        assert data["boxes"].shape == (2, 15) and data["landmarks"].shape == (2, 478, 2)
        assert data["net_poses"].shape == (2, 3) and data["net_landmarks"].shape == (2, 7, 3)
    again = DetectionCache(tmp_path, analyzer=_FakeAnalyzer())
    assert len(again) == 2 and again.get(paths[1]) is None
    detection = again.get(paths[0])
    assert np.allclose(detection.box[:4], [20, 30, 120, 150]) and detection.landmarks is None
    assert detection.prediction.yaw == 80.0  # the head-pose net's answer survives the file, for pose_fit
    assert np.allclose(detection.prediction.landmarks, _turned_prediction(80.0).landmarks)
    with pytest.raises(DatasetError, match="no cached detection"):
        again.get(tmp_path / "c.png")

    transform = ModelTransform("arcface", num_points=0, require_points=False, align="pipeline", detections=again)
    out = transform({"image": face, "points": None, "identity": 0, "yaw": 0.0, "path": str(paths[0])})
    expected_face = align_detection(face, None, detection.box[:4], "arcface", prediction=detection.prediction)
    assert expected_face.mode == "pose_fit"
    expected = expected_face.image
    assert out["face_found"] and np.allclose(out["image"].numpy().transpose(1, 2, 0) * 255, expected, atol=0.5)
    missing = transform({"image": blank, "points": None, "identity": 0, "yaw": 0.0, "path": str(paths[1])})
    assert missing["face_found"] is False
    with pytest.raises(ValueError, match="DetectionCache"):
        ModelTransform("arcface", align="pipeline")


def test_detection_cache_name_follows_the_head_pose_weights_content(tmp_path):
    """The cache stores the head-pose net's landmarks, so a net retrained under the same file name gets a new cache."""
    from dataclasses import dataclass

    from pose3dfr.data.detections import detector_version

    @dataclass
    class Settings:
        headpose_weights: str
        score_threshold: float = 0.4

    weights = tmp_path / "headpose.safetensors"
    weights.write_bytes(b"first")
    first = detector_version(Settings(str(weights)))
    assert detector_version(Settings(str(weights))) == first
    weights.write_bytes(b"retrained")
    assert detector_version(Settings(str(weights))) != first
    assert detector_version(Settings(str(weights), 0.5)) != detector_version(Settings(str(weights)))
