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
from pathlib import Path

import cv2
import numpy as np

from pose3dfr.deadline import check_time
from pose3dfr.errors import FaceTooSmallError, NoFaceError, Pose3DFRError
from pose3dfr.face.landmarks import PosePrediction
from pose3dfr.face.pose import HeadPose, head_pose
from pose3dfr.geometry import pose_bin
from pose3dfr.inference.face_checks import plausible_face, rejection_summary
from pose3dfr.inference.faces import (BOX_KEYPOINTS, BOX_SCORE, POSE_PREFERENCES, DetectedFace, DetectorConfig,
                                      FaceAnalysis, PoseEstimator, RejectedFace)
from pose3dfr.headpose.estimator import MEDIAPIPE_MAX_YAW, HeadPoseEstimator

_MIRROR_KEYPOINTS = (1, 0, 2, 4, 3)  # keypoint order after a horizontal flip (left/right pairs swap)


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
        frame = np.ascontiguousarray(image)  # RGB; YuNet's BGR is made after each reduction (cheaper)
        scale = 1.0
        if border > 0:
            longest = max(self.config.fine_side, self.config.coarse_side) / (1 + 2 * border)  # the image inside
            if max(frame.shape[:2]) > longest:
                scale = longest / max(frame.shape[:2])
                frame = cv2.resize(frame, (max(1, round(frame.shape[1] * scale)),
                                           max(1, round(frame.shape[0] * scale))), interpolation=cv2.INTER_AREA)
        pad = int(round(border * max(frame.shape[:2])))
        if pad:
            mean = [float(v) for v in frame.reshape(-1, 3).mean(0)]
            frame = cv2.copyMakeBorder(frame, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=mean)
        reduced: dict[float, np.ndarray] = {}  # YuNet's BGR input per scale, shared by the two directions
        boxes = self._boxes_one_way(frame, False, reduced)
        if self.config.mirror_pass:
            check_time("the mirrored detection pass")
            mirrored = _mirror_boxes(self._boxes_one_way(frame, True, reduced), frame.shape[1])
            boxes = _nms(np.concatenate([boxes, mirrored]), self.config.nms_threshold)
        # back to the image's pixels: the box and the keypoints, not the score
        boxes[:, :4] = (boxes[:, :4] - pad) / scale
        boxes[:, BOX_KEYPOINTS] = (boxes[:, BOX_KEYPOINTS] - pad) / scale
        return boxes

    def _boxes_one_way(self, rgb: np.ndarray, mirrored: bool, reduced: dict[float, np.ndarray]) -> np.ndarray:
        """YuNet's rows on the image (or its mirror image, in the mirror's pixels) at coarse_side, and at fine_side
        too when the coarse pass is not sure (`fine_pass`)."""
        h, w = rgb.shape[:2]
        boxes = self._yunet_at(rgb, self.config.coarse_side, mirrored, reduced)
        fine = self.config.fine_pass
        if max(h, w) > self.config.coarse_side and (fine == "always" or (fine == "auto" and len(boxes) != 1)):
            fine_boxes = self._yunet_at(rgb, self.config.fine_side, mirrored, reduced)
            boxes = _nms(np.concatenate([boxes, fine_boxes]), self.config.nms_threshold)
        return boxes

    def _yunet_at(self, rgb: np.ndarray, side: int, mirrored: bool = False,
                  reduced: dict[float, np.ndarray] | None = None) -> np.ndarray:
        """YuNet on the image resized down to longer side `side`, or up to min_detect_side when smaller; with
        `mirrored`, on the mirror image of that (the same pixels as resizing the mirrored image: resizing commutes
        with mirroring), rows in the mirror's pixels. `reduced` keeps each scale's BGR image for the other pass."""
        h, w = rgb.shape[:2]
        longer = max(h, w)
        scale = self.config.min_detect_side / longer if longer < self.config.min_detect_side else min(1.0, side / longer)
        bgr = None if reduced is None else reduced.get(scale)
        if bgr is None:
            resized = rgb if scale == 1 else cv2.resize(
                rgb, (max(1, round(w * scale)), max(1, round(h * scale))),
                interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
            bgr = cv2.cvtColor(resized, cv2.COLOR_RGB2BGR)
            if reduced is not None:
                reduced[scale] = bgr
        with self._yunet_lock:
            self._yunet.setInputSize((bgr.shape[1], bgr.shape[0]))
            _, found = self._yunet.detect(cv2.flip(bgr, 1) if mirrored else bgr)
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
    """Greedy non-maximum suppression over N x 5+ boxes (score in column 4, x0 y0 x1 y1 first; highest score
    kept, highest first): OpenCV's cv2.dnn.NMSBoxes, which YuNet itself uses."""
    if len(boxes) <= 1:
        return boxes
    xywh = np.concatenate([boxes[:, :2], boxes[:, 2:4] - boxes[:, :2]], axis=1)
    # score threshold 0: every YuNet box passed its own confidence threshold already
    keep = cv2.dnn.NMSBoxes(xywh.tolist(), boxes[:, BOX_SCORE].tolist(), 0.0, threshold)
    return boxes[np.asarray(keep, dtype=np.int64).reshape(-1)]
