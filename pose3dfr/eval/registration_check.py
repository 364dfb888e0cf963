"""Does cell (i, j) of the 3D map look at the same part of the face as cell (i, j) of the 2D map?

For views of held-out identities at chosen yaws, every visible landmark of the render (the first 468 mesh
vertices are MediaPipe's landmarks, and the renderer records which are seen) is looked up twice: the cell
its 2D position falls in on the aligned chip, and the cell the 3D branch pools its nearest cloud point into,
once with the paper's frontal pooling and once with pose-aware registration (pose3dfr.data.view_registration),
through the very transform training uses. The fraction that agree is the check of issue #18.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from pose3dfr.data.view_registration import frontal_cells, landmark_agreement

CHECK_YAWS = (0.0, 30.0, 45.0, 60.0, 90.0)


def mesh_landmarks(data_root: str | Path, identity_name: str, expression: str, count: int = 468) -> np.ndarray:
    """The first `count` vertices of a synthetic head mesh (MediaPipe's landmark vertices), cm, world frame."""
    from pose3dfr.data.pointcloud import read_mesh

    return np.asarray(read_mesh(Path(data_root) / "meshes" / identity_name / f"{expression}.ply").vertices[:count])


def registration_agreement(data_root: str | Path, split: str = "test", yaws: Sequence[float] = CHECK_YAWS,
                           max_views: int = 40, align: str = "oracle", template: str = "dlib", chip_size: int = 150,
                           grid: int = 8, num_points: int = 512) -> dict[str, Any]:
    """{"yaws": [...], "frontal": [fraction per yaw], "registered": [...], "landmarks": [counted per yaw]}.

    Views are the first `max_views` of the split at each |yaw| (both signs); chips as `align` crops them."""
    from pose3dfr.data.facescape import FaceScapeMultiView
    from pose3dfr.data.transforms import ModelTransform

    dataset = FaceScapeMultiView(data_root, split=split, num_points=2 * num_points, point_features=6)
    detections = None
    if align == "pipeline":
        from pose3dfr.eval.evaluate import pipeline_detections

        detections = pipeline_detections(dataset, range(len(dataset.records)))
    transform = ModelTransform(template, chip_size, num_points, 6, train=False, align=align, detections=detections,
                               grid=grid)
    result: dict[str, Any] = {"yaws": list(yaws), "frontal": [], "registered": [], "landmarks": [],
                              "align": align, "split": split, "grid": grid}
    for yaw in yaws:
        chosen = [i for i, r in enumerate(dataset.records) if r.yaw is not None and abs(abs(r.yaw) - yaw) < 1.0]
        totals = np.zeros(3, dtype=np.int64)  # frontal agree, registered agree, counted
        for index in chosen[:max_views]:
            totals += _view_agreement(dataset, index, transform, data_root, template, chip_size, grid)
        counted = max(int(totals[2]), 1)
        result["frontal"].append(float(totals[0]) / counted)
        result["registered"].append(float(totals[1]) / counted)
        result["landmarks"].append(int(totals[2]))
    return result


def _view_agreement(dataset: Any, index: int, transform: Any, data_root: str | Path, template: str,
                    chip_size: int, grid: int) -> np.ndarray:
    """(frontal agree, registered agree, counted) visible landmarks of one view."""
    sample = dataset[index]
    out = transform(sample)
    matrix = out["chip_matrix"]
    points = out["points"].numpy()
    registered = out["cells"].numpy()
    vertices = mesh_landmarks(data_root, sample["identity_name"], sample["expression"])
    landmarks = np.asarray(sample["landmarks"])
    frontal = frontal_cells(points[:, :3], template, chip_size, grid)
    agree_frontal, counted = landmark_agreement(points, frontal, vertices, landmarks, matrix, chip_size, grid)
    agree_registered, _ = landmark_agreement(points, registered, vertices, landmarks, matrix, chip_size, grid)
    return np.array([agree_frontal, agree_registered, counted])


def agreement_markdown(result: dict[str, Any]) -> str:
    """The check as a Markdown table (percent of visible landmarks in the same cell)."""
    head = "| pooling | " + " | ".join(f"{y:g}°" for y in result["yaws"]) + " |"
    lines = [head, "|---|" + "---|" * len(result["yaws"])]
    for name in ("frontal", "registered"):
        lines.append(f"| {name} | " + " | ".join(f"{100 * v:.0f}%" for v in result[name]) + " |")
    lines.append("| landmarks counted | " + " | ".join(str(n) for n in result["landmarks"]) + " |")
    return "\n".join(lines) + "\n"
