"""The pose explorer's library side: render one face from -90 to +90 degrees of yaw and score every render
against a frontal enrollment with a Verifier (similarity per yaw, attention heatmaps, 3D attention of the scan).

Two kinds of subject feed the same sweep (`run_sweep`):

* `synthetic_subject(identity)`: a synthetic identity (pose3dfr.data.synthetic); its frontal render is the
  enrollment, the generator's renders are the probes and its face points are the scan.
* `scan_subject(photo, scan)`: a user's frontal photo and a 3D scan of the same person. The scan is aligned
  to the canonical face frame (pose3dfr.data.pointcloud), each point takes its colour from the photo
  (`texture_scan`: projected through the photo's landmarks, which data/pseudo_cloud.landmarks_to_canonical puts
  into the same frame; points the photo does not see take the colour of the nearest point it does), and it
  is rendered at each yaw with the point splatter of pose3dfr.data.render. The photo is the enrollment.

Each render goes through the real pipeline by default (`alignment="pipeline"`: detection, head pose and
alignment, exactly what Verify does with a photo), so the curve shows what a user gets; a render where no
face is found scores None, a rejection. `alignment="oracle"` aligns each render with the renderer's own
projected landmarks instead (an analysis option: what the model could do with perfect alignment); the
detector's yaw on the aligned chip is then reported beside it.

With `attention=True` (the default) every view also gets its attention statistics (pose3dfr.eval.attention: a
coarse deletion test of its heatmap against random cells, the heatmap's entropy and its mass on the face, the
raw attention's sink) and, with a 3D branch, the point heat of the face's points registered to that view
(pose3dfr.eval.attention_views); the work per view is bounded (EXPLORER_DELETION_FRACTIONS, one random order).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import cv2
import numpy as np

from pose3dfr.errors import FaceTooSmallError, InvalidScanError, NoFaceError, Pose3DFRError
from pose3dfr.face.align import align_face
from pose3dfr.face.image_io import ImageInput, load_image

# Yaw grid of the explorer (degrees, pose3dfr.geometry convention): -90 .. +90 in 15-degree steps.
EXPLORER_YAWS: tuple[int, ...] = tuple(range(-90, 91, 15))
# Render side (px): the size of the synthetic benchmark's renders, big enough for the 150 px dlib chip.
RENDER_SIZE = 256
# Points sampled from a mesh scan for rendering: about two points per face pixel at 256 px (no holes).
RENDER_MESH_SAMPLES = 60_000
# More points than this are randomly thinned before rendering (cost grows linearly, the image does not).
MAX_RENDER_POINTS = 150_000
# Fewer points cannot draw a face at RENDER_SIZE: the splats would be blobs several pixels across.
MIN_RENDER_POINTS = 500
# Splat radius = median distance of a point to its SPLAT_NEIGHBOURS-th nearest neighbour. For randomly
# sampled surfaces a disc holding k neighbours on average leaves about exp(-k) of the surface uncovered
# (2% for k = 4), where the median nearest-neighbour distance would leave visible holes.
SPLAT_NEIGHBOURS = 4
# Photo colours are trusted inside the landmarks' face oval shrunk by this fraction (its rim is mostly
# background or hair at a grazing angle); the rest of the scan takes the nearest trusted colour.
FACE_OVAL_SHRINK = 0.04
# Below this fraction of scan points near the canonical face after alignment, the scan is not a face scan
# (face scans reach 0.85-0.9; a whole head, which scan_alignment.estimate_alignment cannot fit, about 0.3).
MIN_ALIGNMENT_FITNESS = 0.5
# A point counts as seen by the photo if it is within this depth (cm) of the nearest surface there.
PHOTO_OCCLUSION_TOLERANCE_CM = 1.0
# Landmarks of a render count as visible within this depth (cm) of the splatted surface.
LANDMARK_TOLERANCE_CM = 0.5
# Outward normals point away from this spot behind the face (canonical frame, cm; the head's middle).
HEAD_CENTRE = np.array([0.0, 0.0, -6.0])
# Background and light of the scan renders: the synthetic renderer's defaults (grey, light front-left-up);
# the photo's colours already hold its own shading, so the added Lambert term is mild.
BACKGROUND_RGB = (0.55, 0.57, 0.60)
LIGHT_DIRECTION = (0.3, -0.4, -1.0)  # towards the light, OpenCV camera frame
LIGHT_AMBIENT, LIGHT_DIFFUSE = 0.7, 0.35
# Points of the scan handed to the Verifier for the 3D attention view (it farthest-point samples them).
ATTENTION_POINTS = 8192
TEXTURES = ("photo", "scan")
# How each render is aligned: "pipeline" = detector + pose + alignment, as Verify; "oracle" = the renderer's
# own projected landmarks (analysis only: users never have them).
ALIGNMENTS = ("pipeline", "oracle")
# Operating point of the threshold drawn with the curve (the Verify tab's default FAR).
SWEEP_FAR = 0.01
# Per-view deletion test of the explorer: k = 1, N and these fractions of N, one random order, no comparison with
# the previous map: 7 embeddings per view, about half a sweep's time more (the full test is
# `benchmarks/attention_faithfulness.py`).
EXPLORER_DELETION_FRACTIONS = (0.1, 0.3)
EXPLORER_RANDOM_ORDERS = 1


# ----------------------------------------------------------------------------- results

@dataclass
class SweepView:
    """One probe of the sweep."""

    yaw: float  # yaw the probe was rendered at (degrees)
    image: np.ndarray  # H x W x 3 uint8 RGB render
    score: float | None  # cosine similarity to the enrollment; None: no face found (a rejection)
    crop: np.ndarray | None  # S x S x 3 uint8 aligned chip the model saw; None when no face was found
    heatmap: np.ndarray | None  # H_F x W_F float32: each cell's share of the embedding
    detected_yaw: float | None  # the face pipeline's yaw estimate; None when it found no face
    grid: Any = None  # pose3dfr.models.attribution.CellGrid: where the heatmap's cells sit on the chip
    attention: Any = None  # pose3dfr.eval.attention.ChipReport of the chip (sweeps with attention=True)
    point_heat: Any = None  # pose3dfr.eval.attention_views.PointHeat of the view (3D branch and attention=True)


@dataclass
class PoseSweep:
    """A whole sweep: every probe, the enrollment crop, and the scan with its 3D attention."""

    views: list[SweepView]
    enroll_crop: np.ndarray  # S x S x 3 uint8
    enroll_heatmap: np.ndarray  # H_F x W_F
    points: np.ndarray  # P x 3 canonical frame (cm), what the Verifier saw
    point_attention: np.ndarray | None  # P, None when the checkpoint has no 3D branch
    source: str  # what was swept, in words
    threshold: float  # the verifier's decision threshold at SWEEP_FAR (drawn with the curve)
    alignment: str = "pipeline"  # how the renders were aligned (ALIGNMENTS)

    @property
    def yaws(self) -> list[float]:
        return [v.yaw for v in self.views]

    @property
    def scores(self) -> list[float | None]:
        return [v.score for v in self.views]


Renderer = Callable[[float], tuple[np.ndarray, np.ndarray]]  # yaw -> (H x W x 3 uint8, 468 x 2+ landmarks)


@dataclass
class SweepSubject:
    """What a sweep needs: the enrollment photo, a renderer of the same face at any yaw, and its 3D points."""

    name: str
    enrollment: np.ndarray  # H x W x 3 uint8 RGB
    render: Renderer
    points: np.ndarray  # P x 9 float32 canonical frame (xyz cm, normals, rgb)
    camera: Callable[[float], tuple[np.ndarray, np.ndarray]] | None = None  # yaw -> (K, Rt) of the render


# ----------------------------------------------------------------------------- the sweep

def run_sweep(verifier, subject: SweepSubject, yaws: Sequence[float] = EXPLORER_YAWS,
              iterate: Callable[[list], Iterable] | None = None, alignment: str = "pipeline",
              attention: bool = True) -> PoseSweep:
    """Render `subject` at each yaw and score each render against the enrollment with `verifier` (a
    pose3dfr.inference.verifier.Verifier), aligned as `alignment` says (ALIGNMENTS); with `attention`, each
    view's attention statistics and 3D point heat too (module docstring). `iterate` wraps the loop over yaws
    (e.g. a progress bar). NoFaceError when the enrollment has no face."""
    if not yaws:
        raise Pose3DFRError("the yaw sweep needs at least one yaw")
    if alignment not in ALIGNMENTS:
        raise Pose3DFRError(f"alignment must be one of {ALIGNMENTS}, got {alignment!r}")
    reference = verifier.verify(subject.enrollment, subject.enrollment, scan=_thin(subject.points, ATTENTION_POINTS))
    views = []
    for yaw in (iterate or list)(list(yaws)):
        image, landmarks = subject.render(float(yaw))
        if alignment == "oracle":
            view, matrix = _oracle_view(verifier, reference.enroll.crop, float(yaw), image, landmarks)
        else:
            view, matrix = _pipeline_view(verifier, subject.enrollment, float(yaw), image)
        if attention and view.crop is not None:
            _attach_attention(verifier, subject, view, landmarks, matrix)
        views.append(view)
    return PoseSweep(views, reference.enroll.crop, reference.enroll.heatmap, reference.points,
                     reference.point_attention, subject.name, verifier.threshold(SWEEP_FAR).value, alignment)


def _pipeline_view(verifier, enrollment: np.ndarray, yaw: float,
                   image: np.ndarray) -> tuple[SweepView, np.ndarray | None]:
    """A render scored as Verify scores a photo, and its chip's matrix; no face found is a rejection (None)."""
    try:
        result = verifier.verify(enrollment, image, with_points=False)
    except (NoFaceError, FaceTooSmallError):
        return SweepView(yaw, image, None, None, None, None), None
    probe = result.probe
    return SweepView(yaw, image, float(result.score), probe.crop, probe.heatmap, probe.yaw, probe.grid), probe.matrix


