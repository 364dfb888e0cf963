"""Face alignment to a backbone's input chip, from MediaPipe-indexed landmarks (468 or 478 points).

The same function aligns synthetic renders (their projected mesh vertices are stored with the
images) and real photos (MediaPipe's landmarks), so training and test crops follow one rule:

* ``five_point``: similarity transform of five points (eye centres, nose, mouth corners) onto the
  backbone's template: ArcFace's 112 x 112 template, or dlib's 5-point chip (150 x 150, padding 0.25).
* ``box``: an axis-aligned square around all landmarks, scaled and centred to match what
  ``five_point`` gives a frontal canonical face. Used at large yaw, where the five points of a
  profile collapse onto a line and a similarity fit would blow the face up.
* ``detector_box``: a square around the face detector's (YuNet's) box, DETECTOR_BOX_SIDE box heights on a
  side, centred on the box (shifted down by DETECTOR_BOX_DY): needs no landmarks, keeps the whole face in
  the chip at every yaw, and gives a frontal face about the size ``five_point`` gives it (measured by
  benchmarks/detection.py). The square is kept inside the image (shifted, and shrunk to the image for a
  photo that is already a face crop), so a chip never shows area beyond the photo.
* ``pose_fit``: ``box`` on landmarks that the canonical mesh gives when it is turned to the head-pose net's
  pose and fitted (similarity, visible points) to the net's seven landmarks: the oracle's ``box`` crop without
  ground truth, for profiles the landmarker refuses (`fitted_mesh_landmarks`).
* ``keypoints``: similarity transform of the face detector's five keypoints (YuNet's eyes, nose tip, mouth
  corners) onto the ArcFace template, at every yaw: OpenCV's ``FaceRecognizerSF.alignCrop``, the crops SFace
  is used with on real photos.
* ``auto`` (default): ``five_point`` for a face with landmarks whose projected inter-eye distance is at
  least AUTO_BOX_EYE_RATIO of the landmark height (below about 45 degrees of yaw); otherwise
  ``detector_box`` when a detector box is given, else ``box``.

`align_detection` is the pipeline's rule, used alike by the Verifier and by training/evaluation crops. Rule
"pipeline": ``five_point`` on the landmarker's landmarks near frontal, else ``pose_fit`` when the head-pose net
gave a prediction, else ``detector_box``. Rule "keypoints" (a backbone used as its own real-photo pipeline uses
it, ModelConfig.alignment): ``keypoints`` whenever the detector gave them, else the "pipeline" rule. Ground-truth landmarks without a box (``auto``: five_point or box) are
the "oracle" alignment kept for analysis.
* ``none``: the image is taken as an already-cropped face and only resized.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import cv2
import numpy as np

from pose3dfr.errors import Pose3DFRError
from pose3dfr.face.landmarks import (LEFT_EYE_CORNERS, MOUTH_CORNERS, NOSE_BOTTOM, NOSE_TIP, RIGHT_EYE_CORNERS,
                                     PosePrediction, profile_landmarks)
from pose3dfr.geometry import rotation_matrix

# ArcFace / InsightFace 112 x 112 five-point template: image-left eye, image-right eye, nose, mouth corners.
ARCFACE_112 = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                        [41.5493, 92.3655], [70.7299, 92.2041]], dtype=np.float64)
# dlib get_face_chip_details for 5-point shapes: image-right eye outer/inner, image-left eye outer/inner, nose.
_DLIB_5 = np.array([[0.8595674595992, 0.2134981538014], [0.6460604764104, 0.2289674387677],
                    [0.1205750620789, 0.2137274526848], [0.3340850613712, 0.2290642403242],
                    [0.4901123135679, 0.6277975316475]], dtype=np.float64)
DLIB_PADDING = 0.25

# Inter-eye distance / landmark height of the frontal canonical face is 0.356; cos(45 deg) of it.
AUTO_BOX_EYE_RATIO = 0.356 * math.cos(math.radians(45.0))
# detector_box crop: side in YuNet box heights and centre shift down (box heights). Measured by
# `python -m benchmarks.detection --data data/synth200 --max-identities 20` on training-split renders
# (docs/benchmarks.md, "Detection"): five-point alignment gives a frontal face a chip of 1.08 box heights
# (median), and a 1.1 square shifted down 0.05 keeps 99.2-99.9% of the visible ground-truth landmarks in
# the chip at every |yaw| 0-90 (0.88 centred: 94-96%).
DETECTOR_BOX_SIDE = 1.1
DETECTOR_BOX_DY = 0.05
# align_detection trusts the landmarker's near-frontal five points only while the head-pose net (MAE <= 2.7 deg
# to 90, docs/headpose.md) does not see a profile: past this |yaw| the landmarker's "frontal" fit of a profile
# (8 of 229 test renders at 90 degrees) would blow the face up.
PROFILE_MIN_YAW = 60.0
# pose_fit fits the net's landmarks it deems visible (visibility above this), all of them when fewer than
# MIN_FIT_POINTS are (a similarity needs two; a third keeps one bad point from steering it).
FIT_VISIBILITY = 0.5
MIN_FIT_POINTS = 3
MODES = ("auto", "five_point", "box", "detector_box", "pose_fit", "keypoints", "none")
# align_detection's rules: the project's pose-aware rule, or the detector's five keypoints at every yaw.
DETECTION_RULES = ("pipeline", "keypoints")


@dataclass(frozen=True)
class Template:
    """Where a backbone wants the five points of a face in its square input chip."""

    name: str
    size: int
    points: np.ndarray  # 5 x 2 pixel positions for a chip of `size`


TEMPLATES: dict[str, Template] = {
    "arcface": Template("arcface", 112, ARCFACE_112),
    "dlib": Template("dlib", 150, (DLIB_PADDING + _DLIB_5) / (2 * DLIB_PADDING + 1) * 150),
}


@dataclass
class AlignedFace:
    """An aligned chip and the 2 x 3 affine matrix that maps input pixels to chip pixels."""

    image: np.ndarray  # size x size x 3 uint8 RGB
    matrix: np.ndarray  # 2 x 3
    mode: str


def template_points(landmarks: np.ndarray, template: str) -> np.ndarray:
    """The five landmark positions (5 x 2) that `template`'s points correspond to."""
    lm = _xy(landmarks)
    if template == "dlib":
        idx = [LEFT_EYE_CORNERS[0], LEFT_EYE_CORNERS[1], RIGHT_EYE_CORNERS[0], RIGHT_EYE_CORNERS[1], NOSE_BOTTOM]
        return lm[idx]
    return np.stack([lm[list(RIGHT_EYE_CORNERS)].mean(0), lm[list(LEFT_EYE_CORNERS)].mean(0),
                     lm[NOSE_TIP], lm[MOUTH_CORNERS[0]], lm[MOUTH_CORNERS[1]]])


