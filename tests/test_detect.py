"""Detection, landmarks and head pose on the shipped photos (YuNet + MediaPipe Face Landmarker)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from pose3dfr.errors import FaceTooSmallError, NoFaceError
from pose3dfr.geometry import pose_bin_labels, rotation_matrix
from pose3dfr.inference.detect import FaceAnalyzer
from pose3dfr.inference.faces import BOX_KEYPOINTS, MIN_FACE_SIZE, NUM_LANDMARKS, DetectorConfig
from pose3dfr.face.image_io import load_image
from pose3dfr.face.pose import head_pose

PHOTOS = ["obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg", "astronaut.png", "32bit.png"]


@pytest.fixture(scope="module")
def analyzer():
    fa = FaceAnalyzer()
    yield fa
    fa.close()


@pytest.fixture(scope="module")
def photos(photos_dir):
    return {name: load_image(photos_dir / name) for name in PHOTOS + ["obama_partial_face.jpg"]}


@pytest.fixture(scope="module")
def analyses(analyzer, photos):
    return {name: analyzer.analyze(image, name) for name, image in photos.items()}


@pytest.mark.parametrize("name", PHOTOS)
def test_every_photo_reports_landmarks_and_pose(analyses, photos, name):
    analysis = analyses[name]
    face = analysis.faces[0]
    h, w = photos[name].shape[:2]
    assert face.landmarks.shape == (NUM_LANDMARKS, 3)
    x0, y0, x1, y1 = face.bbox
    inside = ((face.landmarks[:, 0] > x0 - 0.3 * (x1 - x0)) & (face.landmarks[:, 0] < x1 + 0.3 * (x1 - x0))
              & (face.landmarks[:, 1] > y0 - 0.3 * (y1 - y0)) & (face.landmarks[:, 1] < y1 + 0.3 * (y1 - y0)))
    assert inside.mean() > 0.95  # landmarks mapped back to image pixels, around the detected box
    assert 0 <= x0 < x1 <= w + 1 and 0 <= y0 < y1 <= h + 1
    assert all(np.isfinite([face.yaw, face.pitch, face.roll]))
    assert face.pose.bin in pose_bin_labels()
    assert face.size >= MIN_FACE_SIZE


@pytest.mark.parametrize("name", ["astronaut.png", "biden.jpg"])
def test_single_face_photos_show_one_face(analyses, name):
    assert analyses[name].count == 1


def test_yaw_sign_matches_nose_offset(analyses):
    """yaw > 0 (face turned to the image right) exactly when the nose tip is right of the eye centre."""
    for name in ("obama2.jpg", "obama3.jpg"):  # the two clearly turned faces, in opposite directions
        lm = analyses[name].faces[0].landmarks
        nose_offset = lm[1, 0] - (lm[33, 0] + lm[263, 0]) / 2
        assert np.sign(analyses[name].faces[0].yaw) == np.sign(nose_offset)
    assert analyses["obama2.jpg"].faces[0].yaw * analyses["obama3.jpg"].faces[0].yaw < 0


@pytest.mark.parametrize("name", ["obama2.jpg", "obama3.jpg", "biden.jpg"])
def test_horizontal_flip_flips_yaw_and_roll(analyzer, analyses, photos, name):
    face = analyses[name].faces[0]
    flipped = analyzer.analyze(np.ascontiguousarray(photos[name][:, ::-1]), name).faces[0]
    assert abs(face.yaw) > 5 and np.sign(flipped.yaw) == -np.sign(face.yaw)
    assert abs(flipped.yaw + face.yaw) < 4.0
    assert abs(flipped.roll + face.roll) < 4.0
    assert abs(flipped.pitch - face.pitch) < 4.0


def test_in_plane_rotation_is_reported_as_roll(analyzer, photos):
    """Rotating the photo counter-clockwise by 20 degrees adds about +20 degrees of roll."""
    image = photos["obama.jpg"]
    h, w = image.shape[:2]
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), 20, 1.0)  # positive angle = counter-clockwise
    rotated = cv2.warpAffine(image, matrix, (w, h), borderMode=cv2.BORDER_REPLICATE)
    before = analyzer.analyze(image).faces[0].roll
    after = analyzer.analyze(rotated).faces[0].roll
    assert 14 < after - before < 26


def test_head_pose_inverts_geometry_rotation():
    transform = np.eye(4)
    transform[:3, :3] = rotation_matrix(35.0, -10.0, 5.0) * 1.02  # MediaPipe's matrix may carry a small scale
    pose = head_pose(transform)
    assert np.allclose([pose.yaw, pose.pitch, pose.roll], [35.0, -10.0, 5.0], atol=1e-6)
    assert pose.bin == "[30,60)"


def test_several_faces_sorted_largest_first_and_selectable(analyzer, photos):
    big = photos["biden.jpg"]
    small = cv2.resize(photos["obama.jpg"], None, fx=0.6, fy=0.6, interpolation=cv2.INTER_AREA)
    canvas = np.full((max(big.shape[0], small.shape[0]), big.shape[1] + small.shape[1] + 40, 3), 255, np.uint8)
    canvas[: small.shape[0], : small.shape[1]] = small  # the smaller face on the left
    canvas[: big.shape[0], small.shape[1] + 40:] = big
    analysis = analyzer.analyze(canvas, "pair")
    assert analysis.count == 2
    assert analysis.faces[0].area > analysis.faces[1].area
    assert analysis.select(0).bbox[0] > small.shape[1]  # the largest (Biden) is on the right
    assert analysis.select(1).bbox[2] < small.shape[1] + 40
    with pytest.raises(NoFaceError, match="face index 2"):
        analysis.select(2)


@pytest.mark.parametrize("kind", ["blank", "noise"])
def test_no_face_raises(analyzer, kind):
    rng = np.random.default_rng(0)
    image = np.full((240, 320, 3), 200, np.uint8) if kind == "blank" else rng.integers(0, 256, (240, 320, 3), np.uint8)
    with pytest.raises(NoFaceError, match="no face"):
        analyzer.analyze(image, f"{kind}.png")


def test_tiny_face_raises_face_too_small(analyzer, photos):
    face = analyzer.analyze(photos["obama.jpg"]).faces[0]
    scale = 0.8 * MIN_FACE_SIZE / face.size  # the face ends up below the minimum size
    small = cv2.resize(photos["obama.jpg"], None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    canvas = np.full((200, 200, 3), 128, np.uint8)
    canvas[60: 60 + small.shape[0], 60: 60 + small.shape[1]] = small[:140, :140]
    with pytest.raises(FaceTooSmallError, match="tiny.png"):
        analyzer.analyze(canvas, "tiny.png")


def test_landmarker_fallback_when_yunet_finds_nothing(photos):
    strict = FaceAnalyzer(DetectorConfig(score_threshold=0.999))  # YuNet's scores here are ~0.95: no box
    try:
        assert len(strict.detect_boxes(photos["obama.jpg"])) == 0
        face = strict.analyze(photos["obama.jpg"], "obama.jpg").faces[0]
    finally:
        strict.close()
    assert face.score is None and face.landmarks.shape == (NUM_LANDMARKS, 3)
    x0, y0, x1, y1 = face.bbox  # the landmark extent
    assert np.isclose(x0, face.landmarks[:, 0].min()) and np.isclose(y1, face.landmarks[:, 1].max())


def test_empty_image_retry_frames_the_image_and_maps_boxes_back(analyzer, photos, monkeypatch):
    image = photos["obama.jpg"]
    expected = analyzer.detect_boxes(image)[0]
    assert analyzer.config.empty_retry_border > 0
    framed = analyzer.boxes_in_frame(image, analyzer.config.empty_retry_border)
    assert np.abs(framed[0, :4] - expected[:4]).max() < 0.05 * (expected[3] - expected[1])  # same face, same pixels
    assert np.abs(framed[0, BOX_KEYPOINTS] - expected[BOX_KEYPOINTS]).max() < 0.05 * (expected[3] - expected[1])
    passes = []
    real = analyzer.boxes_in_frame

    def first_pass_finds_nothing(img, border=0.0):
        passes.append(border)
        return np.zeros((0, 15)) if border == 0 else real(img, border)

    monkeypatch.setattr(analyzer, "boxes_in_frame", first_pass_finds_nothing)
    retried = analyzer.detect_boxes(image)
    assert passes == [0.0, analyzer.config.empty_retry_border] and len(retried) == 1
    passes.clear()
    monkeypatch.setattr(analyzer, "boxes_in_frame", lambda img, border=0.0: passes.append(border) or real(img, border))
    analyzer.detect_boxes(image)
    assert passes == [0.0]  # a face found: no retry, so it can never add a face beside one already found


def test_the_retry_frames_a_large_photo_at_detection_scale(analyzer, monkeypatch):
    seen = []
    real = analyzer._boxes_one_way
    monkeypatch.setattr(analyzer, "_boxes_one_way",
                        lambda rgb, mirrored, reduced: seen.append(rgb.shape) or real(rgb, mirrored, reduced))
    with pytest.raises(NoFaceError):
        analyzer.analyze(np.full((1920, 2560, 3), 90, np.uint8), "wall.jpg")  # no face: the framed retry runs
    framed = seen[2:]  # after the first pass and its mirror
    assert framed and all(max(shape[:2]) <= analyzer.config.fine_side + 2 for shape in framed), seen


class _FakePoseNet:
    """The head-pose estimator contract: predict(image, boxes) -> one object with yaw/pitch/roll per box."""

    def __init__(self, yaw: float = 88.0) -> None:
        self.yaw, self.calls = yaw, []

    def predict(self, image, boxes):
        from types import SimpleNamespace

        self.calls.append(np.asarray(boxes).copy())
        return [SimpleNamespace(yaw=self.yaw, pitch=-2.0, roll=1.0) for _ in boxes]


def test_face_refused_by_the_landmarker_is_kept_with_box_and_keypoints(analyzer, photos, monkeypatch):
    from dataclasses import replace

    monkeypatch.setattr(analyzer, "_run_landmarker", lambda rgb: [])  # the landmarker refuses every crop
    with pytest.raises(NoFaceError, match="no facial landmarks fit it"):  # a frontal face it refuses is no face
        analyzer.analyze(photos["obama.jpg"], "obama.jpg")
    monkeypatch.setattr(analyzer, "config", replace(analyzer.config, landmarks_needed_below_yaw=0.0))
    face = analyzer.analyze(photos["obama.jpg"], "obama.jpg").faces[0]
    # the default analyzer carries the shipped head-pose net: a refused face still gets a pose
    assert face.landmarks is None and face.pose_source == "headpose-net" and abs(face.yaw) < 30
    assert face.score > 0.5 and face.keypoints.shape == (5, 2)
    x0, y0, x1, y1 = face.bbox
    assert np.all((face.keypoints >= [x0, y0]) & (face.keypoints <= [x1, y1]))
    assert face.keypoints[0, 0] < face.keypoints[1, 0]  # image-left eye first (ArcFace template order)


def test_without_a_pose_net_a_refused_face_has_no_pose(photos, monkeypatch):
    bare = FaceAnalyzer(DetectorConfig(headpose_weights=None))
    try:
        monkeypatch.setattr(bare, "_run_landmarker", lambda rgb: [])
        face = bare.analyze(photos["obama.jpg"]).faces[0]
    finally:
        bare.close()
    assert bare.pose_estimator is None
    assert face.landmarks is None and face.pose is None and face.pose_source == "none" and face.yaw is None


def test_measured_policy_trusts_mediapipe_only_below_its_yaw_limit(photos, monkeypatch):
    """MediaPipe's pose is reported below MEDIAPIPE_MAX_YAW, the head-pose net's beyond it."""
    from pose3dfr.face.pose import HeadPose
    from pose3dfr.headpose.estimator import MEDIAPIPE_MAX_YAW

    fa = FaceAnalyzer(pose_estimator=_FakePoseNet(yaw=70.0))
    try:
        assert fa.config.pose_preference == "measured"
        assert not fa._prefers_net(HeadPose(MEDIAPIPE_MAX_YAW - 1, 0.0, 0.0, "[30,60)"))
        assert fa._prefers_net(HeadPose(MEDIAPIPE_MAX_YAW + 1, 0.0, 0.0, "[30,60)"))
        assert fa._prefers_net(None)
    finally:
        fa.close()


def test_pose_estimator_gives_the_pose_of_refused_faces(photos, monkeypatch):
    net = _FakePoseNet()
    fa = FaceAnalyzer(pose_estimator=net)
    try:
        kept = fa.analyze(photos["obama.jpg"]).faces[0]  # landmarker accepts: MediaPipe's pose is reported
        monkeypatch.setattr(fa, "_run_landmarker", lambda rgb: [])
        refused = fa.analyze(photos["obama.jpg"]).faces[0]
    finally:
        fa.close()
    assert kept.pose_source == "mediapipe" and abs(kept.yaw) < 30 and kept.pose_net.yaw == 88.0
    assert refused.pose_source == "headpose-net" and refused.yaw == 88.0 and refused.pose.bin == "[60,90)"
    assert net.calls[0].shape[1] >= 4 and np.allclose(net.calls[0][0, :4], kept.bbox)


def test_mirrored_pass_maps_boxes_back(photos):
    plain = FaceAnalyzer(DetectorConfig(mirror_pass=False))
    mirrored = FaceAnalyzer(DetectorConfig(mirror_pass=True))
    try:
        image = photos["obama2.jpg"]
        a = plain.detect_boxes(image)[0]
        flipped = mirrored._boxes_one_way(image, True, {})  # the mirror image, reduced once and then mirrored
        of_mirrored_photo = plain._boxes_one_way(np.ascontiguousarray(image[:, ::-1]), False, {})
    finally:
        plain.close()
        mirrored.close()
    from pose3dfr.inference.detect import _mirror_boxes

    # mirroring the reduced image gives YuNet what reducing the mirrored photo gives (resizing commutes with mirroring)
    np.testing.assert_allclose(flipped, of_mirrored_photo, atol=0.5)
    back = _mirror_boxes(flipped, image.shape[1])[0]
    assert np.abs(back[:4] - a[:4]).max() < 0.05 * (a[3] - a[1])  # same face, same place
    assert np.abs(back[5:] - a[5:]).max() < 0.08 * (a[3] - a[1])  # keypoints in the same order


def test_box_suppression_keeps_the_best_of_each_overlapping_group():
    """detect._nms (OpenCV's NMSBoxes on x0 y0 x1 y1 boxes): the highest score of overlapping boxes, best first."""
    from pose3dfr.inference.detect import _nms

    boxes = np.zeros((4, 15))
    boxes[:, :5] = [[0, 0, 10, 10, 0.9], [1, 1, 11, 11, 0.95], [20.5, 20, 30, 30.5, 0.5], [0, 0, 10, 10.5, 0.8]]
    kept = _nms(boxes, 0.3)
    assert kept[:, 4].tolist() == [0.95, 0.5]
    assert np.array_equal(_nms(boxes, 0.99), boxes[[1, 0, 3, 2]])  # nothing overlaps that much: all, by score


def test_group_photo_has_exactly_three_faces_and_shipped_photos_one(analyzer, photos):
    from pose3dfr.eval.shipped_photos import group_photo  # the composed photo the detection benchmark measures

    assert analyzer.analyze(group_photo(), "group").count == 3
    for name in PHOTOS:
        assert len(analyzer.detect_boxes(photos[name])) == 1, name


def test_profile_render_is_found(analyzer, synth_views):
    for yaw in (90, -90):
        image, landmarks = synth_views[yaw]
        face = analyzer.analyze(image, f"yaw{yaw}").faces[0]
        centre = (face.bbox[:2] + face.bbox[2:]) / 2
        assert np.all((centre >= landmarks[:, :2].min(0)) & (centre <= landmarks[:, :2].max(0))), yaw


# ---------------------------------------------------------------------------------------------- looks like a face

def face_free_crop(photos_dir, name: str, x: int, y: int, side: int) -> np.ndarray:
    """A square of a shipped photo away from its face, at 384 px: YuNet takes something in it for a face."""
    image = load_image(photos_dir / name)
    return np.ascontiguousarray(cv2.resize(image[y:y + side, x:x + side], (384, 384), interpolation=cv2.INTER_AREA))


# (photo, x, y, side, the check that refuses the box): hands with a watch, a shuttle model
NON_FACES = [("obama.jpg", 166, 844, 164, "no facial landmarks fit it"),
             ("biden.jpg", 176, 979, 355, "eyes, nose and mouth are not where a face's would be"),
             ("astronaut.png", 335, 165, 100, "lies outside the photo")]


@pytest.mark.parametrize("name, x, y, side, reason", NON_FACES)
def test_a_box_that_does_not_look_like_a_face_is_rejected_and_said_so(analyzer, photos_dir, name, x, y, side, reason):
    from dataclasses import replace

    crop = face_free_crop(photos_dir, name, x, y, side)
    unchecked = FaceAnalyzer(replace(analyzer.config, landmarks_needed_below_yaw=0.0, max_face_yaw=1e9,
                                     min_landmark_visibility=0.0, max_keypoint_disagreement=1e9, max_box_outside=1e9))
    try:
        assert unchecked.analyze(crop, "crop").count >= 1  # without the checks: "a face"
    finally:
        unchecked.close()
    with pytest.raises(NoFaceError, match=f"no face found .1 face-like region rejected: .*{reason}"):
        analyzer.analyze(crop, "crop")


def test_a_photo_with_a_face_and_a_non_face_reports_one_face_and_the_rejection(analyzer, photos, photos_dir):
    crop = face_free_crop(photos_dir, *NON_FACES[0][:4])  # at the scale YuNet sees it alone (640 px wide in all)
    face = np.pad(cv2.resize(photos["obama.jpg"], (256, 320), interpolation=cv2.INTER_AREA), ((32, 32), (0, 0), (0, 0)),
                  constant_values=255)
    analysis = analyzer.analyze(np.ascontiguousarray(np.concatenate([face, crop], axis=1)), "face-and-hand")
    assert analysis.count == 1 and len(analysis.rejected) == 1
    assert analysis.faces[0].evidence == "landmarker" and analysis.rejected[0].bbox[0] > face.shape[1]
    assert "no facial landmarks fit it" in analysis.rejected[0].to_dict()["reason"]


def test_rendered_faces_at_every_yaw_pass_the_checks(analyzer, synth_views):
    for yaw in (0, 45, 75, 90, -90):
        analysis = analyzer.analyze(synth_views[yaw][0], f"yaw{yaw}")
        assert analysis.count >= 1 and not analysis.rejected, (yaw, analysis.rejected)


def test_each_check_of_a_box_the_landmarker_refuses():
    from types import SimpleNamespace

    from pose3dfr.face.landmarks import PosePrediction
    from pose3dfr.face.pose import HeadPose
    from pose3dfr.inference.face_checks import plausible_face
    from pose3dfr.inference.faces import DetectedFace

    config, shape = DetectorConfig(), (400, 400, 3)
    keypoints = np.array([[140.0, 170], [170, 170], [120, 220], [145, 260], [165, 260]])
    visible = np.c_[keypoints, np.ones(5)]

    def box(yaw=80.0, landmarks=None, net=visible, bbox=(100.0, 100, 200, 300)):
        chin_and_bridge = [[150, 300, net[2, 2]], [150, 150, net[2, 2]]]  # as visible as the nose
        prediction = PosePrediction(yaw, 0.0, 0.0, np.r_[net, chin_and_bridge])
        return DetectedFace(bbox=np.array(bbox), score=0.7, landmarks=landmarks, transform=None, pose=None,
                            keypoints=keypoints, pose_net=HeadPose(yaw, 0.0, 0.0, "[60,90)"), net_prediction=prediction)

    assert plausible_face(box(), config, shape) is None  # a profile: its landmarks where YuNet's keypoints are
    assert plausible_face(box(yaw=10.0, landmarks=np.zeros((478, 3))), config, shape) is None  # the landmarker fit it
    assert "no facial landmarks fit it" in plausible_face(box(yaw=10.0), config, shape)
    assert "beyond a profile" in plausible_face(box(yaw=150.0), config, shape)
    assert "lies outside the photo" in plausible_face(box(bbox=(300.0, 100, 500, 300)), config, shape)
    hidden = visible.copy()
    hidden[:, 2] = 0.1
    assert "too few facial features" in plausible_face(box(net=hidden), config, shape)
    moved = visible.copy()
    moved[:, :2] += 80  # 0.4 box sides away from YuNet's keypoints
    assert "not where a face's would be" in plausible_face(box(net=moved), config, shape)
    assert plausible_face(SimpleNamespace(landmarks=None, score=0.7, pose_net=None), config, shape) is None
