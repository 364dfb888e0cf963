"""Does a detected box look like a face? YuNet runs at a low threshold so that profiles are found, and it takes
some objects for faces (issue 32: a whiskey glass; here, hands with watches and a shuttle model in face-free crops
of the shipped photos). A box the face landmarker fits is a face; one it refuses must look like a profile to the
head-pose net (`plausible_face`; thresholds in faces.DetectorConfig, measured by benchmarks/face_checks.py).
A rejected box is reported (faces.RejectedFace), never used.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from pose3dfr.inference.faces import DetectedFace, DetectorConfig


def plausible_face(face: DetectedFace, config: DetectorConfig, image_shape: tuple[int, ...]) -> str | None:
    """None if a detected box looks like a face, else why not (in words). The landmarker's 478-point fit is proof
    enough; a box it refuses is a face only as a profile: the head-pose net must put its yaw between
    `landmarks_needed_below_yaw` and `max_face_yaw` and see enough of its landmarks, where YuNet put its keypoints
    (checked up to `keypoint_check_max_yaw`), and the box must lie in the photo. Without a head-pose net
    (headpose_weights=None) a refused box cannot be checked and is kept."""
    if face.landmarks is not None or face.score is None or face.pose_net is None:
        return None
    yaw = face.pose_net.yaw
    if abs(yaw) < config.landmarks_needed_below_yaw:
        return f"no facial landmarks fit it, though a real face at its estimated yaw ({yaw:+.0f}°) would have them"
    if abs(yaw) > config.max_face_yaw:
        return f"its estimated yaw ({yaw:+.0f}°) is beyond a profile"
    outside = box_outside(face.bbox, image_shape)
    if outside > config.max_box_outside:
        return f"{outside:.0%} of it lies outside the photo"
    visibility = face.landmark_visibility
    if visibility is not None and visibility < config.min_landmark_visibility:
        return f"too few facial features are visible in it ({visibility:.1f} of 7)"
    disagreement = keypoint_disagreement(face) if abs(yaw) <= config.keypoint_check_max_yaw else None
    if disagreement is not None and disagreement > config.max_keypoint_disagreement:
        return f"its eyes, nose and mouth are not where a face's would be ({disagreement:.2f} box sides off)"
    return None


def box_outside(bbox: np.ndarray, image_shape: tuple[int, ...]) -> float:
    """How far the box reaches outside the image, as a share of its longer side (0 when inside)."""
    height, width = image_shape[:2]
    side = max(float(bbox[2] - bbox[0]), float(bbox[3] - bbox[1]), 1e-6)
    return max(0.0, -float(bbox[0]), -float(bbox[1]), float(bbox[2]) - width, float(bbox[3]) - height) / side


def keypoint_disagreement(face: DetectedFace) -> float | None:
    """Median distance, in box sides, between YuNet's five keypoints and the head-pose net's matching landmarks
    (both in the same order: image-left eye = the subject's right in a frontal view, nose, mouth corners), over
    the landmarks the net sees (visibility > 0.5); None without both."""
    if face.keypoints is None or face.net_prediction is None or face.net_prediction.landmarks is None:
        return None
    net = np.asarray(face.net_prediction.landmarks)[:5]
    seen = net[:, 2] > 0.5
    if not seen.any():
        return None
    distances = np.linalg.norm(face.keypoints[seen] - net[seen, :2], axis=1) / max(face.size, 1e-6)
    return float(np.median(distances))


def rejection_summary(reasons: Sequence[str]) -> str:
    """One line saying how many boxes were rejected and why (the first reason), from their `reason`s."""
    more = f"; and {len(reasons) - 1} more" if len(reasons) > 1 else ""
    return f"{len(reasons)} face-like region{'s' if len(reasons) > 1 else ''} rejected: {reasons[0]}{more}"
