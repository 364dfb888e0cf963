"""The real-photo regression check: does a checkpoint still tell real people apart after training on renders?

The only real face photos that ship with a free licence (assets/NOTICE.md; nothing else was found in the
packages installable here) are three photographs of one person (obama, obama2, obama3) and one each of two
others (biden, astronaut). `32bit.png` and `obama_partial_face.jpg` repeat or crop obama.jpg and are left out.
To make the check less thin, each photograph also comes in the degradations real probes bring (a small
face, heavy JPEG, grey, a mirrored and a tilted head): same-person pairs are taken only between different
photographs, never between two versions of one photograph, so no pair is trivially easy.

Every pair is scored through the full Verifier pipeline and decided at the checkpoint's own threshold for
that pair (the checkpoint's ThresholdPolicy.decide_pair), exactly as `pose3dfr verify` would. AUC and margin
say how well the scores separate; the accept counts say how the threshold holds on real faces.
"""

from __future__ import annotations

import collections
import io
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image, ImageOps

from pose3dfr.eval.metrics import auc
from pose3dfr.paths import PHOTOS_DIR

# (file, person) of every distinct real photograph that ships.
PHOTOGRAPHS = (("obama.jpg", "obama"), ("obama2.jpg", "obama"), ("obama3.jpg", "obama"),
               ("biden.jpg", "biden"), ("astronaut.png", "collins"))
SMALL_FACE_SIDE = 256  # longest image side of the "small" version: faces of ~70-110 px, as in a group photo
JPEG_QUALITY = 20  # heavy compression, as a messaging app resends a photo
TILT_DEGREES = 15.0  # in-plane head roll the alignment must undo


def _small(image: Image.Image) -> Image.Image:
    scale = SMALL_FACE_SIDE / max(image.size)
    return image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.BILINEAR)


def _jpeg(image: Image.Image) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


VARIANTS: dict[str, Callable[[Image.Image], Image.Image]] = {
    "original": lambda image: image,
    "small": _small,
    "jpeg": _jpeg,
    "grey": lambda image: ImageOps.grayscale(image).convert("RGB"),
    "mirrored": ImageOps.mirror,
    "tilted": lambda image: image.rotate(TILT_DEGREES, resample=Image.BILINEAR, expand=True),
}


@dataclass(frozen=True)
class PhotoVersion:
    """One version of one photograph: what the check feeds the Verifier."""

    photo: str  # file name of the photograph
    person: str
    variant: str  # a key of VARIANTS

    @property
    def key(self) -> str:
        return f"{self.photo}:{self.variant}"


def photo_versions(variants: bool = True) -> list[PhotoVersion]:
    """Every (photograph, variant) the check uses; only the originals without `variants`."""
    names = list(VARIANTS) if variants else ["original"]
    return [PhotoVersion(photo, person, variant) for photo, person in PHOTOGRAPHS for variant in names]


def load_version(version: PhotoVersion, photos_dir: Path = PHOTOS_DIR) -> np.ndarray:
    """The H x W x 3 uint8 RGB pixels of one version."""
    with Image.open(photos_dir / version.photo) as image:
        return np.asarray(VARIANTS[version.variant](image.convert("RGB")), dtype=np.uint8)


def check_pairs(versions: list[PhotoVersion]) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """(same-person, different-person) index pairs; same-person pairs join different photographs only."""
    same, different = [], []
    for i, j in itertools.combinations(range(len(versions)), 2):
        a, b = versions[i], versions[j]
        if a.person != b.person:
            different.append((i, j))
        elif a.photo != b.photo:
            same.append((i, j))
    return same, different


def real_photo_check(verifier: Any, far: float = 1e-2, variants: bool = True,
                     photos_dir: Path = PHOTOS_DIR) -> dict[str, Any]:
    """Score every pair of the check with `verifier` (a pose3dfr Verifier) and decide it at its own threshold.

    Returns AUC, margin (lowest same-person minus highest different-person score; > 0 = every pair ordered
    right), relative_margin (margin over the score range: comparable across models whose cosines spread
    differently), the same/different-person pairs accepted, which threshold decided how many pairs, and every
    pair's score.
    A photo in which no face is found counts as a rejection of each of its pairs and is listed in
    faces_missed; AUC and margin are over the pairs whose two faces were found.
    """
    versions = photo_versions(variants)
    embedded = verifier.embed_photos([load_version(v, photos_dir) for v in versions])
    same_all, different_all = check_pairs(versions)

    found = [e.embedding is not None for e in embedded]
    same = [(i, j) for i, j in same_all if found[i] and found[j]]
    different = [(i, j) for i, j in different_all if found[i] and found[j]]

    def decision(i: int, j: int):
        a, b = embedded[i], embedded[j]
        return verifier.policy.decide_pair(far, a.embedding, b.embedding, a.yaw, b.yaw, probe_bin=b.bin)

    def score(i: int, j: int) -> float:
        return decision(i, j).score

    sources: collections.Counter = collections.Counter()  # which threshold decided how many pairs

    def accepted(i: int, j: int) -> bool:
        decided = decision(i, j)
        sources[decided.threshold.source] += 1
        return decided.match

    g = np.array([score(i, j) for i, j in same])
    d = np.array([score(i, j) for i, j in different])
    span = float(max(g.max(), d.max()) - min(g.min(), d.min()))
    margin = float(g.min() - d.max())
    return {
        "photos": len(versions),
        "variants": list(VARIANTS) if variants else ["original"],
        "faces_missed": [versions[i].key for i, e in enumerate(embedded) if e.embedding is None],
        "auc": float(auc(g, d)),
        "margin": margin,
        "relative_margin": margin / span if span > 0 else 0.0,
        "separated": bool(margin > 0),
        "far": far,
        "same_accepted": sum(accepted(i, j) for i, j in same),
        "same_pairs": len(same_all),
        "different_accepted": sum(accepted(i, j) for i, j in different),
        "different_pairs": len(different_all),
        "threshold_sources": dict(sources.most_common()),
        "genuine": {f"{versions[i].key}|{versions[j].key}": s for (i, j), s in zip(same, g.tolist())},
        "impostor": {f"{versions[i].key}|{versions[j].key}": s for (i, j), s in zip(different, d.tolist())},
    }


def check_row(name: str, check: dict[str, Any]) -> str:
    """One Markdown table row of a check (see CHECK_HEADER); the threshold column names each threshold used
    and how many pairs it decided."""
    sources = "; ".join(f"{source} ({n} pairs)" for source, n in check["threshold_sources"].items())
    return (f"| `{name}` | {check['auc']:.3f} | {check['margin']:+.3f} | {check['relative_margin']:+.3f} | "
            f"{check['same_accepted']}/{check['same_pairs']} | {check['different_accepted']}/{check['different_pairs']} | "
            f"{sources} |")


CHECK_HEADER = ("| checkpoint | AUC | margin | relative margin | same-person accepted | different-person accepted | "
                "threshold |\n|---|---|---|---|---|---|---|")
