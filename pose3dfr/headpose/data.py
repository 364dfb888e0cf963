"""Training crops for the head-pose net: renders of the synthetic generator at any yaw, cropped around
YuNet boxes exactly as at inference, with domain randomisation so the net transfers to real photos.

Each sample: a random identity (a seed the recognition benchmark never uses), expression and pose
(yaw beyond +-90 so profile is interior), the generator's lighting; most images get a new background
(real-photo patches, noise textures or gradients, composited with the head's exact alpha from a black and a
white render; most with hair volume, a neck and shoulders painted behind the head), half the heads get
real-photo texture blended into their skin. Besides the synthetic heads, real faces: the training photos
(PROFILE_TRAIN_PHOTOS) profiled to random poses (pose3dfr.data.profiling, 300W-LP style). Some images are cut
to a studio crop (the image border cuts the back of a profile's head off). The face box is YuNet's
on the image (a box from the projected visible landmarks when YuNet misses, counted), jittered
like detector boxes; the crop is then blurred, noised, JPEG re-encoded, colour-jittered or made grey.

The detector comes from the caller (`DetectorFactory`, called once in each worker process): this room sits
below the face pipeline (pose3dfr.inference), which runs the head-pose net it trains.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

from pose3dfr.data.profiling import ProfilingConfig, fit_photo_head, render_profile, studio_crop
from pose3dfr.data.synthetic import Nuisance, SynthConfig, EXPRESSIONS, build_head, render_head, \
    sample_identity, sample_nuisance
from pose3dfr.data.synthetic.benchmark import map_over_identities
from pose3dfr.face.image_io import load_image
from pose3dfr.face.landmarks import profile_landmarks
from pose3dfr.headpose.model import CROP_FACTOR, INPUT_SIZE, crop_matrix, crop_units, pose_crop
from pose3dfr.paths import PHOTOS_DIR

PHOTO_NAMES = ("obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg", "astronaut.png")
# The photos whose profiled views (pose3dfr.data.profiling) train the net; the others (a new photo of a trained
# face, and a face never trained on) stay out of training altogether, for benchmarks/headpose_eval.py's check.
PROFILE_TRAIN_PHOTOS = ("obama.jpg", "obama2.jpg", "biden.jpg")
# Makes the face detector the crops are boxed with, once per worker process: an object with detect_boxes(image) ->
# N x 5+ YuNet boxes and analyze(image) -> its faces with landmarks; the command passes
# pose3dfr.inference.detect.FaceAnalyzer with DetectorConfig(headpose_weights=None) (boxes and landmarks only).
DetectorFactory = Callable[[], Any]


@dataclass
class HeadPoseDataConfig:
    """What to render; the defaults give the shipped model's ~21k crops (about 4 CPU-minutes on 2 workers)."""

    seed: int = 1000  # identity seed: the recognition benchmark uses seed 0, so no test identity is trained on
    identities: int = 300
    expressions_per_identity: int = 2  # drawn from all 7 FaceScape expressions
    views_per_head: int = 36
    yaw_max: float = 100.0  # uniform in +-yaw_max: beyond profile, so 90 degrees is not an edge of the range
    pitch_max: float = 30.0
    roll_max: float = 25.0
    render_size: int = 192  # render side (px); the 64 px crop needs no more
    texture_size: int = 256  # face texture side (px): enough at this render size, 4x cheaper than 512
    crop_size: int = INPUT_SIZE
    crop_factor: float = CROP_FACTOR
    scale_jitter: float = 0.15  # relative focal-length jitter of the render (face size in the image)
    shift_jitter: float = 0.08  # image fraction the head is off-centre
    box_scale_jitter: float = 0.08  # relative jitter of the box side: detector boxes vary in size
    box_shift_jitter: float = 0.05  # box-side fraction the box centre moves
    photos: tuple[str, ...] = PHOTO_NAMES  # real photos for backgrounds, skin detail and (below) profiling
    profile_views_per_photo: int = 0  # profiled views of each of `photos` (real skin, eyes, hairline); 0: none
    profile_chunk: int = 100  # views per task (parallel over workers)
    profile_own_background_p: float = 0.4  # share of them over the photo's own surroundings (else a new one)
    # Share of all images cut to a studio crop (side = tight_crop_factor x the visible face's landmark box) before
    # detection: studio face crops cut the back of a profile's head off, and the net's crop reaches past the image.
    tight_crop_p: float = 0.0
    tight_crop_factor: tuple[float, float] = (1.0, 1.7)
    tight_crop_shift: float = 0.1  # crop-side fraction the crop centre moves
    tight_crop_size: tuple[int, int] = (96, 256)  # pixels of the cropped image
    new_background_p: float = 0.7  # share of images composited onto a photo / noise / gradient background
    # Share of those whose background also gets hair volume, a neck and shoulders behind the head: the renders have
    # none, and on astronaut.png masking them off moved the first net's yaw from -24 to 0 deg (MediaPipe: -1).
    context_p: float = 0.8
    photo_texture_p: float = 0.5  # share of heads whose skin texture is blended with a real-photo patch
    photo_texture_alpha: tuple[float, float] = (0.15, 0.45)  # blend weight range of that patch
    blur_p: float = 0.3
    noise_p: float = 0.4
    jpeg_p: float = 0.5
    grey_p: float = 0.1
    workers: int = 1  # processes over identities; the output does not depend on it


