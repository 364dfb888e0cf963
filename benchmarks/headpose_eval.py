"""Head-pose accuracy of our net (and of MediaPipe's pose) per |yaw| on held-out synthetic identities, through
YuNet boxes as at inference; agreement with MediaPipe on the shipped real photos; the shipped photos profiled
to known yaws (real faces turned, pose3dfr.data.profiling) through the full detector pipeline; CPU speed per face.

    python -m benchmarks.headpose_eval --data <synth benchmark root> [--split test] [--checkpoint PATH]
        [--identities N] [--no-mediapipe] [--no-profiled] [--json out.json]

Synthetic images: YuNet's box holding the face is used; where YuNet misses (some profiles) the box of the
projected visible landmarks is used instead and counted in the `fallback` column. MediaPipe's pose is
FaceAnalyzer(DetectorConfig(headpose_weights=None)).analyze(image) (no head-pose net, so never ours; its own
YuNet crop or whole-image fallback); `mp_missed` counts images where it found no face (excluded from its MAE).

Profiled photos: each shipped photo and its mirror image is fitted (MediaPipe's 478 landmarks), turned to
yaw 0, +-15 .. +-90 (pitch and roll 0 in the fitted frame) and rendered over its own surroundings
(`view`, framed like the synthetic renders) and cut to a studio crop (`tight`: 1.25 x the visible face's
landmark box, the back of a profile's head cut off); the full pipeline (YuNet, landmarker, this net) runs on
each image, level and with the camera 30 degrees above and below (pitch -+30). Rows per |yaw| and photo group
(the photos the head-pose training profiles, and the held-out ones):
faces found, the net's median |yaw error|, its median error towards the turn (negative: reads less turned),
the 90th percentile, and flips (the wrong side, or more than 90 degrees off). Then the net's median error with
YuNet's box made looser or moved, on renders and on the profiled photos (`box_sensitivity`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.harness import command_line
from pose3dfr.data.profiling import fit_photo_head, render_profile, studio_crop
from pose3dfr.headpose.data import PHOTO_NAMES, PROFILE_TRAIN_PHOTOS, face_box
from pose3dfr.face.landmarks import profile_landmarks
from pose3dfr.errors import Pose3DFRError
from pose3dfr.inference.detect import FaceAnalyzer
from pose3dfr.inference.faces import DetectorConfig
from pose3dfr.face.image_io import load_image
from pose3dfr.headpose.estimator import HEADPOSE_WEIGHTS, HeadPoseEstimator
from pose3dfr.models.io import checkpoint_paths
from pose3dfr.paths import PHOTOS_DIR


def synthetic(root: Path, split: str, estimator: HeadPoseEstimator, analyzer: FaceAnalyzer, identities: int | None,
              mediapipe: bool) -> dict[str, dict[str, float]]:
    """Per |yaw| (as rendered): count, our yaw/pitch/roll MAE, landmark error, fallback boxes, MediaPipe's MAE."""
    manifest = json.loads((root / "manifest.json").read_text())
    names = manifest["splits"][split][:identities]
    rows: dict[int, list[dict[str, float]]] = {}
    for rel, truth in manifest["views"].items():
        if rel.split("/")[1] not in names:
            continue
        image = load_image(root / rel)
        marks = np.load(root / rel.replace(".jpg", "_landmarks.npy"))
        box, found = face_box(analyzer.detect_boxes(image), marks)
        pred = estimator.predict(image, box[None])[0]
        target = profile_landmarks(marks)
        seen = target[:, 2] > 0.5
        face_side = max(np.ptp(marks[:, 0]), np.ptp(marks[:, 1]))
        row = {"yaw": abs(pred.yaw - truth["yaw"]), "pitch": abs(pred.pitch - truth["pitch"]),
               "roll": abs(pred.roll - truth["roll"]), "fallback": 1 - found,
               "landmark": float(np.linalg.norm(pred.landmarks[seen, :2] - target[seen, :2], axis=1).mean() / face_side),
               "visibility": float(np.mean((pred.landmarks[:, 2] > 0.5) == seen))}
        if mediapipe:
            try:
                pose = analyzer.analyze(image).faces[0].pose
            except Pose3DFRError:
                pose = None
            if pose is None:  # no face, or a YuNet face the landmarker refused: MediaPipe gives no pose
                row["mp_missed"] = 1
            else:
                row.update(mp_yaw=abs(pose.yaw - truth["yaw"]), mp_pitch=abs(pose.pitch - truth["pitch"]),
                           mp_roll=abs(pose.roll - truth["roll"]), mp_missed=0)
        rows.setdefault(int(round(abs(truth["yaw"]))), []).append(row)
    table = {}
    for yaw in sorted(rows):
        group = rows[yaw]
        entry = {"n": len(group)}
        for key in ("yaw", "pitch", "roll", "landmark", "visibility", "fallback", "mp_yaw", "mp_pitch", "mp_roll",
                    "mp_missed"):
            values = [r[key] for r in group if key in r]
            if values:
                entry[key] = round(float(np.mean(values)), 3 if key in ("landmark", "visibility", "fallback") else 2)
        table[str(yaw)] = entry
    return table


