"""What the synthetic benchmark generates (SynthConfig), its fixed constants, and its seeding rule.

Landmark index groups are MediaPipe canonical-mesh indices used to place features; head proportions are
those of the canonical face (cm), which identities vary around.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pose3dfr.errors import Pose3DFRError
from pose3dfr.face import landmarks as _landmarks

GENERATOR = "pose3dfr.data.synthetic"
GENERATOR_VERSION = "1.0"
NUM_LANDMARKS = 468
# FaceScape's expression folder names (k_name); the first `expressions` of them are generated.
EXPRESSIONS = ("1_neutral", "2_smile", "3_mouth_stretch", "4_anger", "5_jaw_left", "6_jaw_right", "7_jaw_forward")

# --- MediaPipe landmark indices used to place features ------------------------------------------
LIPS_OUTER = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185)
LIPS_INNER = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 415, 310, 311, 312, 13, 82, 81, 80, 191)
UPPER_INNER_LIP = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
EYES = _landmarks.EYES  # eye contours: the one definition is pose3dfr.face.landmarks
UPPER_LIDS = ((33, 246, 161, 160, 159, 158, 157, 173, 133), (263, 466, 388, 387, 386, 385, 384, 398, 362))
BROWS_UPPER = ((70, 63, 105, 66, 107), (300, 293, 334, 296, 336))
BROWS_LOWER = ((46, 53, 52, 65, 55), (276, 283, 282, 295, 285))
CHEEKS = (205, 425)
MOUTH_CORNERS = (61, 291)
# Head proportions of the canonical face (cm): skull ellipsoid, neck, ears; identities vary around them.
SKULL_CENTRE = (0.0, 2.0, -4.0)
SKULL_AXES = (7.8, 10.5, 9.8)
NECK = (5.4, 5.0, -4.0)  # half-width, half-depth, centre z


@dataclass
class SynthConfig:
    """What to generate. Defaults give the benchmark of issue 4 (10 identities, 13 yaws, 3 expressions)."""

    identities: int = 10
    seed: int = 0
    image_size: int = 256
    yaw_step: float = 15.0  # degrees between views on the yaw grid
    yaw_max: float = 90.0  # the grid spans -yaw_max .. +yaw_max (profile at 90)
    expressions: int = 3  # the first k of FaceScape's expressions (neutral, smile, mouth_stretch, ...)
    points: int = 4096  # points per (identity, expression) cloud
    workers: int = 1  # processes over identities; the output does not depend on it
    pitch_jitter: float = 6.0  # uniform +- degrees: pose nuisance besides yaw ("a few degrees")
    roll_jitter: float = 5.0  # uniform +- degrees
    scale_jitter: float = 0.06  # relative focal-length jitter: face size varies like detector crops
    shift_jitter: float = 0.04  # image fraction: the head is not always exactly centred
    subdivisions: int = 1  # Loop levels: 1 gives a smooth face at 256 px at about 2k vertices
    texture_size: int = 512  # face texture side (px): sharp brows/eyes up to 512-px renders
    view_extent_cm: float = 32.0  # image height in cm at the head centre: head plus a margin
    camera_distance_cm: float = 90.0  # portrait-lens perspective
    jpeg_quality: int = 95  # fixed so reruns are byte-identical
    split_fractions: tuple[float, float, float] = (0.7, 0.1, 0.2)  # train / val / test identities
    contact_sheet_rows: int = 12  # identities shown in contact_sheet.png
    contact_sheet_thumb: int = 96  # thumbnail side in the contact sheet (px)

    def expression_names(self) -> list[str]:
        return list(EXPRESSIONS[: self.expressions])

    def yaws(self) -> list[float]:
        """The yaw grid, -yaw_max .. +yaw_max in steps of yaw_step (always including 0 when symmetric)."""
        count = int(math.floor(2 * self.yaw_max / self.yaw_step + 1e-9)) + 1
        return [float(-self.yaw_max + i * self.yaw_step) for i in range(count)]

    def validate(self) -> None:
        checks = [
            (self.identities >= 1, "identities must be at least 1"),
            (1 <= self.expressions <= len(EXPRESSIONS), f"expressions must be 1..{len(EXPRESSIONS)}"),
            (16 <= self.image_size <= 2048, "image_size must be 16..2048"),
            (0 < self.yaw_step <= 180, "yaw_step must be in (0, 180]"),
            (0 <= self.yaw_max <= 180, "yaw_max must be in [0, 180]"),
            (self.points >= 16, "points must be at least 16"),
            (self.workers >= 1, "workers must be at least 1"),
            (0 <= self.subdivisions <= 3, "subdivisions must be 0..3"),
            (1 <= self.jpeg_quality <= 100, "jpeg_quality must be 1..100"),
            (abs(sum(self.split_fractions) - 1.0) < 1e-6 and min(self.split_fractions) >= 0,
             "split_fractions must be three non-negative numbers summing to 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise Pose3DFRError(f"synthetic benchmark config: {message}")


def seeded_rng(*keys: int) -> np.random.Generator:
    """An independent, reproducible stream for a tuple of integer keys (seed, identity, ...)."""
    return np.random.default_rng(np.random.SeedSequence([int(k) & 0xFFFFFFFF for k in keys]))
