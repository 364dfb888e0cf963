"""Does a detected face look like a face? What face_checks.plausible_face (the checks on a box the landmarker refuses)
costs true faces and what it removes: faces found per |yaw| on synthetic renders with and without the checks,
the shipped photos (each mirrored too) and the composed group photo, and the boxes YuNet takes for a face in
face-free crops of the shipped photos (hands, watches, a shuttle model, a mission patch).

    python -m benchmarks.face_checks --data data/synth200 [--split test] [--max-identities 20] [--crops 40]
        [--seed 1] [--json docs/face_checks.json]

One detector run per image with the checks off (every threshold open); each face is then judged by
plausible_face with the shipped DetectorConfig, so "with checks" is exactly what the app would keep (except
that an image whose every box is rejected would then also try the landmarker on the whole image).
Crops: `--crops` random squares per photo (1/6 to 1/2 of its shorter side, seeded) that stay half a face away
from every face, resized to 384 px. The thresholds were chosen on seed 1 and 20 identities; other seeds and
identities are held out.
"""

from __future__ import annotations

import argparse
import json
import math
from collections import Counter, defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from pose3dfr.errors import FaceTooSmallError, NoFaceError
from pose3dfr.eval.shipped_photos import GROUP_PHOTOS, SINGLE_FACE_PHOTOS, group_photo
from pose3dfr.face.image_io import load_image
from pose3dfr.inference.detect import FaceAnalyzer
from pose3dfr.inference.faces import DetectorConfig
from pose3dfr.inference.face_checks import plausible_face
from pose3dfr.paths import PHOTOS_DIR

CROP_SIDE = 384  # px: crops are resized to this (a portrait-sized photo)
OPEN = dict(landmarks_needed_below_yaw=0.0, max_face_yaw=math.inf, min_landmark_visibility=0.0,
            max_keypoint_disagreement=math.inf, keypoint_check_max_yaw=0.0, max_box_outside=math.inf)


def faces_of(detector: FaceAnalyzer, image: np.ndarray) -> list:
    try:
        return detector.analyze(image).faces
    except (NoFaceError, FaceTooSmallError):
        return []


def judged(faces: list, shape: tuple[int, ...], config: DetectorConfig) -> list[tuple[Any, str | None]]:
    return [(face, plausible_face(face, config, shape)) for face in faces]


def on_face(face, landmarks: np.ndarray) -> bool:
    visible = landmarks[landmarks[:, 2] > 0.5, :2] if landmarks.shape[1] > 2 else landmarks[:, :2]
    centre = (face.bbox[:2] + face.bbox[2:]) / 2
    return bool(np.all((centre >= visible.min(0)) & (centre <= visible.max(0))))


def measure_synthetic(detector: FaceAnalyzer, config: DetectorConfig, root: str, split: str,
                      max_identities: int | None) -> dict[str, Any]:
    from pose3dfr.data.facescape import FaceScapeMultiView, read_landmarks

    dataset = FaceScapeMultiView(root, split=split, num_points=0)
    if max_identities is not None and dataset.num_identities > max_identities:
        dataset = FaceScapeMultiView(root, identities=dataset.identity_names[:max_identities], num_points=0)
    rows: dict[int, Counter] = defaultdict(Counter)
    rejected_true: list[dict[str, Any]] = []
    for index, record in enumerate(dataset.records):
        path = Path(record.path)
        image = load_image(path)
        landmarks = read_landmarks(path.with_name(f"{record.view}_landmarks.npy"))
        row = rows[int(round(abs(record.yaw)))]
        faces = judged(faces_of(detector, image), image.shape, config)
        true = [why for face, why in faces if on_face(face, landmarks)]
        row["renders"] += 1
        row["found without checks"] += bool(true)
        row["found with checks"] += any(why is None for why in true)
        row["true faces rejected"] += sum(why is not None for why in true)
        row["other boxes without checks"] += len(faces) - len(true)
        row["other boxes with checks"] += sum(why is None for face, why in faces if not on_face(face, landmarks))
        rejected_true += [{"image": str(path), "reason": why} for why in true if why is not None]
        if index % 200 == 0:
            print(f"  {split}: {index}/{len(dataset.records)}", flush=True)
    return {"identities": dataset.num_identities, "by_abs_yaw": {str(k): dict(v) for k, v in sorted(rows.items())},
            "true_faces_rejected": rejected_true}


