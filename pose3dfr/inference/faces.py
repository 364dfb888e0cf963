"""What the face pipeline (pose3dfr.inference.detect) is set up with and what it finds: DetectorConfig, the
faces of an image (DetectedFace, FaceAnalysis), the boxes that did not look like a face (RejectedFace) and the
column layout of the detector's boxes. Plain data, so the face checks (face_checks.py) and the pipeline both
import it and neither imports the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence

import numpy as np

from pose3dfr.errors import NoFaceError
from pose3dfr.face.landmarks import PosePrediction
from pose3dfr.face.pose import HeadPose
from pose3dfr.headpose.estimator import HEADPOSE_WEIGHTS
from pose3dfr.paths import FACE_LANDMARKER_TASK, YUNET_ONNX

# Smallest accepted face: the longer side of its box, in image pixels. Below 32 px a 112/150 px chip
# is upsampled more than 3.5x and the identity detail is gone (YuNet itself still finds ~10 px faces).
MIN_FACE_SIZE = 32
NUM_LANDMARKS = 478
POSE_SOURCES = ("mediapipe", "headpose-net", "none")
# "measured": MediaPipe's pose while its |yaw| is below MEDIAPIPE_MAX_YAW, the head-pose net's beyond (the
# split benchmarks/headpose_eval.py measured: docs/headpose.md); "mediapipe"/"headpose-net": that one first.
POSE_PREFERENCES = ("measured", "mediapipe", "headpose-net")
# Column layout of the boxes detect_boxes returns (N x 15): box, score, then YuNet's five keypoints (x, y):
# image-left eye, image-right eye, nose tip, image-left and image-right mouth corner (ArcFace template order).
BOX_SCORE = 4
BOX_KEYPOINTS = slice(5, 15)


class PoseEstimator(Protocol):
    """A head-pose network: one pose (degrees, pose3dfr.geometry convention) per box of an image."""

    def predict(self, image: np.ndarray, boxes: np.ndarray) -> Sequence[Any]: ...


@dataclass
class DetectorConfig:
    """Settings of the detection pipeline; the defaults are the measured ones of datasets.md."""

    yunet_path: str = str(YUNET_ONNX)
    landmarker_path: str = str(FACE_LANDMARKER_TASK)
    # YuNet confidence. With the mirrored pass, 0.6 (YuNet's default) finds 90.8% of 90-degree renders, 0.4
    # finds 96.7% (100% up to 75 degrees) with no extra face on the shipped or the 3-person photo at 0.3-0.9
    # (`python -m benchmarks.detection --data data/synth200 --max-identities 20`; docs/benchmarks.md).
    score_threshold: float = 0.4
    nms_threshold: float = 0.3  # YuNet's default box NMS
    coarse_side: int = 640  # first pass: longer image side (px); fast, finds every portrait-sized face
    fine_side: int = 1600  # second pass on larger photos, for small faces in group photos
    fine_pass: str = "auto"  # "auto": only if the coarse pass found 0 or 2+ faces; "always"; "never"
    crop_factor: float = 1.8  # landmarker crop side / YuNet box side (room for the whole head)
    crop_size: int = 384  # landmarker crop resolution (px)
    max_faces: int = 10  # faces reported per image at most
    # Small photos are upscaled so their longer side is at least this before YuNet; 0 = never. Measured (same
    # command): upscaling 256 px renders to 512 / 640 px finds fewer profiles (88% / 85% at 90 degrees, 0.4).
    min_detect_side: int = 0
    # Also run YuNet on the mirrored image and merge (NMS): 92.5% -> 96.7% of 90-degree renders at 0.4.
    mirror_pass: bool = True
    # When no face is found, run again on the image framed in a border of its mean colour, this many image
    # sides wide on each side (0 = never): the face is then smaller, as most of YuNet's training faces are. Only
    # images without a face pay for it, and it cannot add a face beside one already found. At 90 degrees: face
    # found 95% -> 100% of the test renders (`python -m benchmarks.end_to_end --data data/synth200`); 0.5 and 1.0
    # are compared by `python -m benchmarks.detection` (rows "mirror + retry"), not yet rerun with them.
    empty_retry_border: float = 1.0
    # Which pose a face reports when both the landmarker and a head-pose estimator give one (POSE_PREFERENCES).
    pose_preference: str = "measured"
    # A YuNet box the landmarker refuses is a face only if it looks like a profile (plausible_face; issue 32: a
    # whiskey glass was "a face"). Thresholds from `python -m benchmarks.face_checks` (docs/benchmarks.md), on
    # synthetic renders (true faces) and face-free crops of the shipped photos (hands, watches, a shuttle model):
    # the landmarker fits every rendered face under 56 degrees of |yaw|, so below this the net's yaw says "not a face".
    landmarks_needed_below_yaw: float = 45.0
    # Beyond a profile the box shows the back or side of a head, not a face (renders reach |yaw| 98).
    max_face_yaw: float = 110.0
    # Sum of the head-pose net's 7 landmark visibilities (eyes, nose, mouth corners, chin, bridge; each 0-1):
    # rendered profiles 2.69 and up.
    min_landmark_visibility: float = 2.5
    # Median distance, in box sides, between YuNet's keypoints and the net's landmarks it sees (visibility > 0.5),
    # checked up to keypoint_check_max_yaw: rendered faces without landmarks reach 0.19 there (all expressions),
    # face-free crops taken as faces 0.23-0.42. At full profile YuNet's keypoints are guesses (renders reach 0.28).
    max_keypoint_disagreement: float = 0.21
    keypoint_check_max_yaw: float = 80.0
    # Share of the box's side that may lie outside the photo (renders and shipped photos: 0; a crop taken as a
    # face: 0.32).
    max_box_outside: float = 0.25
    # The head-pose net used when no estimator is passed in: the shipped checkpoint; None = no net (then faces
    # the landmarker refuses have no pose).
    headpose_weights: str | None = str(HEADPOSE_WEIGHTS)
    min_face_size: int = MIN_FACE_SIZE


@dataclass
class DetectedFace:
    """One face in image pixel coordinates."""

    bbox: np.ndarray  # (x0, y0, x1, y1) float
    score: float | None  # YuNet confidence; None when found by the whole-image landmarker fallback
    # 478 x 3: x, y in pixels; z in the same pixel scale (MediaPipe's relative depth); None when the
    # landmarker refused the face (it is kept with YuNet's box and keypoints)
    landmarks: np.ndarray | None
    transform: np.ndarray | None  # 4 x 4 facial transformation matrix (canonical face -> camera), or None
    pose: HeadPose | None  # None when neither the landmarker nor a head-pose estimator gave one
    pose_source: str = "mediapipe"  # one of POSE_SOURCES
    keypoints: np.ndarray | None = None  # 5 x 2 YuNet keypoints (BOX_KEYPOINTS order); None from the fallback
    pose_mediapipe: HeadPose | None = None  # the landmarker's pose, whichever `pose` reports
    pose_net: HeadPose | None = None  # the head-pose estimator's, when one is given
    net_prediction: PosePrediction | None = None  # its pose and seven landmarks: what pose_fit aligns on

    @property
    def evidence(self) -> str:
        """What says this box is a face: "landmarker" (478 landmarks fitted), "head-pose net" (its landmarks are
        visible at a profile pose; plausible_face) or "detector" (YuNet alone: no head-pose net)."""
        if self.landmarks is not None:
            return "landmarker"
        return "head-pose net" if self.net_prediction is not None else "detector"

    @property
    def landmark_visibility(self) -> float | None:
        """Sum of the head-pose net's landmark visibilities (0-7), or None without its landmarks."""
        if self.net_prediction is None or self.net_prediction.landmarks is None:
            return None
        return float(np.asarray(self.net_prediction.landmarks)[:, 2].sum())

    @property
    def size(self) -> float:
        """Longer side of the box (px): what MIN_FACE_SIZE is compared with."""
        return float(max(self.bbox[2] - self.bbox[0], self.bbox[3] - self.bbox[1]))

    @property
    def area(self) -> float:
        return float((self.bbox[2] - self.bbox[0]) * (self.bbox[3] - self.bbox[1]))

    def require_landmarks(self, name: str = "image") -> np.ndarray:
        """The 478 landmarks, or NoFaceError when the landmarker refused this face (strongly turned)."""
        if self.landmarks is None:
            raise NoFaceError(f"{name}: a face was found but its landmarks could not be fitted (a strongly turned "
                              "face?); use a more frontal photo for this step")
        return self.landmarks

    @property
    def yaw(self) -> float | None:
        return None if self.pose is None else self.pose.yaw

    @property
    def pitch(self) -> float | None:
        return None if self.pose is None else self.pose.pitch

    @property
    def roll(self) -> float | None:
        return None if self.pose is None else self.pose.roll


@dataclass(frozen=True)
class RejectedFace:
    """A box the detector found that did not look like a face (plausible_face), and why."""

    bbox: tuple[float, float, float, float]  # x0, y0, x1, y1 in image pixels
    score: float | None  # YuNet confidence
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"bbox": [round(float(v), 1) for v in self.bbox], "score": None if self.score is None else
                round(float(self.score), 3), "reason": self.reason}


@dataclass
class FaceAnalysis:
    """All faces of one image, largest first."""

    faces: list[DetectedFace]
    image_shape: tuple[int, int]  # H, W
    name: str = "image"
    dropped_small: int = field(default=0)  # faces found but below the minimum size
    rejected: list[RejectedFace] = field(default_factory=list)  # boxes that did not look like a face

    @property
    def count(self) -> int:
        return len(self.faces)

    def select(self, index: int = 0) -> DetectedFace:
        """The face at `index` (0 = largest); a clear error if there is no such face."""
        if not -self.count <= index < self.count:
            raise NoFaceError(f"{self.name}: face index {index} requested but {self.count} face(s) found")
        return self.faces[index]
