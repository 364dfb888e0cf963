"""A small vectorised z-buffer rasteriser (numpy): perspective projection, triangle fragments, attribute
interpolation, texture sampling and ambient + Lambertian shading; and a z-buffered point splatter
(`render_points`) for scans without triangles.

Why our own: the synthetic benchmark needs thousands of renders on a CPU without an OpenGL context, and
the same code must run in tests and in the app. Everything is vectorised over (triangle, pixel) pairs;
there is no per-pixel Python loop.

Conventions: pixel coordinates follow OpenCV (x right, y down, the centre of pixel (row i, column j)
is at (x, y) = (j, i)); cameras are OpenCV cameras (x right, y down, z forward) given by K (3 x 3 or
4 x 4) and Rt (3 x 4, world -> camera); depth is the camera z (positive in front of the camera).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pose3dfr.errors import Pose3DFRError

# Triangles thinner than this (twice the signed area, in square pixels) cover no pixel centre reliably.
MIN_DOUBLE_AREA = 1e-9
# Pixel centres this close outside an edge (in barycentric units) still count: shared edges leave no cracks.
EDGE_EPS = 1e-6  # float32 edge functions
# Points closer to the camera than this (scene units) are not rasterised (no near-plane clipping).
NEAR = 1e-3


@dataclass
class Fragments:
    """What the rasteriser found at each covered pixel."""

    face_index: np.ndarray  # H x W int64, -1 where no triangle covers the pixel
    depth: np.ndarray  # H x W float64 camera z, +inf on the background
    pixels: np.ndarray  # M flat indices (row * W + column) of the covered pixels
    faces: np.ndarray  # M triangle index at each covered pixel
    bary: np.ndarray  # M x 3 perspective-correct barycentric coordinates

    @property
    def mask(self) -> np.ndarray:
        """H x W bool: pixels covered by some triangle."""
        return self.face_index >= 0


def project(points: np.ndarray, K: np.ndarray, Rt: np.ndarray) -> np.ndarray:
    """N x 3 world points -> N x 3 (pixel x, pixel y, camera depth) with an OpenCV camera."""
    K = np.asarray(K, dtype=np.float64)[:3, :3]
    Rt = np.asarray(Rt, dtype=np.float64)
    cam = points @ Rt[:, :3].T + Rt[:, 3]
    z = cam[:, 2]
    safe = np.where(np.abs(z) < NEAR, NEAR, z)
    x = K[0, 0] * cam[:, 0] / safe + K[0, 1] * cam[:, 1] / safe + K[0, 2]
    y = K[1, 1] * cam[:, 1] / safe + K[1, 2]
    return np.stack([x, y, z], axis=1)


def rasterize(screen: np.ndarray, faces: np.ndarray, height: int, width: int,
              cull_backfaces: bool = True) -> Fragments:
    """Z-buffer the triangles `faces` (F x 3) of screen-space vertices `screen` (N x 3: x, y, depth).

    Triangles counter-clockwise seen from outside are front-facing (they appear clockwise in the
    y-down image); with `cull_backfaces` the others are skipped. Ties in depth go to the highest
    triangle index, so the result does not depend on evaluation order.
    """
    screen = np.asarray(screen, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    corners = [screen[faces[:, k]] for k in range(3)]  # 3 x (F x 3): column-wise ops are fastest here
    x = np.stack([c[:, 0] for c in corners], 1)
    y = np.stack([c[:, 1] for c in corners], 1)
    z = np.stack([c[:, 2] for c in corners], 1)
    xs, ys = [c[:, 0] for c in corners], [c[:, 1] for c in corners]
    double_area = (xs[1] - xs[0]) * (ys[2] - ys[0]) - (xs[2] - xs[0]) * (ys[1] - ys[0])
    keep = (np.minimum(np.minimum(z[:, 0], z[:, 1]), z[:, 2]) > NEAR) & (np.abs(double_area) > MIN_DOUBLE_AREA)
    keep &= (double_area < 0) if cull_backfaces else True
    x0 = np.clip(np.ceil(np.minimum(np.minimum(xs[0], xs[1]), xs[2])), 0, width)
    x1 = np.clip(np.floor(np.maximum(np.maximum(xs[0], xs[1]), xs[2])), -1, width - 1)
    y0 = np.clip(np.ceil(np.minimum(np.minimum(ys[0], ys[1]), ys[2])), 0, height)
    y1 = np.clip(np.floor(np.maximum(np.maximum(ys[0], ys[1]), ys[2])), -1, height - 1)
    box_w, box_h = (x1 - x0 + 1).astype(np.int64), (y1 - y0 + 1).astype(np.int64)
    keep &= (box_w > 0) & (box_h > 0)
    ids = np.flatnonzero(keep)
    coef = _edge_coefficients(x[ids], y[ids], double_area[ids])  # K x 6 (a, b, c of corners 0 and 1)
    inv_z = 1.0 / z[ids]  # K x 3
    counts = box_w[ids] * box_h[ids]
    local_tri = np.repeat(np.arange(len(ids), dtype=np.int32), counts)  # candidate (triangle, pixel) pairs
    offset = np.arange(len(local_tri), dtype=np.int32) - np.repeat((np.cumsum(counts) - counts).astype(np.int32), counts)
    dy, dx = np.divmod(offset, np.take(box_w[ids].astype(np.int32), local_tri))  # offsets inside the box
    # Edge functions relative to each box's corner, in float32 (offsets are small, values near [0, 1]).
    # np.take of 1-D columns: several times faster than fancy-indexing rows of a 2-D array.
    local_coef = coef.copy()
    local_coef[:, 2] += coef[:, 0] * x0[ids] + coef[:, 1] * y0[ids]
    local_coef[:, 5] += coef[:, 3] * x0[ids] + coef[:, 4] * y0[ids]
    cols = [np.take(np.ascontiguousarray(local_coef[:, k], dtype=np.float32), local_tri) for k in range(6)]
    fx, fy = dx.astype(np.float32), dy.astype(np.float32)
    w0 = cols[0] * fx + cols[1] * fy + cols[2]
    w1 = cols[3] * fx + cols[4] * fy + cols[5]
    w2 = 1.0 - w0 - w1
    hit = np.flatnonzero((w0 >= -EDGE_EPS) & (w1 >= -EDGE_EPS) & (w2 >= -EDGE_EPS))
    local_tri = np.take(local_tri, hit)
    px = np.take(dx, hit) + np.take(x0[ids].astype(np.int32), local_tri)
    py = np.take(dy, hit) + np.take(y0[ids].astype(np.int32), local_tri)
    iz = [np.take(np.ascontiguousarray(inv_z[:, k], dtype=np.float32), local_tri) for k in range(3)]
    frag_inv_z = (np.take(w0, hit) * iz[0] + np.take(w1, hit) * iz[1] + np.take(w2, hit) * iz[2]).astype(np.float64)
    pix = (py * width + px).astype(np.intp)  # ufunc.at is fast only with intp indices and one dtype
    best = np.zeros(height * width)
    np.maximum.at(best, pix, frag_inv_z)
    wins = frag_inv_z >= best[pix]
    owner = np.full(height * width, -1, dtype=np.int32)
    np.maximum.at(owner, pix[wins], local_tri[wins])
    covered = np.flatnonzero(owner >= 0)
    local = owner[covered]
    w0, w1 = _barycentric(coef, local, covered % width, covered // width)
    w = np.stack([w0, w1, 1.0 - w0 - w1], axis=1) * inv_z[local]  # M x 3, perspective-correct below
    bary = w / w.sum(axis=1, keepdims=True)
    face_index = np.full(height * width, -1, dtype=np.int64)
    face_index[covered] = ids[local]
    depth = np.full(height * width, np.inf)
    depth[covered] = 1.0 / best[covered]
    return Fragments(face_index.reshape(height, width), depth.reshape(height, width), covered, ids[local], bary)


def _edge_coefficients(x: np.ndarray, y: np.ndarray, double_area: np.ndarray) -> np.ndarray:
    """Affine edge functions: weight of corner k at pixel (px, py) = a_k px + b_k py + c_k; K x 6 float32
    (a0, b0, c0, a1, b1, c1), relative to the triangle's first corner so float32 stays exact enough."""
    out = np.empty((len(x), 6))
    for k in range(2):
        i, j = (k + 1) % 3, (k + 2) % 3
        out[:, 3 * k] = (y[:, i] - y[:, j]) / double_area
        out[:, 3 * k + 1] = (x[:, j] - x[:, i]) / double_area
        out[:, 3 * k + 2] = (x[:, i] * y[:, j] - x[:, j] * y[:, i]) / double_area
    return out