# Data recipes besides the defaults (the shipped model's), as `pose3dfr train-headpose --recipe NAME` applies them;
# tried against the shipped model by benchmarks/headpose_eval.py (docs/headpose.md, "Retraining"):
# "profiled": the training photos profiled to random poses (real faces at every yaw), studio crops and boxes as
#   loose and shifted as real detectors' (a 1.25 x box moved the shipped net's yaw on profiled photos by -9 to -10
#   deg at 60 and 90, on renders by < 3); the held-out photos stay out of the backgrounds and skin detail too.
# "loose": the studio crops and loose boxes alone, with every photo in the backgrounds as the shipped model.
DATA_RECIPES: dict[str, dict] = {
    "shipped": {},
    "profiled": {"photos": PROFILE_TRAIN_PHOTOS, "profile_views_per_photo": 800, "tight_crop_p": 0.3,
                 "box_scale_jitter": 0.2, "box_shift_jitter": 0.1},
    "loose": {"tight_crop_p": 0.3, "box_scale_jitter": 0.2, "box_shift_jitter": 0.1},
}


def recipe(name: str, **overrides) -> HeadPoseDataConfig:
    """The data config of a named recipe (DATA_RECIPES), with `overrides` on top."""
    if name not in DATA_RECIPES:
        raise ValueError(f"unknown head-pose data recipe {name!r}: use one of {sorted(DATA_RECIPES)}")
    return dataclasses.replace(HeadPoseDataConfig(), **{**DATA_RECIPES[name], **overrides})


def generate(cfg: HeadPoseDataConfig, make_detector: DetectorFactory, progress: bool = False) -> dict[str, np.ndarray]:
    """All crops: images N x S x S x 3 uint8, euler N x 3 (yaw, pitch, roll deg), landmarks N x K x 3
    (crop units x, y and visibility), identity N, yunet N (1 = YuNet box, 0 = landmark fallback)."""
    tasks = [(cfg, make_detector, index) for index in range(1, cfg.identities + 1)]
    parts = map_over_identities(_identity_samples, tasks, cfg.workers, "headpose data" if progress else None,
                                chunksize=4)
    chunks = -(-cfg.profile_views_per_photo // cfg.profile_chunk) if cfg.profile_views_per_photo > 0 else 0
    photo_tasks = [(cfg, make_detector, name, chunk) for name in cfg.photos for chunk in range(chunks)]
    if photo_tasks:
        parts += map_over_identities(_photo_samples, photo_tasks, cfg.workers,
                                     "profiled photos" if progress else None)
    return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}


def save_cache(data: dict[str, np.ndarray], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **data)
    return path


