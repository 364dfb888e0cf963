"""Synthetic multi-view 3D face benchmark in FaceScape's layout: seeded identities rendered on a yaw grid.

Each identity is the MediaPipe canonical face (Loop-subdivided; vertex i stays landmark i) deformed by
seeded shape parameters (Gaussian bumps around landmark regions, mostly mirror-symmetric, plus global
proportions), painted with seeded texture parameters (skin, brows, lips, eyes, facial hair, moles,
freckles, a mark on one side), and closed into a head by a skull/neck surface with hair and ears.
Expressions (FaceScape's names) move the mouth, jaw and brows, so identity must survive them.
Shape cues are strong (nose, chin, brow ridge, face depth, jaw) and texture cues moderate, so a 2D
model that has not learnt 3D shape should lose at profile. Nuisance per image: light direction and
colour, background, pitch/roll, scale and shift jitter.

Layout written by `generate_benchmark` (see docs/synthetic.md):
    <root>/images/<id>/<k>_<exp>/<view>.jpg, <view>_landmarks.npy (468 x 3: x, y, visible), params.json
    <root>/meshes/<id>/<k>_<exp>.ply (head mesh), <k>_<exp>_points.ply (face point cloud, cm)
    <root>/manifest.json, <root>/contact_sheet.png
"""

from __future__ import annotations

import functools
import json
import math
import multiprocessing
import shutil
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from pose3dfr.face.mesh import boundary_loop, load_canonical_mesh, loop_subdivide, vertex_normals
from pose3dfr.data.render import interpolate, lambert, project, rasterize, sample_bilinear, visible_vertices
from pose3dfr.errors import Pose3DFRError
from pose3dfr.geometry import CV_TO_GL, rotation_matrix

GENERATOR = "pose3dfr.data.synthetic"
GENERATOR_VERSION = "1.0"
NUM_LANDMARKS = 468
# FaceScape's expression folder names (k_name); the first `expressions` of them are generated.
EXPRESSIONS = ("1_neutral", "2_smile", "3_mouth_stretch", "4_anger", "5_jaw_left", "6_jaw_right", "7_jaw_forward")

# --- MediaPipe landmark indices used to place features ------------------------------------------
LIPS_OUTER = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185)
LIPS_INNER = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 415, 310, 311, 312, 13, 82, 81, 80, 191)
UPPER_INNER_LIP = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
EYES = ((33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246),
        (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466))
UPPER_LIDS = ((33, 246, 161, 160, 159, 158, 157, 173, 133), (263, 466, 388, 387, 386, 385, 384, 398, 362))
BROWS_UPPER = ((70, 63, 105, 66, 107), (300, 293, 334, 296, 336))
BROWS_LOWER = ((46, 53, 52, 65, 55), (276, 283, 282, 295, 285))
CHEEKS = (205, 425)
MOUTH_CORNERS = (61, 291)

# Shape components: (name, landmark centres (the mirror of each off-centre one is added), radius (cm),
# direction ("normal" or an (outward x, y, z) axis; x flips sign on the subject's right), amplitude std (cm)).
SHAPE_COMPONENTS: tuple[tuple[str, tuple[int, ...], float, object, float], ...] = (
    ("nose_projection", (4,), 1.3, (0.0, 0.0, 1.0), 0.45),
    ("nose_tip_drop", (1,), 0.9, (0.0, -1.0, 0.0), 0.25),
    ("nose_bridge", (6, 197, 195), 0.8, (0.0, 0.0, 1.0), 0.30),
    ("nose_hump", (195,), 0.55, (0.0, 0.0, 1.0), 0.20),
    ("nose_width", (98,), 0.8, (1.0, 0.0, 0.0), 0.25),
    ("nose_length", (2,), 0.9, (0.0, -1.0, 0.0), 0.25),
    ("chin_projection", (152, 175, 199), 1.4, (0.0, 0.0, 1.0), 0.50),
    ("chin_height", (152,), 1.8, (0.0, -1.0, 0.0), 0.45),
    ("chin_width", (176,), 1.2, (1.0, 0.0, 0.0), 0.30),
    ("jaw_width", (172, 136, 58), 1.8, (1.0, 0.0, 0.0), 0.45),
    ("brow_ridge", (105, 66, 9), 1.1, (0.0, 0.0, 1.0), 0.35),
    ("cheekbones", (116, 117), 1.4, "normal", 0.35),
    ("cheek_fullness", (205,), 1.7, "normal", 0.35),
    ("eye_depth", (159, 145), 0.9, (0.0, 0.0, -1.0), 0.25),
    ("eye_spacing", (159, 145), 1.1, (1.0, 0.0, 0.0), 0.20),
    ("upper_lip", (0,), 0.7, (0.0, 0.0, 1.0), 0.20),
    ("lower_lip", (17,), 0.7, (0.0, 0.0, 1.0), 0.20),
    ("mouth_width", (61,), 0.8, (1.0, 0.0, 0.0), 0.25),
    ("forehead_slope", (151, 10, 108), 2.0, (0.0, 0.0, 1.0), 0.40),
    ("temples", (54,), 1.5, "normal", 0.30),
)
# Head proportions of the canonical face (cm): skull ellipsoid, neck, ears; identities vary around them.
SKULL_CENTRE = (0.0, 2.0, -4.0)
SKULL_AXES = (7.8, 10.5, 9.8)
NECK = (5.4, 5.0, -4.0)  # half-width, half-depth, centre z
# Rotation pivot and look-at point of every camera: the middle of the head.
HEAD_PIVOT = np.array([0.0, 1.5, -3.5])


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


# ------------------------------------------------------------------------------------------------
# Identities
# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class TextureParams:
    """Seeded appearance of one identity (colours are display RGB in [0, 1])."""

    skin: tuple[float, float, float]
    skin_waves: np.ndarray  # K x 5: 3D wave vector (1/cm), phase, amplitude: blotchy skin variation
    cheek_red: float
    hair: tuple[float, float, float]
    hairline: tuple[float, float, float]  # scalp-hair elevation (deg) at the front, side and back
    bald: bool
    brow: tuple[float, float, float]
    brow_thickness: float  # relative to the canonical brow
    brow_alpha: float
    lips: tuple[float, float, float]
    iris: tuple[float, float, float]
    beard: str  # none, stubble, moustache, goatee, full
    beard_alpha: float
    moles: tuple[tuple[int, float, float], ...]  # (canonical vertex, radius cm, darkness)
    freckles: tuple[tuple[int, float], ...]  # (canonical vertex, radius cm)
    mark: tuple[str, int, float, float] | None  # (birthmark or scar, vertex on one side, size cm, angle)


@dataclass(frozen=True, eq=False)  # hashed by object: heads are cached per sampled identity
class IdentityParams:
    """One synthetic person: shape amplitudes, proportions, head and texture (all from (seed, index))."""

    seed: int
    index: int
    shape: dict[str, float]
    asymmetry: tuple[tuple[int, float, float], ...]  # (vertex, radius cm, amplitude along the normal cm)
    proportions: tuple[float, float, float, float]  # width, height, depth, lower-face height scales
    skull_axes: tuple[float, float, float]
    neck: tuple[float, float, float]
    hair_volume: float  # cm of hair over the scalp
    ear_scale: float
    texture: TextureParams = field(repr=False)


def _rng(*keys: int) -> np.random.Generator:
    """An independent, reproducible stream for a tuple of integer keys (seed, identity, ...)."""
    return np.random.default_rng(np.random.SeedSequence([int(k) & 0xFFFFFFFF for k in keys]))


