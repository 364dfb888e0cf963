"""Alignment of MediaPipe-indexed landmarks onto the backbone templates."""

from __future__ import annotations

import numpy as np
import pytest

from pose3dfr.face.mesh import load_canonical_mesh
from pose3dfr.geometry import rotation_matrix
from pose3dfr.face.align import (TEMPLATES, align_face, alignment_matrix, choose_mode, similarity_transform,
                                      template_points, transform_points)


def _projected(yaw: float, scale: float = 10.0, shift=(300.0, 250.0)) -> np.ndarray:
    """Canonical mesh turned by `yaw`, orthographically projected to image pixels (y down)."""
    v = load_canonical_mesh().vertices @ rotation_matrix(yaw).T
    return np.stack([v[:, 0] * scale + shift[0], -v[:, 1] * scale + shift[1]], axis=1)


def test_similarity_transform_recovers_known_transform():
    rng = np.random.default_rng(0)
    src = rng.normal(size=(5, 2)) * 20
    angle, scale, t = 0.3, 1.7, np.array([5.0, -3.0])
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    dst = src @ (scale * rot).T + t
    m = similarity_transform(src, dst)
    assert np.allclose(transform_points(src, m), dst, atol=1e-9)


@pytest.mark.parametrize("template", ["arcface", "dlib"])
def test_frontal_five_points_land_on_template(template):
    lm = _projected(0)
    m, mode = alignment_matrix(lm, template)
    assert mode == "five_point"
    err = np.abs(transform_points(template_points(lm, template), m) - TEMPLATES[template].points).max()
    assert err < 4.0  # the canonical face is not the template's mean face, but close to it


def test_auto_switches_to_box_at_large_yaw():
    assert choose_mode(_projected(0)) == "five_point"
    assert choose_mode(_projected(30)) == "five_point"
    assert choose_mode(_projected(60)) == "box"
    assert choose_mode(_projected(-90)) == "box"


def test_box_and_five_point_agree_in_scale_at_frontal():
    lm = _projected(0)
    five, _ = alignment_matrix(lm, "arcface", mode="five_point")
    box, _ = alignment_matrix(lm, "arcface", mode="box")
    a, b = transform_points(lm, five), transform_points(lm, box)
    assert np.abs(np.ptp(a, 0) - np.ptp(b, 0)).max() < 1.0
    assert np.abs(a.mean(0) - b.mean(0)).max() < 2.0


def test_align_face_outputs_chip_and_none_mode_resizes():
    image = np.random.default_rng(0).integers(0, 255, (500, 600, 3), dtype=np.uint8)
    chip = align_face(image, _projected(75), "arcface")
    assert chip.image.shape == (112, 112, 3) and chip.mode == "box"
    whole = align_face(image, None, "dlib")
    assert whole.image.shape == (150, 150, 3) and whole.mode == "none"


def _inside(points: np.ndarray, matrix: np.ndarray, size: int) -> float:
    chip = transform_points(points, matrix)
    return float(np.all((chip >= 0) & (chip <= size), axis=1).mean())


def test_pipeline_at_90_degrees_keeps_the_face_in_the_chip(synth_views):
    """The pipeline (YuNet box and the head-pose net's landmarks: pose_fit, the landmarker usually refuses a
    profile) keeps >= 95% of the visible ground-truth landmarks of a 90-degree render inside the chip."""
    from pose3dfr.face.align import align_detection
    from pose3dfr.inference.detect import FaceAnalyzer

    analyzer = FaceAnalyzer()
    try:
        for yaw in (90, -90):
            image, landmarks = synth_views[yaw]
            face = analyzer.analyze(image).faces[0]
            for template in ("arcface", "dlib"):
                chip = align_detection(image, face.landmarks, face.bbox, template, prediction=face.net_prediction)
                visible = landmarks[landmarks[:, 2] > 0.5, :2]
                assert chip.mode == "pose_fit"
                assert _inside(visible, chip.matrix, chip.image.shape[0]) >= 0.95, (yaw, template)
    finally:
        analyzer.close()


