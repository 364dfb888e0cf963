"""Face profiling of real photos (300W-LP style; Zhu et al., CVPR 2016): a frontal photo's face turned to any
known yaw, with the photo's own skin, eyes, brows and hairline.

The photo's 468 MediaPipe landmarks (x, y pixels, z depth) are the face: put into the canonical frame by the
similarity fit of `pseudo_cloud.canonical_similarity` (pose removed), triangulated like the canonical mesh,
textured from the photo at each landmark's own pixel. The rest of the head is a proxy placed like the synthetic
heads' (pose3dfr.data.synthetic: skull ellipsoid, neck, ears; kept behind the face): where the photo saw a
proxy point squarely it takes the photo's pixel (hair, the ear seen edge-on, the neck), elsewhere (the back of
the head, the hidden side) a fill of the photo's own hair and skin colour, lit. Face points the photo saw
badly (self-occluded or at a grazing angle) take the texture of their mirror partner, as 300W-LP fills the
hidden side. The head is rendered with the synthetic benchmark's camera (`synthetic.camera`), so a view's
pose follows the same convention as the renders, over the photo's own surroundings with the head inpainted
away (or any background given).

What is not real: the ears' shape, the back and sides of the head, hair volume, and the photo's lighting,
which turns with the face. The truth is relative to the fitted canonical frame (on the shipped photos the fit
agrees with MediaPipe's pose within about 2 degrees).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import cv2
import numpy as np

from pose3dfr.data.pseudo_cloud import canonical_similarity
from pose3dfr.data.render import interpolate, lambert, project, rasterize, sample_bilinear, visible_vertices
from pose3dfr.data.synthetic import HEAD_PIVOT, NECK, SKULL_AXES, SKULL_CENTRE, Nuisance, camera
from pose3dfr.errors import Pose3DFRError
from pose3dfr.face.mesh import boundary_loop, load_canonical_mesh, vertex_normals
from pose3dfr.geometry import euler_angles

NUM_FACE = 468
_FLIP = np.array([1.0, -1.0, -1.0])  # image axes (x right, y down, z away) <-> canonical (x right, y up, z out)
# Canonical-mesh landmarks whose photo colour is the skin fill: cheeks, forehead, chin.
SKIN_SAMPLES = (205, 425, 50, 280, 151, 9, 108, 337, 199, 175)
# Top of the face mask (MediaPipe's forehead rim, below the hairline): the hair colour is read this far (cm)
# above it (the shipped photos: the hairline 2-3 cm above, the crown 4-6 cm; a bald head gives skin).
HAIR_SAMPLES = (10, 338, 297, 109, 67)
HAIR_ABOVE_CM = (3.5, 4.0, 4.5)
# Resolution (photo pixels per canonical cm) at which the photo's visibility is z-buffered: the eye sockets
# need a few pixels per centimetre, a full-size photo is wasted work.
PHOTO_ZBUFFER_PX_PER_CM = 8.0
# Light of the fill (towards the light, OpenCV camera frame): from above the camera, on neither side, so a view
# and its mirror image are lit alike.
FILL_LIGHT = np.array([0.0, -0.5, -1.0])


@dataclass
class ProfilingConfig:
    """How a photo's head is built and rendered; the defaults frame it like the synthetic benchmark's renders."""

    image_size: int = 256
    view_extent_cm: float = 32.0  # image height in cm at the head centre (synthetic.SynthConfig's)
    camera_distance_cm: float = 90.0  # portrait-lens perspective, as the renders
    # A proxy point takes the photo's pixel only if the photo saw it within this angle of its normal: beyond it
    # one photo pixel would be smeared over centimetres of the turned head.
    max_photo_angle: float = 75.0
    photo_blend_deg: float = 10.0  # the photo texture fades into the fill over this many degrees below that
    # Face points seen by the photo beyond this angle (or hidden) take their mirror partner's texture, if the
    # partner was seen better: the side of the face a near-frontal photo foreshortens.
    mirror_fill_angle: float = 70.0
    # Face points seen beyond this angle even so (the rim by the ears: its pixels are the ear's or the hair's)
    # fade into the skin fill.
    max_face_photo_angle: float = 80.0
    skull_depth_margin: float = 0.35  # cm the proxy skull is kept behind the face's rim (synthetic heads': 0.35)
    skull_depth_inside: float = 3.0  # cm behind the face 2 cm inside its rim: clear of the eye sockets
    neck_bottom_cm: float = -17.0  # canonical y where the neck ends (collar height): the torso stays the photo's
    hair_rgb_grain: float = 0.05  # relative per-vertex variation of the fill colour (hair is not flat)
    ambient: float = 0.55  # lighting of the fill (the photo parts keep the photo's own light)
    diffuse: float = 0.5
    edge_blur: float = 0.6  # px: soft head edges (the rasteriser does no anti-aliasing), as render_head


@dataclass
class PhotoHead:
    """A photo's head ready to turn: vertices in the canonical frame (cm), their photo pixels and texture weights."""

    vertices: np.ndarray  # V x 3 canonical frame (cm): first 468 = the photo's face, then the proxy
    faces: np.ndarray  # F x 3, counter-clockwise seen from outside
    normals: np.ndarray  # V x 3
    photo_uv: np.ndarray  # V x 2 in [0, 1]: where each vertex's colour is read in the photo
    partner_uv: np.ndarray  # V x 2: the same for its mirror partner (face vertices; the proxy's own UV)
    partner_mix: np.ndarray  # V in [0, 1]: share of the partner's colour (the side the photo saw badly)
    photo_weight: np.ndarray  # V: 1 = the photo's colour, 0 = the fill colour
    fill_rgb: np.ndarray  # V x 3 in [0, 1]: hair / skin fill where the photo did not see the head
    texture: np.ndarray  # H x W x 3 float32 in [0, 1]: the photo
    background: np.ndarray  # S x S x 3 uint8: the photo's surroundings, head inpainted, framed like a view
    pose: tuple[float, float, float]  # the photo's own (yaw, pitch, roll) in the fitted canonical frame
    to_photo: np.ndarray  # 3 x 4 affine: canonical cm -> photo pixels x, y and depth (the inverse of the fit)


