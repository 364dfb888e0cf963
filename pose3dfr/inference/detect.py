"""Face detection, 478 3D landmarks and head pose for real photos.

Pipeline (measured in ../shared/docs/datasets.md): MediaPipe's Face Landmarker has a short-range
(selfie-distance) detector and misses small faces, so faces are found with OpenCV's YuNet (multi-scale)
and the landmarker runs on a square crop around each YuNet box (1.8 x the box, resized to 384 px);
landmarks are mapped back to image pixels. If YuNet finds nothing, the landmarker runs on the whole
image. Head pose comes from the landmarker's facial transformation matrix (see pose.py).

Every YuNet face is kept: when the landmarker refuses one (most faces beyond ~60 degrees of yaw), the
face keeps YuNet's box and five keypoints, no 478 landmarks, and the pose of an optional head-pose
estimator (`pose_estimator.predict(image, boxes) -> [obj with .yaw .pitch .roll]`), else no pose.
YuNet's threshold, the upscaling of small images and the mirrored pass were chosen by benchmarks/detection.py
(numbers in docs/benchmarks.md); the retry when nothing is found (the image framed in a border, so the face is
smaller and YuNet finds most profiles it missed) by benchmarks/end_to_end.py so far (DetectorConfig).

`FaceAnalyzer` loads both models once; reuse one instance. It is thread-safe (a lock around each
model, whose OpenCV/MediaPipe objects are stateful).
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, Sequence

import cv2
import numpy as np

from pose3dfr.deadline import check_time
from pose3dfr.errors import FaceTooSmallError, NoFaceError, Pose3DFRError
from pose3dfr.geometry import pose_bin
from pose3dfr.face.landmarks import PosePrediction
from pose3dfr.face.pose import HeadPose, head_pose
from pose3dfr.inference.face_checks import RejectedFace, plausible_face, rejection_summary
from pose3dfr.models.headpose import HEADPOSE_WEIGHTS, MEDIAPIPE_MAX_YAW, HeadPoseEstimator
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
_MIRROR_KEYPOINTS = (1, 0, 2, 4, 3)  # keypoint order after a horizontal flip (left/right pairs swap)


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
    # (`python benchmarks/detection.py --data data/synth200 --max-identities 20`; docs/benchmarks.md).
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
    # found 95% -> 100% of the test renders (`python benchmarks/end_to_end.py --data data/synth200`); 0.5 and 1.0
    # are compared by `python benchmarks/detection.py` (rows "mirror + retry"), not yet rerun with them.
    empty_retry_border: float = 1.0
    # Which pose a face reports when both the landmarker and a head-pose estimator give one (POSE_PREFERENCES).
    pose_preference: str = "measured"
    # A YuNet box the landmarker refuses is a face only if it looks like a profile (plausible_face; issue 32: a
    # whiskey glass was "a face"). Thresholds from `python benchmarks/face_checks.py` (docs/benchmarks.md), on
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


class FaceAnalyzer:
    """YuNet + MediaPipe Face Landmarker, loaded once; `analyze(image)` finds every face with pose."""

    def __init__(self, config: DetectorConfig | None = None, pose_estimator: PoseEstimator | None = None) -> None:
        from mediapipe.tasks.python import BaseOptions, vision

        self.config = config or DetectorConfig()
        if self.config.pose_preference not in POSE_PREFERENCES:
            raise Pose3DFRError(f"DetectorConfig.pose_preference={self.config.pose_preference!r}: "
                                f"use one of {POSE_PREFERENCES}")
        if pose_estimator is None and self.config.headpose_weights is not None:
            pose_estimator = HeadPoseEstimator.load(self.config.headpose_weights)
        self.pose_estimator = pose_estimator
        for path in (self.config.yunet_path, self.config.landmarker_path):
            if not Path(path).is_file():
                raise Pose3DFRError(f"{Path(path).name}: detector model file is missing ({path})")
        level = cv2.utils.logging.getLogLevel()
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)  # OpenCV 5 warns about DNN targets
        try:
            self._yunet = cv2.FaceDetectorYN.create(self.config.yunet_path, "", (320, 320),
                                                    self.config.score_threshold, self.config.nms_threshold, 50)
        finally:
            cv2.utils.logging.setLogLevel(level)
        options = vision.FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=self.config.landmarker_path),
            running_mode=vision.RunningMode.IMAGE, num_faces=self.config.max_faces,
            output_facial_transformation_matrixes=True)
        self._landmarker = vision.FaceLandmarker.create_from_options(options)
        # close MediaPipe's graph when this analyzer dies or at exit (its own __del__ fails at interpreter teardown)
        self._finalizer = weakref.finalize(self, _close_quietly, self._landmarker)
        self._yunet_lock = threading.Lock()
        self._mp_lock = threading.Lock()

    def analyze(self, image: np.ndarray, name: str = "image") -> FaceAnalysis:
        """Every face of an H x W x 3 uint8 RGB image, largest first; NoFaceError / FaceTooSmallError."""
        image = np.ascontiguousarray(image)
        check_time(f"finding the faces in {name}")
        boxes = self.detect_boxes(image)
        check_time(f"the head pose in {name}")
        predictions = self._net_predictions(image, boxes[:, :4])
        faces = []
        for box, net in zip(boxes, predictions):
            check_time(f"the landmarks in {name}")
            faces.append(self._face_at(image, box, net))
        checked = [(face, plausible_face(face, self.config, image.shape)) for face in faces]
        faces = [face for face, why in checked if why is None]
        rejected = [RejectedFace(tuple(float(v) for v in face.bbox), face.score, why) for face, why in checked if why]
        if not faces:  # YuNet found nothing that looks like a face: the landmarker on the whole image
            check_time(f"the landmarks in {name}")
            faces = self._landmark_whole(image)
        if not faces:
            raise NoFaceError(f"{name}: no face found" + (f" ({rejection_summary([r.reason for r in rejected])})" if rejected else ""))
        faces.sort(key=lambda f: f.area, reverse=True)
        large = [f for f in faces if f.size >= self.config.min_face_size]
        if not large:
            raise FaceTooSmallError(
                f"{name}: the largest face is {faces[0].size:.0f} px, below the minimum of "
                f"{self.config.min_face_size} px; use a closer or higher-resolution photo")
        return FaceAnalysis(large[: self.config.max_faces], image.shape[:2], name, len(faces) - len(large), rejected)

    def detect_boxes(self, image: np.ndarray) -> np.ndarray:
        """YuNet faces (N x 15: x0, y0, x1, y1, score, 5 keypoints x, y) in image pixels, merged over the
        scales and, with `mirror_pass`, the mirrored image (highest score first)."""
        boxes = self.boxes_in_frame(image)
        if not len(boxes) and self.config.empty_retry_border > 0:
            check_time("the framed detection pass")
            boxes = self.boxes_in_frame(image, self.config.empty_retry_border)
        return boxes

    def boxes_in_frame(self, image: np.ndarray, border: float = 0.0) -> np.ndarray:
        """detect_boxes' rows of one pass (with the mirrored image when `mirror_pass`), on the RGB image framed
        in a border of its mean colour `border` image sides wide (0: as is), in the image's own pixels.

        YuNet sees the framed image at fine_side at most, so the image is reduced to that scale before it is
        framed (a 2560 px photo framed 1.0 wide would otherwise be a 7680 px, 177 MB copy, twice with the mirror)."""
        bgr = np.ascontiguousarray(image[:, :, ::-1])
        scale = 1.0
        if border > 0:
            longest = max(self.config.fine_side, self.config.coarse_side) / (1 + 2 * border)  # the image inside
            if max(bgr.shape[:2]) > longest:
                scale = longest / max(bgr.shape[:2])
                bgr = cv2.resize(bgr, (max(1, round(bgr.shape[1] * scale)), max(1, round(bgr.shape[0] * scale))),
                                 interpolation=cv2.INTER_AREA)
        pad = int(round(border * max(bgr.shape[:2])))
        if pad:
            mean = [float(v) for v in bgr.reshape(-1, 3).mean(0)]
            bgr = cv2.copyMakeBorder(bgr, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=mean)
        boxes = self._boxes_one_way(bgr)
        if self.config.mirror_pass:
            check_time("the mirrored detection pass")
            boxes = _nms(np.concatenate([boxes, _mirror_boxes(self._boxes_one_way(bgr[:, ::-1]), bgr.shape[1])]),
                         self.config.nms_threshold)
        # back to the image's pixels: the box and the keypoints, not the score
        boxes[:, :4] = (boxes[:, :4] - pad) / scale
        boxes[:, BOX_KEYPOINTS] = (boxes[:, BOX_KEYPOINTS] - pad) / scale
        return boxes

    def _boxes_one_way(self, bgr: np.ndarray) -> np.ndarray:
        h, w = bgr.shape[:2]
        boxes = self._yunet_at(bgr, self.config.coarse_side)
        fine = self.config.fine_pass
        if max(h, w) > self.config.coarse_side and (fine == "always" or (fine == "auto" and len(boxes) != 1)):
            boxes = _nms(np.concatenate([boxes, self._yunet_at(bgr, self.config.fine_side)]), self.config.nms_threshold)
        return boxes

    def _yunet_at(self, bgr: np.ndarray, side: int) -> np.ndarray:
        """YuNet on the image resized down to longer side `side`, or up to min_detect_side when smaller."""
        h, w = bgr.shape[:2]
        longer = max(h, w)
        scale = self.config.min_detect_side / longer if longer < self.config.min_detect_side else min(1.0, side / longer)
        resized = bgr if scale == 1 else cv2.resize(
            bgr, (max(1, round(w * scale)), max(1, round(h * scale))),
            interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        with self._yunet_lock:
            self._yunet.setInputSize((resized.shape[1], resized.shape[0]))
            _, found = self._yunet.detect(np.ascontiguousarray(resized))
        if found is None:
            return np.zeros((0, 15))
        found = found.astype(np.float64)
        x, y, bw, bh = (found[:, i] / scale for i in range(4))
        return np.concatenate([np.stack([x, y, x + bw, y + bh, found[:, 14]], axis=1), found[:, 4:14] / scale], axis=1)

    def _net_predictions(self, image: np.ndarray, boxes: np.ndarray) -> list[PosePrediction | None]:
        """The head-pose estimator's prediction per box (None each when no estimator is given or no box)."""
        if self.pose_estimator is None or len(boxes) == 0:
            return [None] * len(boxes)
        predicted = list(self.pose_estimator.predict(image, boxes))
        if len(predicted) != len(boxes):
            raise Pose3DFRError(f"head-pose estimator gave {len(predicted)} poses for {len(boxes)} boxes")
        return predicted

    def _face_at(self, image: np.ndarray, box: np.ndarray, prediction: PosePrediction | None) -> DetectedFace:
        """The face of one YuNet box: with the landmarker's 478 landmarks and pose when it accepts the crop,
        else YuNet's box and keypoints only; the reported pose follows config.pose_preference."""
        face = self._landmark_box(image, box)
        if face is None:
            face = DetectedFace(bbox=np.asarray(box[:4], np.float64), score=float(box[BOX_SCORE]), landmarks=None,
                                transform=None, pose=None, pose_source="none")
        face.keypoints = np.asarray(box[BOX_KEYPOINTS], np.float64).reshape(5, 2)
        if prediction is not None:
            yaw, pitch, roll = float(prediction.yaw), float(prediction.pitch), float(prediction.roll)
            face.pose_net = HeadPose(yaw, pitch, roll, pose_bin(yaw))
            face.net_prediction = prediction if getattr(prediction, "landmarks", None) is not None else None
        if face.pose_net is not None and self._prefers_net(face.pose):
            face.pose, face.pose_source = face.pose_net, "headpose-net"
        return face

    def _prefers_net(self, mediapipe: HeadPose | None) -> bool:
        """Whether the head-pose net's pose replaces the landmarker's (see POSE_PREFERENCES)."""
        preference = self.config.pose_preference
        if mediapipe is None or preference == "headpose-net":
            return True
        return preference == "measured" and abs(mediapipe.yaw) >= MEDIAPIPE_MAX_YAW

    def _landmark_box(self, image: np.ndarray, box: np.ndarray) -> DetectedFace | None:
        """Landmarker on a square crop around a YuNet box; None if it finds no face there."""
        cfg = self.config
        centre = (box[:2] + box[2:4]) / 2
        side = cfg.crop_factor * max(box[2] - box[0], box[3] - box[1])
        scale = cfg.crop_size / side
        matrix = np.array([[scale, 0, cfg.crop_size / 2 - scale * centre[0]],
                           [0, scale, cfg.crop_size / 2 - scale * centre[1]]])
        crop = cv2.warpAffine(image, matrix, (cfg.crop_size, cfg.crop_size), flags=cv2.INTER_AREA
                              if scale < 1 else cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        found = self._run_landmarker(crop)
        if not found:
            return None
        # the face nearest the crop centre is the one YuNet meant
        lm, transform = min(found, key=lambda f: np.linalg.norm(f[0][:, :2].mean(0) - cfg.crop_size / 2))
        lm = lm.copy()
        lm[:, :2] = (lm[:, :2] - matrix[:, 2]) / scale
        lm[:, 2] /= scale
        pose = head_pose(transform)
        return DetectedFace(bbox=np.asarray(box[:4], np.float64), score=float(box[BOX_SCORE]), landmarks=lm,
                            transform=transform, pose=pose, pose_mediapipe=pose)

    def _landmark_whole(self, image: np.ndarray) -> list[DetectedFace]:
        """Fallback when YuNet finds nothing: the landmarker on the whole image."""
        faces = []
        for lm, transform in self._run_landmarker(image):
            lo, hi = lm[:, :2].min(0), lm[:, :2].max(0)
            pose = head_pose(transform)
            faces.append(DetectedFace(bbox=np.r_[lo, hi], score=None, landmarks=lm, transform=transform,
                                      pose=pose, pose_mediapipe=pose))
        return faces

    def _run_landmarker(self, rgb: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """(478 x 3 landmarks in the input's pixels, 4 x 4 transform) per face MediaPipe finds."""
        import mediapipe as mp

        h, w = rgb.shape[:2]
        with self._mp_lock:
            result = self._landmarker.detect(mp.Image(image_format=mp.ImageFormat.SRGB,
                                                      data=np.ascontiguousarray(rgb)))
        out = []
        for points, transform in zip(result.face_landmarks, result.facial_transformation_matrixes):
            lm = np.array([[p.x * w, p.y * h, p.z * w] for p in points], dtype=np.float64)  # z scales like x
            out.append((lm, np.asarray(transform, dtype=np.float64)))
        return out

    def close(self) -> None:
        """Release MediaPipe's graph (also done at garbage collection)."""
        with self._mp_lock:
            self._finalizer()


def _close_quietly(landmarker) -> None:
    """Close a FaceLandmarker; at interpreter exit its worker thread is already gone, so just drop the handle."""
    try:
        landmarker.close()
    except Exception:  # RuntimeError: cannot schedule new futures after shutdown
        landmarker._handle = None  # makes MediaPipe's own __del__ a no-op instead of a traceback


def _mirror_boxes(boxes: np.ndarray, width: int) -> np.ndarray:
    """detect_boxes rows found on the mirrored image, mapped back to the original (keypoint pairs swapped)."""
    out = boxes.copy()
    out[:, 0], out[:, 2] = width - boxes[:, 2], width - boxes[:, 0]
    points = boxes[:, BOX_KEYPOINTS].reshape(-1, 5, 2)[:, list(_MIRROR_KEYPOINTS)]
    points[:, :, 0] = width - points[:, :, 0]
    out[:, BOX_KEYPOINTS] = points.reshape(-1, 10)
    return out


def _nms(boxes: np.ndarray, threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression over N x 5+ boxes (score in column 4; highest score kept)."""
    if len(boxes) <= 1:
        return boxes
    order = np.argsort(-boxes[:, BOX_SCORE])
    keep: list[int] = []
    for i in order:
        if all(_iou(boxes[i], boxes[j]) <= threshold for j in keep):
            keep.append(int(i))
    return boxes[keep]


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0
