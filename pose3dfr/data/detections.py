"""Cached face detections of a data root, so training and evaluation crop faces exactly as the Verifier does.

One file per data root and detector version: `<root>/detections_<version>.npz` (or, when the root is
read-only, the same name under POSE3DFR_CACHE / ~/.cache/pose3dfr/<root name>-<crc>/). It is an npz of
plain arrays (read with allow_pickle=False), per image: `paths` (relative to the root), `boxes` (N x 15: the
selected YuNet face as FaceAnalyzer.detect_boxes gives it; NaN when no face was found), `landmarks`
(N x 478 x 2 float32 MediaPipe landmarks; NaN when the landmarker refused the face), `poses` (N x 3 yaw,
pitch, roll of the reported pose; NaN when unknown), `pose_sources` (N str), and the head-pose net's
prediction on the box that pose_fit alignment uses: `net_poses` (N x 3) and `net_landmarks` (N x 7 x 3: x, y,
visibility; NaN without a prediction). Detections are added for
missing images on first use (`DetectionCache.ensure`, with a progress bar) and saved.
"""

from __future__ import annotations

import dataclasses
import json
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from pose3dfr.errors import DatasetError
from pose3dfr.face.landmarks import LANDMARK_NAMES, PosePrediction

CACHE_ENV = "POSE3DFR_CACHE"  # where caches of read-only data roots go (default ~/.cache/pose3dfr)
BOX_COLUMNS = 15  # FaceAnalyzer.detect_boxes' row: box, score, five keypoints
NUM_LANDMARKS = 478
ALIGN_CHOICES = ("pipeline", "oracle")
# Bump when FaceAnalyzer's behaviour changes without a DetectorConfig change: old caches are then not reused.
DETECTION_CODE_VERSION = 3  # 2: the head-pose net's landmarks are cached (pose_fit); 3: the empty-image retry. pipeline: the Verifier's detector + alignment; oracle: ground truth


@dataclass(frozen=True)
class Detection:
    """The face the pipeline selects in one image (the largest), in image pixels."""

    box: np.ndarray  # 15: x0, y0, x1, y1, score, 5 keypoints (x, y)
    landmarks: np.ndarray | None  # 478 x 2, None when the landmarker refused the face
    pose: tuple[float, float, float] | None  # yaw, pitch, roll (degrees) or None when unknown
    pose_source: str
    prediction: PosePrediction | None = None  # the head-pose net's pose and landmarks on the box


def detector_version(config: Any = None) -> str:
    """A short name of the detector settings (file names of the models and every DetectorConfig field);
    `config` None (a stand-in analyzer without settings) names the code version alone."""
    fields = dataclasses.asdict(config) if config is not None else {}
    for key in ("yunet_path", "landmarker_path", "headpose_weights"):
        if fields.get(key):
            path = Path(fields[key])
            fields[key] = path.name
            if key == "headpose_weights" and path.is_file():  # retrained under the same name: its landmarks change
                fields["headpose_crc"] = f"{zlib.crc32(path.read_bytes()):08x}"
    fields["code_version"] = DETECTION_CODE_VERSION
    return f"{zlib.crc32(json.dumps(fields, sort_keys=True).encode()):08x}"


def cache_path(root: str | Path, version: str) -> Path:
    """Beside the manifest when the root is writable, else under the user cache."""
    root = Path(root).resolve()
    name = f"detections_{version}.npz"
    if os.access(root, os.W_OK):
        return root / name
    base = Path(os.environ.get(CACHE_ENV, Path.home() / ".cache" / "pose3dfr"))
    return base / f"{root.name}-{zlib.crc32(str(root).encode()):08x}" / name