def load_cache(path: str | Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


_WORKER: dict[str, object] = {}


def _worker_state(cfg: HeadPoseDataConfig, make_detector: DetectorFactory) -> tuple[Any, list[np.ndarray]]:
    """(the face detector, the config's real photos) made once per process."""
    if _WORKER.get("photo_names") != cfg.photos:
        cv2.setNumThreads(1)
        _WORKER["analyzer"] = make_detector()
        _WORKER["photos"] = [load_image(PHOTOS_DIR / name) for name in cfg.photos]
        _WORKER["photo_names"] = cfg.photos
        _WORKER["heads"] = {}
    return _WORKER["analyzer"], _WORKER["photos"]  # type: ignore[return-value]


def _photo_head(cfg: HeadPoseDataConfig, make_detector: DetectorFactory, name: str):
    """The profiling head of one of the config's photos (its largest face), fitted once per process."""
    analyzer, photos = _worker_state(cfg, make_detector)
    heads: dict = _WORKER["heads"]  # type: ignore[assignment]
    if name not in heads:
        photo = photos[cfg.photos.index(name)]
        landmarks = analyzer.analyze(photo).faces[0].require_landmarks(name)
        heads[name] = fit_photo_head(photo, landmarks, ProfilingConfig(image_size=cfg.render_size), seed=cfg.seed)
    return heads[name]


def _photo_samples(task: tuple[HeadPoseDataConfig, DetectorFactory, str, int]) -> dict[str, np.ndarray]:
    """One chunk of profiled views of a training photo, cropped and degraded like the renders' crops."""
    cfg, make_detector, name, chunk = task
    analyzer, photos = _worker_state(cfg, make_detector)
    head = _photo_head(cfg, make_detector, name)
    rng = np.random.default_rng([cfg.seed, 10_000 + PHOTO_NAMES.index(name), chunk, 7])
    pcfg = ProfilingConfig(image_size=cfg.render_size)
    size = cfg.render_size
    out = _empty_samples()
    count = min(cfg.profile_chunk, cfg.profile_views_per_photo - chunk * cfg.profile_chunk)
    for _ in range(count):
        yaw, pitch, roll = (float(rng.uniform(-m, m)) for m in (cfg.yaw_max, cfg.pitch_max, cfg.roll_max))
        zoom = float(1.0 + rng.uniform(-1, 1) * cfg.scale_jitter)
        shift = tuple(float(v) for v in rng.uniform(-1, 1, 2) * cfg.shift_jitter * size)
        own = rng.random() < cfg.profile_own_background_p
        background = None if own else np.clip(_background(size, photos, rng) + 0.5, 0, 255).astype(np.uint8)
        view = render_profile(head, yaw, pitch, roll, pcfg, background, zoom, shift)
        _add_sample(out, analyzer, view.image, view.landmarks, (yaw, pitch, roll), -1 - PHOTO_NAMES.index(name),
                    rng, cfg)
    return _stack_samples(out)


def _empty_samples() -> dict[str, list]:
    return {"images": [], "euler": [], "landmarks": [], "identity": [], "yunet": []}


def _add_sample(out: dict[str, list], analyzer, image: np.ndarray, landmarks: np.ndarray,
                euler: tuple[float, float, float], identity: int, rng: np.random.Generator,
                cfg: HeadPoseDataConfig) -> None:
    """Append one training crop of a rendered image: maybe cut to a studio crop, YuNet's (jittered) box, the
    degraded pose crop and its landmark targets."""
    if cfg.tight_crop_p > 0 and rng.random() < cfg.tight_crop_p:  # no draw at 0: the shipped recipe's stream
        image, landmarks = studio_crop(image, landmarks, float(rng.uniform(*cfg.tight_crop_factor)),
                                       int(rng.integers(cfg.tight_crop_size[0], cfg.tight_crop_size[1] + 1)),
                                       tuple(rng.uniform(-1, 1, 2) * cfg.tight_crop_shift))
    box, found = _face_box(analyzer, image, landmarks, rng, cfg)
    out["images"].append(_degrade(pose_crop(image, box, cfg.crop_size, cfg.crop_factor), rng, cfg))
    out["euler"].append(euler)
    out["landmarks"].append(_targets(landmarks, box, cfg))
    out["identity"].append(identity)
    out["yunet"].append(found)


def _stack_samples(out: dict[str, list]) -> dict[str, np.ndarray]:
    return {"images": np.stack(out["images"]).astype(np.uint8), "euler": np.asarray(out["euler"], np.float32),
            "landmarks": np.stack(out["landmarks"]).astype(np.float32),
            "identity": np.asarray(out["identity"], np.int32), "yunet": np.asarray(out["yunet"], np.uint8)}


def _identity_samples(task: tuple[HeadPoseDataConfig, DetectorFactory, int]) -> dict[str, np.ndarray]:
    cfg, make_detector, index = task
    analyzer, photos = _worker_state(cfg, make_detector)
    rng = np.random.default_rng([cfg.seed, index, 7])
    identity = sample_identity(cfg.seed, index)
    synth = SynthConfig(image_size=cfg.render_size, scale_jitter=cfg.scale_jitter, shift_jitter=cfg.shift_jitter)
    out = _empty_samples()
    for expression in rng.choice(EXPRESSIONS, cfg.expressions_per_identity, replace=False):
        head = build_head(identity, str(expression), texture_size=cfg.texture_size)
        if rng.random() < cfg.photo_texture_p:
            head = dataclasses.replace(head, texture=_photo_texture(head.texture, photos, rng, cfg))
        for _ in range(cfg.views_per_head):
            yaw, pitch, roll = (float(rng.uniform(-m, m)) for m in (cfg.yaw_max, cfg.pitch_max, cfg.roll_max))
            image, landmarks = _render(head, yaw, pitch, roll, sample_nuisance(rng, synth), photos, rng, cfg)
            _add_sample(out, analyzer, image, landmarks, (yaw, pitch, roll), index, rng, cfg)
    return _stack_samples(out)


def _render(head, yaw: float, pitch: float, roll: float, nuisance: Nuisance, photos: list[np.ndarray],
            rng: np.random.Generator, cfg: HeadPoseDataConfig) -> tuple[np.ndarray, np.ndarray]:
    """(image, 468 x 3 landmarks); with probability new_background_p on a new background (exact alpha)."""
    size = cfg.render_size
    if rng.random() >= cfg.new_background_p:
        image, landmarks, _, _ = render_head(head, yaw, pitch, roll, size, nuisance, rng)
        return image, landmarks
    plain = dataclasses.replace(nuisance, noise=0.0)
    black, landmarks, _, _ = render_head(head, yaw, pitch, roll, size,
                                         dataclasses.replace(plain, background=((0.0, 0.0, 0.0),)))
    white, _, _, _ = render_head(head, yaw, pitch, roll, size, dataclasses.replace(plain, background=((1.0, 1.0, 1.0),)))
    coverage = 1.0 - (white.astype(np.float32) - black.astype(np.float32)) / 255.0  # head alpha incl. soft edges
    background = _background(size, photos, rng)
    if rng.random() < cfg.context_p:
        _paint_context(background, landmarks, rng)
    image = black.astype(np.float32) + (1.0 - coverage) * background
    return np.clip(image + 0.5, 0, 255).astype(np.uint8), landmarks


def _background(size: int, photos: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """size x size x 3 float32 (0..255): a real-photo patch, a smoothed noise texture or a gradient."""
    kind = rng.integers(3)
    if kind == 0:
        photo = photos[rng.integers(len(photos))]
        h, w = photo.shape[:2]
        side = int(rng.uniform(0.2, 0.6) * min(h, w))
        y, x = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
        patch = cv2.resize(photo[y:y + side, x:x + side], (size, size), interpolation=cv2.INTER_AREA)
        return (patch[:, ::-1] if rng.random() < 0.5 else patch).astype(np.float32)
    if kind == 1:
        cells = int(rng.integers(3, 40))
        noise = rng.uniform(0, 255, (cells, cells, 3)).astype(np.float32)
        noise = cv2.resize(noise, (size, size), interpolation=cv2.INTER_CUBIC)
        return np.clip(noise * rng.uniform(0.3, 1.0) + rng.uniform(0, 100), 0, 255)
    a, b = rng.uniform(0, 255, (2, 3))
    t = np.linspace(0, 1, size, dtype=np.float32)[:, None, None]
    ramp = a + (b - a) * t
    ramp = np.broadcast_to(ramp, (size, size, 3))
    return np.ascontiguousarray(ramp if rng.random() < 0.5 else ramp.transpose(1, 0, 2)).astype(np.float32)


HAIR_COLOURS = np.array([[25, 18, 14], [60, 40, 25], [110, 75, 45], [170, 130, 80], [215, 190, 140],
                         [140, 135, 130], [120, 50, 25]], np.float32)  # black, browns, blond, grey, red (RGB)


def _paint_context(background: np.ndarray, landmarks: np.ndarray, rng: np.random.Generator) -> None:
    """Paint hair volume, a neck and shoulders into a size x size x 3 float32 background, in place, around the
    face's projected extent (all 468 landmarks), placed without regard to the pose (offsets drawn symmetrically),
    so the net learns that this context does not tell the yaw. The head is composited over it."""
    size = background.shape[0]
    lo, hi = landmarks[:, :2].min(0), landmarks[:, :2].max(0)
    cx, cy = (lo + hi) / 2
    side = float(max(hi - lo))
    layer = np.zeros(background.shape[:2], np.float32)
    colour = np.zeros(background.shape, np.float32)

    def blob(centre: tuple[float, float], axes: tuple[float, float], rgb: np.ndarray, texture: float) -> None:
        mask = np.zeros(background.shape[:2], np.uint8)
        cv2.ellipse(mask, (int(centre[0]), int(centre[1])), (max(int(axes[0]), 1), max(int(axes[1]), 1)),
                    float(rng.uniform(-25, 25)), 0, 360, 255, -1)
        alpha = cv2.GaussianBlur(mask.astype(np.float32) / 255, (0, 0), max(side * 0.02, 0.5))
        cells = int(rng.integers(8, 40))
        grain = cv2.resize(rng.normal(0, texture, (cells, cells)).astype(np.float32), (size, size))
        shade = np.clip(rgb * rng.uniform(0.8, 1.2, 3) + grain[..., None] * 40, 0, 255)
        colour[:] = colour * (1 - alpha[..., None]) + shade * alpha[..., None]
        layer[:] = np.maximum(layer, alpha)

    if rng.random() < 0.7:  # shoulders / clothing, then the neck over them
        blob((cx + rng.normal(0, 0.15) * side, cy + rng.uniform(0.95, 1.4) * side),
             (rng.uniform(0.9, 1.7) * side, rng.uniform(0.45, 0.8) * side), rng.uniform(0, 255, 3), 1.0)
        blob((cx + rng.normal(0, 0.08) * side, cy + rng.uniform(0.45, 0.7) * side),
             (rng.uniform(0.22, 0.35) * side, rng.uniform(0.3, 0.45) * side),
             np.array([200, 150, 120], np.float32) * rng.uniform(0.4, 1.15), 0.3)
    if rng.random() < 0.85:  # hair: one to four lobes over and around the skull, sometimes long at the sides
        rgb = HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))]
        for _ in range(int(rng.integers(1, 5))):
            blob((cx + rng.normal(0, 0.15) * side, cy - rng.uniform(0.05, 0.4) * side),
                 (rng.uniform(0.45, 0.85) * side, rng.uniform(0.4, 0.75) * side), rgb, 0.8)
        for sign in (-1, 1):
            if rng.random() < 0.3:
                blob((cx + sign * rng.uniform(0.3, 0.6) * side, cy + rng.uniform(0.0, 0.5) * side),
                     (rng.uniform(0.2, 0.4) * side, rng.uniform(0.4, 0.8) * side), rgb, 0.8)
    background[:] = background * (1 - layer[..., None]) + colour * layer[..., None]