def photos(estimator: HeadPoseEstimator, analyzer: FaceAnalyzer) -> dict[str, dict[str, float]]:
    """Our pose vs MediaPipe's on each shipped photo's largest face (same YuNet box), and on its mirror image."""
    out = {}
    for name in PHOTO_NAMES:
        image = load_image(PHOTOS_DIR / name)
        for tag, img in ((name, image), (name + " (mirrored)", np.ascontiguousarray(image[:, ::-1]))):
            face = analyzer.analyze(img).faces[0]
            pred = estimator.predict(img, face.bbox[None])[0]
            out[tag] = {"ours_yaw": round(pred.yaw, 1), "mp_yaw": round(face.yaw, 1),
                        "ours_pitch": round(pred.pitch, 1), "mp_pitch": round(face.pitch, 1),
                        "ours_roll": round(pred.roll, 1), "mp_roll": round(face.roll, 1),
                        "yaw_diff": round(abs(pred.yaw - face.yaw), 1)}
    return out


PROFILE_YAWS = (0, 15, 30, 45, 60, 75, 90)
PROFILE_PITCHES = (0, -30, 30)  # level, and the camera 30 degrees above / below (as mugshot sets photograph)
TIGHT_CROP = (1.25, 192)  # studio crop: side / visible-landmark box side, pixels


def profiled(estimator: HeadPoseEstimator, analyzer: FaceAnalyzer) -> dict[str, dict[str, dict[str, float]]]:
    """Per framing ('view', 'tight'), pitch (level, +-30), photo group and |yaw|: the pipeline's net yaw against
    the profiled truth."""
    pipeline = FaceAnalyzer(DetectorConfig(headpose_weights=None), pose_estimator=estimator)
    rows: dict[tuple[str, str, str, int], list[dict[str, float]]] = {}
    by_photo: dict[str, dict[str, list[dict[str, float]]]] = {}  # every framing and pitch, per photo
    for name in PHOTO_NAMES:
        group = "trained" if name in PROFILE_TRAIN_PHOTOS else "held-out"
        photo = load_image(PHOTOS_DIR / name)
        for img in (photo, np.ascontiguousarray(photo[:, ::-1])):
            head = fit_photo_head(img, analyzer.analyze(img).faces[0].landmarks)
            for yaw in sorted({s * y for y in PROFILE_YAWS for s in (-1, 1)}):
                for pitch in PROFILE_PITCHES:
                    view = render_profile(head, float(yaw), float(pitch))
                    level = "level" if pitch == 0 else "pitch +-30"
                    for framing, (image, marks) in (("view", (view.image, view.landmarks)),
                                                    ("tight", studio_crop(view.image, view.landmarks, *TIGHT_CROP))):
                        row = _profiled_row(pipeline, image, marks, yaw)
                        rows.setdefault((framing, level, group, abs(yaw)), []).append(row)
                        by_photo.setdefault(name, {}).setdefault(_yaw_group(yaw), []).append(row)
    table: dict[str, dict[str, dict[str, float]]] = {}
    pooled: dict[str, dict[str, list[dict[str, float]]]] = {}
    for (framing, level, group, yaw), group_rows in sorted(rows.items()):
        key = f"{framing} / {level} / {group}"
        table.setdefault(key, {})[str(yaw)] = _profiled_summary(group_rows)
        pooled.setdefault(key, {}).setdefault(_yaw_group(yaw), []).extend(group_rows)
        pooled.setdefault(f"all / {group}", {}).setdefault(_yaw_group(yaw), []).extend(group_rows)
    for name, by in by_photo.items():
        pooled[f"all / {name} and its mirror image"] = by
    groups = {key: {g: _profiled_summary(r) for g, r in sorted(by.items())} for key, by in pooled.items()}
    return {"per_yaw": table, "per_group": groups}


YAW_GROUPS = ((0, 30), (30, 60), (60, 75), (75, 90))  # the |yaw| groups of issue 31's real-photo tables


def _yaw_group(yaw: float) -> str:
    """The YAW_GROUPS label of |yaw| ([lo, hi), the last one closed)."""
    for lo, hi in YAW_GROUPS:
        if lo <= abs(yaw) < hi or abs(yaw) == hi == YAW_GROUPS[-1][1]:
            return f"{lo}-{hi}"
    return f">{YAW_GROUPS[-1][1]}"