@dataclass
class ProfileView:
    """One rendered view: image, projected face landmarks (x, y, visible) and the pose it was rendered at."""

    image: np.ndarray  # S x S x 3 uint8 RGB
    landmarks: np.ndarray  # 468 x 3 float32: x, y pixels, 1 if visible
    yaw: float
    pitch: float
    roll: float


def fit_photo_head(photo: np.ndarray, landmarks: np.ndarray, cfg: ProfilingConfig | None = None,
                   seed: int = 0) -> PhotoHead:
    """The head of a photo (H x W x 3 uint8 RGB) from its MediaPipe landmarks (468/478 x 3 pixels, z like x)."""
    cfg = cfg or ProfilingConfig()
    if photo.ndim != 3 or photo.shape[2] != 3:
        raise Pose3DFRError(f"photo of shape {photo.shape}: expected H x W x 3 RGB")
    lm = np.asarray(landmarks, dtype=np.float64)[:NUM_FACE, :3]
    scale, rotation, shift = canonical_similarity(lm)
    face = scale * (lm * _FLIP) @ rotation.T + shift  # 468 x 3 canonical cm
    proxy_v, proxy_f = _proxy_mesh(face, cfg)
    vertices = np.concatenate([face, proxy_v])
    faces = np.concatenate([load_canonical_mesh().faces, proxy_f + NUM_FACE])
    normals = vertex_normals(vertices, faces)
    to_photo = np.c_[rotation.T / scale, -rotation.T @ shift / scale] * _FLIP[:, None]  # inverse of the fit
    photo_xyz = vertices @ to_photo[:, :3].T + to_photo[:, 3]
    photo_n = (normals @ rotation) * _FLIP
    cos_seen = -photo_n[:, 2]  # the photo looks along +z (image axes): facing it means n_z < 0
    seen = _seen_in_photo(photo_xyz, faces, photo.shape[:2], scale) & (cos_seen > 0)
    h, w = photo.shape[:2]
    uv = (photo_xyz[:, :2] + 0.5) / np.array([w, h])
    weight = np.where(seen, np.clip((cos_seen - math.cos(math.radians(cfg.max_photo_angle)))
                                    / max(math.radians(cfg.photo_blend_deg), 1e-6), 0, 1), 0.0)
    partner_uv, mix, weight = _mirror_fill(uv, weight, seen, cos_seen, cfg)
    texture = photo.astype(np.float32) / 255.0
    hair_uv = _hair_sample_uv(face, to_photo, photo.shape[:2])
    fill = _fill_colours(vertices, texture, uv, hair_uv, np.random.default_rng(seed), cfg)
    yaw, pitch, roll = euler_angles(rotation.T)  # canonical -> photo-camera rotation, both in canonical axes
    head = PhotoHead(vertices, faces, normals, uv, partner_uv, mix, weight, fill, texture,
                     np.zeros((0, 0, 3), np.uint8), (yaw, pitch, roll), to_photo)
    head.background = _photo_background(photo, head, photo_xyz, cfg)
    return head