@functools.lru_cache(maxsize=64)
def sample_identity(seed: int, index: int) -> IdentityParams:
    """The identity number `index` (1-based) of the benchmark with this seed."""
    rng = _rng(seed, index, 1)
    shape = {name: float(np.clip(rng.normal(0.0, std), -2.5 * std, 2.5 * std))
             for name, _, _, _, std in SHAPE_COMPONENTS}
    candidates = _face_vertices_for_marks()
    asymmetry = tuple((int(rng.choice(candidates)), float(rng.uniform(0.8, 1.6)), float(rng.normal(0, 0.12)))
                      for _ in range(3))
    proportions = (float(rng.normal(1.0, 0.04)), float(rng.normal(1.0, 0.04)),
                   float(rng.normal(1.0, 0.07)), float(rng.normal(1.0, 0.06)))
    skull = tuple(float(a * p * rng.normal(1.0, 0.03)) for a, p in zip(SKULL_AXES, proportions[:3]))
    neck = (NECK[0] * float(rng.normal(1.0, 0.06)), NECK[1] * float(rng.normal(1.0, 0.06)), NECK[2])
    texture = _sample_texture(_rng(seed, index, 2))
    hair_volume = 0.0 if texture.bald else float(rng.uniform(0.2, 1.6))
    return IdentityParams(seed, index, shape, asymmetry, proportions, skull, neck, hair_volume,
                          float(rng.normal(1.0, 0.08)), texture)


_SKIN_LIGHT = np.array([0.95, 0.80, 0.70])
_SKIN_DARK = np.array([0.33, 0.21, 0.15])
_HAIR = {"black": (0.06, 0.05, 0.05), "dark_brown": (0.20, 0.13, 0.08), "brown": (0.38, 0.25, 0.15),
         "blonde": (0.78, 0.64, 0.40), "red": (0.55, 0.24, 0.10), "grey": (0.62, 0.62, 0.60)}
_IRIS = ((0.30, 0.18, 0.09), (0.18, 0.10, 0.05), (0.30, 0.45, 0.65), (0.35, 0.48, 0.30), (0.45, 0.40, 0.25),
         (0.45, 0.50, 0.55))


def _sample_texture(rng: np.random.Generator) -> TextureParams:
    tone = rng.uniform(0.0, 1.0)
    skin = (1 - tone) * _SKIN_LIGHT + tone * _SKIN_DARK
    skin = np.clip(skin * (1 + rng.normal(0, [0.03, 0.03, 0.04])), 0, 1)
    hair_name = list(_HAIR)[int(rng.choice(len(_HAIR), p=[0.32, 0.25, 0.18, 0.1, 0.05, 0.1]))]
    hair = np.clip(np.array(_HAIR[hair_name]) * rng.normal(1.0, 0.08, 3), 0, 1)
    waves = np.concatenate([rng.normal(0, 0.6, (10, 3)), rng.uniform(0, 2 * np.pi, (10, 1)),
                            rng.uniform(0.005, 0.02, (10, 1))], axis=1)
    candidates = _face_vertices_for_marks()
    moles = tuple((int(rng.choice(candidates)), float(rng.uniform(0.08, 0.2)), float(rng.uniform(0.4, 0.8)))
                  for _ in range(int(rng.integers(0, 5))))
    freckle_spots = _freckle_vertices()
    n_freckles = int(rng.integers(30, 90)) if rng.uniform() < 0.25 else 0
    freckles = tuple((int(rng.choice(freckle_spots)), float(rng.uniform(0.04, 0.09))) for _ in range(n_freckles))
    mark = None
    if rng.uniform() < 0.6:
        side = _one_side_vertices(left=bool(rng.uniform() < 0.5))
        mark = (str(rng.choice(["birthmark", "scar"])), int(rng.choice(side)), float(rng.uniform(0.8, 2.2)),
                float(rng.uniform(0, 180)))
    beard = str(rng.choice(["none", "stubble", "moustache", "goatee", "full"], p=[0.55, 0.15, 0.1, 0.08, 0.12]))
    brow = np.clip(0.6 * hair + 0.4 * np.array([0.08, 0.06, 0.05]), 0, 1)
    lips = np.clip(skin * np.array([0.85, 0.60, 0.62]) + rng.normal(0, 0.03, 3), 0, 1)
    return TextureParams(
        skin=tuple(skin.tolist()), skin_waves=waves, cheek_red=float(rng.uniform(0.0, 0.12)),
        hair=tuple(hair.tolist()),
        hairline=(float(rng.uniform(26, 42)), float(rng.uniform(4, 14)), float(rng.uniform(-45, -25))),
        bald=bool(rng.uniform() < 0.08), brow=tuple(brow.tolist()), brow_thickness=float(rng.uniform(0.7, 1.5)),
        brow_alpha=float(rng.uniform(0.55, 0.95)), lips=tuple(lips.tolist()),
        iris=tuple(np.clip(np.array(_IRIS[int(rng.integers(len(_IRIS)))]) * rng.normal(1, 0.08, 3), 0, 1).tolist()),
        beard=beard, beard_alpha=float(rng.uniform(0.5, 0.9)), moles=moles, freckles=freckles, mark=mark)


@functools.lru_cache(maxsize=1)
def _face_vertices_for_marks() -> np.ndarray:
    """Canonical vertices on open skin (cheeks, forehead, jaw): not eyes, lips, brows or the rim."""
    v = load_canonical_mesh().vertices
    avoid = [i for group in (*EYES, LIPS_OUTER, *BROWS_UPPER) for i in group]
    far = np.min(np.linalg.norm(v[:, None, :] - v[avoid][None], axis=2), axis=1) > 1.0
    rim = np.isin(np.arange(len(v)), boundary_loop(load_canonical_mesh().faces))
    return np.flatnonzero(far & ~rim & (v[:, 2] > 0.5))


@functools.lru_cache(maxsize=1)
def _freckle_vertices() -> np.ndarray:
    v = load_canonical_mesh().vertices
    near_nose = np.linalg.norm((v - [0.0, 0.0, 6.0]) * [0.6, 1.2, 1.0], axis=1) < 4.5
    return np.intersect1d(np.flatnonzero(near_nose), _face_vertices_for_marks())


def _one_side_vertices(left: bool) -> np.ndarray:
    v = load_canonical_mesh().vertices
    candidates = _face_vertices_for_marks()
    x = v[candidates, 0]
    return candidates[(x > 1.5) if left else (x < -1.5)]


# ------------------------------------------------------------------------------------------------
# Geometry: base mask, identity shape, expressions, head
# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _BaseMask:
    vertices: np.ndarray  # V x 3 (first 468 = MediaPipe landmarks)
    faces: np.ndarray
    uvs: np.ndarray
    normals: np.ndarray
    rim: np.ndarray  # boundary loop (vertex indices)


@functools.lru_cache(maxsize=4)
def _base_mask(subdivisions: int) -> _BaseMask:
    mesh = loop_subdivide(load_canonical_mesh(), subdivisions)
    return _BaseMask(mesh.vertices, mesh.faces, mesh.uvs, vertex_normals(mesh.vertices, mesh.faces),
                     boundary_loop(mesh.faces))


@functools.lru_cache(maxsize=1)
def _shape_basis() -> list[tuple[np.ndarray, float, object, np.ndarray]]:
    """Per component: centres (C x 3), radius, direction spec, x-sign of each centre."""
    v = load_canonical_mesh().vertices
    basis = []
    for _, idx, radius, direction, _ in SHAPE_COMPONENTS:
        centres = [v[i] for i in idx] + [v[i] * [-1, 1, 1] for i in idx if abs(v[i, 0]) > 1e-6]
        centres = np.asarray(centres)
        basis.append((centres, radius, direction, np.sign(centres[:, 0])))
    return basis


def _bumps(points: np.ndarray, normals: np.ndarray, centres: np.ndarray, radius: float, direction: object,
           signs: np.ndarray, amplitude: float) -> np.ndarray:
    weight = np.exp(-((points[:, None, :] - centres[None]) ** 2).sum(-1) / (2 * radius**2))  # V x C
    if isinstance(direction, str):
        return amplitude * weight.sum(1)[:, None] * normals
    axis = np.asarray(direction, dtype=np.float64)
    dirs = np.repeat(axis[None], len(centres), 0)
    dirs[:, 0] *= np.where(signs == 0, 0.0, signs)
    return amplitude * weight @ dirs


