"""Chips for the attention measures (pose3dfr.eval.attention): a synthetic benchmark's renders or photos, each
aligned as the Verifier aligns it, with the face's hull in the chip (ground-truth landmarks for renders,
MediaPipe's for photos)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from pose3dfr.errors import FaceTooSmallError, NoFaceError
from pose3dfr.eval.attention import FaceChip, face_hull

# Expressions used per identity by default: one (the neutral face), so each identity is one yaw sweep.
DEFAULT_EXPRESSIONS = ("1",)


def split_identities(root: str | Path, split: str, max_identities: int | None = None) -> list[str]:
    """The identity names of a split of a benchmark (manifest order), at most `max_identities` of them."""
    from pose3dfr.data.facescape import FaceScapeMultiView

    names = FaceScapeMultiView(root, split=split, expressions=DEFAULT_EXPRESSIONS).identity_names
    return names[:max_identities] if max_identities else names


def dataset_faces(verifier: Any, root: str | Path, identities: Sequence[str],
                  expressions: Iterable[str] = DEFAULT_EXPRESSIONS) -> Iterator[FaceChip]:
    """Every view of `identities` aligned as the Verifier aligns a photo (the data root's cached detections
    where it has them, the Verifier's detector otherwise; nothing is written to the data root). A view where no
    face is found is skipped: the Verifier rejects it, so it has no heatmap."""
    from pose3dfr.data.detections import DetectionCache, detection_of, pipeline_chip
    from pose3dfr.data.facescape import FaceScapeMultiView, read_image
    from pose3dfr.inference.faces import DetectorConfig

    data = FaceScapeMultiView(root, identities=list(identities), expressions=list(expressions))
    cache = DetectionCache(root, config=DetectorConfig())
    rule = getattr(verifier.config, "alignment", "pipeline")
    for index, record in enumerate(data.records):
        sample = data[index]
        if record.path in cache:
            detection = cache.get(record.path)
        else:
            try:
                detection = detection_of(verifier.analyzer.analyze(read_image(Path(record.path))).select(0))
            except (NoFaceError, FaceTooSmallError):
                detection = None
        if detection is None:
            continue
        aligned = pipeline_chip(sample["image"], detection, verifier.template, verifier.input_size, rule)
        camera = sample.get("camera")
        yield FaceChip(aligned.image, face_hull(sample["landmarks"], aligned.matrix), float(record.yaw),
                       name=_relative(record.path, root), identity=record.identity_name, matrix=aligned.matrix,
                       camera=None if camera is None else (camera["K"], camera["Rt"]), points=sample.get("points"))


def _relative(path: str | Path, root: str | Path) -> str:
    """`path` relative to the data root when it lies inside it (names in reports do not carry server paths)."""
    path, root = Path(path), Path(root)
    return str(path.relative_to(root)) if path.is_relative_to(root) else path.name


def photo_faces(verifier: Any, photos: Iterable[str | Path]) -> Iterator[FaceChip]:
    """The largest face of each photo, as Verify aligns it, with MediaPipe's landmark hull (None when the
    landmarker gave none) and the detector's yaw; photos without a face are skipped."""
    for path in photos:
        try:
            face = verifier.prepare(path)
        except (NoFaceError, FaceTooSmallError):
            continue
        landmarks = None if face.landmarks is None else face.landmarks[:468, :2]
        yield FaceChip(face.crop, face_hull(landmarks, face.matrix), face.info["yaw"], name=Path(path).name,
                       identity=Path(path).stem, matrix=face.matrix)