class DetectionCache:
    """Detections of one data root, keyed by image path relative to it; built by the pipeline's FaceAnalyzer.

    `analyzer` (the detector) or `make_analyzer` (a callable returning one, called only when an image is not
    cached yet: loading the detector costs seconds) comes from the caller, with `config` its DetectorConfig
    (which versions the file), so this data-layer module needs nothing from the inference layer."""

    def __init__(self, root: str | Path, analyzer: Any = None, path: str | Path | None = None, *,
                 make_analyzer: Any = None, config: Any = None) -> None:
        self.root = Path(root).resolve()
        self._analyzer, self._make_analyzer = analyzer, make_analyzer
        config = config if config is not None else getattr(analyzer, "config", None)
        self.path = Path(path) if path is not None else cache_path(self.root, detector_version(config))
        self._rows: dict[str, Detection | None] = {}
        if self.path.is_file():
            self._read()

    def __contains__(self, image_path: str | Path) -> bool:
        return self._key(image_path) in self._rows

    def __len__(self) -> int:
        return len(self._rows)

    def get(self, image_path: str | Path) -> Detection | None:
        """The cached detection of an image (None: no face found); DatasetError when it was never detected."""
        key = self._key(image_path)
        if key not in self._rows:
            raise DatasetError(f"{key}: no cached detection in {self.path.name}; call DetectionCache.ensure first")
        return self._rows[key]

    def ensure(self, image_paths: Iterable[str | Path], progress: bool = True) -> int:
        """Detect every image not cached yet, save when anything was added; returns how many were added."""
        from tqdm import tqdm

        missing = [p for p in dict.fromkeys(str(p) for p in image_paths) if self._key(p) not in self._rows]
        if not missing:
            return 0
        for path in tqdm(missing, desc=f"detecting faces ({self.path.name})", disable=not progress, unit="img"):
            self._rows[self._key(path)] = self._detect(Path(path))
        self.save()
        return len(missing)

    # -- detection -----------------------------------------------------------------------------

    @property
    def analyzer(self):
        if self._analyzer is None:
            if self._make_analyzer is None:
                raise DatasetError(f"{self.path.name}: images are missing from the detection cache and no detector "
                                   "was given to detect them")
            self._analyzer = self._make_analyzer()
        return self._analyzer

    def _detect(self, path: Path) -> Detection | None:
        from pose3dfr.data.facescape import read_image
        from pose3dfr.errors import FaceTooSmallError, NoFaceError

        try:
            face = self.analyzer.analyze(read_image(path), name=path.name).select(0)
        except (NoFaceError, FaceTooSmallError):
            return None
        return detection_of(face)

    # -- file ----------------------------------------------------------------------------------

    def save(self) -> None:
        keys = sorted(self._rows)
        n = len(keys)
        boxes = np.full((n, BOX_COLUMNS), np.nan)
        landmarks = np.full((n, NUM_LANDMARKS, 2), np.nan, np.float32)
        poses = np.full((n, 3), np.nan)
        net_poses = np.full((n, 3), np.nan)
        net_landmarks = np.full((n, len(LANDMARK_NAMES), 3), np.nan)
        sources = []
        for i, key in enumerate(keys):
            row = self._rows[key]
            sources.append("none" if row is None else row.pose_source)
            if row is None:
                continue
            boxes[i] = row.box
            if row.landmarks is not None:
                landmarks[i] = row.landmarks
            if row.pose is not None:
                poses[i] = row.pose
            if row.prediction is not None:
                net_poses[i] = (row.prediction.yaw, row.prediction.pitch, row.prediction.roll)
                net_landmarks[i] = row.prediction.landmarks
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.stem + ".tmp.npz")
        np.savez_compressed(tmp, paths=np.array(keys, dtype=str), boxes=boxes, landmarks=landmarks, poses=poses,
                            pose_sources=np.array(sources, dtype=str), net_poses=net_poses,
                            net_landmarks=net_landmarks)
        tmp.replace(self.path)

    def _read(self) -> None:
        try:
            with np.load(self.path, allow_pickle=False) as data:
                paths, boxes, landmarks = data["paths"], data["boxes"], data["landmarks"]
                poses, sources = data["poses"], data["pose_sources"]
                net_poses, net_landmarks = data["net_poses"], data["net_landmarks"]
        except (OSError, ValueError, KeyError, EOFError) as exc:
            raise DatasetError(f"{self.path.name}: unreadable detection cache ({exc}); delete it to rebuild") from None
        n = len(paths)
        if (boxes.shape != (n, BOX_COLUMNS) or landmarks.shape != (n, NUM_LANDMARKS, 2)
                or net_poses.shape != (n, 3) or net_landmarks.shape != (n, len(LANDMARK_NAMES), 3)):
            raise DatasetError(f"{self.path.name}: detection cache arrays have inconsistent shapes; delete it")
        for i, key in enumerate(paths.tolist()):
            if np.isnan(boxes[i, 0]):
                self._rows[key] = None
                continue
            lm = None if np.isnan(landmarks[i, 0, 0]) else landmarks[i].astype(np.float32)
            pose = None if np.isnan(poses[i, 0]) else tuple(float(v) for v in poses[i])
            prediction = None if np.isnan(net_poses[i, 0]) else PosePrediction(
                *(float(v) for v in net_poses[i]), landmarks=net_landmarks[i].astype(np.float64))
            self._rows[key] = Detection(boxes[i].astype(np.float64), lm, pose, str(sources[i]), prediction)

    def _key(self, image_path: str | Path) -> str:
        path = Path(image_path).resolve()
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            return path.as_posix()


def detection_of(face: Any) -> Detection:
    """A DetectedFace as a cache row (the whole-image fallback face has no YuNet box: its extent, no score)."""
    box = np.full(BOX_COLUMNS, np.nan)
    box[:4] = face.bbox[:4]
    box[4] = np.nan if face.score is None else face.score
    if face.keypoints is not None:
        box[5:] = np.asarray(face.keypoints, np.float64).ravel()
    landmarks = None if face.landmarks is None else np.asarray(face.landmarks[:, :2], np.float32)
    pose = None if face.pose is None else (float(face.yaw), float(face.pitch), float(face.roll))
    prediction = getattr(face, "net_prediction", None)
    return Detection(box, landmarks, pose, face.pose_source, prediction)


def pipeline_box(detection: Detection) -> np.ndarray | None:
    """The box the pipeline aligns with: YuNet's, or None for a fallback face (no score)."""
    return None if np.isnan(detection.box[4]) else detection.box[:4]


def pipeline_keypoints(detection: Detection) -> np.ndarray | None:
    """YuNet's five keypoints (5 x 2) of a cached detection, or None for a fallback face (no score)."""
    return None if np.isnan(detection.box[4]) else detection.box[5:15].reshape(5, 2)


def pipeline_chip(image: np.ndarray, detection: Detection, template: str, size: int, rule: str = "pipeline"):
    """The Verifier's AlignedFace of a cached detection (pose3dfr.face.align.align_detection with the model's
    alignment rule, ModelConfig.alignment)."""
    from pose3dfr.face.align import align_detection

    return align_detection(image, detection.landmarks, pipeline_box(detection), template, size, detection.prediction,
                           rule, pipeline_keypoints(detection))
