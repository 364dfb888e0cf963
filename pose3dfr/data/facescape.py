"""FaceScape multi-view loader (also reads the synthetic benchmark, which uses the same layout).

Layout (../shared/docs/datasets.md, docs/data.md):
    <images_root>/<id>/<k>_<exp>/<view>.jpg, params.json, optional <view>_landmarks.npy
    <meshes_root>/<id>/<k>_<exp>.ply, optional <k>_<exp>_points.ply (a ready point cloud, preferred)
    <root>/manifest.json (optional): {"units": "cm", "splits": {"train": [ids], ...}, ...}
Each view's pose comes from its camera: euler_angles(CV_TO_GL @ Rt[:, :3]), since the meshes (world
frame) face +z with y up, like the canonical face frame.
"""

from __future__ import annotations

import json
import re
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import cv2
import numpy as np
from torch.utils.data import Dataset

from pose3dfr.errors import DatasetError, InvalidImageError, InvalidScanError
from pose3dfr.geometry import CV_TO_GL, euler_angles

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
# Real FaceScape meshes are in millimetres; the synthetic benchmark's manifest says "cm".
DEFAULT_MESH_UNITS = "mm"
MESH_UNIT_SCALES = {"mm": 0.1, "cm": 1.0, "m": 100.0}
# Landmark files are MediaPipe-indexed: at least the 468 mesh points, x and y in pixels.
MIN_LANDMARKS = 468


@dataclass(frozen=True)
class ViewRecord:
    """Metadata of one image, cheap to list (no pixels loaded); also readable as record["yaw"]."""

    path: str
    identity: int
    identity_name: str
    expression: str
    yaw: float | None
    pitch: float | None
    roll: float | None
    view: str = ""

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _Camera:
    K: np.ndarray  # 3 x 3
    distortion: np.ndarray  # (k1, k2, p1, p2, k3)
    width: int
    height: int
    Rt: np.ndarray | None = None  # 3 x 4 world -> camera (OpenCV)


# ----------------------------------------------------------------------------------------------
# Helpers shared by the loaders
# ----------------------------------------------------------------------------------------------

def identity_sort_key(name: str) -> tuple[int, int, str]:
    """Numeric names first in numeric order ('2' < '10'), then the others alphabetically."""
    return (0, int(name), "") if name.isdigit() else (1, 0, name)


def read_image(path: Path) -> np.ndarray:
    """H x W x 3 uint8 RGB through the project's safe loader; DatasetError naming the file if unreadable."""
    from pose3dfr.face.image_io import load_image

    try:
        return load_image(path)
    except InvalidImageError as exc:
        raise DatasetError(f"{path}: unreadable image ({exc})") from None


def read_landmarks(path: Path) -> np.ndarray | None:
    """N x 2+ float32 landmarks from a .npy (never unpickled), or None when the file does not exist."""
    if not path.is_file():
        return None
    try:
        landmarks = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DatasetError(f"{path}: unreadable landmarks file ({exc})") from None
    if landmarks.ndim != 2 or landmarks.shape[0] < MIN_LANDMARKS or landmarks.shape[1] < 2:
        raise DatasetError(f"{path}: expected {MIN_LANDMARKS}+ x 2+ landmarks, got shape {landmarks.shape}")
    if not np.isfinite(landmarks[:, :2]).all():
        raise DatasetError(f"{path}: landmarks hold NaN or Inf")
    return landmarks.astype(np.float32)


def read_json(path: Path) -> Any:
    """Parse a JSON file; DatasetError naming it when missing or malformed."""
    if not path.is_file():
        raise DatasetError(f"{path}: missing file")
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{path}: not valid JSON ({exc})") from None