def _oracle_view(verifier, enroll_chip: np.ndarray, yaw: float, image: np.ndarray,
                 landmarks: np.ndarray) -> tuple[SweepView, np.ndarray]:
    """A render aligned with the renderer's own landmarks (analysis: perfect alignment at every yaw)."""
    aligned = align_face(image, landmarks, verifier.template, verifier.input_size, mode="auto")
    result = verifier.verify(enroll_chip, aligned.image, align="none", with_points=False)
    probe = result.probe
    return SweepView(yaw, image, float(result.score), probe.crop, probe.heatmap, probe.yaw, probe.grid), aligned.matrix


def _attach_attention(verifier, subject: SweepSubject, view: SweepView, landmarks: np.ndarray,
                      matrix: np.ndarray | None) -> None:
    """view.attention (statistics of its chip, the face hull from the renderer's landmarks) and view.point_heat."""
    from pose3dfr.eval.attention import FaceChip, chip_report, face_hull
    from pose3dfr.eval.attention_views import view_point_heat

    camera = subject.camera(view.yaw) if subject.camera is not None else None
    face = FaceChip(view.crop, None if matrix is None else face_hull(landmarks, matrix), view.yaw,
                    name=f"yaw {view.yaw:+.0f}", matrix=matrix, camera=camera, points=subject.points)
    view.attention = chip_report(verifier.model, face, fractions=EXPLORER_DELETION_FRACTIONS,
                                 random_orders=EXPLORER_RANDOM_ORDERS, previous=False)
    view.point_heat = view_point_heat(verifier.model, face)