def frame_matrix(head: PhotoHead, cfg: ProfilingConfig | None = None) -> np.ndarray:
    """2 x 3 affine from photo pixels to a view's pixels at zoom 1: the head pivot at the centre, the view's
    pixels per cm at the pivot (so the photo frames the head as a view at the photo's own pose does)."""
    cfg = cfg or ProfilingConfig()
    pivot = head.to_photo[:, :3] @ np.asarray(HEAD_PIVOT, np.float64) + head.to_photo[:, 3]
    photo_px_per_cm = float(np.linalg.norm(head.to_photo[0, :3]))
    k = cfg.image_size / cfg.view_extent_cm / photo_px_per_cm  # synthetic.camera: focal / distance at the pivot
    c = (cfg.image_size - 1) / 2
    return np.array([[k, 0, c - k * pivot[0]], [0, k, c - k * pivot[1]]])


def render_profile(head: PhotoHead, yaw: float, pitch: float = 0.0, roll: float = 0.0,
                   cfg: ProfilingConfig | None = None, background: np.ndarray | None = None,
                   zoom: float = 1.0, shift: tuple[float, float] = (0.0, 0.0)) -> ProfileView:
    """The photo's head at (yaw, pitch, roll) (degrees, pose3dfr.geometry convention), framed like the synthetic
    renders; over `background` (S x S x 3 uint8) or else the photo's own surroundings. `zoom` and `shift`
    (pixels) move the head in the frame as synthetic.Nuisance's scale and shift do (the background stays)."""
    cfg = cfg or ProfilingConfig()
    size = cfg.image_size
    K, Rt = camera(yaw, pitch, roll, size, Nuisance(scale=zoom, shift=shift), cfg.view_extent_cm,
                   cfg.camera_distance_cm)
    screen = project(head.vertices, K, Rt)
    frags = rasterize(screen, head.faces, size, size)
    attrs = np.concatenate([head.normals, head.photo_uv, head.photo_weight[:, None], head.fill_rgb,
                            head.partner_uv, head.partner_mix[:, None]], 1)
    values = interpolate(frags, head.faces, attrs)  # M x 12
    normals = values[:, :3] @ Rt[:, :3].T
    normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-9)
    lit = lambert(values[:, 6:9], normals, FILL_LIGHT, np.ones(3), cfg.ambient, cfg.diffuse)
    mix = np.clip(values[:, 11:12], 0, 1)  # each UV set is interpolated whole, then the colours are blended
    photo_rgb = (1 - mix) * sample_bilinear(head.texture, values[:, 3:5]) + mix * sample_bilinear(
        head.texture, values[:, 9:11])
    w = np.clip(values[:, 5:6], 0, 1)
    rgb = np.zeros((size * size, 3), np.float32)
    rgb[frags.pixels] = w * photo_rgb + (1 - w) * lit
    alpha = np.zeros(size * size, np.float32)
    alpha[frags.pixels] = 1.0
    rgb, alpha = rgb.reshape(size, size, 3), alpha.reshape(size, size)
    if cfg.edge_blur > 0:  # soft edges: blur colour and coverage together, then un-premultiply
        rgb = cv2.GaussianBlur(rgb * alpha[..., None], (0, 0), cfg.edge_blur)
        alpha = cv2.GaussianBlur(alpha, (0, 0), cfg.edge_blur)
        rgb = rgb / np.maximum(alpha[..., None], 1e-6)
    back = head.background if background is None else background
    if back.shape != (size, size, 3):
        raise Pose3DFRError(f"background of shape {back.shape}: expected {(size, size, 3)}")
    image = alpha[..., None] * rgb * 255.0 + (1 - alpha[..., None]) * back.astype(np.float32)
    pixel = screen[:NUM_FACE, 2] / K[0, 0]  # cm per pixel at each landmark's depth
    visible = visible_vertices(screen[:NUM_FACE], frags.depth, 0.3 + 2.5 * 2.75 * pixel)
    landmarks = np.concatenate([screen[:NUM_FACE, :2], visible[:, None]], 1).astype(np.float32)
    return ProfileView(np.clip(image + 0.5, 0, 255).astype(np.uint8), landmarks, float(yaw), float(pitch), float(roll))