def identity_mask(identity: IdentityParams, subdivisions: int = 1) -> np.ndarray:
    """V x 3 vertices of the identity's (neutral) face mask in the canonical frame (cm)."""
    base = _base_mask(subdivisions)
    p, n = base.vertices, base.normals
    out = p.copy()
    for (centres, radius, direction, signs), (name, *_rest) in zip(_shape_basis(), SHAPE_COMPONENTS):
        out += _bumps(p, n, centres, radius, direction, signs, identity.shape[name])
    canon = load_canonical_mesh().vertices
    for vertex, radius, amplitude in identity.asymmetry:
        out += _bumps(p, n, canon[vertex][None], radius, "normal", np.zeros(1), amplitude)
    sx, sy, sz, lower = identity.proportions
    nose_base = -2.0
    below = -np.logaddexp(0.0, -(out[:, 1] - nose_base) / 0.5) * 0.5  # smooth min(0, y - nose_base)
    out[:, 1] += (lower - 1.0) * below
    return out * np.array([sx, sy, sz])


def apply_expression(vertices: np.ndarray, expression: str) -> np.ndarray:
    """Move a face mask (V x 3, canonical frame) into one of FaceScape's expressions."""
    name = expression.split("_", 1)[1] if "_" in expression else expression
    v = vertices.copy()
    canon = load_canonical_mesh().vertices
    jaw = _jaw_weight(vertices)
    if name == "neutral":
        return v
    if name == "smile":
        for side, corner in zip((-1, 1), MOUTH_CORNERS):
            v += _gauss(vertices, canon[corner], 1.0) * np.array([0.35 * side, 0.55, -0.35])
            v += _gauss(vertices, canon[CHEEKS[side > 0]], 1.4) * np.array([0.1 * side, 0.3, 0.25])
        return _rotate_jaw(v, jaw, 4.0)
    if name == "mouth_stretch":
        return _rotate_jaw(v, jaw, 22.0)
    if name == "anger":
        for side, brow in zip((-1, 1), BROWS_UPPER):
            inner = canon[brow[-1]]
            v += _gauss(vertices, inner, 1.2) * np.array([-0.3 * side, -0.45, 0.1])
        for corner in MOUTH_CORNERS:
            v += _gauss(vertices, canon[corner], 0.8) * np.array([0.0, -0.25, 0.0])
        return v
    if name in ("jaw_left", "jaw_right"):
        shift = 0.9 if name == "jaw_left" else -0.9  # the subject's left is canonical +x
        v = _rotate_jaw(v, jaw, 6.0)
        return v + jaw[:, None] * np.array([shift, 0.0, 0.0])
    if name == "jaw_forward":
        v = _rotate_jaw(v, jaw, 5.0)
        return v + jaw[:, None] * np.array([0.0, 0.0, 0.7])
    raise Pose3DFRError(f"unknown expression {expression!r}; use one of {list(EXPRESSIONS)}")


def _gauss(points: np.ndarray, centre: np.ndarray, radius: float) -> np.ndarray:
    return np.exp(-((points - centre) ** 2).sum(1) / (2 * radius**2))[:, None]


def _jaw_weight(points: np.ndarray) -> np.ndarray:
    """1 on the lower lip, chin and jaw, 0 above the mouth line; smooth in between."""
    ax = np.abs(points[:, 0])
    mouth_y = -4.27 + 0.12 * np.minimum(ax, 2.2)  # the lip line rises a little towards the corners
    width = 0.15 + 0.5 * np.clip(ax - 2.0, 0.0, 4.0)  # sharp between the lips, soft over the cheeks
    below_nose = 1.0 / (1.0 + np.exp((points[:, 1] + 1.0) / 0.3))  # eyes and forehead never move with the jaw
    return below_nose / (1.0 + np.exp(-(mouth_y - points[:, 1]) / width))


def _rotate_jaw(points: np.ndarray, weight: np.ndarray, degrees: float) -> np.ndarray:
    """Open the jaw: rotate about the ear-to-ear hinge axis by weight x degrees."""
    hinge = np.array([0.0, 0.5, -3.0])
    angle = np.radians(degrees) * weight  # V
    rel = points - hinge
    c, s = np.cos(angle), np.sin(angle)
    y = c * rel[:, 1] - s * rel[:, 2]  # positive angles drop the chin and pull it back
    z = s * rel[:, 1] + c * rel[:, 2]
    return hinge + np.stack([rel[:, 0], y, z], 1)


@dataclass(frozen=True)
class HeadModel:
    """A renderable head: mask vertices first (first 468 = landmarks), then rim skirt, skull/neck, ears and
    the mouth interior (copies of the mask vertices inside the lips)."""

    vertices: np.ndarray  # N x 3 canonical frame (cm)
    faces: np.ndarray  # F x 3
    normals: np.ndarray  # N x 3
    uvs: np.ndarray  # N x 2 into `texture` (non-face parts point at a white texel)
    colors: np.ndarray  # N x 3 multiplier of the texture (white on the face)
    texture: np.ndarray  # T x T x 3 float32 albedo of the face
    face_vertex_count: int  # vertices of the face mask
    face_face_count: int  # triangles of the face mask (the first ones)


def build_head(identity: IdentityParams, expression: str = "1_neutral", subdivisions: int = 1,
               texture_size: int = 512) -> HeadModel:
    """The identity's head in one expression, ready to render (canonical frame, cm).

    Vertex order: face mask (first 468 = MediaPipe landmarks), rim skirt, skull/neck, ears, mouth interior
    (copies of the mask vertices inside the inner lips, dark with upper teeth, seen when the mouth opens)."""
    base = _base_mask(subdivisions)
    neutral = identity_mask(identity, subdivisions)
    mask = apply_expression(neutral, expression)
    skull_centre = np.array(SKULL_CENTRE) * [1, identity.proportions[1], identity.proportions[2]]
    tube = _HeadTube(skull_centre, np.array(identity.skull_axes), identity.neck)
    # Skull and neck follow the neutral face, so they are the same in every expression; the skirt
    # stretches from the moved rim to where the neutral rim meets them.
    front = _FrontDepth(neutral, base.faces)
    skirt_v, skirt_f, skirt_t = _skirt(mask, neutral, base.rim, tube, front)
    skull_v, skull_f = tube.mesh(identity, front)
    ear_v, ear_f = _ears(tube, identity.ear_scale)
    n_mask = len(mask)
    mouth_faces, mouth_vertices, mouth_rgb = _mouth_interior(subdivisions)
    mask_faces = base.faces.copy()
    starts = np.cumsum([n_mask, len(skirt_v), len(skull_v), len(ear_v)])
    remap = np.full(n_mask, -1)
    remap[mouth_vertices] = starts[3] + np.arange(len(mouth_vertices))
    mask_faces[mouth_faces] = remap[mask_faces[mouth_faces]]
    vertices = np.concatenate([mask, skirt_v, skull_v, ear_v, mask[mouth_vertices]])
    faces = np.concatenate([mask_faces, skirt_f + starts[0], skull_f + starts[1], ear_f + starts[2]])
    normals = vertex_normals(vertices, faces)
    # Smooth shading across the seams: the mask keeps its own normals, the skirt blends them into the skull's.
    normals[:n_mask] = vertex_normals(mask, base.faces)
    rim_n = np.tile(normals[base.rim], (len(skirt_t), 1))
    t = np.repeat(skirt_t, len(base.rim))[:, None]
    blended = (1 - t) * rim_n + t * tube.normal(skirt_v)
    normals[starts[0]:starts[1]] = blended / np.linalg.norm(blended, axis=1, keepdims=True)
    texture = face_texture(identity.texture, subdivisions, texture_size, tuple(skull_centre), identity.skull_axes)
    white_uv = np.array([1.5 / texture_size, 1.5 / texture_size])
    uvs = np.concatenate([base.uvs, np.repeat(white_uv[None], len(vertices) - n_mask, 0)])
    colors = np.ones_like(vertices)
    colors[n_mask:starts[2]] = _albedo_3d(vertices[n_mask:starts[2]], identity.texture, skull_centre,
                                          np.array(identity.skull_axes))
    colors[starts[2]:starts[3]] = np.clip(np.array(identity.texture.skin) * [1.0, 0.93, 0.92], 0, 1)
    colors[starts[3]:] = mouth_rgb
    return HeadModel(vertices, faces, normals, uvs, colors, texture, n_mask, len(base.faces))