def explore_photo_and_scan(verifier, photo: ImageInput, scan: str | Path, yaws: Sequence[float] = EXPLORER_YAWS,
                           texture: str = "photo", iterate: Callable[[list], Iterable] | None = None,
                           alignment: str = "pipeline", attention: bool = True) -> PoseSweep:
    """The upload mode in one call: a frontal photo and a 3D scan of the same person swept over `yaws`."""
    subject = scan_subject(photo, scan, texture=texture, analyzer=verifier.analyzer)
    return run_sweep(verifier, subject, yaws, iterate, alignment, attention)


def explore_synthetic(verifier, identity: int, yaws: Sequence[float] = EXPLORER_YAWS, seed: int = 0,
                      iterate: Callable[[list], Iterable] | None = None, alignment: str = "pipeline",
                      attention: bool = True) -> PoseSweep:
    """The synthetic mode in one call: identity `identity` of the benchmark with `seed` swept over `yaws`."""
    return run_sweep(verifier, synthetic_subject(identity, seed=seed), yaws, iterate, alignment, attention)


def _thin(points: np.ndarray, count: int, seed: int = 0) -> np.ndarray:
    """At most `count` rows of `points`, chosen at random (seeded)."""
    if len(points) <= count:
        return points
    return points[np.sort(np.random.default_rng(seed).choice(len(points), count, replace=False))]


# ----------------------------------------------------------------------------- synthetic subject

