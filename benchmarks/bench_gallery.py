"""1:N gallery speed: build time and exact top-10 latency on large galleries (the plain flat scan against the
certified int8 pre-scan, random and clustered templates), the approximate indexes' recall against latency, and
enrolment throughput (photos/s, detection included) on real photos.

    python -m benchmarks.bench_gallery [--size 1000000] [--dim 128] [--threads 1] [--ann-size 1000000]
        [--clustered 100000] [--queries 200] [--enrol-repeats 4] [--json results.json]

The random gallery is N random unit vectors (one identity each); the clustered one is N / 10 identities x 10 noisy
templates (cosine ~0.8 with their identity's centre), so every probe has near-duplicate candidates. Queries are
noisy copies of gallery vectors (cosine ~0.7 with their source, like a genuine probe), so "rank-1" asks whether the
source comes first. Random vectors have no cluster structure: the worst case for IVF/HNSW, so their recall is a floor.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.harness import report, wall_times_ms

QUERY_NOISE = 1.0  # noise norm relative to the unit source: cosine ~ 1/sqrt(2) ~ 0.7 with it
IVF_PROBES = (8, 32, 128)  # cells visited per query, swept
HNSW_EF = (32, 128, 512)  # beam widths, swept
CLUSTER_NOISE = 0.75  # template noise norm around its identity's unit centre: cosine ~0.8 with it
TEMPLATES_PER_IDENTITY = 10  # clustered gallery: near-duplicates per identity


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


def clustered_unit(n: int, dim: int, per_identity: int, seed: int) -> np.ndarray:
    """n unit templates, per_identity consecutive ones per identity around a random unit centre."""
    centres = random_unit(n // per_identity, dim, seed)
    noise = random_unit(n // per_identity * per_identity, dim, seed + 1) * CLUSTER_NOISE
    x = np.repeat(centres, per_identity, axis=0) + noise
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def exact_benchmark(label: str, vectors: np.ndarray, names: list[str], queries: np.ndarray, repeats: int,
                    threads: int) -> dict:
    """Plain flat scan against the certified search on one gallery: build, latency, candidates, agreement, files."""
    import tempfile

    from pose3dfr.inference.gallery import Gallery
    from pose3dfr.inference.gallery_files import IndexConfig

    out: dict = {"data": label, "size": len(vectors), "identities": len(set(names))}
    tops = {}
    for mode, config in (("flat", IndexConfig(exact_min_size=len(vectors) + 1)), ("certified", IndexConfig(exact_min_size=1, exact_threads=threads))):  # any size
        start = time.perf_counter()
        gallery = Gallery.from_embeddings(vectors, names, checkpoint="bench", weights_sha256="0" * 64, config=config)
        row: dict = {"build_s": time.perf_counter() - start}
        tops[mode] = [[(m.name, m.score) for m in r] for r in gallery.search(queries, 10)]
        it = iter(range(10 ** 9))
        cpu_start = time.process_time()
        times = wall_times_ms(lambda: gallery.search(queries[next(it) % len(queries)][None], 10), repeats)
        row.update(median_ms=float(np.median(times)), p90_ms=float(np.percentile(times, 90)),
                   cpu_ms_per_query=(time.process_time() - cpu_start) * 1000.0 / (repeats + 2))
        if mode == "certified":
            k = 10 * gallery._most_templates  # templates Gallery.search asks for (an identity counts once)
            store = gallery._flat_rows()
            counts = [gallery._scan.search(store, q, k).candidates for q in queries]
            row.update(k_templates=k, candidates_median=float(np.median(counts)), candidates_max=int(max(counts)),
                       code_error=gallery._scan.error)
            with tempfile.TemporaryDirectory() as tmp:
                start = time.perf_counter()
                gallery.save(tmp)
                row["save_s"] = time.perf_counter() - start
                row["disk_mb"] = sum(p.stat().st_size for p in Path(tmp).iterdir()) / 2 ** 20
                start = time.perf_counter()
                Gallery.load(tmp)
                row["load_s"] = time.perf_counter() - start  # includes re-making the int8 codes
        out[mode] = row
        print(f"  {label} {mode}: built in {row['build_s']:.1f} s, median {row['median_ms']:.2f} ms "
              f"(p90 {row['p90_ms']:.2f}, CPU {row['cpu_ms_per_query']:.2f})", flush=True)
        del gallery
    names_of = {m: [[n for n, _ in r] for r in tops[m]] for m in tops}
    out["same_top10_names"] = float(np.mean([a == b for a, b in zip(names_of["flat"], names_of["certified"])]))
    out["max_score_diff"] = float(max(abs(sa - sb) for ra, rb in zip(tops["flat"], tops["certified"])
                                      for (_, sa), (_, sb) in zip(ra, rb)))
    out["top"] = names_of["flat"]
    print(f"  {label}: K' median {out['certified']['candidates_median']:.0f} max {out['certified']['candidates_max']}, "
          f"same top-10 as flat {out['same_top10_names']:.3f}, max score diff {out['max_score_diff']:.1e}", flush=True)
    return out


def index_benchmark(kind: str, vectors: np.ndarray, queries: np.ndarray, sources: np.ndarray,
                    exact_top: list[list[str]] | None, sweep: tuple[int, ...] = (), repeats: int = 100
                    ) -> dict:
    from pose3dfr.inference.gallery import Gallery
    from pose3dfr.inference.gallery_files import IndexConfig

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
    print(f"  {kind}: built in {build_s:.1f} s", flush=True)
    return {"kind": kind, "size": len(vectors), "build_s": build_s, "rows": rows}


def exact_top(vectors: np.ndarray, queries: np.ndarray) -> list[list[str]]:
    """The exact top-10 names of each query (the reference for recall@10)."""
    from pose3dfr.inference.gallery import Gallery

    gallery = Gallery.from_embeddings(vectors, [str(i) for i in range(len(vectors))], checkpoint="bench",
                                      weights_sha256="0" * 64)
    return [[m.name for m in r] for r in gallery.search(queries, 10)]


def enrol_benchmark(repeats: int) -> dict:
    """Photos/s of identify.enrol_photos (load, detect, align, embed, add) on the shipped photos with one face."""
    from pose3dfr.inference.identify import enrol_photos, new_gallery
    from pose3dfr.inference.verifier import Verifier
    from pose3dfr.paths import PHOTOS_DIR

    verifier = Verifier.from_pretrained("default")
    photos = [PHOTOS_DIR / n for n in ("obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg", "astronaut.png")]
    items = [(p.stem, p) for _ in range(repeats) for p in photos]
    gallery = new_gallery(verifier)
    enrol_photos(gallery, verifier, items[:2])  # warm-up: detector and model loaded
    start = time.perf_counter()
    report = enrol_photos(gallery, verifier, items)
    seconds = time.perf_counter() - start
    return {"photos": len(items), "seconds": seconds, "photos_per_s": len(items) / seconds,
            "failures": len(report.failures)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1, help="FAISS/onnxruntime threads (1: fastest at batch 1)")
    parser.add_argument("--ann-size", type=int, default=1_000_000, help="gallery size for the HNSW/IVF rows (0: skip)")
    parser.add_argument("--clustered", type=int, default=100_000,
                        help=f"identities of the clustered exact gallery, x {TEMPLATES_PER_IDENTITY} templates (0: skip)")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=100, help="timed batch-1 queries per exact search")
    parser.add_argument("--enrol-repeats", type=int, default=4, help="passes over the 5 shipped one-face photos (0: skip)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)

    import faiss
    import torch

    faiss.omp_set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    results: dict = {"threads": args.threads, "dim": args.dim, "cpu_count": os.cpu_count(), "faiss": faiss.__version__,
                     "load_average": os.getloadavg()}
    vectors = random_unit(args.size, args.dim, seed=0)
    queries, sources = noisy_queries(vectors, args.queries, seed=1, among=args.ann_size or args.size)
    print(f"exact, random, {args.size} x {args.dim}:", flush=True)
    results["exact_random"] = exact_benchmark("random", vectors, [str(i) for i in range(len(vectors))], queries,
                                              args.repeats, args.threads)
    if args.clustered:
        n = args.clustered * TEMPLATES_PER_IDENTITY
        clustered = clustered_unit(n, args.dim, TEMPLATES_PER_IDENTITY, seed=2)
        names = [str(i // TEMPLATES_PER_IDENTITY) for i in range(n)]
        cq, _ = noisy_queries(clustered, args.queries, seed=3, among=n)
        print(f"exact, clustered, {args.clustered} identities x {TEMPLATES_PER_IDENTITY} x {args.dim}:", flush=True)
        results["exact_clustered"] = exact_benchmark("clustered", clustered, names, cq, args.repeats, args.threads)
        del clustered
    if args.ann_size:
        ann = vectors[: args.ann_size]
        exact = results["exact_random"]["top"] if args.ann_size == args.size else exact_top(ann, queries)
        for kind, sweep in (("ivf", IVF_PROBES), ("hnsw", HNSW_EF)):
            print(f"{kind}, {args.ann_size}:", flush=True)
            results[kind] = index_benchmark(kind, ann, queries, sources, exact, sweep)
    del vectors
    if args.enrol_repeats:
        results["enrol"] = enrol_benchmark(args.enrol_repeats)
        print(f"enrolment: {results['enrol']['photos_per_s']:.2f} photos/s", flush=True)
    for part in ("exact_random", "exact_clustered"):
        results.get(part, {}).pop("top", None)
    for part in ("ivf", "hnsw"):
        for row in results.get(part, {}).get("rows", []):
            row.pop("top")
    report(results, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
