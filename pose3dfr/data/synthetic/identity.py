"""Seeded synthetic identities: shape and texture parameters, the identity's face mask, and expressions.

Each identity is the MediaPipe canonical face (Loop-subdivided; vertex i stays landmark i) deformed by
seeded shape parameters (Gaussian bumps around landmark regions, mostly mirror-symmetric, plus global
proportions). Expressions (FaceScape's names) move the mouth, jaw and brows, so identity must survive them.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np

from pose3dfr.data.synthetic.config import (BROWS_UPPER, CHEEKS, EXPRESSIONS, EYES, LIPS_OUTER, MOUTH_CORNERS,
                                            NECK, SKULL_AXES, seeded_rng)
from pose3dfr.errors import Pose3DFRError
from pose3dfr.face.mesh import boundary_loop, load_canonical_mesh, loop_subdivide, vertex_normals

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


@functools.lru_cache(maxsize=64)
def sample_identity(seed: int, index: int) -> IdentityParams:
    """The identity number `index` (1-based) of the benchmark with this seed."""
    rng = seeded_rng(seed, index, 1)
    shape = {name: float(np.clip(rng.normal(0.0, std), -2.5 * std, 2.5 * std))
             for name, _, _, _, std in SHAPE_COMPONENTS}
    candidates = _face_vertices_for_marks()
    asymmetry = tuple((int(rng.choice(candidates)), float(rng.uniform(0.8, 1.6)), float(rng.normal(0, 0.12)))
                      for _ in range(3))
    proportions = (float(rng.normal(1.0, 0.04)), float(rng.normal(1.0, 0.04)),
                   float(rng.normal(1.0, 0.07)), float(rng.normal(1.0, 0.06)))
    skull = tuple(float(a * p * rng.normal(1.0, 0.03)) for a, p in zip(SKULL_AXES, proportions[:3]))
    neck = (NECK[0] * float(rng.normal(1.0, 0.06)), NECK[1] * float(rng.normal(1.0, 0.06)), NECK[2])
    texture = _sample_texture(seeded_rng(seed, index, 2))
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


@dataclass(frozen=True)
class BaseMask:
    vertices: np.ndarray  # V x 3 (first 468 = MediaPipe landmarks)
    faces: np.ndarray
    uvs: np.ndarray
    normals: np.ndarray
    rim: np.ndarray  # boundary loop (vertex indices)


@functools.lru_cache(maxsize=4)
def base_mask(subdivisions: int) -> BaseMask:
    mesh = loop_subdivide(load_canonical_mesh(), subdivisions)
    return BaseMask(mesh.vertices, mesh.faces, mesh.uvs, vertex_normals(mesh.vertices, mesh.faces),
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
    base = base_mask(subdivisions)
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