@functools.lru_cache(maxsize=4)
def _mouth_interior(subdivisions: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mask faces inside the inner lip contour, their vertices, and a colour per vertex (teeth to throat)."""
    base = _base_mask(subdivisions)
    inner = load_canonical_mesh().uvs[list(LIPS_INNER)].astype(np.float32)
    centroids = base.uvs[base.faces].mean(1).astype(np.float32)
    inside = np.array([cv2.pointPolygonTest(inner, (float(u), float(v)), False) > 0 for u, v in centroids])
    faces = np.flatnonzero(inside)
    vertices = np.unique(base.faces[faces])
    v = base.vertices
    upper = np.array(UPPER_INNER_LIP)
    lower = np.array((78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308))
    x = v[vertices, 0]
    y_up = np.interp(x, v[upper, 0], v[upper, 1])
    y_low = np.interp(x, v[lower, 0], v[lower, 1])
    t = np.clip((v[vertices, 1] - y_low) / np.maximum(y_up - y_low, 1e-6), 0, 1)[:, None]
    teeth, throat = np.array([0.88, 0.86, 0.8]), np.array([0.2, 0.06, 0.06])
    rgb = throat + (teeth - throat) * np.clip((t - 0.55) / 0.25, 0, 1)
    return faces, vertices, rgb


class _HeadTube:
    """Skull ellipsoid blended into a neck: horizontal elliptic slices (centre z, half-width, half-depth)."""

    def __init__(self, centre: np.ndarray, axes: np.ndarray, neck: tuple[float, float, float]) -> None:
        self.centre, self.axes, self.neck = centre, axes, neck

    def slice(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        (_, yc, zc), (a, b, c) = self.centre, self.axes
        s = np.sqrt(np.clip(1.0 - ((y - yc) / b) ** 2, 0.0, None))
        nw, nd, nz = self.neck
        neck_on = y < yc
        width = np.where(neck_on, _smooth_max(a * s, nw, 1.0), a * s)
        depth = np.where(neck_on, _smooth_max(c * s, nd, 1.0), c * s)
        t = np.clip((a * s - nw) / 2.0 + 0.5, 0.0, 1.0)
        z0 = np.where(neck_on, t * zc + (1 - t) * nz, zc)
        return z0, width, depth

    def normal(self, points: np.ndarray) -> np.ndarray:
        """Approximate outward unit normals of the tube at points on it (N x 3)."""
        z0, w, d = self.slice(points[:, 1])
        yc, b = self.centre[1], self.axes[1]
        n = np.stack([points[:, 0] / w**2, np.maximum(points[:, 1] - yc, 0) / b**2, (points[:, 2] - z0) / d**2], 1)
        return n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-9)

    def point(self, y: np.ndarray, x: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Where the ray from the slice centre through (x, z) at height y meets the tube (N x 3)."""
        z0, w, d = self.slice(y)
        theta = np.arctan2(x / w, (z - z0) / d)
        return np.stack([w * np.sin(theta), y, z0 + d * np.cos(theta)], 1)

    def mesh(self, identity: IdentityParams, front: "_FrontDepth", segments: int = 48,
             skull_rings: int = 26, neck_rings: int = 8, bottom: float = -28.0) -> tuple[np.ndarray, np.ndarray]:
        """Vertices and outward faces of skull + neck (rings from the crown down), with hair volume, kept
        behind the face; triangles wholly behind the face are dropped (never visible, only overdraw)."""
        (_, yc, zc), b = self.centre, self.axes[1]
        phi = np.linspace(0.0, np.pi, skull_rings)
        ys = np.concatenate([yc + b * np.cos(phi), np.linspace(yc - b, bottom, neck_rings + 1)[1:]])
        theta = np.linspace(0, 2 * np.pi, segments, endpoint=False)
        z0, w, d = self.slice(ys)
        x = w[:, None] * np.sin(theta)[None]
        z = z0[:, None] + d[:, None] * np.cos(theta)[None]
        y = np.repeat(ys[:, None], segments, 1)
        v = np.stack([x, y, z], -1).reshape(-1, 3)
        hair = _hair_weight(v, self.centre, self.axes, identity.texture)
        outward = np.stack([v[:, 0], np.zeros(len(v)), v[:, 2] - np.repeat(z0, segments)], 1)
        outward[:, 1] = (v[:, 1] - yc) * 0.6 * (v[:, 1] > yc)
        outward /= np.maximum(np.linalg.norm(outward, axis=1, keepdims=True), 1e-9)
        elevation, azimuth = _elevation_azimuth(v, self.centre, self.axes)
        # Hair has volume over the crown and behind the ears, none beside the face (it would hide the cheeks).
        volume = hair * np.maximum(_sigmoid((azimuth - 85.0) / 8.0), _sigmoid((elevation - 35.0) / 5.0))
        v = v + identity.hair_volume * volume[:, None] * outward
        v, pushed = front.push_behind(v, margin=0.35, axis_z=np.repeat(z0, segments))
        rings = len(ys)
        idx = np.arange(rings * segments).reshape(rings, segments)
        nxt = np.roll(idx, -1, axis=1)
        quads_a, quads_b = idx[:-1], nxt[:-1]
        quads_c, quads_d = nxt[1:], idx[1:]
        faces = np.concatenate([np.stack([quads_a, quads_b, quads_c], -1).reshape(-1, 3),
                                np.stack([quads_a, quads_c, quads_d], -1).reshape(-1, 3)])
        faces = faces[~pushed[faces].all(axis=1)]  # wholly behind the face: never visible, only overdraw
        return v, _orient_outward(v, faces, np.array([0.0, yc, zc]))


def _sigmoid(t: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-t))


def _smooth_max(a: np.ndarray, b: float, k: float) -> np.ndarray:
    return 0.5 * (a + b + np.sqrt((a - b) ** 2 + k**2))