def synthetic_subject(identity: int, seed: int = 0, image_size: int = RENDER_SIZE,
                      num_points: int = 4096) -> SweepSubject:
    """A synthetic identity: frontal render as the enrollment, the generator's renders, its face points."""
    from pose3dfr.data import synthetic

    identity = int(identity)
    if identity < 1:
        raise Pose3DFRError(f"synthetic identities are numbered from 1, got {identity}")
    params = synthetic.sample_identity(seed, identity)
    points = synthetic.sample_face_points(synthetic.build_head(params), num_points, np.random.default_rng(seed))

    def render(yaw: float) -> tuple[np.ndarray, np.ndarray]:
        return synthetic.render_identity_view(params, yaw=yaw, image_size=image_size)

    def camera(yaw: float) -> tuple[np.ndarray, np.ndarray]:  # render_identity_view's: pitch, roll 0, no jitter
        return synthetic.camera(yaw, 0.0, 0.0, image_size)

    return SweepSubject(f"synthetic identity {identity}", render(0.0)[0], render, points, camera)


# ----------------------------------------------------------------------------- photo + scan subject

@dataclass
class TexturedScan:
    """A scan in the canonical frame with a colour per point, renderable at any pose."""

    points: np.ndarray  # N x 9 float32: xyz (cm), outward unit normals, rgb in [0, 1]
    landmarks: np.ndarray  # 468 x 3 canonical frame (cm): the photo's landmarks placed on the scan
    splat_cm: float  # splat radius that leaves no holes between neighbouring points
    name: str

    def render(self, yaw: float, pitch: float = 0.0, roll: float = 0.0,
               image_size: int = RENDER_SIZE) -> tuple[np.ndarray, np.ndarray]:
        """(H x W x 3 uint8 RGB render, 468 x 3 landmarks: pixel x, y, visible) with the synthetic
        benchmark's camera (pose3dfr.data.synthetic.camera: same framing, pose3dfr.geometry angles)."""
        from pose3dfr.data.render import project, render_points, visible_vertices
        from pose3dfr.data.synthetic import camera

        K, Rt = camera(yaw, pitch, roll, image_size)
        xyz, normals, rgb = self.points[:, :3], self.points[:, 3:6], self.points[:, 6:9]
        distance = float(np.median(project(xyz[:: max(1, len(xyz) // 1000)], K, Rt)[:, 2]))
        pixel_cm = distance / K[0, 0]  # size of one pixel at the face (cm)
        radius = max(1, math.ceil(self.splat_cm / pixel_cm))
        image, fragments = render_points(xyz, rgb, K, Rt, image_size, image_size, radius, normals,
                                         np.array(BACKGROUND_RGB), (np.array(LIGHT_DIRECTION), LIGHT_AMBIENT,
                                                                    LIGHT_DIFFUSE))
        image = cv2.GaussianBlur(image, (0, 0), 0.6)  # soften the splat edges, as the mesh renderer does
        screen = project(self.landmarks, K, Rt)
        seen = visible_vertices(screen, fragments.depth, LANDMARK_TOLERANCE_CM + radius * pixel_cm)
        landmarks = np.concatenate([screen[:, :2], seen[:, None]], axis=1).astype(np.float32)
        return np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8), landmarks


def scan_subject(photo: ImageInput, scan: str | Path, texture: str = "photo", analyzer=None,
                 image_size: int = RENDER_SIZE) -> SweepSubject:
    """A frontal photo and a 3D scan of the same person: the photo is the enrollment, the probes are
    renders of the scan coloured by `texture` ("photo": projected from the photo; "scan": its own colours)."""
    from pose3dfr.inference.detect import FaceAnalyzer

    name = Path(photo).name if isinstance(photo, (str, Path)) else "photo"
    rgb = load_image(photo)
    face = (analyzer or FaceAnalyzer()).analyze(rgb, name=name).select(0)
    textured = texture_scan(rgb, face.require_landmarks(name), load_render_points(scan), texture=texture, name=Path(scan).name)

    def render(yaw: float) -> tuple[np.ndarray, np.ndarray]:
        return textured.render(yaw, image_size=image_size)

    def camera(yaw: float) -> tuple[np.ndarray, np.ndarray]:  # TexturedScan.render's camera
        from pose3dfr.data.synthetic import camera as synthetic_camera

        return synthetic_camera(yaw, 0.0, 0.0, image_size)

    return SweepSubject(f"{name} + {Path(scan).name}", rgb, render, textured.points, camera)


def load_render_points(scan: str | Path) -> np.ndarray:
    """A scan file (any format pose3dfr.data.pointcloud reads) as dense N x 9 float32 points in the canonical
    frame with outward normals: read (a mesh sampled densely), cleaned, aligned (PCA hypotheses + ICP).
    InvalidScanError naming the file when it is unreadable, NaN, too sparse or not a face."""
    from pose3dfr.data import pointcloud

    path = Path(scan)
    raw = pointcloud.read_point_cloud(path, num_mesh_samples=RENDER_MESH_SAMPLES)
    return align_render_points(raw, name=path.name)


def align_render_points(points: np.ndarray, name: str = "scan") -> np.ndarray:
    """Raw P x 3/6/9 scan points (any frame and units) -> N x 9 canonical-frame points ready to render."""
    from pose3dfr.data import pointcloud, scan_alignment

    pts = pointcloud.drop_nonfinite(np.asarray(points, dtype=np.float32), name)
    pointcloud.check_not_degenerate(pts[:, :3].astype(np.float64), name)
    pts = _thin(pointcloud.remove_outliers(pts), MAX_RENDER_POINTS)
    if len(pts) < MIN_RENDER_POINTS:
        raise InvalidScanError(f"{name}: only {len(pts)} usable points; rendering a face needs at least "
                               f"{MIN_RENDER_POINTS} (upload a denser scan or a mesh)")
    alignment = scan_alignment.estimate_alignment(pts, name=name)
    if not alignment.fitness >= MIN_ALIGNMENT_FITNESS:
        raise InvalidScanError(f"{name}: does not look like a face scan (after the best alignment only "
                               f"{alignment.fitness:.0%} of its points lie near a face surface)")
    pts = scan_alignment.apply_transform(pts, alignment.transform)
    xyz = pts[:, :3].astype(np.float64)
    normals = pts[:, 3:6].astype(np.float64) if pts.shape[1] >= 6 else pointcloud.estimate_normals(xyz)
    normals = normals * np.where(np.einsum("ij,ij->i", normals, xyz - HEAD_CENTRE) < 0, -1.0, 1.0)[:, None]
    rgb = pts[:, 6:9] if pts.shape[1] == 9 else np.full((len(pts), 3), pointcloud.DEFAULT_GREY, np.float32)
    return np.concatenate([xyz, normals, rgb], axis=1).astype(np.float32)


def texture_scan(photo: np.ndarray, landmarks: np.ndarray, points: np.ndarray, texture: str = "photo",
                 name: str = "scan") -> TexturedScan:
    """Colour canonical-frame scan points (N x 9) from a photo of the same face and its MediaPipe landmarks.

    The photo's landmarks go into the canonical frame (`landmarks_to_canonical`), are snapped onto the scan
    by a scaled ICP (the subject's face need not have the canonical size), and an affine camera fitted from
    those 468 3D points to their photo pixels projects every scan point into the photo. Points outside the
    photo, facing away from it or hidden behind nearer points take the colour of the nearest seen point.
    texture="scan" keeps the scan's own colours instead (only the landmarks come from the photo).
    """
    from scipy.spatial import cKDTree

    from pose3dfr.data.render import sample_bilinear
    from pose3dfr.data.pseudo_cloud import NUM_MESH_LANDMARKS, landmarks_to_canonical

    if texture not in TEXTURES:
        raise Pose3DFRError(f"texture must be one of {TEXTURES}, got {texture!r}")
    points = np.array(points, dtype=np.float32, copy=True)
    xyz = points[:, :3].astype(np.float64)
    tree = cKDTree(xyz)
    splat = float(np.median(tree.query(_thin(xyz, 2000), k=SPLAT_NEIGHBOURS + 1)[0][:, -1]))
    on_scan = _snap_to_scan(landmarks_to_canonical(landmarks), xyz)
    if texture == "photo":
        pixels = np.asarray(landmarks, np.float64)[:NUM_MESH_LANDMARKS, :3]  # x, y, MediaPipe depth (pixels)
        camera = np.linalg.lstsq(_homogeneous(on_scan), pixels, rcond=None)[0]  # 4 x 3 affine camera
        seen = _seen_by_photo(xyz, points[:, 3:6].astype(np.float64), camera, pixels[:, :2], photo.shape[:2],
                              splat)
        if seen.sum() < MIN_RENDER_POINTS:
            raise InvalidScanError(f"{name}: the photo's face does not overlap the scan (only {int(seen.sum())} "
                                   "scan points project onto it); are they of the same person, photo frontal?")
        screen = _homogeneous(xyz) @ camera
        height, width = photo.shape[:2]
        uv = (screen[seen, :2] + 0.5) / np.array([width, height])  # texel centres at (i + 0.5) / size
        colours = sample_bilinear(np.asarray(photo, np.float32) / 255.0, uv)
        nearest = cKDTree(xyz[seen]).query(xyz[~seen])[1]
        points[seen, 6:9] = colours
        points[~seen, 6:9] = colours[nearest]
    return TexturedScan(points, on_scan, splat, name)


def _homogeneous(xyz: np.ndarray) -> np.ndarray:
    return np.concatenate([xyz, np.ones((len(xyz), 1))], axis=1)


def _snap_to_scan(landmarks_xyz: np.ndarray, scan_xyz: np.ndarray, iterations: int = 20) -> np.ndarray:
    """468 x 3 canonical-frame landmarks moved by a similarity (ICP with scale, nearest scan points as
    partners) onto the scan surface; both start in the canonical frame, so the start is close."""
    import open3d as o3d

    def cloud(xyz: np.ndarray):
        return o3d.geometry.PointCloud(o3d.utility.Vector3dVector(np.asarray(xyz, dtype=np.float64)))

    result = o3d.pipelines.registration.registration_icp(
        cloud(landmarks_xyz), cloud(scan_xyz), 2.0, np.eye(4),
        o3d.pipelines.registration.TransformationEstimationPointToPoint(with_scaling=True),
        o3d.pipelines.registration.ICPConvergenceCriteria(max_iteration=iterations))
    transform = np.asarray(result.transformation)
    return landmarks_xyz @ transform[:3, :3].T + transform[:3, 3]


def _inside_face_oval(xy: np.ndarray, landmarks_xy: np.ndarray) -> np.ndarray:
    """N bool: the pixel positions lie inside the convex hull of the landmarks, shrunk by FACE_OVAL_SHRINK."""
    hull = cv2.convexHull(np.asarray(landmarks_xy, np.float32)).reshape(-1, 2).astype(np.float64)
    centre = hull.mean(axis=0)
    hull = centre + (1.0 - FACE_OVAL_SHRINK) * (hull - centre)
    edges = np.roll(hull, -1, axis=0) - hull  # H x 2, counter-clockwise or clockwise: compare signs
    rel = xy[:, None, :] - hull[None, :, :]  # N x H x 2: each point relative to each hull vertex
    cross = edges[None, :, 0] * rel[:, :, 1] - edges[None, :, 1] * rel[:, :, 0]  # side of each edge
    return (cross >= 0).all(axis=1) | (cross <= 0).all(axis=1)


def _seen_by_photo(xyz: np.ndarray, normals: np.ndarray, camera: np.ndarray, landmarks_xy: np.ndarray,
                   shape: tuple[int, int], cell_cm: float) -> np.ndarray:
    """N bool: the scan point projects inside the photo's face oval, faces the photo and is not hidden behind
    nearer points (z-buffer of the points splatted on a grid whose cell is `cell_cm`)."""
    from pose3dfr.data.render import splat_points, visible_vertices

    height, width = shape
    screen = _homogeneous(xyz) @ camera  # x, y, depth (pixels; depth grows away from the camera)
    towards_camera = -camera[:3, 2] / max(float(np.linalg.norm(camera[:3, 2])), 1e-12)
    px_per_cm = float(np.linalg.norm(camera[:3, :2], axis=0).mean())
    inside = _inside_face_oval(screen[:, :2], landmarks_xy)
    facing = normals @ towards_camera > 0.0
    cell = max(cell_cm * px_per_cm, 1e-6)  # photo pixels per grid cell
    grid = np.stack([screen[:, 0] / cell, screen[:, 1] / cell, (screen[:, 2] - screen[:, 2].min()) / cell + 1.0], 1)
    grid[~facing, 2] = -np.inf  # back-facing points neither occlude nor are seen
    fragments = splat_points(grid, int(height / cell) + 2, int(width / cell) + 2, radius=1)
    unoccluded = visible_vertices(grid, fragments.depth, PHOTO_OCCLUSION_TOLERANCE_CM * px_per_cm / cell)
    return inside & facing & unoccluded