def _barycentric(coef: np.ndarray, tri: np.ndarray, px: np.ndarray, py: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    c = coef[tri]  # C x 6 (float64: c_k can be large, and px * a_k + c_k cancels)
    w0 = c[:, 0] * px + c[:, 1] * py + c[:, 2]
    w1 = c[:, 3] * px + c[:, 4] * py + c[:, 5]
    return w0, w1


def interpolate(fragments: Fragments, faces: np.ndarray, attributes: np.ndarray) -> np.ndarray:
    """M x A per-vertex attributes (N x A) interpolated at the covered pixels (perspective-correct)."""
    out = np.zeros((len(fragments.faces), attributes.shape[1]))
    for k in range(3):  # per corner: 1-D takes are much faster than gathering M x 3 x A at once
        corner = np.take(np.ascontiguousarray(faces[:, k]), fragments.faces)
        out += np.take(attributes, corner, axis=0) * fragments.bary[:, k:k + 1]
    return out


def sample_bilinear(texture: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Bilinear lookup of an H x W x C float32 texture at M x 2 UVs -> M x C (edge texels repeat). UVs follow
    image order, as MediaPipe's canonical mesh does: u = column / W, v = row / H (v = 0 is the top row),
    texel centres at (i + 0.5) / size."""
    import cv2

    h, w = texture.shape[:2]
    m = len(uv)
    cols = 1024  # cv2.remap wants maps under 32767 rows: lay the M lookups out as a padded 2D grid
    rows = max(1, -(-m // cols))
    maps = np.zeros((2, rows * cols), dtype=np.float32)
    maps[0, :m] = uv[:, 0] * w - 0.5
    maps[1, :m] = uv[:, 1] * h - 0.5
    out = cv2.remap(np.asarray(texture, dtype=np.float32), maps[0].reshape(rows, cols), maps[1].reshape(rows, cols),
                    cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return out.reshape(rows * cols, -1)[:m]


def lambert(albedo: np.ndarray, normals: np.ndarray, light_dir: np.ndarray, light_rgb: np.ndarray,
            ambient: float, diffuse: float) -> np.ndarray:
    """Ambient + Lambertian shading of M x 3 albedo with M x 3 unit normals; light_dir points to the light."""
    direction = np.asarray(light_dir, dtype=np.float64)
    direction = direction / np.linalg.norm(direction)
    cos = np.clip(normals @ direction, 0.0, None)[:, None]
    return albedo * (ambient + diffuse * cos) * np.asarray(light_rgb, dtype=np.float64)


def visible_vertices(screen: np.ndarray, depth: np.ndarray, tolerance: float | np.ndarray) -> np.ndarray:
    """N bool: the vertex projects inside the image and is not behind the z-buffer by more than tolerance
    (a scalar or one per vertex, in depth units)."""
    h, w = depth.shape
    col, row = np.rint(screen[:, 0]).astype(np.int64), np.rint(screen[:, 1]).astype(np.int64)
    inside = (col >= 0) & (col < w) & (row >= 0) & (row < h) & (screen[:, 2] > NEAR)
    out = np.zeros(len(screen), dtype=bool)
    # The nearest surface within one pixel: a vertex on a silhouette may fall just beside its triangle.
    r0, c0 = row[inside], col[inside]
    nearest = np.full(len(r0), np.inf)
    for dr in (-1, 0, 1):
        for dc in (-1, 0, 1):
            rr, cc = np.clip(r0 + dr, 0, h - 1), np.clip(c0 + dc, 0, w - 1)
            nearest = np.minimum(nearest, depth[rr, cc])
    tol = np.broadcast_to(np.asarray(tolerance, dtype=np.float64), (len(screen),))
    out[inside] = screen[inside, 2] <= nearest + tol[inside]
    return out


# ------------------------------------------------------------------------------------------------
# Point splatting (the pose explorer renders uploaded scans, which may have no triangles)
# ------------------------------------------------------------------------------------------------

@dataclass
class PointFragments:
    """What the point z-buffer found at each pixel."""

    index: np.ndarray  # H x W int64 index of the nearest point covering the pixel, -1 on the background
    depth: np.ndarray  # H x W float64 camera z of that point, +inf on the background

    @property
    def mask(self) -> np.ndarray:
        """H x W bool: pixels covered by some point."""
        return self.index >= 0


def splat_offsets(radius: int) -> np.ndarray:
    """K x 2 integer (dx, dy) pixel offsets of a disc of `radius` pixels (radius 0: the pixel itself)."""
    r = int(radius)
    if r < 0:
        raise Pose3DFRError(f"splat radius must be >= 0, got {radius}")
    dy, dx = np.mgrid[-r:r + 1, -r:r + 1]
    inside = dx ** 2 + dy ** 2 <= (r + 0.5) ** 2
    return np.stack([dx[inside], dy[inside]], axis=1).astype(np.int64)


def splat_points(screen: np.ndarray, height: int, width: int, radius: int = 1) -> PointFragments:
    """Z-buffer N screen-space points (N x 3: x, y, depth) drawn as flat discs of `radius` pixels.

    Every (point, disc pixel) pair is a candidate; the smallest depth wins each pixel (ties to the highest
    point index, as `rasterize` does for triangles), so a point behind another at the same pixel is hidden.
    Points with depth <= NEAR (behind the camera) are skipped. Vectorised, no per-pixel loop.
    """
    screen = np.asarray(screen, dtype=np.float64)
    keep = np.flatnonzero(np.isfinite(screen).all(axis=1) & (screen[:, 2] > NEAR))
    offsets = splat_offsets(radius)  # K x 2
    col = np.rint(screen[keep, 0]).astype(np.int64)[:, None] + offsets[None, :, 0]  # n x K
    row = np.rint(screen[keep, 1]).astype(np.int64)[:, None] + offsets[None, :, 1]
    owner = np.broadcast_to(keep[:, None], col.shape)
    inside = (col >= 0) & (col < width) & (row >= 0) & (row < height)
    pix = (row[inside] * width + col[inside]).astype(np.intp)
    owner = owner[inside].astype(np.intp)
    depth = screen[owner, 2]
    best = np.full(height * width, np.inf)
    np.minimum.at(best, pix, depth)
    wins = depth <= best[pix]
    index = np.full(height * width, -1, dtype=np.int64)
    np.maximum.at(index, pix[wins], owner[wins].astype(np.int64))
    return PointFragments(index.reshape(height, width), best.reshape(height, width))


def facing_camera(points: np.ndarray, normals: np.ndarray, Rt: np.ndarray) -> np.ndarray:
    """N bool: the point's normal points towards the camera centre of the OpenCV extrinsics Rt (3 x 4)."""
    Rt = np.asarray(Rt, dtype=np.float64)
    centre = -Rt[:, :3].T @ Rt[:, 3]  # camera centre in world coordinates
    return np.einsum("ij,ij->i", np.asarray(normals, np.float64), centre - np.asarray(points, np.float64)) > 0.0


def render_points(points: np.ndarray, colors: np.ndarray, K: np.ndarray, Rt: np.ndarray, height: int, width: int,
                  radius: int = 1, normals: np.ndarray | None = None, background: np.ndarray | float = 0.5,
                  light: tuple[np.ndarray, float, float] | None = None) -> tuple[np.ndarray, PointFragments]:
    """Render N x 3 world points with N x 3 colours in [0, 1] as z-buffered discs: (H x W x 3 float32 image, fragments).

    Same camera conventions as the rasteriser (OpenCV K and Rt, `project`). With `normals`, points facing
    away from the camera are culled first (the far side of a surface cannot leak through gaps in the near
    side) and `light` = (direction towards the light in the camera frame, ambient, diffuse) shades them
    with `lambert`. `background`: a grey level, an RGB triple or an H x W x 3 image.
    """
    points = np.asarray(points, dtype=np.float64)
    colors = np.asarray(colors, dtype=np.float64)
    screen = project(points, K, Rt)
    if normals is not None:
        screen[~facing_camera(points, normals, Rt), 2] = -np.inf  # culled: skipped like points behind the camera
    fragments = splat_points(screen, height, width, radius)
    image = np.empty((height, width, 3), dtype=np.float32)
    image[:] = np.asarray(background, dtype=np.float32)
    covered = fragments.mask
    shaded = colors[fragments.index[covered]]
    if light is not None and normals is not None:
        direction, ambient, diffuse = light
        camera_normals = np.asarray(normals, np.float64)[fragments.index[covered]] @ np.asarray(Rt)[:, :3].T
        shaded = lambert(shaded, camera_normals, np.asarray(direction), np.ones(3), ambient, diffuse)
    image[covered] = np.clip(shaded, 0.0, 1.0)
    return image, fragments