def _profiled_row(pipeline: FaceAnalyzer, image: np.ndarray, marks: np.ndarray, truth: float) -> dict[str, float]:
    """The net's yaw on the face holding the landmarks' centre (None when no face or no net pose)."""
    try:
        faces = pipeline.analyze(image).faces
    except Pose3DFRError:
        return {"found": 0}
    centre = marks[marks[:, 2] > 0.5, :2].mean(0)
    inside = [f for f in faces if f.bbox[0] <= centre[0] <= f.bbox[2] and f.bbox[1] <= centre[1] <= f.bbox[3]]
    if not inside or inside[0].pose_net is None:
        return {"found": 0}
    yaw = inside[0].pose_net.yaw
    error = (yaw - truth + 180.0) % 360.0 - 180.0
    flip = abs(error) > 90 or (abs(truth) >= 30 and np.sign(yaw) != np.sign(truth))
    return {"found": 1, "error": abs(error), "towards": error * (np.sign(truth) or 1.0), "flip": float(flip)}


def _profiled_summary(rows: list[dict[str, float]]) -> dict[str, float]:
    found = [r for r in rows if r["found"]]
    out = {"n": len(rows), "found": len(found)}
    if found:
        errors = np.array([r["error"] for r in found])
        out.update(median_error=round(float(np.median(errors)), 1),
                   median_towards=round(float(np.median([r["towards"] for r in found])), 1),
                   p90_error=round(float(np.percentile(errors, 90)), 1), flips=int(sum(r["flip"] for r in found)))
    return out


BOX_VARIANTS = {"YuNet's box": (1.0, 0.0), "box x 1.25": (1.25, 0.0), "box moved 10% to the back": (1.0, -0.1),
                "box moved 10% to the front": (1.0, 0.1)}


def box_sensitivity(estimator: HeadPoseEstimator, analyzer: FaceAnalyzer, yaws: tuple[int, ...] = (60, 90),
                    renders: int = 10) -> dict[str, dict[str, float]]:
    """Median yaw error towards the turn (negative: less turned) of the net's predict() on renders (identities
    1..`renders` of seed 0) and on the profiled photos, level, with YuNet's box changed as real detectors' boxes
    differ: looser, or moved towards the back or the front of the head. Shows what the net relies on."""
    from pose3dfr.data.synthetic import render_identity_view

    sources: dict[str, list] = {"renders": [], "profiled photos": []}
    for i in range(1, renders + 1):
        sources["renders"] += [(*render_identity_view(i, float(s * y), seed=0), s * y) for y in yaws for s in (-1, 1)]
    for name in PHOTO_NAMES:
        photo = load_image(PHOTOS_DIR / name)
        for img in (photo, np.ascontiguousarray(photo[:, ::-1])):
            head = fit_photo_head(img, analyzer.analyze(img).faces[0].landmarks)
            for yaw in (s * y for y in yaws for s in (-1, 1)):
                view = render_profile(head, float(yaw))
                sources["profiled photos"].append((view.image, view.landmarks, yaw))
    table: dict[str, dict[str, float]] = {}
    for source, items in sources.items():
        for image, marks, yaw in items:
            box, _ = face_box(analyzer.detect_boxes(image), marks)
            for variant, (scale, towards) in BOX_VARIANTS.items():
                moved = _moved_box(box, scale, towards * np.sign(yaw))
                error = (estimator.predict(image, moved[None])[0].yaw - yaw) * np.sign(yaw)
                table.setdefault(f"{source}, abs yaw {abs(yaw)}", {}).setdefault(variant, []).append(error)
    return {k: {v: round(float(np.median(e)), 1) for v, e in row.items()} for k, row in table.items()}


def _moved_box(box: np.ndarray, scale: float, shift: float) -> np.ndarray:
    """The box scaled about its centre and moved by `shift` box widths along x (+: where the nose points)."""
    centre = (box[:2] + box[2:4]) / 2 + np.array([shift * (box[2] - box[0]), 0.0])
    half = (box[2:4] - box[:2]) / 2 * scale
    return np.r_[centre - half, centre + half]


def speed(estimator: HeadPoseEstimator, runs: int = 50) -> float:
    """Median ms of predict() for one face (crop + net on the crop and its mirror), 1 CPU thread."""
    image = load_image(PHOTOS_DIR / "obama.jpg")
    box = np.array([[100.0, 100.0, 300.0, 300.0]])
    estimator.predict(image, box)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        estimator.predict(image, box)
        times.append((time.perf_counter() - t) * 1000)
    return round(statistics.median(times), 2)


