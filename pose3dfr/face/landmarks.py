"""The face landmarks the project names: MediaPipe mesh indices, and the head-pose net's seven profile landmarks.

MediaPipe's 468-point mesh is the one landmark layout of the project (renders store their projected mesh
vertices, photos get MediaPipe's landmarks). At profile the landmarker gives up, so the head-pose net
(pose3dfr.headpose) predicts seven of them with visibility instead; `PosePrediction` is its answer,
which pose3dfr.face.align turns into a chip by fitting the canonical mesh to it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# MediaPipe face-mesh indices (subject's right eye is on the image left in a frontal photo).
RIGHT_EYE_CORNERS = (33, 133)  # outer, inner
LEFT_EYE_CORNERS = (263, 362)  # outer, inner
NOSE_TIP = 1
NOSE_BOTTOM = 2
MOUTH_CORNERS = (61, 291)  # subject's right, subject's left
CHIN = 152
NOSE_BRIDGE = 168
# Eye contours (subject's right, left): an eye's landmark is the mean of its contour.
EYES = ((33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246),
        (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466))

# The head-pose net's landmarks; "right" is the subject's own right, as in MediaPipe.
LANDMARK_NAMES: tuple[str, ...] = ("right_eye", "left_eye", "nose_tip", "mouth_right", "mouth_left", "chin",
                                   "nose_bridge")
_POINT_LANDMARKS = (NOSE_TIP, MOUTH_CORNERS[0], MOUTH_CORNERS[1], CHIN, NOSE_BRIDGE)


@dataclass(frozen=True)
class PosePrediction:
    """Head pose in degrees (pose3dfr.geometry convention: yaw > 0 turns the face to the image right) and
    landmarks (K x 3: x, y in image pixels, visibility in [0, 1]; names in LANDMARK_NAMES)."""

    yaw: float
    pitch: float
    roll: float
    landmarks: np.ndarray | None


def profile_landmarks(landmarks: np.ndarray) -> np.ndarray:
    """K x C of LANDMARK_NAMES from 468+ x C MediaPipe-indexed landmarks (any columns: x, y, visibility ...)."""
    lm = np.asarray(landmarks, dtype=np.float64)
    rows = [lm[list(eye)].mean(0) for eye in EYES] + [lm[index] for index in _POINT_LANDMARKS]
    return np.stack(rows)
