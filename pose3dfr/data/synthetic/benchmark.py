"""The synthetic benchmark on disk in FaceScape's layout: identity splits, per-identity files, manifest, contact sheet.

Layout written by `generate_benchmark` (see docs/synthetic.md):
    <root>/images/<id>/<k>_<exp>/<view>.jpg, <view>_landmarks.npy (468 x 3: x, y, visible), params.json
    <root>/meshes/<id>/<k>_<exp>.ply (head mesh), <k>_<exp>_points.ply (face point cloud, cm)
    <root>/manifest.json, <root>/contact_sheet.png
"""

from __future__ import annotations

import json
import multiprocessing
import shutil
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Sequence

import cv2
import numpy as np

from pose3dfr.data.render import sample_bilinear
from pose3dfr.data.synthetic.config import GENERATOR, GENERATOR_VERSION, SynthConfig, seeded_rng
from pose3dfr.data.synthetic.head import build_head
from pose3dfr.data.synthetic.identity import sample_identity
from pose3dfr.data.synthetic.views import render_head, sample_face_points, sample_nuisance
from pose3dfr.errors import Pose3DFRError

def _identity_splits(n: int, seed: int, fractions: tuple[float, float, float]) -> dict[str, list[str]]:
    """Disjoint train/val/test identity names; at least one test identity when n >= 3."""
    order = (seeded_rng(seed, 0, 99).permutation(n) + 1).tolist()
    n_test = max(1, round(fractions[2] * n)) if n >= 3 else 0
    n_val = round(fractions[1] * n) if n >= 3 else 0
    n_val = min(n_val, n - n_test - 1)
    names = [str(i) for i in order]
    test, val, train = names[:n_test], names[n_test:n_test + n_val], names[n_test + n_val:]
    key = int
    return {"train": sorted(train, key=key), "val": sorted(val, key=key), "test": sorted(test, key=key)}


def _generate_identity(task: tuple[SynthConfig, str, int]) -> dict[str, dict[str, float]]:
    """Write every file of one identity; return its views' poses keyed by relative image path."""
    config, root_str, index = task
    cv2.setNumThreads(1)
    from pose3dfr.data.pointcloud import save_mesh, save_point_cloud

    root = Path(root_str)
    identity = sample_identity(config.seed, index)
    poses: dict[str, dict[str, float]] = {}
    for k, expression in enumerate(config.expression_names()):
        head = build_head(identity, expression, config.subdivisions, config.texture_size)
        mesh_dir = root / "meshes" / str(index)
        mesh_dir.mkdir(parents=True, exist_ok=True)
        albedo = sample_bilinear(head.texture, head.uvs) * head.colors
        save_mesh(mesh_dir / f"{expression}.ply", head.vertices, head.faces, vertex_colors=np.clip(albedo, 0, 1),
                  vertex_normals=head.normals)
        points = sample_face_points(head, config.points, seeded_rng(config.seed, index, 10 + k))
        save_point_cloud(mesh_dir / f"{expression}_points.ply", points)
        view_dir = root / "images" / str(index) / expression
        view_dir.mkdir(parents=True, exist_ok=True)
        rng = seeded_rng(config.seed, index, 100 + k)
        params: dict[str, object] = {}
        for view, yaw in enumerate(config.yaws()):
            nuisance = sample_nuisance(rng, config)
            image, landmarks, K, Rt = render_head(head, yaw, nuisance.pitch, nuisance.roll, config.image_size,
                                                  nuisance, rng, config.view_extent_cm, config.camera_distance_cm)
            ok, data = cv2.imencode(".jpg", image[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, config.jpeg_quality])
            if not ok:
                raise Pose3DFRError(f"{view_dir / f'{view}.jpg'}: JPEG encoding failed")
            (view_dir / f"{view}.jpg").write_bytes(data.tobytes())
            np.save(view_dir / f"{view}_landmarks.npy", landmarks, allow_pickle=False)
            params.update({
                f"{view}_K": K.tolist(), f"{view}_Rt": Rt.tolist(), f"{view}_distortion": [0.0] * 5,
                f"{view}_width": config.image_size, f"{view}_height": config.image_size,
                f"{view}_matches": int(landmarks[:, 2].sum()), f"{view}_valid": True,
                f"{view}_sn": f"synthetic-yaw{yaw:+.0f}", f"{view}_ori": f"{view}.jpg"})
            poses[f"images/{index}/{expression}/{view}.jpg"] = {
                "yaw": yaw, "pitch": nuisance.pitch, "roll": nuisance.roll}
        (view_dir / "params.json").write_text(json.dumps(params, indent=1))
    return poses


