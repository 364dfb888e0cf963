"""Embedding latency of the 2D network in torch vs onnxruntime (Verifier backend="torch" / "onnx"), same run.

    python -m benchmarks.bench_onnx [--checkpoint default] [--threads 2] [--repeats 20] [--json out.json]

Both run the same exported graph input (B x 3 x S x S float32 in [0, 1]) with the same thread count;
medians of `repeats` calls after a warm-up, at batch 1 and 32. Also the largest |difference| of the
embeddings on that input.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from benchmarks.harness import report, wall_times_ms

BATCHES = (1, 32)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default="default")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)

    import torch

    from pose3dfr.inference.onnx_export import onnx_bytes
    from pose3dfr.inference.onnx_runtime import OnnxEmbedder
    from pose3dfr.models.io import load_checkpoint

    torch.set_num_threads(args.threads)
    model, _, name = load_checkpoint(args.checkpoint)
    onnx = OnnxEmbedder(onnx_bytes(model), threads=args.threads)
    size = int(model.backbone.input_size)
    results = {"checkpoint": name, "threads": args.threads, "input_size": size, "batches": {}}
    for batch in BATCHES:
        x = torch.from_numpy(np.random.default_rng(batch).random((batch, 3, size, size), dtype=np.float32))

        def run_torch():
            with torch.inference_mode():
                return model.embed(x).embeddings

        torch_ms = wall_times_ms(run_torch, args.repeats)
        onnx_ms = wall_times_ms(lambda: onnx.run(x.numpy()), args.repeats)
        diff = float(np.abs(run_torch().numpy() - onnx.run(x.numpy())[0]).max())
        results["batches"][batch] = {"torch_ms": float(np.median(torch_ms)), "onnx_ms": float(np.median(onnx_ms)),
                                     "max_abs_diff": diff}
        print(f"batch {batch}: torch {np.median(torch_ms):.1f} ms, onnx {np.median(onnx_ms):.1f} ms, "
              f"max |diff| {diff:.1e}", flush=True)
    report(results, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
