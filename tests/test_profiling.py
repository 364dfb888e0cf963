"""Face profiling of real photos (pose3dfr.data.profiling): the photo's own texture, known yaw through the
detector pipeline, mirror equivariance, landmark visibility, studio crops and bad input."""

from __future__ import annotations

import numpy as np
import pytest

from pose3dfr.data.profiling import (NUM_FACE, ProfilingConfig, fit_photo_head, frame_matrix, mirror_partners,
                                     mirror_view, render_profile, studio_crop)
from pose3dfr.errors import Pose3DFRError
from pose3dfr.face.landmarks import EYES

# No per-vertex grain in the fill: the mirrored photo's head then is the exact mirror of the photo's.
NO_GRAIN = ProfilingConfig(hair_rgb_grain=0.0)


@pytest.fixture(scope="module")
def analyzer():
    from pose3dfr.inference.detect import FaceAnalyzer

    return FaceAnalyzer()


@pytest.fixture(scope="module")
def obama(analyzer, photos_dir):
    from pose3dfr.face.image_io import load_image

    photo = load_image(photos_dir / "obama.jpg")
    return photo, analyzer.analyze(photo).faces[0].landmarks


@pytest.fixture(scope="module")
def head(obama):
    return fit_photo_head(*obama, NO_GRAIN)


def test_fit_recovers_the_photos_pose(head, analyzer, obama):
    mediapipe = analyzer.analyze(obama[0]).faces[0].pose_mediapipe
    assert head.pose[0] == pytest.approx(mediapipe.yaw, abs=4.0)
    assert head.pose[2] == pytest.approx(mediapipe.roll, abs=4.0)


def test_texture_comes_from_the_photo(head, obama, analyzer, photos_dir):
    """At the photo's own pose each visible landmark shows the photo's own pixel there (framed alike), not the
    pixel of another photo's face at the same landmark."""
    from pose3dfr.face.image_io import load_image

    size = NO_GRAIN.image_size
    view = render_profile(head, *head.pose, cfg=NO_GRAIN, background=np.zeros((size, size, 3), np.uint8))
    seen = view.landmarks[:, 2] > 0.5
    rendered = _colours(view.image, view.landmarks[seen, :2])
    own = np.abs(rendered - _framed_colours(head, *obama, seen)).mean()
    biden = load_image(photos_dir / "biden.jpg")
    biden_marks = analyzer.analyze(biden).faces[0].landmarks
    other = np.abs(rendered - _framed_colours(fit_photo_head(biden, biden_marks, NO_GRAIN), biden, biden_marks,
                                              seen)).mean()
    assert seen.mean() > 0.9 and own < 12.0 and other > 2 * own


def _framed_colours(head, photo: np.ndarray, landmarks: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """The photo framed like its views (frame_matrix), read at its landmarks."""
    import cv2

    size = NO_GRAIN.image_size
    matrix = frame_matrix(head, NO_GRAIN)
    framed = cv2.warpAffine(photo, matrix, (size, size), flags=cv2.INTER_AREA)
    points = np.asarray(landmarks)[:NUM_FACE, :2] @ matrix[:, :2].T + matrix[:, 2]
    return _colours(framed, points[seen])


def _colours(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    """N x 3 mean colour of the 3 x 3 pixels around each point."""
    import cv2

    smooth = cv2.blur(image.astype(np.float32), (3, 3))
    cols = np.clip(np.rint(points[:, 0]).astype(int), 0, image.shape[1] - 1)
    rows = np.clip(np.rint(points[:, 1]).astype(int), 0, image.shape[0] - 1)
    return smooth[rows, cols]


@pytest.mark.parametrize("yaw", [60.0, -60.0])
def test_profiled_photo_is_found_at_its_yaw(head, analyzer, yaw):
    """The full pipeline (YuNet, landmarker, head-pose net) finds the turned real face and reads its yaw."""
    view = render_profile(head, yaw, cfg=NO_GRAIN)
    face = analyzer.analyze(view.image).faces[0]
    centre = view.landmarks[view.landmarks[:, 2] > 0.5, :2].mean(0)
    assert face.bbox[0] <= centre[0] <= face.bbox[2] and face.bbox[1] <= centre[1] <= face.bbox[3]
    assert face.pose_net.yaw == pytest.approx(yaw, abs=15.0)


def test_mirrored_photo_gives_the_mirrored_view(head, obama):
    """The mirror image of the photo (with its landmarks mirrored) turned to -yaw is the mirror image of the
    photo turned to +yaw: profiling has no side of its own (a side-dependent step would flip one side's yaw)."""
    photo, landmarks = obama
    partner = list(mirror_partners())
    mirrored_marks = np.asarray(landmarks, np.float64)[:NUM_FACE][partner].copy()
    mirrored_marks[:, 0] = photo.shape[1] - 1 - mirrored_marks[:, 0]
    mirrored_head = fit_photo_head(np.ascontiguousarray(photo[:, ::-1]), mirrored_marks, NO_GRAIN)
    assert mirrored_head.pose[0] == pytest.approx(-head.pose[0], abs=1e-6)
    a = mirror_view(render_profile(head, 70.0, 10.0, 5.0, cfg=NO_GRAIN))
    b = render_profile(mirrored_head, -70.0, 10.0, -5.0, cfg=NO_GRAIN)
    assert (a.yaw, a.pitch, a.roll) == (b.yaw, b.pitch, b.roll)
    np.testing.assert_allclose(a.landmarks[:, :2], b.landmarks[:, :2], atol=1e-3)
    assert np.abs(a.image.astype(float) - b.image).mean() < 2.0


def test_far_eye_is_hidden_at_profile(head):
    view = render_profile(head, 75.0, cfg=NO_GRAIN)
    near, far = EYES[0], EYES[1]  # yaw > 0: the face turns to the subject's own left, its right eye stays in view
    assert view.landmarks[list(near), 2].mean() > 0.75 and view.landmarks[list(far), 2].mean() < 0.1
    frontal = render_profile(head, 0.0, cfg=NO_GRAIN)
    assert frontal.landmarks[list(near) + list(far), 2].mean() > 0.9


def test_studio_crop_moves_the_landmarks_with_the_image():
    image = np.zeros((200, 300, 3), np.uint8)
    image[118:123, 178:183] = 255  # a bright dot at (180, 120)
    marks = np.array([[150.0, 100.0, 1.0], [210.0, 160.0, 1.0], [180.0, 120.0, 1.0], [0.0, 0.0, 0.0]])
    crop, moved = studio_crop(image, marks, factor=1.2, size=96)
    assert crop.shape == (96, 96, 3)
    ys, xs = np.nonzero(crop[:, :, 0] > 128)
    assert abs(xs.mean() - moved[2, 0]) < 1.0 and abs(ys.mean() - moved[2, 1]) < 1.0
    assert moved[1, 0] - moved[0, 0] == pytest.approx(96 / 1.2, rel=1e-3)  # the visible box spans 1 / factor


def test_bad_input_is_refused(head, obama):
    with pytest.raises(Pose3DFRError):
        fit_photo_head(obama[0][:, :, 0], obama[1])
    with pytest.raises(Pose3DFRError):
        fit_photo_head(obama[0], obama[1][:100])
    with pytest.raises(Pose3DFRError):
        render_profile(head, 30.0, background=np.zeros((10, 10, 3), np.uint8))