def generate_benchmark(out_dir: str | Path, config: SynthConfig | None = None, progress: bool = False) -> Path:
    """Write the synthetic benchmark to `out_dir` (FaceScape layout) and return the manifest path.

    Identical seeds and arguments give byte-identical files whatever `workers` is. An existing output
    of this generator is replaced; any other non-empty folder is refused (nothing of the user's is deleted)."""
    config = config or SynthConfig()
    config.validate()
    root = Path(out_dir)
    _prepare_output(root)
    tasks = [(config, str(root), index) for index in range(1, config.identities + 1)]
    poses: dict[str, dict[str, float]] = {}
    for result in map_over_identities(_generate_identity, tasks, config.workers, "synth" if progress else None):
        poses.update(result)
    arguments = {k: v for k, v in asdict(config).items() if k != "workers"}  # workers do not change the output
    manifest = {
        "generator": GENERATOR, "version": GENERATOR_VERSION, "seed": config.seed, "arguments": arguments,
        "units": "cm", "frame": "canonical face frame (MediaPipe canonical mesh; x image right, y up, z out of the face)",
        "identities": [str(i) for i in range(1, config.identities + 1)],
        "expressions": config.expression_names(), "yaws": config.yaws(),
        "splits": _identity_splits(config.identities, config.seed, config.split_fractions),
        "views": dict(sorted(poses.items(), key=lambda kv: _path_key(kv[0]))),
    }
    path = root / "manifest.json"
    path.write_text(json.dumps(manifest, indent=1))
    write_contact_sheet(root, config)
    return path


def _path_key(path: str) -> tuple:
    _, identity, expression, view = path.split("/")
    return int(identity), int(expression.split("_")[0]), int(view.split(".")[0])


def _prepare_output(root: Path) -> None:
    if root.exists() and not root.is_dir():
        raise Pose3DFRError(f"{root}: output path exists and is not a folder")
    if root.is_dir() and any(root.iterdir()):
        manifest = root / "manifest.json"
        ours = False
        if manifest.is_file():
            try:
                ours = json.loads(manifest.read_text()).get("generator") == GENERATOR
            except (ValueError, OSError, AttributeError):
                ours = False
        if not ours:
            raise Pose3DFRError(f"{root}: folder is not empty and holds no synthetic benchmark; choose an empty folder")
        for name in ("images", "meshes"):
            shutil.rmtree(root / name, ignore_errors=True)
        for name in ("manifest.json", "contact_sheet.png"):
            (root / name).unlink(missing_ok=True)
    root.mkdir(parents=True, exist_ok=True)


def write_contact_sheet(root: Path, config: SynthConfig) -> Path:
    """contact_sheet.png: one row per identity (up to contact_sheet_rows), one column per yaw, first expression."""
    from pose3dfr.face.image_io import load_image

    thumb = config.contact_sheet_thumb
    yaws = config.yaws()
    rows = min(config.identities, config.contact_sheet_rows)
    sheet = np.full((rows * thumb, len(yaws) * thumb, 3), 255, np.uint8)
    expression = config.expression_names()[0]
    for r in range(rows):
        for c in range(len(yaws)):
            image = load_image(root / "images" / str(r + 1) / expression / f"{c}.jpg")
            sheet[r * thumb:(r + 1) * thumb, c * thumb:(c + 1) * thumb] = cv2.resize(
                image, (thumb, thumb), interpolation=cv2.INTER_AREA)
    path = root / "contact_sheet.png"
    cv2.imwrite(str(path), sheet[:, :, ::-1])
    return path


def map_over_identities(fn: Callable[[Any], Any], tasks: Sequence[Any], workers: int = 1,
                        progress: str | None = None, chunksize: int = 1) -> list[Any]:
    """[fn(task) for task in tasks], in order, over `workers` processes (fork on Linux) with an optional
    progress bar named `progress`; the results do not depend on `workers` (each task seeds itself)."""
    bar = None
    if progress:
        from tqdm import tqdm  # only when a bar is asked for

        bar = tqdm(total=len(tasks), unit="identity", desc=progress)
    results = []
    try:
        if workers > 1 and len(tasks) > 1:
            method = "fork" if sys.platform.startswith("linux") else "spawn"
            with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(method)) as pool:
                for result in pool.map(fn, tasks, chunksize=chunksize):
                    results.append(result)
                    bar is not None and bar.update(1)
        else:
            for task in tasks:
                results.append(fn(task))
                bar is not None and bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return results
