"""The head-pose net: loading and tamper refusal, output shapes and ranges, crop geometry, mirror consistency,
profile renders with the shipped weights, and a tiny end-to-end training run."""

from __future__ import annotations

import functools
import shutil

import numpy as np
import pytest

from pose3dfr.errors import CheckpointError, Pose3DFRError
from pose3dfr.face.landmarks import LANDMARK_NAMES
from pose3dfr.headpose.estimator import HEADPOSE_WEIGHTS, HeadPoseEstimator
from pose3dfr.headpose.model import INPUT_SIZE, crop_matrix, pose_crop


@pytest.fixture(scope="module")
def estimator() -> HeadPoseEstimator:
    return HeadPoseEstimator.load()


def _render(yaw: float) -> tuple[np.ndarray, np.ndarray]:
    from pose3dfr.data.synthetic import render_identity_view

    return render_identity_view(3, yaw, 4.0, -3.0, seed=0)


def _box(landmarks: np.ndarray) -> np.ndarray:
    from pose3dfr.headpose.data import face_box

    return face_box(np.zeros((0, 5)), landmarks)[0]


def test_shipped_checkpoint_loads_and_is_small():
    est = HeadPoseEstimator.load()
    assert est.input_size == INPUT_SIZE
    assert HEADPOSE_WEIGHTS.stat().st_size < 10 * 1024 * 1024
    assert tuple(est.model.cfg.landmark_names) == LANDMARK_NAMES


def test_tampered_or_missing_checkpoint_is_refused(tmp_path):
    for suffix in (".safetensors", ".json"):
        shutil.copy(HEADPOSE_WEIGHTS.with_suffix(suffix), tmp_path / f"hp{suffix}")
    assert HeadPoseEstimator.load(tmp_path / "hp").input_size == INPUT_SIZE
    data = bytearray((tmp_path / "hp.safetensors").read_bytes())
    data[-10] ^= 0xFF
    (tmp_path / "hp.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256"):
        HeadPoseEstimator.load(tmp_path / "hp")
    with pytest.raises(CheckpointError):
        HeadPoseEstimator.load(tmp_path / "absent")


def test_predict_shapes_and_ranges(estimator):
    image, landmarks = _render(30.0)
    box = _box(landmarks)
    preds = estimator.predict(image, np.stack([box, box + 3]))
    assert len(preds) == 2
    for p in preds:
        assert -180 <= p.yaw <= 180 and -90 <= p.pitch <= 90 and -180 <= p.roll <= 180
        assert p.landmarks.shape == (len(LANDMARK_NAMES), 3) and np.isfinite(p.landmarks).all()
        assert ((p.landmarks[:, 2] >= 0) & (p.landmarks[:, 2] <= 1)).all()
        # the nose tip lies inside the face box
        nose = p.landmarks[LANDMARK_NAMES.index("nose_tip")]
        assert box[0] - 5 <= nose[0] <= box[2] + 5 and box[1] - 5 <= nose[1] <= box[3] + 5
    assert estimator.predict(image, np.zeros((0, 5))) == []
    with pytest.raises(Pose3DFRError):
        estimator.predict(image, np.array([[10.0, 10.0, 5.0, 20.0]]))


def test_pose_crop_geometry():
    image = np.zeros((200, 300, 3), np.uint8)
    image[95:106, 145:156] = 255  # a bright square centred on (150, 100)
    box = np.array([120.0, 70.0, 180.0, 130.0])
    crop = pose_crop(image, box)
    assert crop.shape == (INPUT_SIZE, INPUT_SIZE, 3) and crop.dtype == np.uint8
    ys, xs = np.nonzero(crop[:, :, 0] > 128)
    assert abs(xs.mean() - (INPUT_SIZE - 1) / 2) < 0.6 and abs(ys.mean() - (INPUT_SIZE - 1) / 2) < 0.6
    m = crop_matrix(box)
    assert m[0, 0] == pytest.approx(INPUT_SIZE / (1.6 * 60))


def test_mirror_consistency(estimator):
    image, landmarks = _render(40.0)
    box = _box(landmarks)
    w = image.shape[1]
    mirrored_box = np.array([w - 1 - box[2], box[1], w - 1 - box[0], box[3]])
    a = estimator.predict(image, box[None])[0]
    b = estimator.predict(np.ascontiguousarray(image[:, ::-1]), mirrored_box[None])[0]
    assert b.yaw == pytest.approx(-a.yaw, abs=1.0)
    assert b.roll == pytest.approx(-a.roll, abs=1.0)
    assert b.pitch == pytest.approx(a.pitch, abs=1.0)