def test_detector_box_frontal_scale_matches_five_point():
    """A frontal face gets about the size five_point gives it (calibrated DETECTOR_BOX_SIDE)."""
    from pose3dfr.face.align import DETECTOR_BOX_SIDE, detector_box_matrix

    lm = _projected(0)
    five, _ = alignment_matrix(lm, "arcface", mode="five_point")
    height = np.ptp(lm[:, 1])
    box = np.array([lm[:, 0].min(), lm[:, 1].min(), lm[:, 0].max(), lm[:, 1].max()])
    det = detector_box_matrix(box, 112)
    assert np.isclose(det[0, 0] * DETECTOR_BOX_SIDE * height, 112)
    assert 0.5 < det[0, 0] / five[0, 0] < 2.0  # same order (a landmark extent is not a YuNet box)


@pytest.mark.parametrize("size", [112, 60])
def test_pre_cropped_face_never_runs_off_the_image(size):
    """A 112 px pre-aligned crop (or a tiny photo) whose detector box nearly fills it: the detector_box square is
    kept inside the photo, so the chip shows no area beyond it; align 'none' resizes the photo."""
    from pose3dfr.face.align import detector_box_matrix

    image = np.random.default_rng(0).integers(1, 255, (size, size, 3), dtype=np.uint8)
    box = np.array([0.05, 0.1, 0.95, 1.02]) * size  # the box even pokes out at the bottom
    chip = align_face(image, None, "arcface", mode="detector_box", box=box)
    corners = np.array([[0, 0], [112, 0], [0, 112], [112, 112]], np.float64)
    inverse = np.linalg.inv(np.vstack([chip.matrix, [0, 0, 1]]))[:2]
    back = transform_points(corners, inverse)
    assert np.all(back >= -1e-6) and np.all(back <= size + 1e-6)
    assert chip.image.min() > 0  # no black border
    unclamped = detector_box_matrix(box, 112)
    assert not np.allclose(unclamped, chip.matrix)  # the clamp did something here
    assert align_face(image, None, "arcface", mode="none").mode == "none"


def test_auto_uses_detector_box_without_landmarks_or_when_turned():
    box = np.array([250.0, 150.0, 350.0, 350.0])
    assert choose_mode(None, box) == "detector_box"
    assert choose_mode(_projected(80), box) == "detector_box"
    assert choose_mode(_projected(0), box) == "five_point"
    assert choose_mode(_projected(80)) == "box"


def _prediction(yaw: float, pitch: float = 0.0, roll: float = 0.0, scale: float = 10.0, shift=(300.0, 250.0)):
    """A perfect head-pose net answer for the canonical face at this pose (orthographic, like `_projected`)."""
    from pose3dfr.face.landmarks import PosePrediction, profile_landmarks

    v = load_canonical_mesh().vertices[:468] @ rotation_matrix(yaw, pitch, roll).T
    marks = profile_landmarks(np.stack([v[:, 0] * scale + shift[0], -v[:, 1] * scale + shift[1],
                                        np.ones(len(v))], axis=1))
    return PosePrediction(yaw, pitch, roll, marks)


@pytest.mark.parametrize("pose", [(90, 0, 0), (-75, 10, -8), (30, -15, 12)])
def test_fitted_mesh_recovers_the_canonical_face_from_pose_and_seven_landmarks(pose):
    from pose3dfr.face.align import fitted_mesh_landmarks

    truth = load_canonical_mesh().vertices[:468] @ rotation_matrix(*pose).T
    expected = np.stack([truth[:, 0] * 7 + 120, -truth[:, 1] * 7 + 90], axis=1)
    fitted = fitted_mesh_landmarks(_prediction(*pose, scale=7.0, shift=(120.0, 90.0)))
    assert fitted.shape == (468, 2) and np.abs(fitted - expected).max() < 1e-6


def test_fit_ignores_landmarks_the_net_calls_hidden():
    """A wild landmark with low visibility does not move the fit; with fewer than three visible, all are used."""
    from pose3dfr.face.align import fitted_mesh_landmarks
    from pose3dfr.face.landmarks import PosePrediction

    good = _prediction(90)
    marks = good.landmarks.copy()
    marks[0, :2] += 200.0
    marks[0, 2] = 0.1
    hidden = PosePrediction(90, 0, 0, marks)
    assert np.abs(fitted_mesh_landmarks(hidden) - fitted_mesh_landmarks(good)).max() < 1e-6
    marks[:, 2] = 0.0  # nothing visible: every point counts, so the wild one pulls the fit
    assert np.abs(fitted_mesh_landmarks(PosePrediction(90, 0, 0, marks)) - fitted_mesh_landmarks(good)).max() > 1


