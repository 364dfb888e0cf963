"""How close the pipeline's chip of a face comes to the oracle's (ground-truth landmark) chip, per |yaw|.

    python -m benchmarks.crop_agreement --data data/synth200 [--split test] [--template dlib]
        [--out docs/benchmarks.md] [--json docs/crop_agreement.json]

For every render of the split with a cached pipeline detection (`pose3dfr eval --align pipeline` builds the
cache), three chips: the oracle's (`align_face` on the ground-truth landmarks), the pipeline's
(`align_detection`: five_point near frontal, pose_fit from the head-pose net's pose and landmarks beyond) and
the YuNet square (`detector_box` where the pipeline would not use five points: the rule before pose_fit).
Per chip against the oracle's: the scale ratio (median and interquartile range), the offset of the oracle chip's
centre (standard deviation over faces, in chip sides), and the share of the visible ground-truth landmarks inside
the chip. Writes the CROP_AGREEMENT section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from benchmarks.harness import command_line

SECTION = "CROP_AGREEMENT"
CROPS = ("pipeline", "detector_box")  # compared with the oracle's chip; "oracle" itself only in the inside table


def crop_stats(matrix: np.ndarray, oracle: np.ndarray, visible: np.ndarray, size: int) -> tuple[float, ...]:
    """(scale ratio, centre offset x, y in chip sides, share of visible landmarks inside) of one chip."""
    from pose3dfr.face.align import transform_points

    centre = np.linalg.inv(np.vstack([oracle, [0, 0, 1]])) @ np.array([size / 2, size / 2, 1.0])
    moved = matrix @ centre
    inside = transform_points(visible, matrix)
    share = float(np.all((inside >= 0) & (inside <= size), axis=1).mean()) if len(visible) else float("nan")
    return (float(np.hypot(*matrix[0, :2]) / np.hypot(*oracle[0, :2])), (moved[0] - size / 2) / size,
            (moved[1] - size / 2) / size, share)


def run(args: argparse.Namespace) -> dict[str, Any]:
    from pose3dfr.eval.end_to_end import gt_landmarks, open_split

    from pose3dfr.data.detections import pipeline_box
    from pose3dfr.data.facescape import read_image
    from pose3dfr.eval.evaluate import pipeline_detections
    from pose3dfr.face.align import TEMPLATES, align_detection, alignment_matrix

    dataset = open_split(args.data, args.split, args.max_identities)
    detections = pipeline_detections(dataset, range(len(dataset.records)))
    size = TEMPLATES[args.template].size
    rows: dict[int, dict[str, list]] = {}
    for record in dataset.records:
        d = detections.get(record.path)
        if d is None:
            continue
        truth = gt_landmarks(record)
        oracle, _ = alignment_matrix(truth[:, :2], args.template, size)
        visible = truth[truth[:, 2] > 0.5, :2]
        image = read_image(record.path)
        pipeline = align_detection(image, d.landmarks, pipeline_box(d), args.template, size, d.prediction)
        # the rule before pose_fit: the same images aligned as if the head-pose net had given nothing
        square = align_detection(image, d.landmarks, pipeline_box(d), args.template, size).matrix
        row = rows.setdefault(int(round(abs(record.yaw))), {name: [] for name in (*CROPS, "oracle")})
        row["oracle"].append(crop_stats(oracle, oracle, visible, size))
        row["pipeline"].append(crop_stats(pipeline.matrix, oracle, visible, size))
        row["detector_box"].append(crop_stats(square, oracle, visible, size))
    out: dict[str, Any] = {"split": args.split, "template": args.template, "yaws": {}}
    for yaw in sorted(rows):
        out["yaws"][str(yaw)] = {}
        for name, values in rows[yaw].items():
            a = np.array(values)
            q75, q25 = np.percentile(a[:, 0], [75, 25])
            out["yaws"][str(yaw)][name] = {
                "faces": len(a), "scale_median": float(np.median(a[:, 0])), "scale_iqr": float(q75 - q25),
                "centre_sd_x": float(a[:, 1].std()), "centre_sd_y": float(a[:, 2].std()),
                "inside": float(np.nanmean(a[:, 3]))}
    return out


def markdown(results: dict[str, Any], command: str) -> str:
    yaws = list(results["yaws"])
    head = "| crop | " + " | ".join(f"{y}°" for y in yaws) + " |\n|---|" + "---|" * len(yaws) + "\n"

    def table(title: str, key: str, fmt: str, scale: float = 1.0, crops: Sequence[str] = CROPS) -> str:
        body = "".join(f"| {name} | " + " | ".join(fmt % (results["yaws"][y][name][key] * scale) for y in yaws)
                       + " |\n" for name in crops)
        return f"### {title}\n\n{head}{body}\n"

    faces = results["yaws"][yaws[0]]["pipeline"]["faces"] if yaws else 0
    return (f"## Crop agreement: the pipeline's chip against the ground-truth landmark chip\n\n"
            f"Command: `{command}` (split `{results['split']}`, template `{results['template']}`, {faces} faces at "
            f"{yaws[0] if yaws else '-'}° and the like per yaw). `pipeline`: five_point near frontal, pose_fit (the "
            "head-pose net's pose and landmarks) beyond; `detector_box`: the YuNet square where five points are not "
            "used (the rule before pose_fit). 1.00 scale and 0 spread would be the oracle's chip itself.\n\n"
            + table("Scale against the oracle chip: interquartile range", "scale_iqr", "%.3f")
            + table("Scale against the oracle chip: median", "scale_median", "%.3f")
            + table("Centre offset, standard deviation (% of the chip side), horizontal", "centre_sd_x", "%.1f", 100)
            + table("Centre offset, standard deviation (% of the chip side), vertical", "centre_sd_y", "%.1f", 100)
            + table("Visible ground-truth landmarks inside the chip (%)", "inside", "%.1f", 100, (*CROPS, "oracle"))
            + "At 45° the pipeline and the oracle may choose different rules (five points or a box: the landmarker's "
            "and the ground truth's eye ratio fall on either side of the switch), hence that column's spread.\n")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--template", default="dlib", choices=("dlib", "arcface"))
    parser.add_argument("--max-identities", type=int, default=None)
    parser.add_argument("--out", default="docs/benchmarks.md")
    parser.add_argument("--json", default="docs/crop_agreement.json")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    from pose3dfr.eval.doc_sections import write_section

    args = parse_args(argv)
    results = run(args)
    command = command_line("crop_agreement", argv)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    if args.out:
        write_section(Path(args.out), SECTION, markdown(results, command.strip()))
    print(markdown(results, command.strip()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
