"""Why a trained joint attention piles onto one cell: the attention sink of a checkpoint, measured.

    python -m benchmarks.attention_sink --checkpoint PATH [--data data/synth200 --identities 3] [--photos assets/photos]

For chips of renders (every yaw of the first --identities test identities, aligned as the Verifier aligns them),
photos, their mirror images, a uniform grey chip and a noise chip: the cell receiving most attention (the sink)
and its share; how much of the attention energies Q_i . K_j is one term per key shared by every query (the
variance of E_ij minus its row mean that the column means explain: near 1, every query ranks the keys alike);
the sink cell's key norm and feature norm against the chip's median cells; and the trunk's mean feature norm per
column of the grid (chips, and the grey chip). Needs a checkpoint with a 2D attention module.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

import numpy as np


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True, help="checkpoint name or path with a 2D attention module")
    p.add_argument("--data", default=None, help="synthetic benchmark root (test split)")
    p.add_argument("--identities", type=int, default=3, help="first N test identities (default 3)")
    p.add_argument("--photos", default=None, help="a folder of photos")
    return p.parse_args(argv)


def chips(verifier, args: argparse.Namespace) -> dict[str, np.ndarray]:
    """name -> S x S x 3 uint8 chip: renders, photos, a grey and a noise chip."""
    from pose3dfr.eval.attention_data import dataset_faces, photo_faces, split_identities

    out = {}
    if args.data:
        for face in dataset_faces(verifier, args.data, split_identities(args.data, "test", args.identities)):
            out[face.name] = face.chip
    if args.photos:
        photos = sorted(p for p in Path(args.photos).iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        out.update({face.name: face.chip for face in photo_faces(verifier, photos)})
    size = verifier.input_size
    out["grey chip"] = np.full((size, size, 3), 128, np.uint8)
    out["noise chip"] = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    import torch

    from pose3dfr.inference.verifier import Verifier

    args = parse_args(argv)
    verifier = Verifier.from_pretrained(args.checkpoint)
    model, attention = verifier.model, verifier.model.attention
    if attention is None:
        raise SystemExit(f"{args.checkpoint}: no attention module")
    named = chips(verifier, args)
    names = list(named) + [f"{n} (mirrored)" for n in named]
    images = torch.from_numpy(np.stack(list(named.values()))).permute(0, 3, 1, 2).float() / 255.0
    images = torch.cat([images, images.flip(-1)])
    key = "shared" if attention.shared_qk else "2d"
    with torch.inference_mode():
        z = model.backbone.trunk(images)  # B x C x H x W
        q = attention.query[key](z).flatten(2)  # B x d x N
        k = attention.key[key](z).flatten(2)
        energy = torch.bmm(q.transpose(1, 2), k) * attention.scale  # B x N x N
        received = torch.softmax(energy, -1).mean(1)  # B x N
    cells = z.shape[2]
    centred = energy - energy.mean(2, keepdim=True)  # each query's energies around their mean
    column = centred.mean(1, keepdim=True)  # the part every query shares, per key
    explained = (column ** 2).sum((1, 2)) * energy.shape[1] / (centred ** 2).sum((1, 2)).clamp_min(1e-12)  # B
    share, sink = received.max(1)
    key_norm, feature_norm = k.norm(dim=1), z.flatten(2).norm(dim=1)  # B x N
    print(f"{args.checkpoint}: gamma_2d {float(attention.gamma_of('2d').detach()):.3f}, grid {cells} x {cells}")
    print("| chip | sink (row, col) | sink share | energy variance shared by all queries | sink key norm / median | "
          "sink feature norm / median |\n|---|---|---|---|---|---|")
    for i, name in enumerate(names):
        j = int(sink[i])
        print(f"| {name} | {divmod(j, cells)} | {float(share[i]):.2f} | {float(explained[i]):.2f} | "
              f"{float(key_norm[i, j]):.2f} / {float(key_norm[i].median()):.2f} | "
              f"{float(feature_norm[i, j]):.2f} / {float(feature_norm[i].median()):.2f} |")
    columns = feature_norm.view(-1, cells, cells).mean(1)  # B x W: mean over rows
    grey = names.index("grey chip")
    print("mean feature norm per column (left to right), all chips:", [round(float(v), 2) for v in columns.mean(0)])
    print("mean feature norm per column, grey chip:", [round(float(v), 2) for v in columns[grey]])
    sinks = [divmod(int(j), cells)[1] for j in sink]
    print(f"sinks in column 0: {sinks.count(0)} of {len(sinks)} chips (mirrored ones included)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
