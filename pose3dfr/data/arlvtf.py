"""ARL-VTF loader (visible-spectrum images only; the thermal camera is ignored).

ARL-VTF could not be inspected here (licence-gated), so this reader follows an ASSUMED layout, kept
simple and overridable (docs/data.md says the same):

* Images: any .png/.jpg under `root` whose file name or a parent folder name contains the visible camera
  name (default "BAS_RGB2"); files of the thermal camera ("FLIR_USB") are never read. The subject id is
  the first folder under `root`, or under a "dev"/"test"/"devset"/"testset" folder when there is one
  (e.g. root/dev/<subject>/.../BAS_RGB2_....png).
* Protocol lists (`list_file`, e.g. a gallery or probe list): text or CSV, one image per line,
  fields separated by commas or whitespace: `relative/path.png [subject [yaw [pitch [roll]]]]`; lines
  starting with '#' and a header line starting with "path"/"filepath" are skipped. Paths are relative to
  `root`. Without a subject column the subject comes from the path as above. Yaw etc. (degrees, the
  pose3dfr.geometry convention) are used when present.
* Head pose otherwise: estimated per image by the face pipeline the caller passes as `analyzer` (a
  pose3dfr.inference.detect.FaceAnalyzer, which also gives the landmarks used for alignment), when the
  sample is loaded.
* Point clouds: a user scan `<scans_root>/<subject>.<ply|pcd|obj|stl|off|xyz>` when present, else a
  pseudo point cloud from the subject's frontal image (smallest known |yaw|, else the first image whose
  path does not mention "pose") by pose3dfr.data.pseudo_cloud from that image's landmarks (`analyzer`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from pose3dfr.data.facescape import IMAGE_SUFFIXES, ViewDataset, ViewRecord, identity_sort_key, read_image, stable_seed
from pose3dfr.data.pointcloud import with_features
from pose3dfr.data.scan_alignment import load_scan
from pose3dfr.data.scan_io import SCAN_SUFFIXES
from pose3dfr.data.pseudo_cloud import pseudo_point_cloud
from pose3dfr.errors import DatasetError, InvalidScanError

VISIBLE_CAMERA = "BAS_RGB2"
THERMAL_CAMERA = "FLIR_USB"
SPLIT_FOLDERS = ("dev", "test", "devset", "testset")


class ARLVTF(ViewDataset):
    """Visible ARL-VTF images as pose3dfr sample dicts; see the module docstring for the assumed layout."""

    def __init__(self, root: str | Path, list_file: str | Path | None = None, camera: str = VISIBLE_CAMERA,
                 identities: Iterable[str | int] | None = None, scans_root: str | Path | None = None,
                 num_points: int = 2048, point_features: int = 9, estimate_pose: bool = True,
                 transform: Callable[[dict], Any] | None = None, analyzer: Any = None) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetError(f"{self.root}: ARL-VTF folder not found")
        if THERMAL_CAMERA in camera:
            raise DatasetError(f"{camera}: thermal images are not supported; use the visible camera {VISIBLE_CAMERA}")
        self.camera = camera
        self.scans_root = Path(scans_root) if scans_root is not None else None
        self.num_points = num_points
        self.point_features = point_features
        self.estimate_pose = estimate_pose
        self.transform = transform
        self._points_cache: dict[str, np.ndarray] = {}
        self._analyzer = analyzer  # the face pipeline: head pose, landmarks, pseudo point clouds
        entries = self._read_list(Path(list_file)) if list_file is not None else self._walk()
        wanted = None if identities is None else {str(i) for i in identities}
        entries = [e for e in entries if wanted is None or e[1] in wanted]
        if not entries:
            raise DatasetError(f"{list_file or self.root}: no {camera} images found")
        self.identity_names = sorted({e[1] for e in entries}, key=identity_sort_key)
        labels = {n: i for i, n in enumerate(self.identity_names)}
        self.records: list[ViewRecord] = [
            ViewRecord(str(path), labels[subject], subject, _condition(path), *pose, view=path.stem)
            for path, subject, pose in entries]

    # -- indexing ------------------------------------------------------------------------------

    def _walk(self) -> list[tuple[Path, str, tuple]]:
        paths = sorted(p for p in self.root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and self._is_visible(p))
        return [(p, self._subject(p), (None, None, None)) for p in paths]

    def _read_list(self, list_file: Path) -> list[tuple[Path, str, tuple]]:
        if not list_file.is_file():
            raise DatasetError(f"{list_file}: protocol list not found")
        entries = []
        for number, line in enumerate(list_file.read_text().splitlines(), start=1):
            fields = [f for f in re.split(r"[,\s]+", line.strip()) if f]
            if not fields or fields[0].startswith("#") or fields[0].lower() in ("path", "filepath"):
                continue
            path = self.root / fields[0]
            if not self._is_visible(path):
                continue  # thermal (or another camera's) entry
            if not path.is_file():
                raise DatasetError(f"{list_file}:{number}: image not found: {path}")
            try:
                pose = tuple(float(f) for f in fields[2:5]) + (None,) * (3 - len(fields[2:5]))
            except ValueError:
                raise DatasetError(f"{list_file}:{number}: yaw/pitch/roll must be numbers: {line!r}") from None
            if len(fields[2:5]) in (1, 2):  # only yaw (and pitch) given: the rest are 0
                pose = tuple(0.0 if v is None else v for v in pose)
            entries.append((path, fields[1] if len(fields) > 1 else self._subject(path), pose))
        return entries

    def _is_visible(self, path: Path) -> bool:
        parts = path.relative_to(self.root).parts if path.is_relative_to(self.root) else path.parts
        return any(self.camera in part for part in parts) and not any(THERMAL_CAMERA in part for part in parts)

    def _subject(self, path: Path) -> str:
        parts = path.relative_to(self.root).parts
        if len(parts) > 2 and parts[0].lower() in SPLIT_FOLDERS:
            return parts[1]
        if len(parts) < 2:
            raise DatasetError(f"{path}: cannot tell the subject (expected root/<subject>/.../{path.name})")
        return parts[0]

    # -- access --------------------------------------------------------------------------------

    def __getitem__(self, index: int) -> Any:
        record = self.records[index]
        image = read_image(Path(record.path))
        yaw, pitch, roll, landmarks = record.yaw, record.pitch, record.roll, None
        if self.estimate_pose:
            face = self._face(image, record.path)
            landmarks = None if face.landmarks is None else face.landmarks[:468].astype(np.float32)
            if yaw is None:
                yaw, pitch, roll = face.yaw, face.pitch, face.roll
        points = self.points(record.identity_name) if self.num_points else None
        return self._sample(record, image, points, landmarks, pose=(yaw, pitch, roll))

    def points(self, subject: str) -> np.ndarray:
        """The subject's point cloud (scan, else pseudo point cloud of the frontal image), cached."""
        if subject not in self._points_cache:
            self._points_cache[subject] = self._load_points(subject)
        return self._points_cache[subject]

    def _load_points(self, subject: str) -> np.ndarray:
        for suffix in SCAN_SUFFIXES if self.scans_root is not None else ():
            path = self.scans_root / f"{subject}{suffix}"
            if path.is_file():
                try:
                    return load_scan(path, self.num_points, self.point_features, seed=stable_seed(subject)).points
                except InvalidScanError as exc:
                    raise DatasetError(f"{path}: bad scan ({exc})") from None
        frontal = self.frontal_image(subject)
        image = read_image(Path(frontal))
        landmarks = self._face(image, frontal).require_landmarks(Path(frontal).name)
        points = pseudo_point_cloud(landmarks, num_points=self.num_points, image=image, seed=stable_seed(subject))
        return with_features(points, self.point_features)

    def frontal_image(self, subject: str) -> str:
        """The subject's most frontal image: smallest known |yaw|, else the first not named as a pose image."""
        own = [r for r in self.records if r.identity_name == subject]
        if not own:
            raise DatasetError(f"{self.root}: no images of subject {subject}")
        known = [r for r in own if r.yaw is not None]
        if known:
            return min(known, key=lambda r: abs(r.yaw)).path
        return next((r.path for r in own if "pose" not in r.path.lower()), own[0].path)

    def _face(self, image: np.ndarray, path: str):
        return self._get_analyzer().analyze(image, name=Path(path).name).select(0)

    def _get_analyzer(self):
        """The face pipeline given as `analyzer`; DatasetError when a step needs it and none was given."""
        if self._analyzer is None:
            raise DatasetError(f"{self.root}: head pose and pseudo point clouds need the face pipeline: pass "
                               "analyzer=pose3dfr.inference.detect.FaceAnalyzer() (or estimate_pose=False and scans)")
        return self._analyzer


def _condition(path: Path) -> str:
    """A coarse capture condition from the path (ARL-VTF names baseline/expression/pose sequences)."""
    text = str(path).lower()
    for condition in ("baseline", "expression", "pose"):
        if condition in text:
            return condition
    return ""