def load_cloud(path: Path, num_points: int, point_features: int, seed: int) -> np.ndarray:
    """A mesh or point-cloud file sampled (seeded) and farthest-point downsampled, in the file's own units."""
    from pose3dfr.data import pointcloud

    try:
        points = pointcloud.read_point_cloud(path, seed=seed, trusted=True)  # drops NaN/Inf, rejects empty/degenerate
    except InvalidScanError as exc:
        raise DatasetError(f"{path}: bad mesh or point cloud ({exc})") from None
    points = points[pointcloud.farthest_point_sample(points[:, :3], num_points, seed=seed)]
    return pointcloud.with_features(points, point_features)


def stable_seed(text: str) -> int:
    """A seed fixed by a name (not Python's salted hash), same in every process and run."""
    return zlib.crc32(text.encode())


# ----------------------------------------------------------------------------------------------
# The data set
# ----------------------------------------------------------------------------------------------

class ViewDataset(Dataset):
    """Base of the loaders: `records` (ViewRecord per image) over `identity_names`, each item the sample
    dict of docs/architecture.md, passed through `transform` when one is set."""

    records: list[ViewRecord]
    identity_names: list[str]
    transform: Callable[[dict[str, Any]], Any] | None

    @property
    def num_identities(self) -> int:
        return len(self.identity_names)

    def __len__(self) -> int:
        return len(self.records)

    def _sample(self, record: ViewRecord, image: np.ndarray, points: np.ndarray | None,
                landmarks: np.ndarray | None, pose: tuple[Any, Any, Any] | None = None,
                camera: dict[str, np.ndarray] | None = None) -> Any:
        """The sample dict of one view; `pose` overrides the record's (yaw, pitch, roll) when estimated;
        `camera` ({"K", "Rt"}) is added when the view's camera sees the cloud's frame."""
        yaw, pitch, roll = pose if pose is not None else (record.yaw, record.pitch, record.roll)
        sample = {"image": image, "points": points, "identity": record.identity,
                  "identity_name": record.identity_name, "expression": record.expression,
                  "yaw": yaw, "pitch": pitch, "roll": roll, "landmarks": landmarks, "path": record.path}
        if camera is not None:
            sample["camera"] = camera
        return self.transform(sample) if self.transform is not None else sample