def mirror_view(view: ProfileView) -> ProfileView:
    """The view mirrored left-right: image flipped, landmarks mapped to their mirror partners, yaw and roll negated."""
    size = view.image.shape[1]
    marks = view.landmarks[list(mirror_partners())].copy()
    marks[:, 0] = size - 1 - marks[:, 0]
    return ProfileView(np.ascontiguousarray(view.image[:, ::-1]), marks, -view.yaw, view.pitch, -view.roll)


@functools.lru_cache(maxsize=1)
def mirror_partners() -> tuple[int, ...]:
    """Index of each canonical-mesh vertex's mirror partner (x -> -x; the mesh is symmetric)."""
    v = load_canonical_mesh().vertices
    mirrored = v * np.array([-1.0, 1.0, 1.0])
    dist = np.linalg.norm(v[None] - mirrored[:, None], axis=2)
    return tuple(int(i) for i in dist.argmin(1))


def _seen_in_photo(photo_xyz: np.ndarray, faces: np.ndarray, shape: tuple[int, int], scale: float) -> np.ndarray:
    """V bool: the vertex is on the surface the photo shows (z-buffered orthographically in photo pixels)."""
    h, w = shape
    depth = photo_xyz[:, 2] - photo_xyz[:, 2].min() + 10.0  # orthographic: any positive depth offset
    screen = np.stack([photo_xyz[:, 0], photo_xyz[:, 1], depth], 1)
    # z-buffer at PHOTO_ZBUFFER_PX_PER_CM at most: a large photo need not be rasterised at full size
    k = min(1.0, PHOTO_ZBUFFER_PX_PER_CM * scale)
    frags = rasterize(screen * [k, k, 1.0], faces, max(1, int(h * k)), max(1, int(w * k)))
    return visible_vertices(screen * [k, k, 1.0], frags.depth, 0.5 / scale)


