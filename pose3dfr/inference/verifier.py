"""The Verifier: 1:1 verification, 1:N identification and embeddings of real photos with a Pose3DFR model.

    from pose3dfr.inference.verifier import Verifier
    verifier = Verifier.from_pretrained("default")
    result = verifier.verify("enroll.jpg", "probe.jpg")     # VerifyResult
    print(result.score, result.match, result.probe.yaw)

Per photo: detect every face (FaceAnalyzer), pick one (largest by default), align it to the backbone's
chip (align_face; "auto" or "none" for an already-cropped face), embed it (model.embed: L2-normalised
embedding + H_F x W_F heatmap: each cell's share of the embedding, pose3dfr.models.attribution). Each pair is
decided by the checkpoint's threshold policy (`self.policy.decide_pair`, pose3dfr.eval.thresholds): the score
(the cosine of the two embeddings, or a frontal-teacher model's routed score) and the threshold, real-photo
evidence first; the result says what the threshold was measured on. Galleries and 1:N search are
pose3dfr.inference.identify's. Inference is 2D only; a 3D scan (or, without one, a pseudo point cloud from the
enrollment photo's landmarks) feeds the 3D view.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from pose3dfr.deadline import check_time, not_counted
from pose3dfr.errors import Pose3DFRError
from pose3dfr.eval.calibration import DEFAULT_FAR
from pose3dfr.eval.thresholds import PairDecision, Threshold, ThresholdPolicy, check_far
from pose3dfr.face.align import align_detection, align_face
from pose3dfr.face.image_io import ImageInput, load_image
from pose3dfr.models.attribution import CellGrid, cell_grid
from pose3dfr.models.frontal_gate import Routing
from pose3dfr.models.io import DEFAULT_CHECKPOINT
from pose3dfr.viz import overlay_heatmap

ALIGN_MODES = ("auto", "none")
BACKENDS = ("torch", "onnx")  # what runs the 2D embedding network
EMBED_BATCH = 16  # crops per forward pass in verify_many / identify


@dataclass
class FaceResult:
    """What was found and used in one photo (pose in pose3dfr.geometry's convention, degrees)."""

    yaw: float | None  # None only with align="none" when no face could be detected in the crop
    pitch: float | None
    roll: float | None
    bin: str | None  # |yaw| bin, e.g. "[0,30)"
    faces: int  # faces found in the photo
    face_index: int  # which one was used (0 = largest)
    bbox: list[float] | None  # x0, y0, x1, y1 in the photo's pixels
    align_mode: str  # "five_point", "pose_fit", "box", "detector_box" or "none"
    crop: np.ndarray = field(repr=False)  # S x S x 3 uint8 RGB aligned chip the model saw
    heatmap: np.ndarray = field(repr=False)  # H_F x W_F float32: each cell's share of the embedding
    overlay: np.ndarray = field(repr=False)  # S x S x 3 uint8: heatmap over the crop (viz.overlay_heatmap)
    # 478 x 3 in photo pixels; None when the landmarker refused the face (profiles) or none was found
    landmarks: np.ndarray | None = field(default=None, repr=False)
    pose_source: str = "none"  # "mediapipe", "headpose-net" or "none" (pose unknown)
    grid: CellGrid | None = field(default=None, repr=False)  # where the heatmap's cells sit on the crop
    matrix: np.ndarray | None = field(default=None, repr=False)  # 2 x 3: photo pixels -> crop pixels
    detector_score: float | None = None  # YuNet's confidence in the face used (None: found by the landmarker alone)
    face_evidence: str | None = None  # what says it is a face: "landmarker", "head-pose net" or "detector"
    # boxes the detector found that did not look like a face (face_checks.plausible_face): bbox, score, reason
    rejected_faces: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (no images or arrays other than the box)."""
        return {"yaw": self.yaw, "pitch": self.pitch, "roll": self.roll, "bin": self.bin, "faces": self.faces,
                "face_index": self.face_index, "bbox": self.bbox, "align_mode": self.align_mode,
                "pose_source": self.pose_source, "heatmap_shape": list(self.heatmap.shape),
                "detector_score": self.detector_score, "face_evidence": self.face_evidence,
                "rejected_faces": list(self.rejected_faces)}


@dataclass
class VerifyResult:
    """Outcome of one enrollment-probe comparison."""

    score: float  # cosine similarity of the two embeddings, in [-1, 1]
    threshold: float  # match if score >= threshold
    far: float  # false accept rate the threshold stands for (pose3dfr.eval.thresholds.Threshold.far)
    match: bool
    calibrated: bool  # True only when `far` was measured at this threshold on `threshold_evidence`'s population
    threshold_source: str  # where the threshold came from and what is not measured, in words
    enroll: FaceResult
    probe: FaceResult
    points: np.ndarray | None = field(default=None, repr=False)  # P x 3 canonical frame (cm), for the 3D view
    point_attention: np.ndarray | None = field(default=None, repr=False)  # P, None without a 3D branch
    points_source: str | None = None  # "scan: <file>", "points given (canonical frame)", "pseudo (...)" or None
    checkpoint: str = ""
    threshold_evidence: str = "none"  # what the threshold was measured on: "real photos", "synthetic renders", "none"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields, without images or point arrays."""
        return {"score": self.score, "threshold": self.threshold, "far": self.far, "match": self.match,
                "calibrated": self.calibrated, "threshold_source": self.threshold_source,
                "threshold_evidence": self.threshold_evidence,
                "checkpoint": self.checkpoint, "enroll": self.enroll.to_dict(), "probe": self.probe.to_dict(),
                "num_points": None if self.points is None else int(len(self.points)),
                "points_source": self.points_source,
                "has_point_attention": self.point_attention is not None}


@dataclass
class EmbeddedPhoto:
    """One photo of Verifier.embed_photos: its embedding and pose, or why it failed."""

    source: str  # file name, or "image" for an array
    embedding: np.ndarray | None  # D float32 unit vector; None when the photo failed
    yaw: float | None
    bin: str | None  # |yaw| bin, e.g. "[0,30)"
    error: str | None  # the Pose3DFRError message when the photo failed, else None
    faces: int = 0  # faces found in the photo (the largest is embedded)
    box: list[float] | None = None  # x0, y0, x1, y1 (px of the decoded photo) of the face embedded
    rejected_faces: list[dict[str, Any]] = field(default_factory=list)  # boxes that did not look like a face


@dataclass
class PreparedFace:
    """A photo after detection and alignment, before the model (Verifier.prepare)."""

    rgb: np.ndarray
    crop: np.ndarray  # S x S x 3 uint8 RGB chip
    info: dict[str, Any]  # FaceResult fields except the images
    landmarks: np.ndarray | None  # 478 x 3 photo pixels (MediaPipe), None when the landmarker gave none
    matrix: np.ndarray | None = None  # 2 x 3: photo pixels -> chip pixels


class Verifier:
    """A loaded model plus the face pipeline; thread-safe for concurrent calls (one model, no grad)."""

    def __init__(self, model, meta: Mapping[str, Any] | None = None, analyzer=None, name: str = "custom",
                 per_bin_threshold: bool = True) -> None:
        import torch

        self.model = model.eval()
        self.meta = dict(meta or {})
        self.name = name
        self.config = getattr(model, "cfg", None) or getattr(model, "config", None)
        # Which threshold each pair gets and what evidence stands behind it (pose3dfr.eval.thresholds).
        # per_bin_threshold: a render-calibrated model holds each probe to the threshold measured for its |yaw|.
        self.policy = ThresholdPolicy.for_checkpoint(self.meta, self.routing, per_yaw=per_bin_threshold,
                                                     backbone=getattr(self.config, "backbone", None))
        self._analyzer = analyzer
        self._analyzer_lock = threading.Lock()
        backbone = model.backbone
        self.template: str = backbone.template
        self.input_size: int = int(backbone.input_size)
        self.grid: CellGrid = cell_grid(backbone)  # where the heatmap's cells sit on the chip
        self._torch = torch
        self.backend = "torch"  # or "onnx": from_pretrained(backend="onnx") runs the embedding in onnxruntime
        self._onnx = None  # pose3dfr.inference.onnx_runtime.OnnxEmbedder with backend "onnx"

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(cls, name_or_path: str | Path = DEFAULT_CHECKPOINT, analyzer=None,
                        per_bin_threshold: bool = True, backend: str = "torch",
                        onnx_path: str | Path | None = None) -> "Verifier":
        """Load `checkpoints/<name>.safetensors` + `.json`, or a path to either file (or their stem).

        "default" (= "sface-pretrained") is OpenCV's SFace as OpenCV uses it; "dlib-pretrained" is dlib's own
        descriptor network (see pose3dfr.models.io.load_checkpoint). The loaded network is fused for inference
        (Backbone.fuse_for_inference: batch norms folded; the same embedding). backend="onnx" runs the 2D embedding
        network in onnxruntime: the file `pose3dfr export` wrote for this checkpoint (`onnx_path`), or, without
        one, an export made in memory now (a few seconds).
        """
        from pose3dfr.models.io import load_checkpoint

        if backend not in BACKENDS:
            raise Pose3DFRError(f"backend must be one of {BACKENDS}, got {backend!r}")
        with not_counted():  # loading on a request's first use does not count against its time budget
            model, meta, name = load_checkpoint(name_or_path)
            model.backbone.fuse_for_inference()  # this model is the Verifier's alone: never trained again
            verifier = cls(model, meta, analyzer=analyzer, name=name, per_bin_threshold=per_bin_threshold)
            if backend == "onnx":
                from pose3dfr.inference.onnx_export import onnx_bytes
                from pose3dfr.inference.onnx_runtime import OnnxEmbedder, load_onnx

                threads = verifier._torch.get_num_threads()  # the same thread budget as the torch backend
                verifier._onnx = (load_onnx(onnx_path, meta.get("weights_sha256"), threads) if onnx_path is not None
                                  else OnnxEmbedder(onnx_bytes(model), threads))
                verifier.backend = "onnx"
        return verifier

    @property
    def analyzer(self):
        """The FaceAnalyzer, created on first use (costs ~0.3 s)."""
        with self._analyzer_lock, not_counted():  # one-time set-up: not part of a request's time budget
            if self._analyzer is None:
                from pose3dfr.inference.detect import FaceAnalyzer

                self._analyzer = FaceAnalyzer()
            return self._analyzer

    # ------------------------------------------------------------------ public API
    def embed(self, image: ImageInput, *, face_index: int = 0, align: str = "auto", bgr: bool = False) -> np.ndarray:
        """L2-normalised embedding (D float32) of one face of a photo."""
        prepared = self._prepare(image, face_index=face_index, align=align, bgr=bgr)
        embeddings, _ = self._embed_crops([prepared.crop], heatmaps=False)
        return embeddings[0]

    def verify(self, enroll: ImageInput, probe: ImageInput, scan: str | Path | np.ndarray | None = None,
               far: float = DEFAULT_FAR,
               *, enroll_face: int = 0, probe_face: int = 0, align: str = "auto", bgr: bool = False,
               with_points: bool = True) -> VerifyResult:
        """Compare the enrollment photo's face with the probe's; see VerifyResult.

        `scan`: an optional 3D scan of the enrolled person for the 3D view (inference itself is 2D): a file,
        or a P x 3/6/9 array already in the canonical frame (cm). Without one a pseudo point cloud from the
        enrollment photo's landmarks is shown (`with_points`).
        """
        check_far(far)  # bad arguments and unreadable files fail before any model runs
        enroll, probe = _load(enroll, bgr), _load(probe, bgr)
        scan_points = self._scan_points(scan) if scan is not None else None
        a = self._prepare(enroll, face_index=enroll_face, align=align)
        b = self._prepare(probe, face_index=probe_face, align=align)
        embeddings, heatmaps = self._embed_crops([a.crop, b.crop])
        result = self._result(a, b, embeddings, heatmaps, far)
        if scan_points is not None or with_points:
            check_time("the 3D view")
            self._attach_points(result, a, scan_points)
        return result

    def verify_many(self, pairs: Iterable[tuple[ImageInput, ImageInput]], far: float = DEFAULT_FAR, *,
                    align: str = "auto", bgr: bool = False) -> list[VerifyResult]:
        """Verify many (enroll, probe) pairs; a photo path used in several pairs is processed once."""
        check_far(far)
        pairs = list(pairs)
        cache: dict[Any, PreparedFace] = {}

        def prepare(image: ImageInput) -> PreparedFace:
            key = str(Path(image).resolve()) if isinstance(image, (str, Path)) else id(image)
            if key not in cache:
                cache[key] = self._prepare(image, align=align, bgr=bgr)
            return cache[key]

        prepared = [(prepare(e), prepare(p)) for e, p in pairs]
        crops = [x.crop for pair in prepared for x in pair]
        embeddings, heatmaps = self._embed_crops(crops)
        return [self._result(a, b, embeddings[2 * i: 2 * i + 2], heatmaps[2 * i: 2 * i + 2], far)
                for i, (a, b) in enumerate(prepared)]

    def embed_photos(self, images: Iterable[ImageInput], *, align: str = "auto", bgr: bool = False,
                     progress: Callable[[int], None] | None = None, raise_errors: bool = False) -> list[EmbeddedPhoto]:
        """Embed many photos (largest face each) in batches; a photo that fails (no face, unreadable) gets its
        error message instead of an embedding unless `raise_errors`. `progress(n)` is called per photo."""
        results: list[EmbeddedPhoto] = []
        pending: list[tuple[int, np.ndarray]] = []  # (index into results, aligned crop)

        def flush() -> None:
            if pending:
                embeddings, _ = self._embed_crops([crop for _, crop in pending], heatmaps=False)
                for (i, _), embedding in zip(pending, embeddings):
                    results[i].embedding = embedding
                pending.clear()

        for image in images:
            source = Path(image).name if isinstance(image, (str, Path)) else "image"
            try:
                prepared = self._prepare(image, align=align, bgr=bgr)
            except Pose3DFRError as exc:
                if raise_errors:
                    raise
                results.append(EmbeddedPhoto(source, None, None, None, str(exc)))
            else:
                results.append(EmbeddedPhoto(source, None, prepared.info["yaw"], prepared.info["bin"], None,
                                             prepared.info["faces"], prepared.info["bbox"],
                                             prepared.info["rejected_faces"]))
                pending.append((len(results) - 1, prepared.crop))
                if len(pending) == EMBED_BATCH:
                    flush()
            if progress is not None:
                progress(1)
        flush()
        return results

    def threshold(self, far: float = DEFAULT_FAR, pose_bin: str | None = None, *,
                  yaw: float | None = None) -> Threshold:
        """The threshold for a probe in `pose_bin` (or at `yaw`) against a frontal enrolment, for real photos."""
        return self.policy.decide(far, yaw, 0.0 if yaw is not None else None, probe_bin=pose_bin)

    @property
    def routing(self) -> Routing | None:
        """How a frontal-teacher model scores pairs (pose3dfr.models.frontal_gate); None for plain models."""
        return getattr(self.model, "routing", None)

    # ------------------------------------------------------------------ steps
    def prepare(self, image: ImageInput, *, face_index: int = 0, align: str = "auto", bgr: bool = False) -> PreparedFace:
        """Load, detect, select and align one photo, as verify does (the chip, its matrix, landmarks and pose)."""
        return self._prepare(image, face_index=face_index, align=align, bgr=bgr)

    def _prepare(self, image: ImageInput, *, face_index: int = 0, align: str = "auto", bgr: bool = False) -> PreparedFace:
        """Load, detect, select and align one photo."""
        from pose3dfr.errors import FaceTooSmallError, NoFaceError

        if align not in ALIGN_MODES:
            raise Pose3DFRError(f"align must be one of {ALIGN_MODES}, got {align!r}")
        name, rgb = image if isinstance(image, _Loaded) else _load(image, bgr)
        check_time(f"the face in {name}")
        analysis = None
        if align == "none":  # an already-cropped face: pose is reported when the detector can see one
            try:
                analysis = self.analyzer.analyze(rgb, name=name)
                face, count = analysis.select(face_index), analysis.count
            except (NoFaceError, FaceTooSmallError):
                face, count = None, 0
            chip = align_face(rgb, None, self.template, self.input_size, mode="none")
        else:
            analysis = self.analyzer.analyze(rgb, name=name)
            face, count = analysis.select(face_index), analysis.count
            yunet = face.score is not None  # a YuNet box and keypoints (not the fallback's landmark extent)
            check_time(f"aligning the face in {name}")
            chip = align_detection(rgb, face.landmarks, face.bbox if yunet else None, self.template, self.input_size,
                                   face.net_prediction, getattr(self.config, "alignment", "pipeline"),
                                   face.keypoints if yunet else None)
        info = {"faces": count, "face_index": face_index, "align_mode": chip.mode, "pose_source": "none",
                "yaw": None, "pitch": None, "roll": None, "bin": None, "bbox": None,
                "rejected_faces": [r.to_dict() for r in getattr(analysis, "rejected", [])]}
        if face is not None:
            info.update(bbox=[float(v) for v in face.bbox], face_evidence=face.evidence,
                        detector_score=None if face.score is None else float(face.score))
        if face is not None and face.pose is not None:
            info.update(yaw=float(face.yaw), pitch=float(face.pitch), roll=float(face.roll), bin=face.pose.bin,
                        pose_source=face.pose_source)
        return PreparedFace(rgb, chip.image, info, None if face is None else face.landmarks, chip.matrix)

    def _embed_crops(self, crops: Sequence[np.ndarray], heatmaps: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        """(N x D float32 unit embeddings, N x H_F x W_F float32 heatmaps, None when not asked for) of aligned
        uint8 RGB crops."""
        torch = self._torch
        embeddings, maps = [], []
        with torch.inference_mode():
            for start in range(0, len(crops), EMBED_BATCH):
                check_time("the embedding network")
                batch = np.stack(crops[start: start + EMBED_BATCH])  # B x S x S x 3 uint8
                x = torch.from_numpy(batch).permute(0, 3, 1, 2).float().div_(255.0)  # B x 3 x S x S in [0, 1]
                if self._onnx is not None:
                    emb, heat = self._onnx.run(x.numpy())
                else:
                    out = self.model.embed(x, attribute=heatmaps)
                    emb = out.embeddings.float().cpu().numpy()
                    heat = out.heatmaps.float().cpu().numpy() if heatmaps else None
                embeddings.append(emb)
                maps.append(heat)
        return np.concatenate(embeddings), np.concatenate(maps) if heatmaps else None

    def _result(self, a: PreparedFace, b: PreparedFace, embeddings: np.ndarray, heatmaps: np.ndarray,
                far: float) -> VerifyResult:
        decision: PairDecision = self.policy.decide_pair(far, embeddings[0], embeddings[1], a.info["yaw"],
                                                         b.info["yaw"], probe_bin=b.info["bin"])
        threshold = decision.threshold
        faces = [FaceResult(**p.info, crop=p.crop, heatmap=h.astype(np.float32),
                            overlay=overlay_heatmap(p.crop, h, grid=self.grid), landmarks=p.landmarks, grid=self.grid,
                            matrix=p.matrix)
                 for p, h in zip((a, b), heatmaps)]
        return VerifyResult(score=decision.score, threshold=threshold.value, far=threshold.far,
                            match=decision.match, calibrated=threshold.calibrated,
                            threshold_source=threshold.source, enroll=faces[0], probe=faces[1], checkpoint=self.name,
                            threshold_evidence=threshold.evidence)

    def _cloud_shape(self) -> tuple[int, int]:
        """(points, features per point) of the clouds this checkpoint's 3D view takes."""
        return int(getattr(self.config, "num_points", 2048)), int(getattr(self.config, "point_features", 3))

    def _scan_points(self, scan: str | Path | np.ndarray) -> tuple[np.ndarray, str]:
        """(P x F points in the canonical frame, source label) of a scan file or array; InvalidScanError first,
        so a bad scan costs no face detection."""
        from pose3dfr.data.scan_alignment import load_scan
        from pose3dfr.inference.scan import canonical_points_array

        num_points, features = self._cloud_shape()
        if isinstance(scan, np.ndarray):
            return canonical_points_array(scan, num_points, features), "points given (canonical frame)"
        return load_scan(scan, num_points=num_points, point_features=features).points, f"scan: {Path(scan).name}"

    def _attach_points(self, result: VerifyResult, enroll: PreparedFace,
                       scan_points: tuple[np.ndarray, str] | None) -> None:
        """The 3D view: the scan's points (or a pseudo cloud of the enrollment face) and, with a 3D branch, its
        attention."""
        from pose3dfr.data.pseudo_cloud import pseudo_point_cloud

        num_points, features = self._cloud_shape()
        if scan_points is not None:
            points, source = scan_points
        elif enroll.landmarks is not None:
            points = pseudo_point_cloud(enroll.landmarks, num_points, image=enroll.rgb)[:, :features]
            source = "pseudo (enrollment landmarks)"
        else:
            return
        result.points, result.points_source = np.ascontiguousarray(points[:, :3]), source
        if getattr(self.config, "use_3d", False):
            torch = self._torch
            with torch.inference_mode():
                out = self.model.embed_points(torch.from_numpy(np.ascontiguousarray(points))[None].float())
            result.point_attention = out.point_attention[0].float().cpu().numpy()


class _Loaded(tuple):
    """(name, H x W x 3 uint8 RGB): a photo already through load_image."""


def _load(image: ImageInput, bgr: bool = False) -> _Loaded:
    name = Path(image).name if isinstance(image, (str, Path)) else "image"
    return _Loaded((name, load_image(image, bgr=bgr)))