def umeyama(src: np.ndarray, dst: np.ndarray, name: str = "points") -> tuple[float, np.ndarray, np.ndarray]:
    """(scale, K x K rotation, shift) of the least-squares similarity dst ~ scale * R @ src + shift for N x K
    point sets (Umeyama 1991; a proper rotation, never a reflection); Pose3DFRError naming `name` when src is
    degenerate (all at one place)."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s_c, d_c = src - mu_s, dst - mu_d
    var_s = (s_c ** 2).sum() / len(src)
    if var_s < 1e-12:
        raise Pose3DFRError(f"{name} are degenerate (all at one place)")
    u, sig, vt = np.linalg.svd(d_c.T @ s_c / len(src))
    d = np.ones(src.shape[1])
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[-1] = -1
    rotation = u @ np.diag(d) @ vt
    scale = float((sig * d).sum() / var_s)
    return scale, rotation, mu_d - scale * rotation @ mu_s


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) mapping 2D src to dst (umeyama); 2 x 3."""
    scale, rotation, shift = umeyama(src, dst, "alignment points")
    return np.concatenate([scale * rotation, shift[:, None]], axis=1)


def eye_ratio(landmarks: np.ndarray) -> float:
    """Projected inter-eye distance over landmark height: about 0.36 frontal, 0 at profile."""
    lm = _xy(landmarks)
    eyes = np.linalg.norm(lm[list(RIGHT_EYE_CORNERS)].mean(0) - lm[list(LEFT_EYE_CORNERS)].mean(0))
    height = np.ptp(lm[:468, 1])
    return float(eyes / max(height, 1e-9))


def choose_mode(landmarks: np.ndarray | None, box: np.ndarray | None = None) -> str:
    """The `auto` rule: `five_point` for a face with landmarks that is not strongly turned; otherwise
    `detector_box` when a detector box is given, else `box`."""
    if landmarks is not None and eye_ratio(landmarks) >= AUTO_BOX_EYE_RATIO:
        return "five_point"
    if box is not None:
        return "detector_box"
    if landmarks is None:
        raise Pose3DFRError("alignment needs landmarks or a detector box")
    return "box"


