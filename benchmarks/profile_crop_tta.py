"""Does averaging the embedding over jittered pipeline crops help profile probes? (issue 17, tried, not shipped)

    python -m benchmarks.profile_crop_tta --data data/synth200 [--checkpoint default]

Test identities: each identity's frontal neutral render enrols (its pipeline crop); every probe at |yaw| 60, 75
and 90 is embedded from its pipeline crop alone ("base") and as the mean over five crops ("jitter5": the crop,
scaled by 0.95 and 1.05 and shifted by +-3% of the chip side about its centre). TAR at 1% FAR uses the test
impostors' own 99% quantile per yaw (a comparison of the two, not a calibrated rate).
"""

from __future__ import annotations

import argparse
from typing import Sequence

import cv2
import numpy as np

from pose3dfr.eval.end_to_end import enrolment_mask, open_split

JITTERS = {"base": [(1.0, 0.0)],  # (scale, horizontal shift in chip sides)
           "jitter5": [(1.0, 0.0), (0.95, 0.0), (1.05, 0.0), (1.0, -0.03), (1.0, 0.03)]}
YAWS = (60, 75, 90)


def jittered(image: np.ndarray, matrix: np.ndarray, size: int, scale: float, shift: float) -> np.ndarray:
    """The chip of `matrix` (image -> chip, 2 x 3) scaled about the chip centre and shifted sideways."""
    c = (size - 1) / 2
    jitter = np.array([[scale, 0, (1 - scale) * c + shift * size], [0, scale, (1 - scale) * c]])
    return cv2.warpAffine(image, jitter @ np.vstack([matrix, [0, 0, 1]]), (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--checkpoint", default="default")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    import torch

    from pose3dfr.data.detections import pipeline_chip
    from pose3dfr.eval.evaluate import pipeline_detections
    from pose3dfr.inference.verifier import Verifier

    torch.set_num_threads(args.threads)
    verifier = Verifier.from_pretrained(args.checkpoint)
    size = verifier.input_size
    data = open_split(args.data, args.split, None)
    records = data.records
    detections = pipeline_detections(data, range(len(records)))
    enrol = enrolment_mask(records)
    identity = np.array([r.identity for r in records])
    yaw = np.round(np.abs([r.yaw for r in records]))

    def embed(chips: list[np.ndarray]) -> np.ndarray:
        with torch.inference_mode():
            batch = torch.from_numpy(np.stack(chips)).permute(0, 3, 1, 2).float() / 255.0
            e = verifier.model.embed(batch).embeddings.float().numpy()
        e = (e / np.linalg.norm(e, axis=1, keepdims=True)).mean(0)  # mean of unit vectors, then unit again
        return e / np.linalg.norm(e)

    enrolled = {}
    for i in np.flatnonzero(enrol):
        enrolled[identity[i]] = embed([pipeline_chip(data[i]["image"], detections.get(records[i].path),
                                                     verifier.template, size).image])
    for name, jitters in JITTERS.items():
        genuine: dict[int, list[float]] = {y: [] for y in YAWS}
        impostor: dict[int, list[float]] = {y: [] for y in YAWS}
        for i in np.flatnonzero(~enrol & np.isin(yaw, YAWS)):
            detection = detections.get(records[i].path)
            if detection is None:
                continue
            image = data[i]["image"]
            aligned = pipeline_chip(image, detection, verifier.template, size)
            e = embed([aligned.image if (s, dx) == (1.0, 0.0) else jittered(image, aligned.matrix, size, s, dx)
                       for s, dx in jitters])
            for other, reference in enrolled.items():
                (genuine if other == identity[i] else impostor)[int(yaw[i])].append(float(e @ reference))
        cells = []
        for y in YAWS:
            threshold = np.quantile(impostor[y], 0.99)
            cells.append(f"{y}: {100 * np.mean(np.asarray(genuine[y]) >= threshold):.1f}")
        print(f"{name}: TAR@1% (test impostors' quantile) " + ", ".join(cells), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