class _FrontDepth:
    """The face mask seen along -z: front z of the mask at (x, y), to keep the skull behind the face."""

    RES = 0.15  # cm per cell
    RIM_BAND = 1.2  # cm beyond the rim where the skull is also kept behind the face

    def __init__(self, mask: np.ndarray, faces: np.ndarray) -> None:
        self.x0, self.y1 = mask[:, 0].min() - 0.5, mask[:, 1].max() + 0.5
        w = int((mask[:, 0].max() + 0.5 - self.x0) / self.RES) + 1
        h = int((self.y1 - mask[:, 1].min() + 0.5) / self.RES) + 1
        z_ref = mask[:, 2].max() + 1.0
        screen = np.stack([(mask[:, 0] - self.x0) / self.RES, (self.y1 - mask[:, 1]) / self.RES,
                           z_ref - mask[:, 2]], 1)
        frags = rasterize(screen, faces, h, w, cull_backfaces=False)
        depth = np.full(h * w, np.inf)
        depth[frags.pixels] = (frags.bary * screen[faces[frags.faces], 2]).sum(1)  # orthographic: linear
        front = np.where(np.isfinite(depth), z_ref - depth, np.inf).reshape(h, w)  # inf: no face there
        # Just outside the rim, the rim's own depth holds too, so the skull cannot poke out beside the face.
        from scipy.ndimage import distance_transform_edt

        distance, (rows, cols) = distance_transform_edt(~np.isfinite(front), return_indices=True)
        near_rim = distance * self.RES < self.RIM_BAND
        self.on_face = np.isfinite(front)
        self.front = np.where(near_rim, front[rows, cols], np.inf)

    def push_behind(self, points: np.ndarray, margin: float, axis_z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Points moved behind the face (and its rim band) by `margin`, horizontally towards the head's
        vertical axis (x = 0, z = axis_z) so that they also go inwards at the sides (a pure z push would
        leave the skull beside the cheeks in profile). Also returns which were pushed right behind the face."""
        col = np.rint((points[:, 0] - self.x0) / self.RES).astype(np.int64)
        row = np.rint((self.y1 - points[:, 1]) / self.RES).astype(np.int64)
        h, w = self.front.shape
        inside = (col >= 0) & (col < w) & (row >= 0) & (row < h)
        limit = np.full(len(points), np.inf)
        limit[inside] = self.front[row[inside], col[inside]] - margin
        pushed = points[:, 2] > limit
        # Fraction of the way to the axis that brings z down to the limit (1 = onto the axis).
        span = np.maximum(points[:, 2] - axis_z, 1e-6)
        t = np.where(pushed, np.clip((points[:, 2] - limit) / span, 0.0, 1.0), 0.0)
        out = points.copy()
        out[:, 0] *= 1.0 - t
        out[:, 2] -= t * (points[:, 2] - axis_z)
        pushed[inside] &= self.on_face[row[inside], col[inside]]  # only those right behind the face count as hidden
        return out, pushed


def _skirt(mask: np.ndarray, neutral: np.ndarray, rim: np.ndarray, tube: _HeadTube, front: "_FrontDepth",
           rings: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bands from the mask's rim back to the skull/neck (under the jaw they slope down to the throat).

    Ring 0 repeats the rim's positions as separate vertices (the skirt is coloured per vertex, the mask by
    texture, so they must not share vertices); returns vertices, faces and each ring's blend parameter t."""
    b, b0 = mask[rim], neutral[rim]
    drop = 1.8 * np.clip((-4.5 - b0[:, 1]) / 4.0, 0.0, 1.0)
    y_target = b0[:, 1] - drop
    target, _ = front.push_behind(tube.point(y_target, b0[:, 0], b0[:, 2]), margin=0.35,
                                  axis_z=tube.slice(y_target)[0])
    ts = np.linspace(0, 1, rings + 1)
    v = np.concatenate([b + t * (target - b) for t in ts])
    n = len(rim)
    faces = []
    for r in range(rings):
        a, c = r * n + np.arange(n), (r + 1) * n + np.arange(n)
        a2, c2 = np.roll(a, -1), np.roll(c, -1)
        # The rim edges run a -> a2 in the mask's faces; the band continues that surface, so it uses them
        # reversed (a2 -> a): same winding, outside stays outside.
        faces += [np.stack([a2, a, c], 1), np.stack([a2, c, c2], 1)]
    return v, np.concatenate(faces), ts


def _orient_outward(vertices: np.ndarray, faces: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """Flip the winding of a closed-ish surface around `centre` if most of its normals point inwards."""
    v = vertices[faces]
    normal = np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])
    outward = (normal * (v.mean(1) - centre)).sum(1)
    return faces if outward.sum() >= 0 else faces[:, ::-1].copy()


