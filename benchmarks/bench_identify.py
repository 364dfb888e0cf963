"""1:N identification on held-out synthetic identities: rank-1 per probe yaw next to the verification TAR.

Every image goes through the real pipeline (Verifier: detection, alignment, embedding); a face not found
is a miss. Gallery: the frontal (|yaw| < 15) view of each identity's first expression, enrolled with
Gallery (exact index). Probes: every view of the other expressions, at every yaw. The TAR per |yaw| bin
is pose3dfr's verification protocol (pose3dfr.eval.peer_protocol) on the same embeddings. Also reports the
enrolment throughput on these renders (photos/s, detection included).

    pose3dfr synth --out data/synth200 --identities 200 --seed 0 --workers 2
    python -m benchmarks.bench_identify --data data/synth200 [--split test] [--checkpoint default]
        [--threads 2] [--max-identities N] [--json results.json]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict

import numpy as np

from benchmarks.harness import command_line, report
from pose3dfr.eval.config import EvalConfig
from pose3dfr.eval.metrics import far_key
from pose3dfr.eval.peer_protocol import load_benchmark, protocol_results
from pose3dfr.geometry import pose_bin

FAR = 0.01  # the headline verification operating point (TAR @ 1% FAR)
RANKS = (1, 5)


class _Cosine:
    """The `system` protocol_results needs: cosine of unit embeddings."""

    @staticmethod
    def similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return a @ b.T


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--checkpoint", default="default")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-identities", type=int, default=None)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)

    import torch
    from tqdm import tqdm

    from pose3dfr.inference.identify import new_gallery
    from pose3dfr.inference.verifier import Verifier

    torch.set_num_threads(args.threads)
    dataset, indices = load_benchmark(args.data, args.split, args.max_identities)
    records = [dataset.records[i] for i in indices]
    verifier = Verifier.from_pretrained(args.checkpoint)
    verifier.embed_photos([dataset[indices[0]]["image"]])  # warm-up: detector and model loaded
    start = time.perf_counter()
    with tqdm(total=len(indices), unit="photo", desc="embedding") as bar:
        embedded = verifier.embed_photos((dataset[i]["image"] for i in indices), progress=bar.update)
    seconds = time.perf_counter() - start

    first_expression = {}
    for r in records:
        first_expression.setdefault(r.identity_name, r.expression)  # records are sorted by expression
    config = EvalConfig()
    is_gallery = [r.expression == first_expression[r.identity_name] and abs(r.yaw) < config.frontal_max_yaw
                  for r in records]
    enrolled = [(r.identity_name, e) for r, e, g in zip(records, embedded, is_gallery) if g and e.error is None]
    gallery = new_gallery(verifier)
    gallery.add_embeddings(np.stack([e.embedding for _, e in enrolled]), [n for n, _ in enrolled])
    probes = [(r, e) for r, e in zip(records, embedded) if r.expression != first_expression[r.identity_name]]
    found = [(r, e) for r, e in probes if e.error is None]
    ranked = gallery.search(np.stack([e.embedding for _, e in found]), top_k=max(RANKS)) if found else []
    hits = {id(e): [m.name for m in result] for (_, e), result in zip(found, ranked)}

    per_yaw: dict[float, dict] = defaultdict(lambda: {"probes": 0, "no_face": 0, **{f"rank{k}": 0 for k in RANKS}})
    per_bin: dict[str, dict] = defaultdict(lambda: {"probes": 0, "no_face": 0, **{f"rank{k}": 0 for k in RANKS}})
    for r, e in probes:
        for row in (per_yaw[float(r.yaw)], per_bin[pose_bin(r.yaw, config.bin_edges)]):
            row["probes"] += 1
            row["no_face"] += e.error is not None
            names = hits.get(id(e), [])
            for k in RANKS:
                row[f"rank{k}"] += r.identity_name in names[:k]
    for table in (per_yaw, per_bin):
        for row in table.values():
            for k in RANKS:
                row[f"rank{k}"] /= row["probes"]
            row["no_face"] /= row["probes"]

    embeddings = [e.embedding for e in embedded]
    verification = protocol_results(_Cosine(), embeddings, [r.identity for r in records], [r.yaw for r in records],
                                    config)
    tar_key = f"tar_at_far_{far_key(FAR)}"
    results = {"command": command_line("bench_identify", argv),
               "checkpoint": verifier.name, "identities": len(first_expression), "images": len(records),
               "gallery_templates": len(gallery), "gallery_identities": len(gallery.names),
               "enrol_photos_per_s": len(records) / seconds, "threads": args.threads,
               "per_yaw": {f"{y:+.0f}": v for y, v in sorted(per_yaw.items())},
               "per_bin": {b: {**v, tar_key: verification["bins"].get(b, {}).get(tar_key)} for b, v in sorted(per_bin.items())},
               "verification_overall": verification["overall"]}
    report(results, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