def _mirror_fill(uv: np.ndarray, weight: np.ndarray, seen: np.ndarray, cos_seen: np.ndarray,
                 cfg: ProfilingConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(partner UVs, partner share, photo weight): face vertices the photo saw badly take their mirror partner's
    colour when that one was seen better, blended smoothly (per vertex UVs of two sides never mix in one
    triangle, which would smear the face across it); the rest fades into the fill."""
    partner = np.asarray(mirror_partners())
    face_cos = np.where(seen[:NUM_FACE], cos_seen[:NUM_FACE], -1.0)
    limit = math.cos(math.radians(cfg.mirror_fill_angle))
    ramp = max(math.radians(cfg.photo_blend_deg), 1e-6)
    mix = np.zeros(len(uv))
    mix[:NUM_FACE] = np.clip((limit - face_cos) / ramp, 0, 1) * np.clip((face_cos[partner] - face_cos) / ramp, 0, 1)
    partner_uv = uv.copy()
    partner_uv[:NUM_FACE] = uv[partner]
    used = (1 - mix[:NUM_FACE]) * face_cos + mix[:NUM_FACE] * face_cos[partner]  # how squarely it was seen
    weight = weight.copy()
    weight[:NUM_FACE] = np.clip((used - math.cos(math.radians(cfg.max_face_photo_angle))) / ramp, 0, 1)
    return partner_uv, mix, weight


def _hair_sample_uv(face: np.ndarray, to_photo: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """N x 2 photo UVs just above the forehead rim (canonical y + HAIR_ABOVE_CM): the hair (or the scalp)."""
    top = face[list(HAIR_SAMPLES)]
    points = np.concatenate([top + [0.0, dy, -0.5 * dy] for dy in HAIR_ABOVE_CM])
    xy = points @ to_photo[:2, :3].T + to_photo[:2, 3]
    return (xy + 0.5) / np.array([shape[1], shape[0]])


def _fill_colours(vertices: np.ndarray, texture: np.ndarray, uv: np.ndarray, hair_uv: np.ndarray,
                  rng: np.random.Generator, cfg: ProfilingConfig) -> np.ndarray:
    """V x 3 fill: the photo's hair colour on the skull above the ears and at the back, its skin colour on the
    ears, the neck and the face; a little per-vertex grain."""
    skin = np.median(sample_bilinear(texture, uv[list(SKIN_SAMPLES)]), axis=0)
    centre, axes = np.asarray(SKULL_CENTRE), np.asarray(SKULL_AXES)
    d = (vertices - centre) / axes
    elevation = np.degrees(np.arctan2(d[:, 1], np.hypot(d[:, 0], d[:, 2])))
    azimuth = np.degrees(np.abs(np.arctan2(d[:, 0], d[:, 2])))  # 0 = face front, 180 = back
    hairline = 25.0 - 45.0 * np.clip((azimuth - 60.0) / 90.0, 0, 1)  # forehead top down to the nape
    hair = 1.0 / (1.0 + np.exp(-(elevation - hairline) / 4.0))
    hair[:NUM_FACE] = 0.0
    hair_rgb = np.median(sample_bilinear(texture, hair_uv), axis=0)
    rgb = hair[:, None] * hair_rgb + (1 - hair[:, None]) * skin
    rgb *= 1.0 + cfg.hair_rgb_grain * rng.standard_normal((len(vertices), 1))
    return np.clip(rgb, 0, 1)


def _photo_background(photo: np.ndarray, head: PhotoHead, photo_xyz: np.ndarray, cfg: ProfilingConfig) -> np.ndarray:
    """S x S x 3 uint8: the photo framed as a view at zoom 1 frames the head (head pivot at the centre, same
    cm per pixel), with the head's silhouette in the photo filled from its surroundings (push_pull_fill)."""
    size = cfg.image_size
    matrix = frame_matrix(head, cfg)
    k = matrix[0, 0]
    framed = cv2.warpAffine(photo, matrix, (size, size), flags=cv2.INTER_AREA if k < 1 else cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_REPLICATE)
    points = photo_xyz[:, :2] * k + matrix[:, 2]
    mask = np.zeros((size, size), np.uint8)
    for tri in head.faces:
        cv2.fillConvexPoly(mask, np.round(points[tri]).astype(np.int32), 255)
    mask = cv2.dilate(mask, np.ones((5, 5), np.uint8))
    return push_pull_fill(framed, mask > 0)


def push_pull_fill(image: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """The image (H x W x 3 uint8) with the `hole` pixels (H x W bool) filled smoothly from their surroundings
    (push-pull over an image pyramid): a large hole gets a soft blend, not the streaks of cv2.inpaint."""
    known = (~hole).astype(np.float32)
    filled = _push_pull(image.astype(np.float32), known)
    return np.where(hole[..., None], np.clip(filled + 0.5, 0, 255), image).astype(np.uint8)


def _push_pull(image: np.ndarray, known: np.ndarray) -> np.ndarray:
    """H x W x 3 float32: the unknown pixels (`known` weight < 1) blended from the next coarser level, recursively."""
    if min(image.shape[:2]) <= 4 or known.min() > 0.999:
        mean = (image * known[..., None]).sum((0, 1)) / max(float(known.sum()), 1e-6)
        return np.where(known[..., None] > 0, image, mean).astype(np.float32)
    weight = cv2.pyrDown(known)
    small = cv2.pyrDown(image * known[..., None]) / np.maximum(weight[..., None], 1e-6)
    coarse = cv2.pyrUp(_push_pull(small, np.clip(weight * 4.0, 0, 1)), dstsize=(image.shape[1], image.shape[0]))
    return known[..., None] * image + (1 - known[..., None]) * coarse


def _proxy_mesh(face: np.ndarray, cfg: ProfilingConfig) -> tuple[np.ndarray, np.ndarray]:
    """The rest of the head around a canonical-frame face: skull ellipsoid, neck and two ears (synthetic heads'
    proportions), skull and neck kept behind the face."""
    skull_v, skull_f = _ellipsoid(np.asarray(SKULL_CENTRE), np.asarray(SKULL_AXES), 24, 48)
    neck_v, neck_f = _neck(cfg.neck_bottom_cm)
    ear_parts = [_ear(side) for side in (-1.0, 1.0)]
    parts = [(skull_v, skull_f), (neck_v, neck_f)] + ear_parts
    vertices, faces, offset = [], [], 0
    for v, f in parts:
        vertices.append(v)
        faces.append(f + offset)
        offset += len(v)
    v = np.concatenate(vertices)
    n_pushed = len(skull_v) + len(neck_v)
    v[:n_pushed] = _behind_face(v[:n_pushed], face, cfg.skull_depth_margin, cfg.skull_depth_inside)
    return v, np.concatenate(faces)


def _behind_face(points: np.ndarray, face: np.ndarray, margin: float, depth: float) -> np.ndarray:
    """Points moved back along z behind the face where they lie in front of (or just behind) it: `margin` cm at
    the face's rim, deepening to `depth` cm 2 cm inside it (the proxy's big triangles must not cut through the
    concave eye sockets, while at the rim the skull meets the face without a gap)."""
    from scipy.interpolate import LinearNDInterpolator

    front = LinearNDInterpolator(face[:, :2], face[:, 2])(points[:, :2])  # NaN outside the face
    rim = face[boundary_loop(load_canonical_mesh().faces), :2]
    to_rim = np.linalg.norm(points[:, None, :2] - rim[None], axis=2).min(1)
    behind = margin + (depth - margin) * np.clip(to_rim / 2.0, 0, 1)
    out = points.copy()
    inside = np.isfinite(front)
    out[inside, 2] = np.minimum(points[inside, 2], front[inside] - behind[inside])
    return out


def _ellipsoid(centre: np.ndarray, axes: np.ndarray, rings: int, segments: int) -> tuple[np.ndarray, np.ndarray]:
    """A UV-sphere ellipsoid (poles included), faces counter-clockwise seen from outside."""
    phi = np.linspace(0, np.pi, rings + 1)[1:-1]
    theta = np.linspace(0, 2 * np.pi, segments, endpoint=False)
    ring = np.stack([np.sin(phi)[:, None] * np.sin(theta)[None], np.cos(phi)[:, None] * np.ones_like(theta)[None],
                     np.sin(phi)[:, None] * np.cos(theta)[None]], -1).reshape(-1, 3)
    unit = np.concatenate([[[0, 1, 0]], ring, [[0, -1, 0]]])
    idx = 1 + np.arange(len(phi) * segments).reshape(len(phi), segments)
    nxt = np.roll(idx, -1, axis=1)
    faces = [np.stack([np.zeros(segments, int), idx[0], nxt[0]], 1),
             np.stack([idx[:-1], idx[1:], nxt[1:]], -1).reshape(-1, 3),
             np.stack([idx[:-1], nxt[1:], nxt[:-1]], -1).reshape(-1, 3),
             np.stack([np.full(segments, len(unit) - 1), nxt[-1], idx[-1]], 1)]
    v = unit * axes + centre
    return v, _outward(v, np.concatenate(faces), centre)


def _neck(bottom: float, segments: int = 48, rings: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """An open elliptic tube from inside the skull down to `bottom` (canonical y, cm)."""
    half_w, half_d, z = NECK
    ys = np.linspace(SKULL_CENTRE[1] - 4.0, bottom, rings + 1)
    theta = np.linspace(0, 2 * np.pi, segments, endpoint=False)
    v = np.stack([np.repeat(half_w * np.sin(theta)[None], len(ys), 0), np.repeat(ys[:, None], segments, 1),
                  np.repeat(z + half_d * np.cos(theta)[None], len(ys), 0)], -1).reshape(-1, 3)
    idx = np.arange(len(v)).reshape(len(ys), segments)
    nxt = np.roll(idx, -1, axis=1)
    faces = np.concatenate([np.stack([idx[:-1], idx[1:], nxt[1:]], -1).reshape(-1, 3),
                            np.stack([idx[:-1], nxt[1:], nxt[:-1]], -1).reshape(-1, 3)])
    axis = np.stack([np.zeros(len(v)), v[:, 1], np.full(len(v), z)], 1)
    return v, _outward(v, faces, axis)


def _ear(side: float) -> tuple[np.ndarray, np.ndarray]:
    """A flattened ellipsoid on one side of the skull, tilted back (synthetic heads' `_ears`, scale 1)."""
    centre, axes = np.asarray(SKULL_CENTRE), np.asarray(SKULL_AXES)
    y_ear, z_ear = centre[1] - 2.2, centre[2] + 0.4
    inside = 1 - ((y_ear - centre[1]) / axes[1]) ** 2 - ((z_ear - centre[2]) / axes[2]) ** 2
    side_x = axes[0] * math.sqrt(max(0.0, inside))  # the skull's half-width at the ear
    v, f = _ellipsoid(np.zeros(3), np.array([0.55, 3.0, 1.6]), 8, 16)
    tilt = math.radians(25.0) * side
    c, s = math.cos(tilt), math.sin(tilt)
    v = v @ np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]).T + np.array([side * (side_x + 0.35), y_ear, z_ear])
    return v, f


def _outward(vertices: np.ndarray, faces: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """Each triangle wound counter-clockwise seen from outside (its normal pointing away from `centre`, a point
    or one point per vertex)."""
    tri = vertices[faces]
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    inner = centre[faces].mean(1) if np.ndim(centre) == 2 else centre
    inward = (normal * (tri.mean(1) - inner)).sum(1) < 0
    out = faces.copy()
    out[inward] = out[inward][:, ::-1]
    return out


def studio_crop(image: np.ndarray, landmarks: np.ndarray, factor: float, size: int,
                shift: tuple[float, float] = (0.0, 0.0)) -> tuple[np.ndarray, np.ndarray]:
    """(size x size x 3 image, landmarks moved along) of a square crop `factor` x the longer side of the visible
    landmarks' box, centred on it (moved by `shift` x that side): the framing of studio face crops, whose border
    cuts the back of a profile's head off (the head-pose net's crop then reaches past the image)."""
    marks = np.asarray(landmarks, dtype=np.float64)
    seen = marks[marks[:, 2] > 0.5, :2] if marks.shape[1] > 2 and (marks[:, 2] > 0.5).sum() >= 3 else marks[:, :2]
    lo, hi = seen.min(0), seen.max(0)
    side = factor * float(max(hi - lo))
    if side <= 0:
        raise Pose3DFRError("landmarks span no area: cannot crop around them")
    centre = (lo + hi) / 2 + np.asarray(shift) * side / factor
    k = size / side
    c = (size - 1) / 2
    matrix = np.array([[k, 0, c - k * centre[0]], [0, k, c - k * centre[1]]])
    crop = cv2.warpAffine(np.ascontiguousarray(image), matrix, (size, size),
                          flags=cv2.INTER_AREA if k < 1 else cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    moved = marks.copy()
    moved[:, :2] = marks[:, :2] * k + matrix[:, 2]
    return crop, moved.astype(np.float32)