class FaceScapeMultiView(ViewDataset):
    """Multi-view FaceScape (or synthetic) images with per-(identity, expression) point clouds.

    Yields dict samples (docs/architecture.md): image, points, identity, identity_name, expression, yaw,
    pitch, roll, landmarks, path; `transform` (e.g. ModelTransform) is applied to each sample.
    """

    def __init__(self, root: str | Path | None, images_root: str | Path | None = None,
                 meshes_root: str | Path | None = None, identities: Iterable[str | int] | None = None,
                 expressions: Iterable[str | int] | None = None, split: str | None = None,
                 num_points: int = 2048, point_features: int = 9, mesh_units: str | None = None,
                 transform: Callable[[dict], Any] | None = None) -> None:
        if root is None and (images_root is None or meshes_root is None):
            raise DatasetError("FaceScapeMultiView needs root, or both images_root and meshes_root")
        self.root = Path(root) if root is not None else None
        self.images_root = Path(images_root) if images_root is not None else self.root / "images"
        self.meshes_root = Path(meshes_root) if meshes_root is not None else self.root / "meshes"
        if not self.images_root.is_dir():
            raise DatasetError(f"{self.images_root}: images folder not found")
        self.manifest = self._read_manifest()
        self.mesh_units = mesh_units or self.manifest.get("units", DEFAULT_MESH_UNITS)
        if self.mesh_units not in MESH_UNIT_SCALES:
            raise DatasetError(f"unknown mesh_units {self.mesh_units!r}; use one of {sorted(MESH_UNIT_SCALES)}")
        self.num_points = num_points
        self.point_features = point_features
        self.transform = transform
        self._cameras: list[_Camera] = []  # parallel to self.records
        self._points_cache: dict[tuple[str, str], np.ndarray] = {}
        wanted = self._wanted_identities(identities, split)
        self.records: list[ViewRecord] = self._index(wanted, _expression_filter(expressions))
        if not self.records:
            raise DatasetError(f"{self.images_root}: no valid views match the selection "
                               f"(identities={identities}, expressions={expressions}, split={split})")
        self.identity_names: list[str] = sorted({r.identity_name for r in self.records}, key=identity_sort_key)

    # -- indexing ------------------------------------------------------------------------------

    def _read_manifest(self) -> dict:
        if self.root is None or not (self.root / "manifest.json").is_file():
            return {}
        manifest = read_json(self.root / "manifest.json")
        if not isinstance(manifest, dict):
            raise DatasetError(f"{self.root / 'manifest.json'}: expected a JSON object")
        return manifest

    def _wanted_identities(self, identities: Iterable[str | int] | None, split: str | None) -> set[str] | None:
        wanted = None if identities is None else {str(i) for i in identities}
        if split is None:
            return wanted
        splits = self.manifest.get("splits")
        if not isinstance(splits, dict) or split not in splits:
            raise DatasetError(f"{self.root}/manifest.json: no split {split!r} "
                               f"(splits: {sorted(splits) if isinstance(splits, dict) else 'none'})")
        members = splits[split]
        if isinstance(members, dict):  # {"identities": [...], ...}
            members = members.get("identities", [])
        in_split = {str(i) for i in members}
        return in_split if wanted is None else wanted & in_split

    def _index(self, wanted: set[str] | None, keep_expression: Callable[[str], bool]) -> list[ViewRecord]:
        names = sorted((p.name for p in self.images_root.iterdir() if p.is_dir()), key=identity_sort_key)
        names = [n for n in names if wanted is None or n in wanted]
        if wanted:
            missing = wanted - set(names)
            if missing:
                raise DatasetError(f"{self.images_root}: identities not found: {sorted(missing, key=identity_sort_key)}")
        found: list[tuple[str, str, str, Path, tuple[float, float, float], _Camera]] = []
        for name in names:
            expression_dirs = sorted((p for p in (self.images_root / name).iterdir() if p.is_dir()), key=_expression_key)
            if not expression_dirs:
                raise DatasetError(f"{self.images_root / name}: identity folder holds no expression folders")
            for exp_dir in expression_dirs:
                if keep_expression(exp_dir.name):
                    found.extend((name, exp_dir.name, *view) for view in self._views(exp_dir))
        labels = {n: i for i, n in enumerate(sorted({f[0] for f in found}, key=identity_sort_key))}
        records = []
        for name, expression, view, path, (yaw, pitch, roll), camera in found:
            records.append(ViewRecord(str(path), labels[name], name, expression, yaw, pitch, roll, view))
            self._cameras.append(camera)
        return records

    def _views(self, exp_dir: Path) -> list[tuple[str, Path, tuple[float, float, float], _Camera]]:
        """(view, image path, pose, camera) of each valid view of one expression folder."""
        params_path = exp_dir / "params.json"
        params = read_json(params_path)
        if not isinstance(params, dict):
            raise DatasetError(f"{params_path}: expected one JSON object")
        views = sorted({k[: -len("_Rt")] for k in params if k.endswith("_Rt")}, key=identity_sort_key)
        if not views:
            raise DatasetError(f"{params_path}: no '<view>_Rt' camera entries")
        out = []
        for view in views:
            if not bool(params.get(f"{view}_valid", True)):
                continue  # unreliable camera: skipped by design
            try:
                rt = np.asarray(params[f"{view}_Rt"], dtype=np.float64).reshape(3, 4)
                K = np.asarray(params[f"{view}_K"], dtype=np.float64)[:3, :3]
                dist = np.asarray(params.get(f"{view}_distortion", [0.0] * 5), dtype=np.float64).ravel()
                width, height = int(params.get(f"{view}_width", 0)), int(params.get(f"{view}_height", 0))
            except (KeyError, ValueError, TypeError) as exc:
                raise DatasetError(f"{params_path}: bad or missing camera entry for view {view} ({exc})") from None
            image_path = _find_image(exp_dir, view)
            # rounded to 1e-6 degrees: a grid view at 15 must not fall on either side of |yaw| < 15 by round-off
            pose = tuple(round(float(angle), 6) for angle in euler_angles(CV_TO_GL @ rt[:, :3]))
            out.append((view, image_path, pose, _Camera(K, dist, width, height, rt)))
        return out

    # -- access --------------------------------------------------------------------------------

    def __getitem__(self, index: int) -> Any:
        record = self.records[index]
        path = Path(record.path)
        image = self._undistort(read_image(path), self._cameras[index], path)
        points = self.points(record.identity_name, record.expression) if self.num_points else None
        camera = self.view_camera(index, image.shape[:2]) if points is not None else None
        return self._sample(record, image, points, read_landmarks(path.with_name(f"{record.view}_landmarks.npy")),
                            camera=camera)

    def view_camera(self, index: int, image_shape: tuple[int, int]) -> dict[str, np.ndarray] | None:
        """{"K", "Rt"} of the view, with K scaled to the loaded image, when its clouds share the camera's world
        frame (cm meshes, not re-centred): what pose-aware registration needs (pose3dfr.data.view_registration)."""
        camera = self._cameras[index]
        if camera.Rt is None or self.mesh_units != "cm":
            return None
        K = camera.K.copy()
        h, w = image_shape
        if camera.width and camera.height and (w, h) != (camera.width, camera.height):
            K[0] *= w / camera.width
            K[1] *= h / camera.height
        return {"K": K, "Rt": camera.Rt}

    def points(self, identity_name: str, expression: str) -> np.ndarray:
        """P x F float32 point cloud of one (identity, expression) in the canonical frame (cm), cached."""
        key = (str(identity_name), expression)
        if key not in self._points_cache:
            self._points_cache[key] = self._load_points(*key)
        return self._points_cache[key]

    def _load_points(self, identity_name: str, expression: str) -> np.ndarray:
        from pose3dfr.data.pointcloud import centre_to_canonical

        folder = self.meshes_root / identity_name
        ready, mesh = folder / f"{expression}_points.ply", folder / f"{expression}.ply"
        source = ready if ready.is_file() else mesh
        if not source.is_file():
            raise DatasetError(f"{mesh}: missing mesh (and no {ready.name}) for identity {identity_name}")
        points = load_cloud(source, self.num_points, self.point_features, stable_seed(f"{identity_name}/{expression}"))
        if self.mesh_units != "cm":  # real FaceScape: mm, own origin -> scaled to cm and centred on the canonical face
            points = centre_to_canonical(points, scale=MESH_UNIT_SCALES[self.mesh_units])
        return points

    @staticmethod
    def _undistort(image: np.ndarray, camera: _Camera, path: Path) -> np.ndarray:
        """Remove lens distortion (cv2.undistort) when the coefficients are non-zero; K follows a resized image."""
        if not np.any(camera.distortion):
            return image
        K = camera.K.copy()
        h, w = image.shape[:2]
        if camera.width and camera.height and (w, h) != (camera.width, camera.height):
            K[0] *= w / camera.width
            K[1] *= h / camera.height
        return cv2.undistort(image, K, camera.distortion)


def _find_image(exp_dir: Path, view: str) -> Path:
    for suffix in IMAGE_SUFFIXES:
        path = exp_dir / f"{view}{suffix}"
        if path.is_file():
            return path
    raise DatasetError(f"{exp_dir / (view + '.jpg')}: missing image of a valid view (listed in params.json)")


def _expression_key(path: Path) -> tuple[int, str]:
    match = re.match(r"(\d+)_", path.name)
    return (int(match.group(1)) if match else 10**9, path.name)


def _expression_filter(expressions: Iterable[str | int] | None) -> Callable[[str], bool]:
    """Match '1_neutral' by its full name, its bare name ('neutral') or its number (1 or '1')."""
    if expressions is None:
        return lambda name: True
    wanted = {str(e) for e in expressions}

    def keep(name: str) -> bool:
        number, _, bare = name.partition("_")
        return name in wanted or bare in wanted or number in wanted

    return keep
