"""The Verify tab's examples: the shipped public-domain photos and synthetic renders made once into the cache."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from pose3dfr.data.pointcloud import save_point_cloud
from pose3dfr.data.synthetic import build_head, render_identity_view, sample_face_points, sample_identity
from pose3dfr.paths import PHOTOS_DIR
from pose3dfr.ui.common import CACHE_DIR, log


def real_photo_examples() -> list[list[Any]]:
    """Enrollment/probe pairs from assets/photos: two of the same person, one of two people."""
    pairs = [("obama.jpg", "obama2.jpg"), ("obama.jpg", "biden.jpg"), ("obama.jpg", "obama3.jpg")]
    return [[str(PHOTOS_DIR / a), str(PHOTOS_DIR / b), None] for a, b in pairs
            if (PHOTOS_DIR / a).is_file() and (PHOTOS_DIR / b).is_file()]


# Synthetic identity of the examples row and the explorer's default (numbering of generate_benchmark).
EXAMPLE_IDENTITY = 1
EXAMPLE_YAWS = (0, 45, 90)


def synthetic_examples() -> list[list[Any]]:
    """Frontal render vs renders at 45 and 90 degrees yaw, with the identity's scan; made once into the cache."""
    try:
        return _write_synthetic_examples(CACHE_DIR / "examples")
    except Exception:  # examples are a convenience: never let them stop the app from starting
        log.exception("could not make the synthetic examples")
        return []


def _write_synthetic_examples(out: Path) -> list[list[Any]]:
    out.mkdir(parents=True, exist_ok=True)
    stem = f"synthetic{EXAMPLE_IDENTITY}"
    paths = {yaw: out / f"{stem}_yaw{yaw:+d}.png" for yaw in EXAMPLE_YAWS}
    for yaw, path in paths.items():
        if not path.exists():
            image, _ = render_identity_view(EXAMPLE_IDENTITY, yaw=float(yaw))
            Image.fromarray(image).save(path)
    scan = out / f"{stem}_scan.ply"
    if not scan.exists():
        head = build_head(sample_identity(0, EXAMPLE_IDENTITY))
        save_point_cloud(scan, sample_face_points(head, 2048, np.random.default_rng(0)))
    return [[str(paths[0]), str(paths[yaw]), str(scan)] for yaw in EXAMPLE_YAWS[1:]]