def alignment_matrix(landmarks: np.ndarray | None, template: str = "arcface", size: int | None = None,
                     mode: str = "auto", box: np.ndarray | None = None,
                     image_shape: tuple[int, int] | None = None,
                     prediction: PosePrediction | None = None,
                     keypoints: np.ndarray | None = None) -> tuple[np.ndarray, str]:
    """The 2 x 3 matrix taking image pixels to chip pixels, and the mode actually used.

    `box`: the detector's (x0, y0, x1, y1), for detector_box; `prediction`: the head-pose net's, for pose_fit;
    `keypoints`: the detector's five (5 x 2, ArcFace template order), for keypoints; `image_shape` (H, W) keeps
    the detector_box and pose_fit crops inside the photo.
    """
    tpl = _template(template)
    size = size or tpl.size
    if mode == "auto":
        mode = choose_mode(landmarks, box)
    if mode == "five_point" and landmarks is not None:
        matrix = similarity_transform(template_points(landmarks, template), tpl.points * (size / tpl.size))
    elif mode == "box" and landmarks is not None:
        matrix = _box_matrix(_xy(landmarks), template, size)
    elif mode == "detector_box" and box is not None:
        matrix = detector_box_matrix(box, size, image_shape)
    elif mode == "pose_fit" and prediction is not None:
        matrix = pose_fit_matrix(prediction, template, size, image_shape)
    elif mode == "keypoints" and keypoints is not None and template == "arcface":
        matrix = similarity_transform(np.asarray(keypoints, np.float64).reshape(5, 2), tpl.points * (size / tpl.size))
    elif mode in MODES:
        needs = {"detector_box": "a detector box", "pose_fit": "the head-pose net's prediction",
                 "keypoints": "the detector's five keypoints and the arcface template"}.get(mode, "landmarks")
        raise Pose3DFRError(f"alignment mode {mode!r} needs {needs}")
    else:
        raise Pose3DFRError(f"unknown alignment mode {mode!r}; use one of {MODES}")
    return matrix, mode


def detector_box_matrix(box: np.ndarray, size: int, image_shape: tuple[int, int] | None = None) -> np.ndarray:
    """Axis-aligned 2 x 3 matrix of the detector_box square (see the module docstring) onto a size x size chip."""
    x0, y0, x1, y1 = (float(v) for v in np.asarray(box, np.float64)[:4])
    height = max(y1 - y0, 1e-6)
    centre = np.array([(x0 + x1) / 2, (y0 + y1) / 2 + DETECTOR_BOX_DY * height])
    return square_matrix(centre, DETECTOR_BOX_SIDE * height, size, image_shape)


def square_matrix(centre: np.ndarray, side: float, size: int, image_shape: tuple[int, int] | None = None
                  ) -> np.ndarray:
    """2 x 3 matrix of an axis-aligned image square (centre, side in pixels) onto a size x size chip; with
    `image_shape` (H, W) the square is kept inside the photo (shrunk to it, then shifted in), so a chip of a
    photo that is already a face crop never shows area beyond it."""
    centre = np.asarray(centre, np.float64)
    side = max(float(side), 1e-6)
    if image_shape is not None:
        h, w = image_shape[:2]
        side = min(side, float(h), float(w))
        centre = np.clip(centre, side / 2, np.array([w, h], np.float64) - side / 2)
    scale = size / side
    return np.array([[scale, 0, size / 2 - scale * centre[0]], [0, scale, size / 2 - scale * centre[1]]])


def fitted_mesh_landmarks(prediction: PosePrediction) -> np.ndarray:
    """468 x 2 image positions of the canonical mesh turned to the predicted pose (orthographic) and fitted by a
    similarity to the prediction's visible landmarks: what pose_fit aligns on when the landmarker gave none."""
    from pose3dfr.face.mesh import load_canonical_mesh  # the one reader of the canonical mesh

    if prediction.landmarks is None:
        raise Pose3DFRError("pose_fit alignment needs the head-pose net's landmarks")
    turned = load_canonical_mesh().vertices[:468] @ rotation_matrix(prediction.yaw, prediction.pitch,
                                                                       prediction.roll).T
    projected = np.stack([turned[:, 0], -turned[:, 1]], axis=1)  # image coordinates, y down
    marks = np.asarray(prediction.landmarks, np.float64)
    visible = marks[:, 2] > FIT_VISIBILITY
    if visible.sum() < MIN_FIT_POINTS:
        visible[:] = True
    matrix = similarity_transform(profile_landmarks(projected)[visible], marks[visible, :2])
    return transform_points(projected, matrix)


def pose_fit_matrix(prediction: PosePrediction, template: str, size: int,
                    image_shape: tuple[int, int] | None = None) -> np.ndarray:
    """2 x 3 matrix of the pose_fit chip: the oracle's box rule on `fitted_mesh_landmarks`, kept in the photo."""
    box = _box_matrix(fitted_mesh_landmarks(prediction), template, size)
    side = size / box[0, 0]  # the image square the box chip shows
    centre = (np.array([size / 2, size / 2]) - box[:, 2]) / box[0, 0]
    return square_matrix(centre, side, size, image_shape)


