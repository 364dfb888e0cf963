"""A plain folder data set: one folder per identity with its photos and, optionally, a 3D scan.

    <root>/<identity>/<name>.jpg|.jpeg|.png
    <root>/<identity>/<name>_landmarks.npy   optional, MediaPipe-indexed (468+ x 2+), used for alignment
    <root>/<identity>/<name>_pose.json       optional, {"yaw": .., "pitch": .., "roll": ..} in degrees
    <root>/<identity>/scan.ply               optional (any of .ply/.pcd/.obj/.stl/.off/.xyz), aligned to
                                             the canonical frame by pose3dfr.data.scan_alignment.load_scan
Yields the same sample dicts as the other loaders; yaw/pitch/roll are None without a pose sidecar.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from pose3dfr.data.facescape import (IMAGE_SUFFIXES, ViewDataset, ViewRecord, identity_sort_key, read_image, read_json,
                                     read_landmarks)
from pose3dfr.errors import DatasetError, InvalidScanError

SCAN_STEM = "scan"


class FolderDataset(ViewDataset):
    """Identity folders of photos (+ optional scan per identity); see the module docstring for the layout."""

    def __init__(self, root: str | Path, identities: Iterable[str | int] | None = None, num_points: int = 2048,
                 point_features: int = 9, align_scans: bool = True, scan_units: str | float = "auto",
                 transform: Callable[[dict], Any] | None = None) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetError(f"{self.root}: data set folder not found")
        self.num_points = num_points
        self.point_features = point_features
        self.align_scans = align_scans
        self.scan_units = scan_units
        self.transform = transform
        self._points_cache: dict[str, np.ndarray | None] = {}
        wanted = None if identities is None else {str(i) for i in identities}
        names = sorted((p.name for p in self.root.iterdir() if p.is_dir() and (wanted is None or p.name in wanted)),
                       key=identity_sort_key)
        if wanted and wanted - set(names):
            raise DatasetError(f"{self.root}: identities not found: {sorted(wanted - set(names), key=identity_sort_key)}")
        self.identity_names: list[str] = names
        self.records: list[ViewRecord] = [r for label, name in enumerate(names) for r in self._index(label, name)]
        if not self.records:
            raise DatasetError(f"{self.root}: no images found in identity folders")

    def _index(self, label: int, name: str) -> list[ViewRecord]:
        folder = self.root / name
        images = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not images:
            raise DatasetError(f"{folder}: identity folder holds no .jpg/.png images")
        records = []
        for path in images:
            pose = self._pose(path)
            records.append(ViewRecord(str(path), label, name, "", *pose, view=path.stem))
        return records

    @staticmethod
    def _pose(image_path: Path) -> tuple[float | None, float | None, float | None]:
        sidecar = image_path.with_name(f"{image_path.stem}_pose.json")
        if not sidecar.is_file():
            return None, None, None
        pose = read_json(sidecar)
        try:
            return float(pose["yaw"]), float(pose.get("pitch", 0.0)), float(pose.get("roll", 0.0))
        except (KeyError, TypeError, ValueError, AttributeError):
            raise DatasetError(f"{sidecar}: expected {{\"yaw\": .., \"pitch\": .., \"roll\": ..}}") from None

    def __getitem__(self, index: int) -> Any:
        record = self.records[index]
        path = Path(record.path)
        return self._sample(record, read_image(path), self.points(record.identity_name),
                            read_landmarks(path.with_name(f"{path.stem}_landmarks.npy")))

    def scan_path(self, identity_name: str) -> Path | None:
        """The identity's scan file, if any (scan.ply first, then the other formats)."""
        from pose3dfr.data.scan_io import SCAN_SUFFIXES

        for suffix in SCAN_SUFFIXES:
            path = self.root / identity_name / f"{SCAN_STEM}{suffix}"
            if path.is_file():
                return path
        return None

    def points(self, identity_name: str) -> np.ndarray | None:
        """The identity's scan as P x F float32 in the canonical frame (cached), or None without a scan."""
        if identity_name not in self._points_cache:
            path = self.scan_path(identity_name)
            self._points_cache[identity_name] = None if path is None else self._load_scan(path)
        return self._points_cache[identity_name]

    def _load_scan(self, path: Path) -> np.ndarray:
        from pose3dfr.data.facescape import stable_seed
        from pose3dfr.data.scan_alignment import load_scan

        try:
            return load_scan(path, self.num_points, self.point_features, align=self.align_scans, units=self.scan_units,
                             seed=stable_seed(path.parent.name)).points
        except InvalidScanError as exc:
            raise DatasetError(f"{path}: bad scan ({exc})") from None
