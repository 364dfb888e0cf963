"""A synthetic identity's renderable head: the face mask closed by a skirt, skull/neck tube with hair, and ears.

The skull and neck follow the neutral face and are kept behind it; the mouth interior is dark with
upper teeth, seen when the mouth opens.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import cv2
import numpy as np

from pose3dfr.data.render import rasterize
from pose3dfr.data.synthetic.config import LIPS_INNER, SKULL_CENTRE, UPPER_INNER_LIP
from pose3dfr.data.synthetic.identity import IdentityParams, apply_expression, base_mask, identity_mask
from pose3dfr.data.synthetic.texture import albedo_3d, elevation_azimuth, face_texture, hair_weight
from pose3dfr.face.mesh import load_canonical_mesh, vertex_normals

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
    base = base_mask(subdivisions)
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
    colors[n_mask:starts[2]] = albedo_3d(vertices[n_mask:starts[2]], identity.texture, skull_centre,
                                          np.array(identity.skull_axes))
    colors[starts[2]:starts[3]] = np.clip(np.array(identity.texture.skin) * [1.0, 0.93, 0.92], 0, 1)
    colors[starts[3]:] = mouth_rgb
    return HeadModel(vertices, faces, normals, uvs, colors, texture, n_mask, len(base.faces))


@functools.lru_cache(maxsize=4)
def _mouth_interior(subdivisions: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mask faces inside the inner lip contour, their vertices, and a colour per vertex (teeth to throat)."""
    base = base_mask(subdivisions)
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
        hair = hair_weight(v, self.centre, self.axes, identity.texture)
        outward = np.stack([v[:, 0], np.zeros(len(v)), v[:, 2] - np.repeat(z0, segments)], 1)
        outward[:, 1] = (v[:, 1] - yc) * 0.6 * (v[:, 1] > yc)
        outward /= np.maximum(np.linalg.norm(outward, axis=1, keepdims=True), 1e-9)
        elevation, azimuth = elevation_azimuth(v, self.centre, self.axes)
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