def _photo_texture(texture: np.ndarray, photos: list[np.ndarray], rng: np.random.Generator,
                   cfg: HeadPoseDataConfig) -> np.ndarray:
    """The face texture blended with a real-photo patch's detail (its mean removed, so skin colour stays)."""
    photo = photos[rng.integers(len(photos))]
    h, w = photo.shape[:2]
    side = int(rng.uniform(0.1, 0.4) * min(h, w))
    y, x = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
    t = texture.shape[0]
    patch = cv2.resize(photo[y:y + side, x:x + side], (t, t), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
    alpha = rng.uniform(*cfg.photo_texture_alpha)
    return np.clip(texture + alpha * (patch - patch.mean((0, 1))), 0, 1).astype(np.float32)


def _face_box(analyzer, image: np.ndarray, landmarks: np.ndarray, rng: np.random.Generator,
              cfg: HeadPoseDataConfig) -> tuple[np.ndarray, int]:
    """(jittered x0, y0, x1, y1 box, 1 if YuNet's else 0) of a rendered face."""
    box, found = face_box(analyzer.detect_boxes(image), landmarks)
    side = max(box[2] - box[0], box[3] - box[1])
    mid = (box[:2] + box[2:4]) / 2 + rng.uniform(-1, 1, 2) * cfg.box_shift_jitter * side
    half = (box[2:4] - box[:2]) / 2 * (1 + rng.uniform(-1, 1) * cfg.box_scale_jitter)
    return np.r_[mid - half, mid + half], found


def face_box(boxes: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, int]:
    """(x0, y0, x1, y1, 1) for the YuNet box (N x 5) that holds the rendered face's landmark centre, else
    (the visible landmarks' bounding box, 0): the fallback when YuNet misses a render (some profiles)."""
    seen = landmarks[landmarks[:, 2] > 0.5, :2]
    points = seen if len(seen) >= 10 else landmarks[:, :2]
    centre = points.mean(0)
    if len(boxes):
        nearest = boxes[np.argmin(np.linalg.norm((boxes[:, :2] + boxes[:, 2:4]) / 2 - centre, axis=1))]
        if nearest[0] <= centre[0] <= nearest[2] and nearest[1] <= centre[1] <= nearest[3]:
            return np.asarray(nearest[:4], np.float64), 1
    return np.r_[points.min(0), points.max(0)].astype(np.float64), 0


def _targets(landmarks: np.ndarray, box: np.ndarray, cfg: HeadPoseDataConfig) -> np.ndarray:
    """K x 3 (x, y in crop units, visibility) of LANDMARK_NAMES from the 468 projected landmarks."""
    rows = profile_landmarks(landmarks)
    m = crop_matrix(box, cfg.crop_size, cfg.crop_factor)
    rows[:, :2] = crop_units(rows[:, :2] @ m[:, :2].T + m[:, 2], cfg.crop_size)
    return rows


def _degrade(crop: np.ndarray, rng: np.random.Generator, cfg: HeadPoseDataConfig) -> np.ndarray:
    """Photo-like nuisances on a crop: colour/brightness jitter, blur, noise, JPEG, greyscale."""
    img = crop.astype(np.float32)
    img = img * rng.uniform(0.8, 1.2, 3) * rng.uniform(0.6, 1.3) + rng.uniform(-25, 25)
    if rng.random() < cfg.blur_p:
        img = cv2.GaussianBlur(img, (0, 0), float(rng.uniform(0.3, 1.5)))
    if rng.random() < cfg.noise_p:
        img = img + rng.normal(0, rng.uniform(2, 12), img.shape)
    img = np.clip(img + 0.5, 0, 255).astype(np.uint8)
    if rng.random() < cfg.grey_p:
        img = np.repeat(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)[:, :, None], 3, 2)
    if rng.random() < cfg.jpeg_p:
        ok, data = cv2.imencode(".jpg", img[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(25, 90))])
        img = np.ascontiguousarray(cv2.imdecode(data, cv2.IMREAD_COLOR)[:, :, ::-1]) if ok else img
    return img


def mean_box_count(data: dict[str, np.ndarray]) -> float:
    """Share of crops cut around a YuNet box (the rest used the landmark fallback)."""
    return float(np.mean(data["yunet"])) if len(data["yunet"]) else math.nan