@pytest.mark.parametrize("yaw", [90.0, -90.0])
def test_profile_render_is_predicted_as_profile(estimator, yaw):
    image, landmarks = _render(yaw)
    pred = estimator.predict(image, _box(landmarks)[None])[0]
    assert abs(pred.yaw) > 60 and np.sign(pred.yaw) == np.sign(yaw)


def test_train_headpose_tiny_run(tmp_path):
    from pose3dfr.headpose.data import HeadPoseDataConfig
    from pose3dfr.headpose.train import HeadPoseTrainConfig, train_headpose
    from pose3dfr.inference.detect import FaceAnalyzer
    from pose3dfr.inference.faces import DetectorConfig

    from pose3dfr.headpose.data import load_cache

    data = HeadPoseDataConfig(identities=2, expressions_per_identity=1, views_per_head=4, render_size=96,
                              photos=("obama.jpg",), profile_views_per_photo=3, tight_crop_p=0.5)
    cfg = HeadPoseTrainConfig(data=data, steps=2, batch_size=4, val_identities=1, threads=1)
    boxes_only = functools.partial(FaceAnalyzer, DetectorConfig(headpose_weights=None))
    path = train_headpose(cfg, tmp_path, boxes_only, progress=False)
    est = HeadPoseEstimator.load(path)
    assert set(est.meta["extra"]["val"]) == {"yaw_mae", "pitch_mae", "roll_mae", "landmark_px"}
    assert (tmp_path / "data.npz").is_file() and (tmp_path / "metrics.jsonl").read_text().strip()
    crops = load_cache(tmp_path / "data.npz")
    # 8 render crops of identities 1-2 and 3 profiled views of the photo (identity -1: always in training)
    assert sorted(np.unique(crops["identity"]).tolist()) == [-1, 1, 2] and (crops["identity"] == -1).sum() == 3
    assert crops["images"].shape == (11, INPUT_SIZE, INPUT_SIZE, 3)


def test_headpose_is_not_offered_as_a_recognition_checkpoint():
    from pose3dfr.models.io import available_checkpoints

    assert HEADPOSE_WEIGHTS.is_file() and "headpose" not in available_checkpoints()


def test_context_is_painted_around_the_face_and_not_by_pose():
    """Hair, neck and shoulders go into the background around the face's extent; their placement does not
    depend on the yaw (the same draws give the same layer for a face turned either way)."""
    from pose3dfr.headpose.data import _paint_context

    _, landmarks = _render(60.0)
    landmarks = landmarks.copy()
    landmarks[:, :2] += 128  # centred in a 512 canvas: no blob is clipped at its border
    mirrored = landmarks.copy()
    mirrored[:, 0] = 511 - mirrored[:, 0]  # the same face extent, turned the other way
    painted = []
    for marks in (landmarks, mirrored):
        background = np.zeros((512, 512, 3), np.float32)
        rng = np.random.default_rng(5)
        while not background.any():
            _paint_context(background, marks, rng)
        painted.append(background.any(2))
    lo, hi = landmarks[:, :2].min(0), landmarks[:, :2].max(0)
    ys, xs = np.nonzero(painted[0])
    assert lo[0] - (hi - lo).max() < xs.mean() < hi[0] + (hi - lo).max()  # around the face, not elsewhere
    assert ys.min() < lo[1] and ys.max() > hi[1]  # hair above, neck and shoulders below
    centre = (lo[0] + hi[0]) / 2
    offsets = [np.nonzero(p)[1].mean() - c for p, c in zip(painted, (centre, 511 - centre))]
    assert abs(offsets[0] - offsets[1]) < 2.0  # placed relative to the face box only


def test_data_recipes_are_the_clis_and_the_default_is_the_shipped_one():
    """`train-headpose --recipe` offers every data recipe; the shipped recipe renders no profiled photos and no
    studio crops (the shipped card's command must keep reproducing its data)."""
    from pose3dfr.cli import build_parser
    from pose3dfr.headpose.data import DATA_RECIPES, HeadPoseDataConfig, recipe

    sub = next(a for a in build_parser()._actions if getattr(a, "choices", None) and "train-headpose" in a.choices)
    option = next(a for a in sub.choices["train-headpose"]._actions if a.dest == "recipe")
    assert set(option.choices) == set(DATA_RECIPES) and option.default == "shipped"
    assert recipe("shipped") == HeadPoseDataConfig()
    assert HeadPoseDataConfig().profile_views_per_photo == 0 and HeadPoseDataConfig().tight_crop_p == 0
    profiled = recipe("profiled", identities=3)
    assert profiled.identities == 3 and profiled.profile_views_per_photo > 0
    assert not set(profiled.photos) & {"obama3.jpg", "astronaut.png"}  # the held-out photos stay out of training
    with pytest.raises(ValueError):
        recipe("nonsense")