def profiled_markdown(results: dict) -> str:
    lines = ["| framing / pitch / photos | abs yaw | n | found | median abs error | median error towards the turn | "
             "90th pct error | flips |", "|---|---|---|---|---|---|---|---|"]
    for key, rows in list(results["per_group"].items()) + list(results["per_yaw"].items()):
        for yaw, e in rows.items():
            lines.append(f"| {key} | {yaw} | {e['n']} | {e['found']} | {e.get('median_error', '-')} | "
                         f"{e.get('median_towards', '-')} | {e.get('p90_error', '-')} | {e.get('flips', '-')} |")
    return "\n".join(lines)


def sensitivity_markdown(table: dict) -> str:
    variants = list(BOX_VARIANTS)
    lines = ["| images | " + " | ".join(variants) + " |", "|---" * (len(variants) + 1) + "|"]
    lines += [f"| {key} | " + " | ".join(str(row[v]) for v in variants) + " |" for key, row in table.items()]
    return "\n".join(lines)


def markdown(table: dict, photo: dict, ms: float) -> str:
    lines = ["| abs yaw | n | yaw MAE | pitch MAE | roll MAE | landmark err / face | visibility acc | YuNet missed "
             "| MediaPipe yaw MAE | MediaPipe pitch MAE | MediaPipe roll MAE | MediaPipe missed |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for yaw, e in table.items():
        lines.append(f"| {yaw} | {e['n']} | {e['yaw']} | {e['pitch']} | {e['roll']} | {e['landmark']} | "
                     f"{e['visibility']} | {e['fallback']} | {e.get('mp_yaw', '-')} | {e.get('mp_pitch', '-')} | "
                     f"{e.get('mp_roll', '-')} | {e.get('mp_missed', '-')} |")
    lines += ["", "| photo | ours yaw | MediaPipe yaw | abs diff | ours pitch | MediaPipe pitch | ours roll | MediaPipe roll |",
              "|---|---|---|---|---|---|---|---|"]
    for name, e in photo.items():
        lines.append(f"| {name} | {e['ours_yaw']} | {e['mp_yaw']} | {e['yaw_diff']} | {e['ours_pitch']} | "
                     f"{e['mp_pitch']} | {e['ours_roll']} | {e['mp_roll']} |")
    lines += ["", f"predict() for one face, 1 CPU thread: median {ms} ms"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="synthetic benchmark root (manifest.json with splits)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--checkpoint", default=str(HEADPOSE_WEIGHTS))
    parser.add_argument("--identities", type=int, default=None, help="first N identities of the split (default: all)")
    parser.add_argument("--no-mediapipe", action="store_true", help="skip MediaPipe's pose on the synthetic views")
    parser.add_argument("--no-profiled", action="store_true", help="skip the profiled real photos")
    parser.add_argument("--profiled-only", action="store_true", help="only the profiled real photos (no --data needed)")
    parser.add_argument("--json", default=None, help="write the results here too")
    parser.add_argument("--record", action="store_true",
                        help="also store the results (and this command) in the checkpoint's .json as extra.evaluation")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    estimator = HeadPoseEstimator.load(args.checkpoint)
    analyzer = FaceAnalyzer(DetectorConfig(headpose_weights=None))  # MediaPipe's own pose, never the net's
    command = command_line("headpose_eval", argv)
    results: dict = {"command": command}
    if not args.profiled_only:
        if not args.data:
            parser.error("--data is required (or --profiled-only)")
        table = synthetic(Path(args.data), args.split, estimator, analyzer, args.identities, not args.no_mediapipe)
        photo = photos(estimator, analyzer)
        ms = speed(estimator)
        print(markdown(table, photo, ms))
        results.update(synthetic=table, photos=photo, ms_per_face=ms, split=args.split,
                       benchmark_seed=json.loads((Path(args.data) / "manifest.json").read_text())["seed"])
    if not args.no_profiled:
        results["profiled"] = profiled(estimator, analyzer)
        print("\n" + profiled_markdown(results["profiled"]))
        results["box_sensitivity"] = box_sensitivity(estimator, analyzer)
        print("\nMedian yaw error towards the turn with the box changed:\n" +
              sensitivity_markdown(results["box_sensitivity"]))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    if args.record:
        _, meta_path = checkpoint_paths(args.checkpoint)
        meta = json.loads(meta_path.read_text())
        evaluation = meta.setdefault("extra", {}).setdefault("evaluation", {})
        if args.profiled_only:  # keep the synthetic results of an earlier full run
            evaluation.update(profiled=results["profiled"], box_sensitivity=results["box_sensitivity"],
                              profiled_command=command)
        else:
            meta["extra"]["evaluation"] = results
        meta_path.write_text(json.dumps(meta, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
