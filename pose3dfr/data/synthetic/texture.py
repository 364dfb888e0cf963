"""Colour of a synthetic identity: skin, scalp and facial hair at 3D points, and the painted face texture.

The face texture lives in the UV layout of the canonical mesh: skin, hair and beard are coloured at the
3D point under each texel, then moles, freckles, a mark, brows, lips and eyes are painted over it.
"""

from __future__ import annotations

import functools
import math

import cv2
import numpy as np

from pose3dfr.data.render import interpolate, rasterize
from pose3dfr.data.synthetic.config import (BROWS_LOWER, BROWS_UPPER, CHEEKS, EYES, LIPS_INNER, LIPS_OUTER,
                                            SKULL_AXES, SKULL_CENTRE, UPPER_INNER_LIP, UPPER_LIDS)
from pose3dfr.data.synthetic.identity import TextureParams, base_mask
from pose3dfr.face.mesh import load_canonical_mesh

def elevation_azimuth(points: np.ndarray, centre: np.ndarray, axes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Degrees on the skull ellipsoid: elevation (up +90) and azimuth (0 = face front, 180 = back)."""
    d = (points - centre) / axes
    elevation = np.degrees(np.arctan2(d[:, 1], np.hypot(d[:, 0], d[:, 2])))
    azimuth = np.degrees(np.abs(np.arctan2(d[:, 0], d[:, 2])))
    return elevation, azimuth


def hair_weight(points: np.ndarray, centre: np.ndarray, axes: np.ndarray, tex: TextureParams) -> np.ndarray:
    """0..1 scalp hair cover at 3D points: above a hairline that runs from forehead over the ears to the nape."""
    elevation, azimuth = elevation_azimuth(points, centre, axes)
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


def albedo_3d(points: np.ndarray, tex: TextureParams, skull_centre: np.ndarray, skull_axes: np.ndarray) -> np.ndarray:
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
    hair = hair_weight(points, skull_centre, skull_axes, tex)[:, None]
    streaks = 1.0 + 0.06 * np.sin(points @ np.array([0.7, 9.0, 3.0]))[:, None]
    color = color * (1 - hair) + hair * np.clip(hair_rgb * streaks, 0, 1)
    return np.clip(color, 0.0, 1.0)


@functools.lru_cache(maxsize=4)
def _position_map(subdivisions: int, size: int) -> np.ndarray:
    """size x size x 3: the canonical 3D point under each texel (nearest face texel outside the UV layout)."""
    from scipy.ndimage import distance_transform_edt

    base = base_mask(subdivisions)
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
    img = albedo_3d(pos.reshape(-1, 3), tex, skull_centre, skull_axes).reshape(half, half, 3)
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