def measure_photos(detector: FaceAnalyzer, config: DetectorConfig) -> dict[str, Any]:
    images = {name: load_image(PHOTOS_DIR / name) for name in SINGLE_FACE_PHOTOS}
    images.update({f"{name} (mirrored)": np.ascontiguousarray(image[:, ::-1]) for name, image in list(images.items())})
    images["group photo"] = group_photo()
    out = {}
    for name, image in images.items():
        faces = judged(faces_of(detector, image), image.shape, config)
        out[name] = {"expected": len(GROUP_PHOTOS) if name == "group photo" else 1, "without checks": len(faces),
                     "with checks": sum(why is None for _, why in faces)}
    return out


def face_free_crops(detector: FaceAnalyzer, per_photo: int, seed: int) -> list[tuple[str, np.ndarray]]:
    """Seeded squares of the shipped photos that keep half a face's size away from every face."""
    rng = np.random.default_rng(seed)
    crops = []
    for path in sorted(PHOTOS_DIR.iterdir()):
        image = load_image(path)
        boxes = [face.bbox for face in faces_of(detector, image)]
        height, width = image.shape[:2]
        made = 0
        for _ in range(100 * per_photo):
            if made == per_photo:
                break
            side = int(rng.integers(min(height, width) // 6, min(height, width) // 2))
            x, y = int(rng.integers(0, width - side)), int(rng.integers(0, height - side))
            near = [b for b in boxes if not (x + side < b[0] - (b[2] - b[0]) / 2 or x > b[2] + (b[2] - b[0]) / 2 or
                                             y + side < b[1] - (b[3] - b[1]) / 2 or y > b[3] + (b[3] - b[1]) / 2)]
            if near:
                continue
            crop = cv2.resize(image[y:y + side, x:x + side], (CROP_SIDE, CROP_SIDE), interpolation=cv2.INTER_AREA)
            crops.append((f"{path.name}:{x},{y},{side}", np.ascontiguousarray(crop)))
            made += 1
    return crops


def measure_crops(detector: FaceAnalyzer, config: DetectorConfig, per_photo: int, seed: int) -> dict[str, Any]:
    crops = face_free_crops(detector, per_photo, seed)
    taken, kept, reasons = [], [], Counter()
    for name, crop in crops:
        for face, why in judged(faces_of(detector, crop), crop.shape, config):
            taken.append(name)
            if why is None:
                kept.append(name)
            else:
                reasons[why.split(" (")[0].split(",")[0]] += 1
    return {"crops": len(crops), "seed": seed, "boxes without checks": len(taken), "boxes with checks": len(kept),
            "kept": kept, "reasons": dict(reasons)}


def markdown(results: dict[str, Any]) -> str:
    lines = []
    synth = results.get("synthetic")
    if synth:
        lines += [f"Synthetic renders ({synth['identities']} identities): renders where the face is found, and boxes "
                  "off the face", "",
                  "| abs yaw | renders | found, no checks | found, checks | true faces rejected | other boxes, no checks "
                  "| other boxes, checks |", "|---:|---:|---:|---:|---:|---:|---:|"]
        for yaw, row in synth["by_abs_yaw"].items():
            lines.append(f"| {yaw} | {row['renders']} | {row.get('found without checks', 0)} | "
                         f"{row.get('found with checks', 0)} | {row.get('true faces rejected', 0)} | "
                         f"{row.get('other boxes without checks', 0)} | {row.get('other boxes with checks', 0)} |")
    lines += ["", "| photo | faces expected | found, no checks | found, checks |", "|---|---:|---:|---:|"]
    lines += [f"| {name} | {r['expected']} | {r['without checks']} | {r['with checks']} |"
              for name, r in results["photos"].items()]
    for crops in results["crops"]:
        lines += ["", f"Face-free crops of the shipped photos (seed {crops['seed']}, {crops['crops']} crops): boxes taken "
                  f"for a face {crops['boxes without checks']} without the checks, {crops['boxes with checks']} with "
                  f"them; reasons: {crops['reasons']}; kept: {crops['kept']}"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="synthetic benchmark root (e.g. data/synth200); none: skip")
    parser.add_argument("--split", default="test")
    parser.add_argument("--max-identities", type=int, default=None)
    parser.add_argument("--crops", type=int, default=40, help="face-free crops per shipped photo")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    config = DetectorConfig()
    detector = FaceAnalyzer(replace(config, **OPEN))
    results: dict[str, Any] = {"config": {k: getattr(config, k) for k in OPEN}}
    results["photos"] = measure_photos(detector, config)
    results["crops"] = [measure_crops(detector, config, args.crops, seed) for seed in args.seeds]
    if args.data:
        results["synthetic"] = measure_synthetic(detector, config, args.data, args.split, args.max_identities)
    print(markdown(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
