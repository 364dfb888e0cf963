"""Images and point clouds of synthetic heads: per-image nuisance, the camera, rendering, face samples.

Nuisance per image: light direction and colour, background, pitch/roll, scale and shift jitter.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import cv2
import numpy as np

from pose3dfr.data.render import interpolate, lambert, project, rasterize, sample_bilinear, visible_vertices
from pose3dfr.data.synthetic.config import NUM_LANDMARKS, SynthConfig
from pose3dfr.data.synthetic.head import HeadModel, build_head
from pose3dfr.data.synthetic.identity import IdentityParams, sample_identity
from pose3dfr.geometry import CV_TO_GL, rotation_matrix

# Rotation pivot and look-at point of every camera: the middle of the head.
HEAD_PIVOT = np.array([0.0, 1.5, -3.5])


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
