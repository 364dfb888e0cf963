"""Real-photo sanity check of a Verifier: same-person pairs must score above different-person pairs.

The shipped photos hold three distinct photographs of one person (obama, obama2, obama3) and one each of
two others (biden, astronaut); `32bit.png` and `obama_partial_face.jpg` repeat or crop them, so they are
left out. Three same-person pairs, nine different-person pairs.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np

from pose3dfr.paths import PHOTOS_DIR

SAME_PERSON = ("obama.jpg", "obama2.jpg", "obama3.jpg")
OTHER_PEOPLE = ("biden.jpg", "astronaut.png")


def photo_separation(verifier: Any, photos_dir: Path = PHOTOS_DIR) -> dict[str, Any]:
    """Cosine scores of every same-person and different-person pair, and how far apart the two sets are.

    margin = lowest same-person score - highest different-person score (> 0: every pair ordered right);
    relative_margin = margin / (highest - lowest score of all pairs): the scale-free version, so models whose
    cosines spread differently (dlib's all sit above 0.8) can be compared.
    """
    names = SAME_PERSON + OTHER_PEOPLE
    vectors = {name: verifier.embed(photos_dir / name) for name in names}
    genuine = {f"{a}|{b}": float(vectors[a] @ vectors[b]) for a, b in itertools.combinations(SAME_PERSON, 2)}
    impostor = {f"{a}|{b}": float(vectors[a] @ vectors[b]) for a, b in itertools.combinations(names, 2)
                if not (a in SAME_PERSON and b in SAME_PERSON)}
    g, i = np.array(list(genuine.values())), np.array(list(impostor.values()))
    span = float(max(g.max(), i.max()) - min(g.min(), i.min()))
    margin = float(g.min() - i.max())
    return {
        "genuine": genuine,
        "impostor": impostor,
        "margin": margin,
        "relative_margin": margin / span if span > 0 else 0.0,
        "separated": bool(margin > 0),
    }