def detection_mode(landmarks: np.ndarray | None, box: np.ndarray | None,
                   prediction: PosePrediction | None = None, rule: str = "pipeline",
                   keypoints: np.ndarray | None = None) -> str:
    """align_detection's choice (module docstring): keypoints, five_point, pose_fit, detector_box or box."""
    if rule not in DETECTION_RULES:
        raise Pose3DFRError(f"unknown alignment rule {rule!r}; use one of {DETECTION_RULES}")
    if rule == "keypoints" and keypoints is not None and np.isfinite(np.asarray(keypoints, np.float64)).all():
        return "keypoints"
    profile = prediction is not None and abs(prediction.yaw) >= PROFILE_MIN_YAW
    if landmarks is not None and eye_ratio(landmarks) >= AUTO_BOX_EYE_RATIO and not profile:
        return "five_point"
    if prediction is not None and prediction.landmarks is not None:
        return "pose_fit"
    if box is not None:
        return "detector_box"
    return "box" if landmarks is not None else "none"


def align_face(image: np.ndarray, landmarks: np.ndarray | None, template: str = "arcface",
               size: int | None = None, mode: str = "auto", box: np.ndarray | None = None,
               prediction: PosePrediction | None = None, keypoints: np.ndarray | None = None) -> AlignedFace:
    """Warp `image` (H x W x 3 uint8 RGB) to the backbone's square chip; see the module docstring.

    `landmarks`: 468+ MediaPipe-indexed points or None; `box`: the face detector's box or None; `prediction`:
    the head-pose net's (pose_fit) or None; `keypoints`: the detector's five (keypoints) or None. With none of
    them (or mode "none") the image is taken as a face crop and resized.
    """
    size = size or _template(template).size
    if mode == "none" or (landmarks is None and box is None and prediction is None and keypoints is None):
        h, w = image.shape[:2]
        matrix = np.array([[size / w, 0, 0], [0, size / h, 0]], dtype=np.float64)
        return AlignedFace(cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA), matrix, "none")
    matrix, used = alignment_matrix(landmarks, template, size, mode, box, image.shape[:2], prediction, keypoints)
    chip = cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    return AlignedFace(chip, matrix, used)


def align_detection(image: np.ndarray, landmarks: np.ndarray | None, box: np.ndarray | None,
                    template: str = "arcface", size: int | None = None,
                    prediction: PosePrediction | None = None, rule: str = "pipeline",
                    keypoints: np.ndarray | None = None) -> AlignedFace:
    """The pipeline's chip of a detected face: the one alignment of the Verifier, training and evaluation.

    `landmarks`: the landmarker's (None when it refused the face); `box`: YuNet's (None for a face without a
    detector box); `prediction`: the head-pose net's pose and landmarks on that box (None without the net);
    `rule`: "pipeline" or "keypoints" (DETECTION_RULES); `keypoints`: YuNet's five (5 x 2) or None.
    """
    mode = detection_mode(landmarks, box, prediction, rule, keypoints)
    return align_face(image, landmarks, template, size, mode=mode, box=box, prediction=prediction,
                      keypoints=keypoints)


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a 2 x 3 affine matrix to N x 2 points."""
    pts = np.asarray(points, np.float64)[:, :2]
    return pts @ matrix[:, :2].T + matrix[:, 2]


def _box_matrix(lm: np.ndarray, template: str, size: int) -> np.ndarray:
    centre_out, side_out = _box_calibration(template)
    lo, hi = lm[:468].min(0), lm[:468].max(0)
    side_in = max(float((hi - lo).max()), 1e-6)
    scale = side_out * size / side_in
    centre_in = (lo + hi) / 2
    offset = centre_out * size - scale * centre_in
    return np.array([[scale, 0, offset[0]], [0, scale, offset[1]]], dtype=np.float64)


@functools.lru_cache(maxsize=None)
def _box_calibration(template: str) -> tuple[np.ndarray, float]:
    """Centre and side (as fractions of the chip) of the landmark box of a five-point-aligned frontal canonical face."""
    from pose3dfr.face.mesh import load_canonical_mesh  # the one reader of the canonical mesh

    vertices = load_canonical_mesh().vertices
    frontal = np.stack([vertices[:, 0], -vertices[:, 1]], axis=1)  # image coordinates, y down
    tpl = _template(template)
    matrix = similarity_transform(template_points(frontal, template), tpl.points)
    chip = transform_points(frontal, matrix)
    lo, hi = chip.min(0), chip.max(0)
    return (lo + hi) / 2 / tpl.size, float((hi - lo).max()) / tpl.size


def _template(name: str) -> Template:
    try:
        return TEMPLATES[name]
    except KeyError:
        raise Pose3DFRError(f"unknown alignment template {name!r}; choose from {sorted(TEMPLATES)}") from None


def _xy(landmarks: np.ndarray) -> np.ndarray:
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.ndim != 2 or lm.shape[0] < 468 or lm.shape[1] < 2:
        raise Pose3DFRError(f"expected MediaPipe landmarks (468 or 478 x 2+), got shape {lm.shape}")
    return lm[:, :2]