def _ears(tube: _HeadTube, scale: float, segments: int = 16, rings: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Two flattened ellipsoids on the sides of the skull, tilted back like ears."""
    y_ear, z_ear = tube.centre[1] - 2.2, tube.centre[2] + 0.4
    z0, w, d = tube.slice(np.array([y_ear]))
    side_x = float(w[0] * math.sqrt(max(0.0, 1.0 - ((z_ear - z0[0]) / d[0]) ** 2)))
    phi = np.linspace(0, np.pi, rings)
    theta = np.linspace(0, 2 * np.pi, segments, endpoint=False)
    unit = np.stack([np.sin(phi)[:, None] * np.cos(theta)[None], np.cos(phi)[:, None] * np.ones_like(theta)[None],
                     np.sin(phi)[:, None] * np.sin(theta)[None]], -1).reshape(-1, 3)
    idx = np.arange(rings * segments).reshape(rings, segments)
    nxt = np.roll(idx, -1, axis=1)
    faces = np.concatenate([np.stack([idx[:-1], nxt[:-1], nxt[1:]], -1).reshape(-1, 3),
                            np.stack([idx[:-1], nxt[1:], idx[1:]], -1).reshape(-1, 3)])
    verts, all_faces = [], []
    for k, side in enumerate((-1.0, 1.0)):
        local = unit * np.array([0.55, 3.0, 1.6]) * scale
        tilt = math.radians(25.0) * side  # the back edge of the ear stands off the head
        c, s = math.cos(tilt), math.sin(tilt)
        local = local @ np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]).T
        centre = np.array([side * (side_x + 0.35), y_ear, z_ear])
        part = local + centre
        verts.append(part)
        all_faces.append(_orient_outward(part, faces, centre) + k * len(unit))
    return np.concatenate(verts), np.concatenate(all_faces)


def _elevation_azimuth(points: np.ndarray, centre: np.ndarray, axes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Degrees on the skull ellipsoid: elevation (up +90) and azimuth (0 = face front, 180 = back)."""
    d = (points - centre) / axes
    elevation = np.degrees(np.arctan2(d[:, 1], np.hypot(d[:, 0], d[:, 2])))
    azimuth = np.degrees(np.abs(np.arctan2(d[:, 0], d[:, 2])))
    return elevation, azimuth


def _hair_weight(points: np.ndarray, centre: np.ndarray, axes: np.ndarray, tex: TextureParams) -> np.ndarray:
    """0..1 scalp hair cover at 3D points: above a hairline that runs from forehead over the ears to the nape."""
    elevation, azimuth = _elevation_azimuth(points, centre, axes)
    front, side, back = tex.hairline
    a1 = (front - back) / 2
    a0 = ((front + back) / 2 + side) / 2
    a2 = ((front + back) / 2 - side) / 2
    az = np.radians(azimuth)
    line = a0 + a1 * np.cos(az) + a2 * np.cos(2 * az)
    weight = 1.0 / (1.0 + np.exp(-(elevation - line) / 3.5))  # soft: the skull is coloured per vertex
    if tex.bald:  # a horseshoe of hair at the sides and back only
        weight *= 1.0 / (1.0 + np.exp(-(22.0 - elevation) / 3.0)) / (1.0 + np.exp(-(azimuth - 70.0) / 8.0))
    ear_gap = np.exp(-((azimuth - 95.0) / 18.0) ** 2 - ((elevation + 8.0) / 12.0) ** 2)  # skin around the ears
    return weight * (1.0 - ear_gap)


def _beard_weight(points: np.ndarray, style: str) -> np.ndarray:
    """0..1 facial hair cover at canonical 3D points for a beard style."""
    if style == "none":
        return np.zeros(len(points))
    x, y, z = points[:, 0], points[:, 1], points[:, 2]
    sig = lambda t: 1.0 / (1.0 + np.exp(-t))  # noqa: E731
    front = sig((z + 3.0) / 0.8)
    moustache = np.exp(-((y + 2.85) / 0.45) ** 2) * sig((2.8 - np.abs(x)) / 0.3) * front
    chin = sig((-5.0 - y) / 0.4) * sig((2.6 - np.abs(x)) / 0.4) * front
    if style == "moustache":
        return moustache
    if style == "goatee":
        return np.maximum(moustache, chin)
    cheeks = sig((-1.6 - y) / 0.6) * sig((np.abs(x) - 2.8) / 0.5) * sig((z + 4.0) / 1.0)
    full = np.maximum.reduce([moustache, sig((-5.0 - y) / 0.4) * front, cheeks])
    return full


def _albedo_3d(points: np.ndarray, tex: TextureParams, skull_centre: np.ndarray, skull_axes: np.ndarray) -> np.ndarray:
    """Skin with blotches, cheek redness, facial hair and scalp hair at 3D points (N x 3 RGB in [0, 1])."""
    skin = np.array(tex.skin)
    waves = tex.skin_waves
    phase = points @ waves[:, :3].T + waves[:, 3]
    variation = (np.sin(phase) * waves[:, 4]).sum(1)
    color = skin[None] * (1.0 + variation[:, None])
    canon = load_canonical_mesh().vertices
    red = sum(np.exp(-((points - canon[c]) ** 2).sum(1) / (2 * 1.3**2)) for c in CHEEKS) * tex.cheek_red
    color = color * (1 - red[:, None]) + red[:, None] * np.array([0.85, 0.35, 0.35]) * skin.max()
    hair_rgb = np.array(tex.hair)
    grain = 0.5 + 0.5 * np.sin(points @ np.array([7.0, 11.0, 5.0]))  # stubble / strand speckle
    beard = _beard_weight(points, tex.beard) * tex.beard_alpha
    if tex.beard == "stubble":
        beard = beard * (0.35 + 0.25 * grain)
    color = color * (1 - beard[:, None]) + beard[:, None] * hair_rgb
    hair = _hair_weight(points, skull_centre, skull_axes, tex)[:, None]
    streaks = 1.0 + 0.06 * np.sin(points @ np.array([0.7, 9.0, 3.0]))[:, None]
    color = color * (1 - hair) + hair * np.clip(hair_rgb * streaks, 0, 1)
    return np.clip(color, 0.0, 1.0)


# ------------------------------------------------------------------------------------------------
# Face texture (UV space of the canonical mesh)
# ------------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=4)
def _position_map(subdivisions: int, size: int) -> np.ndarray:
    """size x size x 3: the canonical 3D point under each texel (nearest face texel outside the UV layout)."""
    from scipy.ndimage import distance_transform_edt

    base = _base_mask(subdivisions)
    screen = np.stack([base.uvs[:, 0] * size - 0.5, base.uvs[:, 1] * size - 0.5, np.ones(len(base.uvs))], 1)
    frags = rasterize(screen, base.faces, size, size, cull_backfaces=False)
    pos = np.zeros((size * size, 3))
    pos[frags.pixels] = interpolate(frags, base.faces, base.vertices)
    pos = pos.reshape(size, size, 3)
    _, (rows, cols) = distance_transform_edt(~frags.mask, return_indices=True)
    return pos[rows, cols]


def _uv_px(indices: tuple[int, ...], size: int) -> np.ndarray:
    uv = load_canonical_mesh().uvs[list(indices)]
    return uv * size - 0.5


@functools.lru_cache(maxsize=4)
def face_texture(tex: TextureParams, subdivisions: int = 1, size: int = 512,
                 skull_centre: tuple[float, float, float] = SKULL_CENTRE,
                 skull_axes: tuple[float, float, float] = SKULL_AXES) -> np.ndarray:
    """size x size x 3 float32 albedo of the face mask (MediaPipe UV layout)."""
    skull_centre, skull_axes = np.array(skull_centre), np.array(skull_axes)  # hairline as on the skull
    half = max(size // 2, 16)  # skin, hair and beard are smooth: colour them at half resolution
    pos = _position_map(subdivisions, half)
    img = _albedo_3d(pos.reshape(-1, 3), tex, skull_centre, skull_axes).reshape(half, half, 3)
    img = cv2.resize(img, (size, size), interpolation=cv2.INTER_LINEAR).astype(np.float64)
    px_per_cm = size * 0.063  # the canonical face (about 15.7 cm wide) fills the UV square
    _paint_spots(img, tex, size, px_per_cm)
    _paint_brows(img, tex, size)
    _paint_lips(img, tex, size)
    _paint_eyes(img, tex, size)
    img[:4, :4] = 1.0  # white texel that non-face vertices sample (their colour is per vertex)
    return img.astype(np.float32)


def _blend(img: np.ndarray, alpha: np.ndarray, color: np.ndarray) -> None:
    """img = (1 - alpha) img + alpha color, in place, only over the bounding box where alpha > 0."""
    rows, cols = np.flatnonzero(alpha.any(1)), np.flatnonzero(alpha.any(0))
    if len(rows) == 0:
        return
    box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    a = np.clip(alpha[box], 0, 1)[..., None]
    img[box] = img[box] * (1 - a) + a * np.asarray(color, dtype=np.float64)


def _poly_mask(size: int, polygons: list[np.ndarray], blur: float = 0.0) -> np.ndarray:
    mask = np.zeros((size, size), np.float32)
    shift = 4  # sub-pixel precision of cv2's drawing
    for poly in polygons:
        cv2.fillPoly(mask, [np.rint(poly * (1 << shift)).astype(np.int32)], 1.0, cv2.LINE_AA, shift)
    if blur > 0:
        mask = cv2.GaussianBlur(mask, (0, 0), blur)
    return mask


def _paint_spots(img: np.ndarray, tex: TextureParams, size: int, px_per_cm: float) -> None:
    layer = np.zeros((size, size), np.float32)
    freckles = np.zeros((size, size), np.float32)
    uvs = load_canonical_mesh().uvs * size - 0.5
    for vertex, radius, darkness in tex.moles:
        cv2.circle(layer, tuple(np.rint(uvs[vertex] * 16).astype(int)), int(radius * px_per_cm * 16),
                   float(darkness), -1, cv2.LINE_AA, 4)
    for k, (vertex, radius) in enumerate(tex.freckles):
        jitter = np.array([math.sin(k * 12.9898) * 43758.5453 % 1 - 0.5, math.sin(k * 78.233) * 12345.678 % 1 - 0.5])
        centre = uvs[vertex] + jitter * 6.0 * size / 512
        cv2.circle(freckles, tuple(np.rint(centre * 16).astype(int)), max(1, int(radius * px_per_cm * 16)),
                   0.45, -1, cv2.LINE_AA, 4)
    skin = np.array(tex.skin)
    _blend(img, layer, skin * np.array([0.35, 0.25, 0.2]))
    _blend(img, freckles, skin * np.array([0.72, 0.55, 0.42]))
    if tex.mark is not None:
        kind, vertex, extent, angle = tex.mark
        mark = np.zeros((size, size), np.float32)
        centre = tuple(np.rint(uvs[vertex] * 16).astype(int))
        if kind == "birthmark":
            axes = (int(extent * px_per_cm * 8), int(extent * px_per_cm * 5))
            cv2.ellipse(mark, centre, axes, angle, 0, 360, 0.45, -1, cv2.LINE_AA, 4)
            mark = cv2.GaussianBlur(mark, (0, 0), 1.5 * size / 512)
            _blend(img, mark, np.array([0.55, 0.18, 0.2]) * max(skin.max(), 0.6))
        else:
            axes = (int(extent * px_per_cm * 8), max(16, int(0.08 * px_per_cm * 16)))
            cv2.ellipse(mark, centre, axes, angle, 0, 360, 0.7, -1, cv2.LINE_AA, 4)
            _blend(img, mark, np.clip(skin * np.array([1.15, 0.95, 0.95]) + 0.08, 0, 1))


def _paint_brows(img: np.ndarray, tex: TextureParams, size: int) -> None:
    polygons = []
    for upper_idx, lower_idx in zip(BROWS_UPPER, BROWS_LOWER):
        upper, lower = _uv_px(upper_idx, size), _uv_px(lower_idx, size)
        mid, half = (upper + lower) / 2, (upper - lower) / 2 * tex.brow_thickness
        half[0] *= 0.5  # thinner at the tail (outer end)
        polygons.append(np.concatenate([mid + half, (mid - half)[::-1]]))
    mask = _poly_mask(size, polygons, blur=1.2 * size / 512)
    yy, xx = np.mgrid[0:size, 0:size]
    strands = 0.85 + 0.15 * np.sin(xx * 1.7 + yy * 0.6)  # hair-like streaks inside the brow
    _blend(img, mask * strands * tex.brow_alpha, tex.brow)


def _paint_lips(img: np.ndarray, tex: TextureParams, size: int) -> None:
    outer, inner = _uv_px(LIPS_OUTER, size), _uv_px(LIPS_INNER, size)
    _blend(img, _poly_mask(size, [outer], blur=1.0 * size / 512), tex.lips)
    # Inside the lips (stretched open by mouth_stretch): dark mouth with upper teeth along the top.
    mouth = _poly_mask(size, [inner], blur=0.5)
    _blend(img, mouth, np.array([0.16, 0.05, 0.05]))
    upper = _uv_px(UPPER_INNER_LIP, size)
    teeth = np.zeros((size, size), np.float32)
    cv2.polylines(teeth, [np.rint((upper + [0, 1.0 * size / 512]) * 16).astype(np.int32)], False, 1.0,
                  max(1, int(2.0 * size / 512)), cv2.LINE_AA, 4)
    _blend(img, teeth * mouth, np.array([0.85, 0.83, 0.78]))


def _paint_eyes(img: np.ndarray, tex: TextureParams, size: int) -> None:
    for contour_idx, lid_idx in zip(EYES, UPPER_LIDS):
        contour = _uv_px(contour_idx, size)
        eye = _poly_mask(size, [contour])
        _blend(img, eye, np.array([0.86, 0.84, 0.80]))
        centre = contour.mean(0)
        height = np.ptp(contour[:, 1])
        iris = np.zeros((size, size), np.float32)
        pupil = np.zeros((size, size), np.float32)
        c16 = tuple(np.rint(centre * 16).astype(int))
        cv2.circle(iris, c16, int(0.62 * height * 16), 1.0, -1, cv2.LINE_AA, 4)
        cv2.circle(pupil, c16, int(0.27 * height * 16), 1.0, -1, cv2.LINE_AA, 4)
        _blend(img, iris * eye, tex.iris)
        _blend(img, pupil * eye, np.array([0.03, 0.03, 0.03]))
        lid = np.zeros((size, size), np.float32)
        cv2.polylines(lid, [np.rint(_uv_px(lid_idx, size) * 16).astype(np.int32)], False, 1.0,
                      max(1, int(3.0 * size / 512)), cv2.LINE_AA, 4)
        _blend(img, lid * 0.85, np.array([0.08, 0.06, 0.05]))


# ------------------------------------------------------------------------------------------------
# Rendering
# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Nuisance:
    """Per-image conditions that must not matter for identity."""

    pitch: float = 0.0
    roll: float = 0.0
    scale: float = 1.0  # focal-length factor
    shift: tuple[float, float] = (0.0, 0.0)  # pixels
    light_dir: tuple[float, float, float] = (0.3, -0.4, -1.0)  # towards the light, OpenCV camera frame
    light_rgb: tuple[float, float, float] = (1.0, 1.0, 1.0)
    ambient: float = 0.45
    diffuse: float = 0.65
    background: tuple[tuple[float, float, float], ...] = ((0.55, 0.57, 0.6),)  # colours of a coarse grid
    noise: float = 0.0  # std of pixel noise (0..1 scale)


def sample_nuisance(rng: np.random.Generator, config: SynthConfig) -> Nuisance:
    """Random light, background, pitch/roll, scale and shift for one image."""
    azimuth = math.radians(rng.uniform(-70, 70))
    elevation = math.radians(rng.uniform(-15, 55))
    light = (math.sin(azimuth) * math.cos(elevation), -math.sin(elevation), -math.cos(azimuth) * math.cos(elevation))
    tint = np.clip(1.0 + rng.normal(0, 0.04, 3), 0.88, 1.12)
    grey = rng.uniform(0.1, 0.9, (9, 1))
    colours = grey + rng.uniform(0.1, 0.5) * (rng.uniform(0.05, 0.95, (9, 3)) - grey)  # muted, not rainbow
    background = tuple(tuple(c) for c in np.clip(colours, 0, 1).tolist())
    shift = rng.uniform(-1, 1, 2) * config.shift_jitter * config.image_size
    return Nuisance(
        pitch=float(rng.uniform(-1, 1) * config.pitch_jitter), roll=float(rng.uniform(-1, 1) * config.roll_jitter),
        scale=float(1.0 + rng.uniform(-1, 1) * config.scale_jitter), shift=(float(shift[0]), float(shift[1])),
        light_dir=light, light_rgb=tuple((tint / tint.mean()).tolist()), ambient=float(rng.uniform(0.3, 0.55)),
        diffuse=float(rng.uniform(0.5, 0.8)), background=background, noise=float(rng.uniform(0.0, 0.015)))


def camera(yaw: float, pitch: float, roll: float, image_size: int, nuisance: Nuisance = Nuisance(),
           extent_cm: float = 32.0, distance_cm: float = 90.0) -> tuple[np.ndarray, np.ndarray]:
    """FaceScape-style (K 4 x 4, Rt 3 x 4 OpenCV) camera that sees the canonical head at this pose,
    centred on the head: euler_angles(CV_TO_GL @ Rt[:, :3]) == (yaw, pitch, roll)."""
    f = image_size * distance_cm / extent_cm * nuisance.scale
    cx = (image_size - 1) / 2 + nuisance.shift[0]
    cy = (image_size - 1) / 2 + nuisance.shift[1]
    K = np.array([[f, 0, cx, 0], [0, f, cy, 0], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=np.float64)
    r_gl = rotation_matrix(yaw, pitch, roll)
    t_gl = -r_gl @ HEAD_PIVOT + np.array([0.0, 0.0, -distance_cm])
    Rt = CV_TO_GL @ np.concatenate([r_gl, t_gl[:, None]], 1)
    return K, Rt


def _background(nuisance: Nuisance, size: int) -> np.ndarray:
    colours = np.asarray(nuisance.background, dtype=np.float32)
    side = int(round(math.sqrt(len(colours))))
    grid = colours[: side * side].reshape(side, side, 3)
    return cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC if side > 1 else cv2.INTER_NEAREST)


def render_head(head: HeadModel, yaw: float, pitch: float = 0.0, roll: float = 0.0, image_size: int = 256,
                nuisance: Nuisance = Nuisance(), rng: np.random.Generator | None = None,
                extent_cm: float = 32.0, distance_cm: float = 90.0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Render a head: (H x W x 3 uint8 RGB image, 468 x 3 float32 landmarks (x, y, visible), K, Rt)."""
    K, Rt = camera(yaw, pitch, roll, image_size, nuisance, extent_cm, distance_cm)
    screen = project(head.vertices, K, Rt)
    frags = rasterize(screen, head.faces, image_size, image_size)
    attrs = np.concatenate([head.normals, head.uvs, head.colors], 1)
    values = interpolate(frags, head.faces, attrs)  # M x 8
    normals = values[:, :3] @ Rt[:, :3].T
    normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-9)
    albedo = sample_bilinear(head.texture, values[:, 3:5]) * values[:, 5:8]
    shaded = lambert(albedo, normals, np.array(nuisance.light_dir), np.array(nuisance.light_rgb),
                     nuisance.ambient, nuisance.diffuse)
    image = _background(nuisance, image_size).reshape(-1, 3)
    image[frags.pixels] = shaded
    image = cv2.GaussianBlur(image.reshape(image_size, image_size, 3), (0, 0), 0.6)  # soft edges (no AA)
    if nuisance.noise > 0 and rng is not None:
        image = image + rng.standard_normal(image.shape, dtype=np.float32) * np.float32(nuisance.noise)
    image = np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8)
    # A landmark is seen if it lies within 3 mm of the visible surface, plus the depth a steep (70 degree)
    # slope spans over 2.5 pixels (its own pixel centre and the 3 x 3 neighbourhood it is compared with).
    pixel_cm = screen[:NUM_LANDMARKS, 2] / K[0, 0]
    visible = visible_vertices(screen[:NUM_LANDMARKS], frags.depth, 0.3 + 2.5 * 2.75 * pixel_cm)
    landmarks = np.concatenate([screen[:NUM_LANDMARKS, :2], visible[:, None]], 1).astype(np.float32)
    return image, landmarks, K, Rt


def render_identity_view(identity: IdentityParams | int, yaw: float, pitch: float = 0.0, roll: float = 0.0,
                         expression: str = "1_neutral", image_size: int = 256, seed: int = 0,
                         nuisance: Nuisance | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One identity at any pose without writing files (the app's pose explorer): (image, 468 x 3 landmarks).
    `identity` is an IdentityParams or an identity number of the benchmark with this `seed`."""
    params = identity if isinstance(identity, IdentityParams) else sample_identity(seed, int(identity))
    head = _cached_head(params, expression)
    image, landmarks, _, _ = render_head(head, yaw, pitch, roll, image_size, nuisance or Nuisance())
    return image, landmarks


@functools.lru_cache(maxsize=8)
def _cached_head(identity: IdentityParams, expression: str) -> HeadModel:
    return build_head(identity, expression)


# ------------------------------------------------------------------------------------------------
# Point clouds and the benchmark on disk
# ------------------------------------------------------------------------------------------------

def sample_face_points(head: HeadModel, num_points: int, rng: np.random.Generator) -> np.ndarray:
    """P x 9 float32 area-weighted samples of the face mask (xyz cm, unit normals, albedo rgb in [0, 1])."""
    faces = head.faces[: head.face_face_count]
    tri = head.vertices[faces]
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    chosen = rng.choice(len(faces), size=num_points, p=area / area.sum())
    r1, r2 = rng.uniform(size=(2, num_points))
    s1 = np.sqrt(r1)
    bary = np.stack([1 - s1, s1 * (1 - r2), s1 * r2], 1)  # uniform on each triangle
    corners = faces[chosen]

    def lerp(values: np.ndarray) -> np.ndarray:
        return np.einsum("pk,pka->pa", bary, values[corners])

    xyz = lerp(head.vertices)
    normals = lerp(head.normals)
    normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-9)
    rgb = sample_bilinear(head.texture, lerp(head.uvs)) * lerp(head.colors)
    return np.concatenate([xyz, normals, np.clip(rgb, 0, 1)], 1).astype(np.float32)


def _identity_splits(n: int, seed: int, fractions: tuple[float, float, float]) -> dict[str, list[str]]:
    """Disjoint train/val/test identity names; at least one test identity when n >= 3."""
    order = (_rng(seed, 0, 99).permutation(n) + 1).tolist()
    n_test = max(1, round(fractions[2] * n)) if n >= 3 else 0
    n_val = round(fractions[1] * n) if n >= 3 else 0
    n_val = min(n_val, n - n_test - 1)
    names = [str(i) for i in order]
    test, val, train = names[:n_test], names[n_test:n_test + n_val], names[n_test + n_val:]
    key = int
    return {"train": sorted(train, key=key), "val": sorted(val, key=key), "test": sorted(test, key=key)}


def _generate_identity(task: tuple[SynthConfig, str, int]) -> dict[str, dict[str, float]]:
    """Write every file of one identity; return its views' poses keyed by relative image path."""
    config, root_str, index = task
    cv2.setNumThreads(1)
    from pose3dfr.data.pointcloud import save_mesh, save_point_cloud

    root = Path(root_str)
    identity = sample_identity(config.seed, index)
    poses: dict[str, dict[str, float]] = {}
    for k, expression in enumerate(config.expression_names()):
        head = build_head(identity, expression, config.subdivisions, config.texture_size)
        mesh_dir = root / "meshes" / str(index)
        mesh_dir.mkdir(parents=True, exist_ok=True)
        albedo = sample_bilinear(head.texture, head.uvs) * head.colors
        save_mesh(mesh_dir / f"{expression}.ply", head.vertices, head.faces, vertex_colors=np.clip(albedo, 0, 1),
                  vertex_normals=head.normals)
        points = sample_face_points(head, config.points, _rng(config.seed, index, 10 + k))
        save_point_cloud(mesh_dir / f"{expression}_points.ply", points)
        view_dir = root / "images" / str(index) / expression
        view_dir.mkdir(parents=True, exist_ok=True)
        rng = _rng(config.seed, index, 100 + k)
        params: dict[str, object] = {}
        for view, yaw in enumerate(config.yaws()):
            nuisance = sample_nuisance(rng, config)
            image, landmarks, K, Rt = render_head(head, yaw, nuisance.pitch, nuisance.roll, config.image_size,
                                                  nuisance, rng, config.view_extent_cm, config.camera_distance_cm)
            ok, data = cv2.imencode(".jpg", image[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, config.jpeg_quality])
            if not ok:
                raise Pose3DFRError(f"{view_dir / f'{view}.jpg'}: JPEG encoding failed")
            (view_dir / f"{view}.jpg").write_bytes(data.tobytes())
            np.save(view_dir / f"{view}_landmarks.npy", landmarks, allow_pickle=False)
            params.update({
                f"{view}_K": K.tolist(), f"{view}_Rt": Rt.tolist(), f"{view}_distortion": [0.0] * 5,
                f"{view}_width": config.image_size, f"{view}_height": config.image_size,
                f"{view}_matches": int(landmarks[:, 2].sum()), f"{view}_valid": True,
                f"{view}_sn": f"synthetic-yaw{yaw:+.0f}", f"{view}_ori": f"{view}.jpg"})
            poses[f"images/{index}/{expression}/{view}.jpg"] = {
                "yaw": yaw, "pitch": nuisance.pitch, "roll": nuisance.roll}
        (view_dir / "params.json").write_text(json.dumps(params, indent=1))
    return poses


def generate_benchmark(out_dir: str | Path, config: SynthConfig | None = None, progress: bool = False) -> Path:
    """Write the synthetic benchmark to `out_dir` (FaceScape layout) and return the manifest path.

    Identical seeds and arguments give byte-identical files whatever `workers` is. An existing output
    of this generator is replaced; any other non-empty folder is refused (nothing of the user's is deleted)."""
    config = config or SynthConfig()
    config.validate()
    root = Path(out_dir)
    _prepare_output(root)
    tasks = [(config, str(root), index) for index in range(1, config.identities + 1)]
    poses: dict[str, dict[str, float]] = {}
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(tasks), unit="identity", desc="synth")
    if config.workers > 1 and len(tasks) > 1:
        method = "fork" if sys.platform.startswith("linux") else "spawn"
        with ProcessPoolExecutor(config.workers, mp_context=multiprocessing.get_context(method)) as pool:
            for result in pool.map(_generate_identity, tasks):
                poses.update(result)
                bar is not None and bar.update(1)
    else:
        for task in tasks:
            poses.update(_generate_identity(task))
            bar is not None and bar.update(1)
    if bar is not None:
        bar.close()
    arguments = {k: v for k, v in asdict(config).items() if k != "workers"}  # workers do not change the output
    manifest = {
        "generator": GENERATOR, "version": GENERATOR_VERSION, "seed": config.seed, "arguments": arguments,
        "units": "cm", "frame": "canonical face frame (MediaPipe canonical mesh; x image right, y up, z out of the face)",
        "identities": [str(i) for i in range(1, config.identities + 1)],
        "expressions": config.expression_names(), "yaws": config.yaws(),
        "splits": _identity_splits(config.identities, config.seed, config.split_fractions),
        "views": dict(sorted(poses.items(), key=lambda kv: _path_key(kv[0]))),
    }
    path = root / "manifest.json"
    path.write_text(json.dumps(manifest, indent=1))
    write_contact_sheet(root, config)
    return path


def _path_key(path: str) -> tuple:
    _, identity, expression, view = path.split("/")
    return int(identity), int(expression.split("_")[0]), int(view.split(".")[0])


def _prepare_output(root: Path) -> None:
    if root.exists() and not root.is_dir():
        raise Pose3DFRError(f"{root}: output path exists and is not a folder")
    if root.is_dir() and any(root.iterdir()):
        manifest = root / "manifest.json"
        ours = False
        if manifest.is_file():
            try:
                ours = json.loads(manifest.read_text()).get("generator") == GENERATOR
            except (ValueError, OSError, AttributeError):
                ours = False
        if not ours:
            raise Pose3DFRError(f"{root}: folder is not empty and holds no synthetic benchmark; choose an empty folder")
        for name in ("images", "meshes"):
            shutil.rmtree(root / name, ignore_errors=True)
        for name in ("manifest.json", "contact_sheet.png"):
            (root / name).unlink(missing_ok=True)
    root.mkdir(parents=True, exist_ok=True)


def write_contact_sheet(root: Path, config: SynthConfig) -> Path:
    """contact_sheet.png: one row per identity (up to contact_sheet_rows), one column per yaw, first expression."""
    from pose3dfr.face.image_io import load_image

    thumb = config.contact_sheet_thumb
    yaws = config.yaws()
    rows = min(config.identities, config.contact_sheet_rows)
    sheet = np.full((rows * thumb, len(yaws) * thumb, 3), 255, np.uint8)
    expression = config.expression_names()[0]
    for r in range(rows):
        for c in range(len(yaws)):
            image = load_image(root / "images" / str(r + 1) / expression / f"{c}.jpg")
            sheet[r * thumb:(r + 1) * thumb, c * thumb:(c + 1) * thumb] = cv2.resize(
                image, (thumb, thumb), interpolation=cv2.INTER_AREA)
    path = root / "contact_sheet.png"
    cv2.imwrite(str(path), sheet[:, :, ::-1])
    return path


