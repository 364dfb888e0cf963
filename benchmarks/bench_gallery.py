"""1:N gallery speed: build time and exact top-10 latency on a large random gallery, the approximate indexes'
recall against latency, and enrolment throughput (photos/s, detection included) on real photos.

    python benchmarks/bench_gallery.py [--size 1000000] [--dim 128] [--threads 2] [--ann-size 1000000]
        [--queries 200] [--enrol-repeats 4] [--json results.json]

The gallery is N random unit vectors (one identity each); queries are noisy copies of gallery vectors
(cosine ~0.7 with their source, like a genuine probe), so "rank-1" asks whether the source comes first.
Random vectors have no cluster structure: the worst case for IVF/HNSW, so their recall here is a floor.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a clone without installing
sys.path.insert(0, str(Path(__file__).resolve().parent))

from timing import wall_times_ms  # noqa: E402

QUERY_NOISE = 1.0  # noise norm relative to the unit source: cosine ~ 1/sqrt(2) ~ 0.7 with it
IVF_PROBES = (8, 32, 128)  # cells visited per query, swept
HNSW_EF = (32, 128, 512)  # beam widths, swept


def random_unit(n: int, dim: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim), dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def noisy_queries(gallery: np.ndarray, count: int, seed: int, among: int) -> tuple[np.ndarray, np.ndarray]:
    """(Q x D queries, their Q source rows, drawn from the first `among` rows)."""
    rng = np.random.default_rng(seed)
    sources = rng.choice(min(among, len(gallery)), count, replace=False)
    noise = random_unit(count, gallery.shape[1], seed + 1) * QUERY_NOISE
    q = gallery[sources] + noise
    return q / np.linalg.norm(q, axis=1, keepdims=True), sources


def index_benchmark(kind: str, vectors: np.ndarray, queries: np.ndarray, sources: np.ndarray,
                    exact_top: list[list[str]] | None, sweep: tuple[int, ...] = (), repeats: int = 100
                    ) -> dict:
    from pose3dfr.inference.gallery import Gallery, IndexConfig

    names = [str(i) for i in range(len(vectors))]
    start = time.perf_counter()
    gallery = Gallery.from_embeddings(vectors, names, checkpoint="bench", weights_sha256="0" * 64,
                                      config=IndexConfig(kind=kind))
    build_s = time.perf_counter() - start
    rows = []
    for setting in sweep or (None,):
        inner = __import__("faiss").downcast_index(gallery._index.index)
        if kind == "hnsw":
            inner.hnsw.efSearch = setting
        elif kind == "ivf":
            inner.nprobe = setting
        top = [[m.name for m in r] for r in gallery.search(queries, 10)]
        it = iter(range(10 ** 9))
        cpu_start = time.process_time()
        times = wall_times_ms(lambda: gallery.search(queries[next(it) % len(queries)][None], 10), repeats, warmup=0)
        cpu_ms = (time.process_time() - cpu_start) * 1000.0 / repeats  # CPU time per query, all threads
        rank1 = float(np.mean([t[0] == str(s) for t, s in zip(top, sources)]))
        recall = None if exact_top is None else float(np.mean([len(set(t) & set(e)) / 10 for t, e in zip(top, exact_top)]))
        rows.append({"setting": setting, "median_ms": float(np.median(times)), "p90_ms": float(np.percentile(times, 90)),
                     "cpu_ms_per_query": cpu_ms,
                     "rank1": rank1, "recall_at_10": recall, "top": top})
        print(f"  {kind} {setting}: median {rows[-1]['median_ms']:.2f} ms (CPU {cpu_ms:.2f} ms), rank-1 {rank1:.3f}, recall@10 {recall}",
              flush=True)
    out = {"kind": kind, "size": len(vectors), "build_s": build_s, "rows": rows}
    if kind == "flat":
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            gallery.save(tmp)
            out["save_s"] = time.perf_counter() - start
            out["disk_mb"] = sum(p.stat().st_size for p in Path(tmp).iterdir()) / 2 ** 20
            start = time.perf_counter()
            Gallery.load(tmp)
            out["load_s"] = time.perf_counter() - start
    print(f"  {kind}: built in {build_s:.1f} s", flush=True)
    return out


def exact_top(vectors: np.ndarray, queries: np.ndarray) -> list[list[str]]:
    """The exact top-10 names of each query (the reference for recall@10)."""
    from pose3dfr.inference.gallery import Gallery

    gallery = Gallery.from_embeddings(vectors, [str(i) for i in range(len(vectors))], checkpoint="bench",
                                      weights_sha256="0" * 64)
    return [[m.name for m in r] for r in gallery.search(queries, 10)]


def enrol_benchmark(repeats: int) -> dict:
    """Photos/s of Gallery.add_photos (load, detect, align, embed, add) on the shipped photos with one face."""
    from pose3dfr.inference.gallery import Gallery
    from pose3dfr.inference.verifier import Verifier
    from pose3dfr.paths import PHOTOS_DIR

    verifier = Verifier.from_pretrained("default")
    photos = [PHOTOS_DIR / n for n in ("obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg", "astronaut.png")]
    items = [(p.stem, p) for _ in range(repeats) for p in photos]
    gallery = Gallery.for_verifier(verifier)
    gallery.add_photos(verifier, items[:2])  # warm-up: detector and model loaded
    start = time.perf_counter()
    report = gallery.add_photos(verifier, items)
    seconds = time.perf_counter() - start
    return {"photos": len(items), "seconds": seconds, "photos_per_s": len(items) / seconds,
            "failures": len(report.failures)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--ann-size", type=int, default=1_000_000, help="gallery size for the HNSW/IVF rows (0: skip)")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--enrol-repeats", type=int, default=4, help="passes over the 5 shipped one-face photos (0: skip)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)

    import faiss
    import torch

    faiss.omp_set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    results: dict = {"threads": args.threads, "dim": args.dim, "cpu_count": os.cpu_count(), "faiss": faiss.__version__}
    vectors = random_unit(args.size, args.dim, seed=0)
    queries, sources = noisy_queries(vectors, args.queries, seed=1, among=args.ann_size or args.size)
    print(f"exact (flat), {args.size} x {args.dim}:", flush=True)
    flat = index_benchmark("flat", vectors, queries, sources, None)
    results["flat"] = flat
    if args.ann_size:
        ann = vectors[: args.ann_size]
        exact = flat["rows"][0]["top"] if args.ann_size == args.size else exact_top(ann, queries)
        for kind, sweep in (("ivf", IVF_PROBES), ("hnsw", HNSW_EF)):
            print(f"{kind}, {args.ann_size}:", flush=True)
            results[kind] = index_benchmark(kind, ann, queries, sources, exact, sweep)
    del vectors
    if args.enrol_repeats:
        results["enrol"] = enrol_benchmark(args.enrol_repeats)
        print(f"enrolment: {results['enrol']['photos_per_s']:.2f} photos/s", flush=True)
    for part in ("flat", "ivf", "hnsw"):
        for row in results.get(part, {}).get("rows", []):
            row.pop("top")
    print(json.dumps(results, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