@pytest.mark.parametrize("template", ["arcface", "dlib"])
def test_pose_fit_gives_the_oracle_box_crop(template):
    """With a perfect prediction, pose_fit's chip is the oracle's box chip on the true landmarks."""
    from pose3dfr.face.align import align_detection

    image = np.random.default_rng(0).integers(0, 255, (500, 600, 3), dtype=np.uint8)
    box = np.array([250.0, 150.0, 350.0, 350.0])
    fitted = align_detection(image, None, box, template, prediction=_prediction(80))
    oracle = align_face(image, _projected(80)[:468], template)
    assert fitted.mode == "pose_fit" and oracle.mode == "box"
    assert np.allclose(fitted.matrix, oracle.matrix, atol=1e-6)


def test_detection_rule_prefers_five_points_near_frontal_and_pose_fit_at_profile():
    from pose3dfr.face.align import detection_mode

    box = np.array([250.0, 150.0, 350.0, 350.0])
    assert detection_mode(_projected(0), box, _prediction(0)) == "five_point"
    assert detection_mode(_projected(80), box, _prediction(80)) == "pose_fit"
    assert detection_mode(None, box, _prediction(90)) == "pose_fit"
    # the landmarker's "frontal" fit of a face the net sees in profile is not trusted
    assert detection_mode(_projected(0), box, _prediction(85)) == "pose_fit"
    assert detection_mode(None, box, None) == "detector_box"  # no head-pose net: the YuNet square
    assert detection_mode(_projected(80), None, None) == "box"
    assert detection_mode(None, None, None) == "none"


def test_pose_fit_of_a_pre_cropped_profile_stays_in_the_photo():
    """A 112 px crop of a profile: the pose_fit square is kept inside the photo (no black border)."""
    from pose3dfr.face.align import align_detection

    image = np.random.default_rng(0).integers(1, 255, (112, 112, 3), dtype=np.uint8)
    chip = align_detection(image, None, np.array([20.0, 5.0, 95.0, 110.0]), "arcface",
                           prediction=_prediction(90, scale=6.0, shift=(56.0, 60.0)))
    inverse = np.linalg.inv(np.vstack([chip.matrix, [0, 0, 1]]))[:2]
    back = transform_points(np.array([[0, 0], [112, 0], [0, 112], [112, 112]], np.float64), inverse)
    assert chip.mode == "pose_fit" and np.all(back >= -1e-6) and np.all(back <= 112 + 1e-6)
    assert chip.image.min() > 0


def test_keypoints_rule_maps_the_detector_keypoints_onto_the_arcface_template():
    """The "keypoints" rule (OpenCV's alignCrop) puts YuNet's five keypoints on the template at every yaw, and falls
    back to the pipeline's rule without keypoints; the dlib template has no keypoint form."""
    from pose3dfr.errors import Pose3DFRError
    from pose3dfr.face.align import ARCFACE_112, align_detection, detection_mode, transform_points

    angle = np.radians(20.0)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    keypoints = ARCFACE_112 @ rotation.T * 2.5 + np.array([300.0, 200.0])  # a turned, larger face in a photo
    image = np.zeros((600, 700, 3), np.uint8)
    box = np.array([250.0, 180.0, 600.0, 500.0])
    chip = align_detection(image, None, box, "arcface", 112, None, "keypoints", keypoints)
    assert chip.mode == "keypoints"
    assert np.allclose(transform_points(keypoints, chip.matrix), ARCFACE_112, atol=1e-6)
    assert align_detection(image, None, box, "arcface", 112, None, "keypoints", None).mode == "detector_box"
    assert detection_mode(None, box, None, "pipeline", keypoints) == "detector_box"  # the pipeline rule ignores them
    with pytest.raises(Pose3DFRError, match="keypoints"):
        align_detection(image, None, box, "dlib", 150, None, "keypoints", keypoints)
    with pytest.raises(Pose3DFRError, match="rule"):
        detection_mode(None, box, None, "nearest", keypoints)
