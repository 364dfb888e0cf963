"""The shipped real photos (assets/photos, licences in assets/NOTICE.md) as the benchmarks use them: the pairs the
peers' report scores, the photos a verify call is timed on, and the single-face and composed group photos the
detection checks count faces in."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from pose3dfr.face.image_io import load_image
from pose3dfr.paths import PHOTOS_DIR

# Real-photo pairs: three photos of Barack Obama, one of Joe Biden.
GENUINE_PHOTO_PAIRS = (("obama.jpg", "obama2.jpg"), ("obama.jpg", "obama3.jpg"), ("obama2.jpg", "obama3.jpg"))
IMPOSTOR_PHOTO_PAIRS = (("obama.jpg", "biden.jpg"), ("obama2.jpg", "biden.jpg"), ("obama3.jpg", "biden.jpg"))
SPEED_PHOTOS = ("obama.jpg", "obama2.jpg")  # 910 x 1137 and 1200 x 800 portraits: a realistic verify call
SINGLE_FACE_PHOTOS = ("obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg", "astronaut.png", "32bit.png",
                      "obama_partial_face.jpg")
GROUP_PHOTOS = ("obama.jpg", "biden.jpg", "astronaut.png")  # composed side by side: exactly 3 faces
GROUP_HEIGHT = 512  # px: each photo resized to this height before tiling
GROUP_GAP = 40  # px of white between two tiled photos


def group_photo(photos_dir: Path = PHOTOS_DIR, names: Sequence[str] = GROUP_PHOTOS) -> np.ndarray:
    """The shipped photos resized to one height and tiled left to right with a white gap (H x W x 3 RGB)."""
    tiles = []
    for name in names:
        image = load_image(photos_dir / name)
        scale = GROUP_HEIGHT / image.shape[0]
        tiles += [cv2.resize(image, (round(image.shape[1] * scale), GROUP_HEIGHT), interpolation=cv2.INTER_AREA),
                  np.full((GROUP_HEIGHT, GROUP_GAP, 3), 255, np.uint8)]
    return np.concatenate(tiles[:-1], axis=1)
