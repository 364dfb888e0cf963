"""Is the heatmap faithful? The deletion test of pose3dfr.eval.attention per |yaw| bin, for several checkpoints.

    python -m benchmarks.attention_faithfulness --data data/synth200 --split test --max-identities 10 \
        --checkpoints default,dlib-pretrained,checkpoints/default [--photos assets/photos] [--every-k] \
        [--json runs/faithfulness.json] [--out docs/attention.md]

For each checkpoint and each chip (every yaw of one expression of the first --max-identities identities of the
split, aligned as the Verifier aligns a photo; with --photos, the largest face of each photo there): occlude the
k cells the heatmap ranks highest (grey) and measure 1 - cosine to the unoccluded embedding, against the map the
app drew before (attention received, or the feature norm without attention) and k random cells; the area under
each curve over k / N (AUC; higher: the embedding moves sooner). k = 1..N with --every-k, else 1, N and a few
fractions of N (pose3dfr.eval.attention.DELETION_FRACTIONS). Also the heatmap's entropy, whether its centre of
mass lies inside the face (the hull of the ground-truth landmarks for renders, of MediaPipe's for photos), its
positive mass on the face, and the raw attention's sink share. Prints a Markdown table; --out writes it into the
ATTENTION_FAITHFULNESS section of that page. --variants adds rankings the heatmap's design was chosen against:
zero-reference (shares measured from a zero map instead of the blank grey chip's), one-point (no integration
along the path: differs only for dlib's ReLU head) and occlusion (each cell's own occlusion effect, N more
embeddings per chip: what a map could reach by brute force).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Sequence

from benchmarks.harness import command_line

SECTION = "ATTENTION_FAITHFULNESS"
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png")


def zero_reference(model, image):
    return model.heatmaps(image[None], blank_reference=False)[0]


def one_point(model, image):
    return model.heatmaps(image[None], steps=1)[0]


def occlusion(model, image):
    """1 - cosine of the embedding with each single cell greyed (N embeddings)."""
    import torch

    from pose3dfr.eval.attention import deletion_embedder, embed_batches, occluded

    embed = deletion_embedder(model)
    cells = model.backbone.feature_size ** 2
    orders = torch.stack([torch.arange(cells).roll(-j) for j in range(cells)])  # row j starts with cell j
    return 1.0 - embed_batches(embed, occluded(image, orders, [1], model.cell_grid)) @ embed(image[None])[0]


VARIANTS = {"zero-reference": zero_reference, "one-point": one_point, "occlusion": occlusion}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=None, help="synthetic benchmark root (e.g. data/synth200)")
    p.add_argument("--split", default="test", help="split of the benchmark (default: test)")
    p.add_argument("--checkpoints", default="default", help="comma-separated checkpoint names or paths")
    p.add_argument("--max-identities", type=int, default=10, help="first N identities of the split (default 10)")
    p.add_argument("--photos", default=None, help="also a folder of photos (e.g. assets/photos)")
    p.add_argument("--every-k", action="store_true", help="k = 1..N (about 8x slower) instead of a few fractions")
    p.add_argument("--json", default=None, help="write every chip's curves and statistics here")
    p.add_argument("--out", default=None, help="write the table into this Markdown page's section")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--variants", default="", help=f"comma-separated extra rankings: {', '.join(VARIANTS)}")
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from pose3dfr.eval.attention import summarise
    from pose3dfr.eval.attention_data import dataset_faces, photo_faces, split_identities
    from pose3dfr.eval.attention_report import faithfulness
    from pose3dfr.inference.verifier import Verifier

    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.data and not args.photos:
        raise SystemExit("give --data, --photos or both")
    identities = split_identities(args.data, args.split, args.max_identities) if args.data else []
    photos = sorted(p for p in Path(args.photos).iterdir() if p.suffix.lower() in PHOTO_SUFFIXES) \
        if args.photos else []
    extra = {v: VARIANTS[v] for v in filter(None, args.variants.split(","))}
    results: dict[str, Any] = {}
    for name in args.checkpoints.split(","):
        verifier = Verifier.from_pretrained(name)
        sources = {}
        if identities:
            sources["renders"] = dataset_faces(verifier, args.data, identities)
        if photos:
            sources["photos"] = photo_faces(verifier, photos)
        for source, faces in sources.items():
            reports = faithfulness(verifier, faces, args.every_k, extra=extra,
                                   progress=lambda r: print(f"  {name} {r.name}: AUC heatmap {r.auc['heatmap']:.3f} "
                                                            f"random {r.auc['random']:.3f}", flush=True))
            results[f"{name} ({source})"] = {"summary": summarise(reports), "chips": [r.to_dict() for r in reports]}
    return results


def main(argv: Sequence[str] | None = None) -> int:
    from pose3dfr.eval.attention_report import summary_table

    args = parse_args(argv)
    results = run(args)
    table = summary_table({name: r["summary"] for name, r in results.items()},
                          [v for v in args.variants.split(",") if v])
    print(table)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=1))
    if args.out:
        from pose3dfr.eval.doc_sections import write_section

        command = command_line("attention_faithfulness", argv)
        write_section(Path(args.out), SECTION, f"Measured by `{command}`:\n\n{table}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
