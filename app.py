"""pose3dfr web app: builds the Gradio UI and calls the pose3dfr library (no model logic here).

Run `python app.py [--port N]`. Binds 127.0.0.1 locally and 0.0.0.0 inside a Hugging Face Space
(env SPACE_ID); the port comes from --port, else GRADIO_SERVER_PORT, else 7860. Nothing is
downloaded at start and no model is loaded until the first request that needs it. See docs/app.md.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import functools
import html
import importlib
import importlib.util
import inspect
import logging
import math
import os
import re
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402

import pose3dfr  # noqa: E402
from pose3dfr.errors import CheckpointError, Pose3DFRError  # noqa: E402
from pose3dfr.logs import native_logs_silenced  # noqa: E402
from pose3dfr.paths import ASSETS_DIR, CHECKPOINTS_DIR, PHOTOS_DIR, PROJECT_ROOT  # noqa: E402

DEFAULT_PORT = 7860
# Largest upload (Gradio refuses bigger files before they reach us); a phone photo is 2-8 MB.
MAX_FILE_SIZE = "20mb"
# Requests served at once per event (queue); two fit the 2-core CPU of a free Space.
CONCURRENCY_LIMIT = 2


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    return int(value) if value.isdigit() else default


# Events waiting in the queue at most (all events together); more are refused with "Queue is full".
# 64 holds a burst of 40 verifies (about 0.5 s each, 2 at a time: about 15 s of waiting). POSE3DFR_QUEUE_SIZE
# overrides it (tests use a small queue).
QUEUE_MAX_SIZE = _env_int("POSE3DFR_QUEUE_SIZE", 64)
# Pose sweeps (13 renders, each scored) run one at a time in their own group, so they never hold the
# slots of /verify and /embed; one that runs longer than this is stopped with a message.
SWEEP_CONCURRENCY = 1
SWEEP_TIME_LIMIT_SECONDS = 120
# Gradio's cache (uploads, bare /gradio_api/upload files, images written for outputs) is swept every
# DELETE_EVERY seconds of files older than DELETE_AGE seconds: nothing stays longer than 45 + 10 = 55 s.
# POSE3DFR_DELETE_CACHE="every,age" overrides both (tests use short intervals).
DELETE_EVERY_SECONDS, DELETE_AGE_SECONDS = 10, 45
# A session's view state (two face crops with heatmaps, a sweep's points) is dropped after this long.
STATE_TTL_SECONDS = 600
# Longest error message shown; longer ones (e.g. a 100 KB input echoed back) are cut.
MAX_ERROR_CHARS = 300
# Longest echo of a user-given value inside a message.
MAX_ECHO_CHARS = 40
# Checkpoint names a training run may never take (shipped files and the library's built-ins).
RESERVED_CHECKPOINT_NAMES = ("default", "default-2d", "dlib-pretrained", "dlib_resnet")
# Operating points offered in Verify: (label, FAR).
FAR_CHOICES: list[tuple[str, float]] = [("1%", 0.01), ("0.1%", 0.001)]
DEFAULT_FAR = 0.01
# Default opacity of the attention heatmap over the aligned crops.
DEFAULT_OPACITY = 0.45
# Display height (px) of the aligned crops: 112-150 px chips upscaled to where the heatmap can be read.
CROP_VIEW_HEIGHT = 320
# Where the app writes what it makes (generated examples, data sets, training runs); never user uploads.
CACHE_DIR = Path(os.environ.get("POSE3DFR_CACHE_DIR") or Path(tempfile.gettempdir()) / "pose3dfr-app")
# Data set directories the Evaluate and Train tabs may read: ./data and the app's cache, nothing else.
DATA_ROOTS: tuple[Path, ...] = (PROJECT_ROOT / "data", CACHE_DIR / "datasets")
# Seconds between two refreshes of a running training job's curves.
TRAIN_POLL_SECONDS = 2.0

log = logging.getLogger("pose3dfr.app")


def public_mode() -> bool:
    """Public mode: POSE3DFR_PUBLIC=1 (or `--public`); unset, it is on inside a Hugging Face Space (SPACE_ID).
    POSE3DFR_PUBLIC=0 turns it off (a private Space). Public mode builds no handler that writes outside temp
    or starts a long job: no Train, no data set generation, no Evaluate."""
    value = os.environ.get("POSE3DFR_PUBLIC")
    if value in ("0", "1"):
        return value == "1"
    return bool(os.environ.get("SPACE_ID"))


def delete_cache_setting() -> tuple[int, int]:
    """(every, age) seconds for gr.Blocks(delete_cache=...): POSE3DFR_DELETE_CACHE="every,age", else defaults."""
    every, _, age = os.environ.get("POSE3DFR_DELETE_CACHE", "").partition(",")
    if every.isdigit() and age.isdigit() and int(every) > 0 and int(age) > 0:
        return int(every), int(age)
    return DELETE_EVERY_SECONDS, DELETE_AGE_SECONDS


# ----------------------------------------------------------------------------- errors

# An absolute POSIX path of two or more parts (a server path in a message); replaced by its last part.
_SERVER_PATH = re.compile(r"(?<![\w.])(/[^\s/'\"():,]+){2,}")


def plain_message(text: str) -> str:
    """`text` safe to show to a user and an API caller alike: plain text (no '<' or '>': Gradio renders
    messages as HTML, so no markup can form), server paths cut to their file name, at most MAX_ERROR_CHARS."""
    text = _SERVER_PATH.sub(lambda m: m.group(0).rsplit("/", 1)[-1], str(text))
    text = text.replace("<", "\u2039").replace(">", "\u203a")
    return text if len(text) <= MAX_ERROR_CHARS else text[:MAX_ERROR_CHARS - 1] + "\u2026"


def user_error(text: str) -> gr.Error:
    """A gr.Error with a plain, short message (see plain_message); no stack trace is printed."""
    return gr.Error(plain_message(text), print_exception=False)


def echo(value: Any) -> str:
    """repr() of a user-given value for a message, cut to MAX_ECHO_CHARS."""
    text = repr(value)
    return text if len(text) <= MAX_ECHO_CHARS else text[:MAX_ECHO_CHARS - 1] + "\u2026"

def readable_errors(fn: Callable) -> Callable:
    """Turn every exception of an event handler into a gr.Error with a readable message (never a trace).

    pose3dfr errors carry a message meant for the user; anything else is logged on the server (type and
    stack frames only: the exception's text may name an upload) and shown as a short generic line. Every
    message goes through plain_message."""

    def convert(exc: Exception) -> gr.Error:
        if isinstance(exc, gr.Error):
            exc.message = plain_message(exc.message)
            return exc
        if isinstance(exc, Pose3DFRError):
            return user_error(str(exc))
        log.error("unexpected error in %s (%s)\n%s", fn.__name__, type(exc).__name__,
                  "".join(traceback.format_tb(exc.__traceback__)))
        return gr.Error(f"Something went wrong ({type(exc).__name__}); the details are in the server log.",
                        print_exception=False)

    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def generator_wrapper(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except Exception as exc:
                raise convert(exc) from None
        return generator_wrapper

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            raise convert(exc) from None
    return wrapper


def mcp_tool(name: str) -> Callable[[Callable], Callable]:
    """Name a handler's MCP tool `name` (Gradio names each tool after its function's __name__; the
    description and argument help come from the docstring's summary and Args section)."""
    def rename(fn: Callable) -> Callable:
        fn.__name__ = name
        return fn
    return rename


def _upload_path(image: gr.Image, payload: Any) -> str | None:
    """Preprocess of a photo upload: the uploaded file's path, untouched.

    Plain gr.Image opens uploads with PIL before our code runs, so a corrupt file would fail inside
    Gradio with no readable message; this way pose3dfr's own loader reports it (naming the file)."""
    if payload is None:
        return None
    if payload.path is None:  # a pasted data: URL, decoded by Gradio into a file
        return gr.Image.preprocess(image, payload)
    return str(payload.path)


def photo_upload(label: str, elem_id: str, webcam: bool = False) -> gr.Image:
    """An upload box for a face photo (file, pasted image, or with `webcam` a camera snapshot) whose handler
    receives the file path. A webcam snapshot arrives as an upload and is deleted after the answer like one.

    The preprocess is replaced on the instance, not in a subclass: Gradio writes a .pyi stub next to
    the module of every Component subclass, which fails on a read-only Space checkout."""
    sources = ["upload", "webcam", "clipboard"] if webcam else ["upload", "clipboard"]
    image = gr.Image(label=label, type="filepath", sources=sources, elem_id=elem_id, height=320)
    image.preprocess = functools.partial(_upload_path, image)
    return image


# ----------------------------------------------------------------------------- checkpoints and models

from pose3dfr.models.io import DEFAULT_CHECKPOINT as BUILTIN_CHECKPOINT  # noqa: E402  checkpoints/default.*


def list_checkpoints(directory: Path | None = None) -> list[str]:
    """Checkpoint names offered: the built-ins ("default", "dlib-pretrained") and each `<name>.safetensors`
    with its `<name>.json` in checkpoints/."""
    from pose3dfr.models.io import available_checkpoints

    return available_checkpoints(CHECKPOINTS_DIR if directory is None else directory)


def default_checkpoint() -> str:
    """POSE3DFR_CHECKPOINT if it names an offered checkpoint, else "default"."""
    wanted = os.environ.get("POSE3DFR_CHECKPOINT")
    return wanted if wanted in list_checkpoints() else BUILTIN_CHECKPOINT


def resolve_checkpoint(name: str | None) -> str:
    """`name` if it is one of the checkpoints in checkpoints/, else a gr.Error (no paths, no traversal)."""
    names = list_checkpoints()
    if not name:
        raise gr.Error("Choose a checkpoint.", print_exception=False)
    if name not in names:
        raise user_error(f"Unknown checkpoint {echo(name)}; available: {', '.join(names)}.")
    return name


def load_verifier(name: str) -> Any:
    """The library's Verifier for checkpoint `name` (imported here so the app starts without a model).

    Files are passed as an absolute stem inside checkpoints/, so nothing outside it can be picked up."""
    from pose3dfr.inference.verifier import Verifier

    stem = CHECKPOINTS_DIR / name
    if (CHECKPOINTS_DIR / f"{name}.safetensors").is_file():
        return Verifier.from_pretrained(stem)
    return Verifier.from_pretrained(name)  # the built-in "default"


@dataclass
class _Entry:
    key: tuple[str, int]
    model: Any


class ModelCache:
    """Loads each checkpoint once, lazily, and shares it between requests (thread-safe loading; the
    Verifier itself is thread-safe). A checkpoint file that changes on disk (e.g. a training run
    finished) is reloaded on next use."""

    def __init__(self, loader: Callable[[str], Any]):
        self._loader = loader
        self._guard = threading.Lock()
        self._load_locks: dict[str, threading.Lock] = {}
        self._entries: dict[str, _Entry] = {}

    def _key(self, name: str) -> tuple[str, int]:
        path = CHECKPOINTS_DIR / f"{name}.safetensors"
        return name, path.stat().st_mtime_ns if path.exists() else 0

    def get(self, name: str) -> Any:
        """The shared model of `name`, loading it first if needed (loading one name never blocks another)."""
        with self._guard:
            load_lock = self._load_locks.setdefault(name, threading.Lock())
        with load_lock:
            key = self._key(name)
            entry = self._entries.get(name)
            if entry is None or entry.key != key:
                entry = _Entry(key, self._loader(name))
                self._entries[name] = entry
            return entry.model


MODELS = ModelCache(lambda name: load_verifier(name))


# ----------------------------------------------------------------------------- verify

def far_value(far: Any) -> float:
    """The FAR of a choice (0.01 / 0.001, or a label such as '1%'), else a gr.Error."""
    for label, value in FAR_CHOICES:
        if far == label or (isinstance(far, (int, float)) and math.isclose(float(far), value)):
            return value
    raise user_error(f"FAR must be one of {', '.join(l for l, _ in FAR_CHOICES)}; got {echo(far)}.")


def far_label(far: float) -> str:
    return next((label for label, value in FAR_CHOICES if math.isclose(far, value)), f"{far:g}")


def _required(value: str | None, what: str) -> str:
    """`value` (an upload's path), or a gr.Error saying what to upload (also when the file was deleted)."""
    if not value:
        raise gr.Error(f"Upload the {what}.", print_exception=False)
    if not Path(value).exists() and _in_upload_folder(Path(value)):
        raise gr.Error(f"The {what} is no longer on the server (uploads are deleted after each answer); "
                       "upload it again.", print_exception=False)
    return value


# ----------------------------------------------------------------------------- uploads are not kept

_IN_USE: dict[str, int] = {}  # upload path -> handlers using it now
_IN_USE_LOCK = threading.Lock()
_DEMO: list[gr.Blocks] = []  # the served Blocks (for its example files and its queue)


def _upload_root() -> Path:
    from gradio.utils import get_upload_folder

    return Path(get_upload_folder()).resolve()


def _in_upload_folder(path: Path) -> bool:
    return path.resolve().is_relative_to(_upload_root())


def _kept_files() -> set[str]:
    """Files Gradio keeps on purpose: the examples' copies (shipped public-domain photos, synthetic renders)."""
    kept: set[str] = set()
    for demo in _DEMO:
        for block in demo.blocks.values():
            kept.update(str(p) for p in getattr(block, "keep_in_cache", ()))
    return kept


def _queued_paths() -> collections.Counter:
    """How often each upload path is named by the events waiting in or running from Gradio's queue
    (the asking request's own event included): an identical upload from another request lands on the
    same path, so such a file is left for the last request that uses it."""
    found: collections.Counter = collections.Counter()

    def collect(value: Any) -> None:
        if isinstance(value, dict):
            if isinstance(value.get("path"), str):
                found[value["path"]] += 1
            for item in value.values():
                collect(item)
        elif isinstance(value, (list, tuple)):
            for item in value:
                collect(item)

    for demo in _DEMO:
        queue = getattr(demo, "_queue", None)  # Gradio internals (6.x): pending events and running jobs
        events = [e for q in getattr(queue, "event_queue_per_concurrency_id", {}).values() for e in q.queue]
        events += [e for job in getattr(queue, "active_jobs", []) or [] if job for e in job]
        for event in events:
            collect(getattr(getattr(event, "data", None), "data", None))
    return found


def discard_uploads(paths: list[str]) -> None:
    """Delete these uploaded files (and their folder once empty) unless another request still uses them;
    only files inside Gradio's upload folder, never an example's copy."""
    root, kept, queued = _upload_root(), _kept_files(), _queued_paths()
    with _IN_USE_LOCK:
        busy = {p for p, n in _IN_USE.items() if n > 0}
    for path in set(paths):
        resolved = Path(path).resolve()
        others = queued[path] - paths.count(path)  # references beyond this request's own event
        if not resolved.is_relative_to(root) or {path, str(resolved)} & (kept | busy) or others > 0:
            continue
        resolved.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            resolved.parent.rmdir()  # Gradio's per-upload hashed folder


def forgets_uploads(fn: Callable) -> Callable:
    """Run an upload-taking handler, then delete its uploaded files (photos, scans) once it has answered."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        paths = [p for p in (_file_path(v) for v in (*args, *kwargs.values()))
                 if isinstance(p, str) and os.path.isabs(p)]
        with _IN_USE_LOCK:
            for p in paths:
                _IN_USE[p] = _IN_USE.get(p, 0) + 1
        try:
            return fn(*args, **kwargs)
        finally:
            with _IN_USE_LOCK:
                for p in paths:
                    _IN_USE[p] -= 1
                    if not _IN_USE[p]:
                        del _IN_USE[p]
            discard_uploads(paths)
    return wrapper


def json_safe(value: Any) -> Any:
    """`value` with numpy scalars/arrays turned into JSON types (small arrays only; big ones dropped)."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items() if json_safe(v) is not _DROP}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist() if value.size <= 4096 else _DROP
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


_DROP = object()


def checkpoint_tar(name: str, pose_bin: str, far: float) -> float | None:
    """TAR at `far` for probes in `pose_bin` recorded in the checkpoint's JSON (held-out results), if any."""
    from pose3dfr.models.io import read_meta
    from pose3dfr.eval.calibration import recorded_tar

    try:
        return recorded_tar(read_meta(CHECKPOINTS_DIR / name), pose_bin, far)
    except CheckpointError:
        return None


@dataclass
class VerifyView:
    """What the Verify tab draws from one result (kept server-side in a gr.State): the result without the
    overlays and landmarks; the points only until the first render (the slider needs crops + heatmaps)."""
    result: Any
    checkpoint: str


def slim_view(result: Any, checkpoint: str, keep_points: bool = True) -> VerifyView:
    """A VerifyView holding only what re-rendering needs (crop and heatmap of each face; points if asked)."""
    faces = {side: dataclasses.replace(getattr(result, side), overlay=np.zeros((0, 0, 3), np.uint8), landmarks=None)
             for side in ("enroll", "probe")}
    points = {} if keep_points else {"points": None, "point_attention": None}
    return VerifyView(dataclasses.replace(result, **faces, **points), checkpoint)


@mcp_tool("verify")
@readable_errors
@forgets_uploads
def verify_endpoint(enroll: str | None, probe: str | None, scan: str | None = None, far: Any = DEFAULT_FAR,
                    checkpoint: str | None = None) -> tuple[dict, VerifyView]:
    """Decide whether two face photos show the same person (1:1 verification), at any head pose.

    Scores the cosine similarity of the two faces' embeddings against the threshold calibrated at the chosen
    false accept rate, and reports each face's head pose. Uploads are deleted once the answer is sent.

    Args:
        enroll: Enrollment photo: a frontal face of the claimed person.
        probe: Probe photo to check against the enrollment; any head pose up to profile.
        scan: Optional 3D scan of the enrollee (.ply/.obj/.npy); it only adds the 3D attention view.
        far: False accept rate of the decision threshold: 0.01 (1%) or 0.001 (0.1%).
        checkpoint: Checkpoint name, e.g. "default".

    Returns:
        A dict with "match", "score", "threshold", "far", "threshold_provenance" (what the threshold was
        calibrated on), each face's yaw, pitch, roll and pose bin, and "tar_at_threshold".
    """
    enroll, probe = _required(enroll, "enrollment photo"), _required(probe, "probe photo")
    far = far_value(far)
    name = resolve_checkpoint(checkpoint)
    result = MODELS.get(name).verify(enroll, probe, scan=scan or None, far=far)
    payload = json_safe(result.to_dict())
    payload["checkpoint"] = name
    payload["threshold_provenance"] = threshold_provenance(MODELS.get(name).meta, result.calibrated,
                                                           result.threshold_source)
    payload["tar_at_threshold"] = checkpoint_tar(name, result.probe.bin, far)
    payload["tar_measured_on"] = "synthetic validation renders, not real photos" \
        if payload["tar_at_threshold"] is not None else None
    return payload, slim_view(result, name)


def verdict_markdown(view: VerifyView) -> str:
    """Verdict, score against threshold and what the FAR means, in words."""
    r = view.result
    far_text = far_label(r.far)
    head = "## Match: Same person" if r.match else "## No match: Different people"
    sign = "≥" if r.score >= r.threshold else "<"
    rate = round(1 / r.far)
    source = getattr(r, "threshold_source", "default")
    lines = [head, f"Score **{r.score:.3f}** {sign} threshold **{r.threshold:.3f}**."]
    if r.calibrated:
        provenance = threshold_provenance(MODELS.get(view.checkpoint).meta, True, source)
        lines.append(f"Threshold {provenance}: among those renders about 1 in {rate:,} pairs of different people "
                     f"is wrongly accepted. On real photos this rate is not measured.")
    else:
        lines.append(f"Note: this threshold is not calibrated at FAR {far_text} ({source}).")
    tar = checkpoint_tar(view.checkpoint, r.probe.bin, r.far)
    if tar is not None:
        lines.append(f"For probes in pose bin **{r.probe.bin}** this checkpoint accepts **{tar:.1%}** of genuine "
                     f"pairs at this threshold (TAR @ FAR {far_text}, measured on synthetic validation renders, "
                     "not real photos).")
    else:
        lines.append(f"No evaluation of `{view.checkpoint}` for pose bin {r.probe.bin} is recorded.")
    return "\n\n".join(lines)


def _face_count(face: Any) -> int:
    faces = getattr(face, "faces", 1)
    return faces if isinstance(faces, int) else len(faces)


def pose_markdown(view: VerifyView) -> str:
    """Table of each face's head pose and pose bin."""
    rows = ["| photo | yaw | pitch | roll | pose bin | faces found |", "|---|---|---|---|---|---|"]
    for label, face in (("enrollment", view.result.enroll), ("probe", view.result.probe)):
        count = _face_count(face)
        used = f"{count} (used #{face.face_index + 1})" if count > 1 else str(count)
        angles = " | ".join("?" if v is None else f"{v:+.1f}°" for v in (face.yaw, face.pitch, face.roll))
        rows.append(f"| {label} | {angles} | {face.bin or '?'} | {used} |")
    return "\n".join(rows)


def overlays(view: VerifyView | None, opacity: float) -> tuple[Any, Any]:
    """Enrollment and probe crops with the shared-attention heatmap blended at `opacity`."""
    from pose3dfr.viz import overlay_heatmap

    if view is None:
        return None, None
    return tuple(enlarged(overlay_heatmap(face.crop, face.heatmap, float(opacity)))
                 for face in (view.result.enroll, view.result.probe))


def enlarged(image: np.ndarray, height: int = CROP_VIEW_HEIGHT) -> np.ndarray:
    """`image` scaled up to `height` px (a 112-150 px chip is shown at its own size by the browser)."""
    import cv2

    h, w = image.shape[:2]
    if h >= height:
        return image
    return cv2.resize(image, (round(w * height / h), height), interpolation=cv2.INTER_CUBIC)


def attention_figure(points: Any, attention: Any, title: str = "3D attention") -> Any:
    """Plotly 3D view of the point cloud coloured by attention (uniform when the model has no 3D
    branch), or None without points."""
    from pose3dfr.viz import point_attention_figure

    if points is None:
        return None
    if attention is None:
        title = f"{title}<br><sub>this checkpoint has no 3D attention (no 3D branch): points shown in grey</sub>"
    return point_attention_figure(points, attention, title=title)


def colour_scale_html() -> str:
    """A legend of the heatmap colours (the 3D view's colour bar has the same two ends)."""
    from pose3dfr.viz import SCALE_HIGH, SCALE_LOW, colour_scale_stops

    gradient = ", ".join(colour_scale_stops())
    return ('<div style="max-width:720px;font-size:0.85em">'
            f'<div style="height:14px;border-radius:3px;background:linear-gradient(to right, {gradient})"></div>'
            f'<div style="display:flex;justify-content:space-between;white-space:nowrap"><span>{SCALE_LOW}</span>'
            f'<span>&nbsp;heatmap colour, per face&nbsp;</span><span>{SCALE_HIGH}</span></div></div>')


@readable_errors
def render_verify(view: VerifyView | None, opacity: float) -> tuple:
    """Everything the Verify tab shows for a result."""
    if view is None:
        return (gr.skip(),) * 7
    enroll_overlay, probe_overlay = overlays(view, opacity)
    source = getattr(view.result, "points_source", None)
    figure = attention_figure(view.result.points, view.result.point_attention,
                              f"3D attention<br><sub>points: {html.escape(source)}</sub>" if source else "3D attention")
    return (verdict_markdown(view), pose_markdown(view), enroll_overlay, probe_overlay, figure,
            gr.update(visible=figure is not None), slim_view(view.result, view.checkpoint, keep_points=False))


@readable_errors
def rerender_overlays(view: VerifyView | None, opacity: float) -> tuple[Any, Any]:
    """Only the crops, when the opacity slider moves (no model call)."""
    if view is None:
        return gr.skip(), gr.skip()
    return overlays(view, opacity)


@mcp_tool("embed")
@readable_errors
@forgets_uploads
def embed_endpoint(image: str | None, checkpoint: str | None) -> dict:
    """Compute the identity embedding of the largest face in a photo (an L2-normalised vector).

    Two embeddings of the same person have a high cosine similarity; compare them with /verify's threshold.
    The photo is deleted once the answer is sent.

    Args:
        image: Photo with a face.
        checkpoint: Checkpoint name, e.g. "default".

    Returns:
        A dict with "embedding" (list of floats), "dim" and "checkpoint".
    """
    image = _required(image, "photo")
    name = resolve_checkpoint(checkpoint)
    output = MODELS.get(name).embed(image)
    if hasattr(output, "to_dict"):
        payload = json_safe(output.to_dict())
    else:
        vector = np.asarray(getattr(output, "embedding", output), dtype=np.float64).reshape(-1)
        payload = {"embedding": vector.tolist()}
    payload["dim"] = len(payload.get("embedding") or [])
    payload["checkpoint"] = name
    return payload


# ----------------------------------------------------------------------------- identify (1:N galleries)

# Galleries offered besides the demo: every `<name>/gallery.json` here (built with `pose3dfr gallery build`).
GALLERY_DIR = Path(os.environ.get("POSE3DFR_GALLERY_DIR") or CACHE_DIR / "galleries")
# The gallery the app builds itself from the shipped public-domain photos (identity -> photo in assets/photos).
DEMO_GALLERY = "demo"
DEMO_GALLERY_LABEL = "demo: obama, biden, eileen-collins (shipped photos)"
DEMO_IDENTITIES = {"obama": "obama.jpg", "biden": "biden.jpg", "eileen-collins": "astronaut.png"}
# Where the demo gallery of each checkpoint is saved once built (a gallery must match its checkpoint).
DEMO_GALLERY_CACHE = CACHE_DIR / "demo-galleries"
# Largest top-K offered (a gallery ranks every identity; the table stays readable).
MAX_TOP_K = 50
DEFAULT_TOP_K = 5


def list_galleries() -> list[str]:
    """Gallery choices: the demo gallery, then every gallery folder in GALLERY_DIR."""
    found = sorted(p.parent.name for p in GALLERY_DIR.glob("*/gallery.json")) if GALLERY_DIR.is_dir() else []
    return [DEMO_GALLERY, *(name for name in found if name != DEMO_GALLERY)]


def gallery_choices() -> list[tuple[str, str]]:
    """(label, value) of each gallery for the dropdown."""
    return [(DEMO_GALLERY_LABEL if name == DEMO_GALLERY else name, name) for name in list_galleries()]


class GalleryCache:
    """Each (gallery, checkpoint) loaded once and shared (searches are read-only); a gallery file that changes
    on disk is reloaded. The demo gallery is built on its first use per checkpoint and saved in the cache."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, str], tuple[Any, Any]] = {}  # (gallery, checkpoint) -> (stamp, Gallery)

    def get(self, choice: str, checkpoint: str, verifier: Any) -> Any:
        from pose3dfr.inference.gallery import Gallery

        folder = self._folder(choice, checkpoint)
        with self._lock:
            if choice == DEMO_GALLERY and not (folder / "gallery.json").is_file():
                self._build_demo(verifier, folder)
            stamp = (folder / "gallery.json").stat().st_mtime_ns if (folder / "gallery.json").is_file() else None
            key = (choice, checkpoint)
            cached = self._entries.get(key)
            if cached is None or cached[0] != stamp:
                if stamp is None:
                    raise user_error(f"Gallery {echo(choice)} is gone; choose another.")
                cached = (stamp, self._load(choice, folder, verifier))
                self._entries[key] = cached
            cached[1].check_checkpoint(verifier)
            return cached[1]

    def _load(self, choice: str, folder: Path, verifier: Any) -> Any:
        from pose3dfr.errors import GalleryError
        from pose3dfr.inference.gallery import Gallery

        try:
            return Gallery.load(folder, verifier)
        except GalleryError:
            if choice != DEMO_GALLERY:
                raise
            self._build_demo(verifier, folder)  # the checkpoint's weights changed since: rebuild the demo
            return Gallery.load(folder, verifier)

    @staticmethod
    def _folder(choice: str, checkpoint: str) -> Path:
        if choice == DEMO_GALLERY:
            return DEMO_GALLERY_CACHE / checkpoint
        if choice not in list_galleries():  # confined to GALLERY_DIR's own folders: no paths, no traversal
            raise user_error(f"Unknown gallery {echo(choice)}; available: {', '.join(list_galleries())}.")
        return GALLERY_DIR / choice

    @staticmethod
    def _build_demo(verifier: Any, folder: Path) -> None:
        from pose3dfr.inference.gallery import Gallery

        gallery = Gallery.for_verifier(verifier)
        report = gallery.add_photos(verifier, [(name, PHOTOS_DIR / photo) for name, photo in DEMO_IDENTITIES.items()])
        if not len(gallery):
            raise user_error(f"The demo gallery could not be built: {report.failures[0].reason}")
        gallery.save(folder)


GALLERIES = GalleryCache()


def threshold_provenance(meta: dict, calibrated: bool, source: str) -> str:
    """Where a threshold comes from, in words a user cannot take for a real-world rate: checkpoint
    calibrations were measured on rendered validation faces (synthetic ones for the shipped checkpoints)."""
    if not calibrated:
        return source
    extra = meta.get("extra") or {}
    split = (extra.get("validation") or {}).get("split") or "validation"
    split = "validation" if split == "val" else split
    generator = str((extra.get("data") or {}).get("generator") or "")
    renders = (f"synthetic {split} renders" if "synthetic" in generator
               else f"{split} renders of its training data (not real photos)")
    far = re.search(r"at FAR (\S+)", source)
    where = re.search(r"for probes in (\S+)", source)
    return (f"calibrated on {renders} at FAR {far.group(1) if far else '?'}"
            + (f" for probes in {where.group(1)}" if where else ""))


def top_k_value(top_k: Any) -> int:
    """The top-K asked for, else a gr.Error."""
    if not isinstance(top_k, (int, float)) or int(top_k) != top_k or not 1 <= top_k <= MAX_TOP_K:
        raise user_error(f"top_k must be a whole number from 1 to {MAX_TOP_K}; got {echo(top_k)}.")
    return int(top_k)


@mcp_tool("identify")
@readable_errors
@forgets_uploads
def identify_endpoint(probe: str | None, gallery: str | None, checkpoint: str | None, top_k: Any = DEFAULT_TOP_K,
                      far: Any = DEFAULT_FAR) -> dict:
    """Search a gallery for the people closest to the face in a probe photo (1:N identification).

    Ranks the gallery's identities by cosine similarity to the probe's embedding and accepts the best one only
    when its score reaches the threshold calibrated at the chosen false accept rate; otherwise the answer is
    "no one in the gallery". The photo is deleted once the answer is sent.

    Args:
        probe: Photo of one person's face (the largest face is used); any head pose up to profile.
        gallery: Gallery name: the demo gallery (obama, biden, eileen-collins) or one from the server's gallery folder.
        checkpoint: Checkpoint name (the gallery is versioned with the checkpoint it was built with), e.g. "default".
        top_k: How many identities to return, best first (1 to 50).
        far: False accept rate of the decision threshold: 0.01 (1%) or 0.001 (0.1%).

    Returns:
        A dict with "best" (the accepted identity, or None for no one in the gallery), "matches" (rank, name,
        score, match), "threshold", "far", "threshold_provenance", and the probe's yaw and pose bin.
    """
    probe = _required(probe, "probe photo")
    if not gallery:
        raise gr.Error("Choose a gallery.", print_exception=False)
    far, top_k, name = far_value(far), top_k_value(top_k), resolve_checkpoint(checkpoint)
    verifier = MODELS.get(name)
    result = GALLERIES.get(gallery, name, verifier).search_photo(verifier, probe, top_k=top_k, far=far)
    t = result.threshold
    return {"best": result.best.name if result.best else None,
            "matches": [{"rank": i + 1, "name": m.name, "score": round(float(m.score), 4), "match": bool(m.match)}
                        for i, m in enumerate(result.matches)],
            "threshold": round(float(t.value), 4), "far": t.far, "calibrated": t.calibrated,
            "threshold_source": t.source, "threshold_provenance": threshold_provenance(verifier.meta, t.calibrated,
                                                                                       t.source),
            "probe_yaw": None if result.probe_yaw is None else round(float(result.probe_yaw), 1),
            "probe_bin": result.probe_bin, "gallery": gallery, "checkpoint": name}


IDENTIFY_COLUMNS = ["rank", "identity", "score", "above threshold?"]


def render_identify(payload: dict | None) -> tuple:
    """The top-K table and the verdict line of an /identify answer."""
    if not payload:
        return gr.skip(), gr.skip()
    rows = [[m["rank"], m["name"], f"{m['score']:.3f}", "yes" if m["match"] else "no"] for m in payload["matches"]]
    pose = "" if payload["probe_yaw"] is None else f" Probe yaw {payload['probe_yaw']:+.0f}° (bin {payload['probe_bin']})."
    threshold = f"{payload['threshold']:.3f} ({payload['threshold_provenance']})"
    if payload["best"]:
        verdict = f"## Best match: {payload['best']}\n\nScore ≥ threshold {threshold}.{pose}"
    else:
        verdict = f"## No one in the gallery\n\nNo identity reaches the threshold {threshold}.{pose}"
    return gr.update(value=rows), verdict


def refresh_checkpoints(current: str | None) -> dict:
    """Dropdown update listing checkpoints/ now (a finished training run appears here)."""
    names = list_checkpoints()
    value = current if current in names else default_checkpoint()
    return gr.update(choices=names, value=value)


# ----------------------------------------------------------------------------- examples

def real_photo_examples() -> list[list[Any]]:
    """Enrollment/probe pairs from assets/photos: two of the same person, one of two people."""
    pairs = [("obama.jpg", "obama2.jpg"), ("obama.jpg", "biden.jpg"), ("obama.jpg", "obama3.jpg")]
    return [[str(PHOTOS_DIR / a), str(PHOTOS_DIR / b), None] for a, b in pairs
            if (PHOTOS_DIR / a).is_file() and (PHOTOS_DIR / b).is_file()]


def _synthetic_module() -> Any | None:
    try:
        return importlib.import_module("pose3dfr.data.synthetic")
    except ImportError:
        return None


# Synthetic identity of the examples row and the explorer's default (numbering of generate_benchmark).
EXAMPLE_IDENTITY = 1
EXAMPLE_YAWS = (0, 45, 90)


def synthetic_examples() -> list[list[Any]]:
    """Frontal render vs renders at 45 and 90 degrees yaw, with the identity's scan; made once into the cache."""
    module = _synthetic_module()
    if module is None:
        return []
    try:
        return _write_synthetic_examples(module, CACHE_DIR / "examples")
    except Exception:  # examples are a convenience: never let them stop the app from starting
        log.exception("could not make the synthetic examples")
        return []


def _write_synthetic_examples(module: Any, out: Path) -> list[list[Any]]:
    from PIL import Image

    from pose3dfr.data.pointcloud import save_point_cloud

    out.mkdir(parents=True, exist_ok=True)
    stem = f"synthetic{EXAMPLE_IDENTITY}"
    paths = {yaw: out / f"{stem}_yaw{yaw:+d}.png" for yaw in EXAMPLE_YAWS}
    for yaw, path in paths.items():
        if not path.exists():
            image, _ = module.render_identity_view(EXAMPLE_IDENTITY, yaw=float(yaw))
            Image.fromarray(image).save(path)
    scan = out / f"{stem}_scan.ply"
    if not scan.exists():
        head = module.build_head(module.sample_identity(0, EXAMPLE_IDENTITY))
        save_point_cloud(scan, module.sample_face_points(head, 2048, np.random.default_rng(0)))
    return [[str(paths[0]), str(paths[yaw]), str(scan)] for yaw in EXAMPLE_YAWS[1:]]


# ----------------------------------------------------------------------------- data sets (Evaluate, Train)

def dataset_dir(choice: str | None) -> Path:
    """The data set directory `choice` names, if it lies inside an allowed root; else a gr.Error."""
    if not choice:
        raise gr.Error("Choose a data set (or generate the small synthetic one).", print_exception=False)
    path = Path(choice)
    if not path.is_absolute():
        path = PROJECT_ROOT / path
    resolved = path.resolve()
    for root in DATA_ROOTS:
        if resolved.is_relative_to(root.resolve()) and resolved != root.resolve():
            if not (resolved / "manifest.json").is_file():
                raise user_error(f"{echo(Path(choice).name)}: not a data set (no manifest.json).")
            return resolved
    roots = ", ".join(_display(root) for root in DATA_ROOTS)
    raise user_error(f"{echo(Path(choice).name)}: data sets must lie inside {roots}.")


def _display(path: Path) -> str:
    return str(path.relative_to(PROJECT_ROOT)) if path.is_relative_to(PROJECT_ROOT) else str(path)


def list_datasets() -> list[str]:
    """Data set directories (with a manifest.json) found directly under the allowed roots."""
    found = []
    for root in DATA_ROOTS:
        if root.is_dir():
            found += [_display(p.parent) for p in sorted(root.glob("*/manifest.json"))]
    return found


SMALL_SYNTHETIC = CACHE_DIR / "datasets" / "synthetic-small"


@readable_errors
def generate_small_dataset(progress: gr.Progress = gr.Progress(track_tqdm=True)) -> dict:
    """Make a small synthetic benchmark in the cache (seconds) and select it."""
    module = _synthetic_module()
    if module is None:
        raise gr.Error("The synthetic generator (pose3dfr.data.synthetic) is not in this build.", print_exception=False)
    progress(0, desc="rendering a small synthetic data set")
    module.generate_benchmark(SMALL_SYNTHETIC, module.SynthConfig(**_small_synth_kwargs(module.SynthConfig)),
                              progress=True)
    return gr.update(choices=list_datasets(), value=_display(SMALL_SYNTHETIC))


def _small_synth_kwargs(config_cls: type) -> dict:
    """SynthConfig of a data set small enough to build in seconds: 10 identities (2 held out for the
    test split), one expression, a 30-degree yaw grid, 128-px renders."""
    return {"identities": 10, "expressions": 1, "yaw_step": 30.0, "image_size": 128, "points": 512}


# ----------------------------------------------------------------------------- evaluate

@readable_errors
def evaluate_endpoint(dataset: str | None, checkpoint: str | None, split: str,
                      progress: gr.Progress = gr.Progress(track_tqdm=True)) -> tuple[str, Any]:
    """Run the per-pose protocol on a data set's split with a checkpoint: TAR@FAR per bin and ROC curves."""
    from pose3dfr.eval.config import EvalConfig
    from pose3dfr.eval.evaluate import evaluate_split
    from pose3dfr.eval.reports import results_markdown, roc_figure

    root = dataset_dir(dataset)
    name = resolve_checkpoint(checkpoint)
    progress(0, desc="loading the model")
    model = MODELS.get(name).model
    progress(0.05, desc="embedding the images")
    results = evaluate_split(model, root, EvalConfig(split=split, device="cpu", batch_size=16))
    table = results_markdown(results, title=f"{name} on {_display(root)} ({split})")
    return no_autolinks(table), roc_figure(results)


def no_autolinks(markdown: str) -> str:
    """Markdown whose '@' cannot become a mailto: link (Gradio's Markdown links `TAR@0.1%FAR` as an e-mail)."""
    return markdown.replace("@", "&#64;")


def refresh_datasets(current: str | None) -> dict:
    """Dropdown update listing the data sets now (one generated or copied in after start appears)."""
    names = list_datasets()
    return gr.update(choices=names, value=current or None)


# ----------------------------------------------------------------------------- train

def train_enabled() -> bool:
    """Training is on outside public mode only (see public_mode)."""
    return not public_mode()


def train_presets() -> list[str]:
    """Preset names of pose3dfr.engine.config (empty when the trainer is not in this build)."""
    try:
        from pose3dfr.engine.config import list_presets
    except ImportError:
        return []
    return list_presets()


_RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def taken_names() -> set[str]:
    """Lower-cased names a run may not take: the reserved built-ins, every file stem in checkpoints/ and every
    run folder already made (so a run never replaces a shipped or existing checkpoint, nor another run)."""
    names = set(RESERVED_CHECKPOINT_NAMES) | set(list_checkpoints())
    for folder in (CHECKPOINTS_DIR, CACHE_DIR / "runs"):
        if folder.is_dir():
            names |= {p.name.split(".")[0] for p in folder.iterdir()}
    return {n.lower() for n in names}


def validate_run_name(name: Any) -> str:
    """`name` if it is a well-formed, unused run name (compared case-insensitively), else a gr.Error."""
    if not isinstance(name, str) or not _RUN_NAME.match(name) or ".." in name:
        raise gr.Error("Run name: letters, digits, '_', '-' or '.', at most 64 characters.", print_exception=False)
    if name.lower() in taken_names() or name.split(".")[0].lower() in taken_names():
        raise user_error(f"A checkpoint or run named {echo(name)} exists already; choose another run name.")
    return name


from pose3dfr.eval.metrics import far_key  # noqa: E402
from pose3dfr.engine.jobs import (TrainJob, TrainManager, compare_with_start, job_state, read_metrics,  # noqa: E402
                                  total_steps, train_command)

CONFIGS_DIR = PROJECT_ROOT / "configs"
# Config choice meaning "the preset alone".
NO_CONFIG = "none (the preset alone)"
# Steps a run may take from the Train tab (0 = the preset's or config's own count).
MAX_TRAIN_STEPS = 100_000

TRAINER = TrainManager(CHECKPOINTS_DIR, CACHE_DIR / "runs")


def train_configs() -> list[str]:
    """Config choices of the Train tab: none, then every configs/*.yaml (the shipped recipe among them)."""
    found = sorted(p.relative_to(PROJECT_ROOT).as_posix() for p in CONFIGS_DIR.glob("*.y*ml")) \
        if CONFIGS_DIR.is_dir() else []
    return [NO_CONFIG, *found]


def config_path(choice: str | None) -> Path | None:
    """The configs/ file a choice names (None for the preset alone); anything else is a gr.Error."""
    if not choice or choice == NO_CONFIG:
        return None
    if choice not in train_configs():
        raise user_error(f"Unknown config {echo(choice)}; choose one of configs/*.yaml.")
    return PROJECT_ROOT / choice


def step_count(steps: Any) -> int | None:
    """The step count asked for (None: the preset's or config's own), else a gr.Error."""
    if steps in (None, "", 0):
        return None
    if not isinstance(steps, (int, float)) or int(steps) != steps or not 1 <= steps <= MAX_TRAIN_STEPS:
        raise user_error(f"Steps must be a whole number from 1 to {MAX_TRAIN_STEPS:,} (0: the recipe's own); "
                         f"got {echo(steps)}.")
    return int(steps)


def loss_figure(records: list[dict]) -> Any:
    """Every loss_* series of the run against its step."""
    import plotly.graph_objects as go

    figure = go.Figure()
    keys = sorted({k for r in records for k in r if k == "loss" or k.startswith("loss_")})
    for key in keys:
        points = [(r.get("step", i), r[key]) for i, r in enumerate(records) if isinstance(r.get(key), (int, float))]
        if points:
            xs, ys = zip(*points)
            figure.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name=key))
    figure.update_layout(xaxis_title="step", yaxis_title="loss", title="training losses",
                         margin=dict(l=60, r=20, t=50, b=50))
    return figure


@readable_errors
def start_training(preset: str | None, dataset: str | None, name: str | None, config: str | None = NO_CONFIG,
                   steps: Any = None) -> tuple:
    """Start `python -m pose3dfr.cli train ...` in the background and turn the poll timer on."""
    if not train_enabled():
        raise gr.Error("Training is off in public mode.", print_exception=False)
    if preset not in train_presets():
        raise user_error(f"Unknown preset {echo(preset)}.")
    validate_run_name(name)
    data, recipe, count = dataset_dir(dataset), config_path(config), step_count(steps)
    job = TRAINER.start(name, lambda run_dir: train_command(preset, data, run_dir, recipe, count))
    recipe_text = f" with `{config}`" if recipe else ""
    steps_text = f"{count} steps" if count else "the recipe's step count"
    return (f"Started run `{job.name}`: preset `{preset}`{recipe_text}, {steps_text}.", gr.Timer(active=True),
            gr.update(visible=False))


@readable_errors
def stop_training() -> str:
    return "Stopped by you." if TRAINER.stop() else "No training run is running."


@readable_errors
def publish_anyway() -> tuple:
    """Publish a held-back run knowingly (the user read why it was held back)."""
    job = TRAINER.job
    if job is None or job.held_back is None:
        raise gr.Error("No run is waiting to be published.", print_exception=False)
    if TRAINER.publish(force=True) is None:
        raise gr.Error("The run could not be published (it wrote no final model).", print_exception=False)
    return (f"Run `{job.name}` published knowingly: it is now listed in Verify as `{job.name}`.",
            gr.update(visible=False))


def validation_markdown(records: list[dict]) -> str:
    """Validation TAR per pose bin of the run's latest validation against its starting model's (step 0)."""
    comparison = compare_with_start(records)
    if not comparison.labels:
        return "No validation yet (the run validates its starting model first, then once per epoch)."
    fars = sorted({float(k.rsplit("_", 1)[1]) for row in (comparison.start, comparison.latest) if row for k in row},
                  reverse=True)
    step = f"step {comparison.latest_step}" if comparison.latest_step else "run (not validated yet)"
    header = ["probe yaw bin"] + [f"{col} TAR at FAR {100 * far:g}%" for far in fars for col in ("start", step)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label in comparison.labels:
        cells = [label]
        for far in fars:
            key = f"{label}/tar_at_far_{far_key(far)}"
            for row in (comparison.start, comparison.latest):
                value = (row or {}).get(key)
                cells.append("–" if value is None else f"{value:.1%}")
        lines.append("| " + " | ".join(cells) + " |")
    return ("Validation (synthetic validation renders of the data set; start = the model before step 1):\n\n"
            + "\n".join(lines))


def poll_training() -> tuple:
    """Status (state in words, progress, validation against the start), loss curves, the timer and the
    "publish anyway" button; stops the timer once the run ended."""
    job = TRAINER.job
    if job is None:
        return "No training run yet.", None, gr.Timer(active=False), gr.update(visible=False)
    records = read_metrics(job.run_dir)
    losses = [r for r in records if "loss" in r]
    step, total = (losses[-1]["step"] if losses else 0), total_steps(job.run_dir)
    progress = f"step {step} of {total} ({step / total:.0%})" if total else f"step {step}"
    state = job_state(job)
    table = validation_markdown(records)
    if state == "running":
        return (f"Run `{job.name}` running: {progress}.\n\n{table}", loss_figure(losses), gr.Timer(active=True),
                gr.update(visible=False))
    held = False
    if state == "finished":
        TRAINER.publish()
        if job.published:
            verdict = f"finished ({progress}); it is not worse than its start, so it is now listed in Verify"
        elif job.held_back:
            verdict = (f"finished ({progress}) but is **not listed in Verify**: {job.held_back}. "
                       "Publish it anyway only if you know why")
            held = True
        else:
            verdict = "finished, but wrote no final model"
    else:
        verdict = f"{state} ({progress})"
    return f"Run `{job.name}` {verdict}.\n\n{table}", loss_figure(losses), gr.Timer(active=False), \
        gr.update(visible=held)


# ----------------------------------------------------------------------------- pose explorer

# Choices of the explorer's subject radio: a synthetic identity, or the user's photo and scan.
EXPLORER_SYNTHETIC = "synthetic identity"
EXPLORER_UPLOAD = "upload photo + scan"
EXPLORER_MODES = (EXPLORER_SYNTHETIC, EXPLORER_UPLOAD)
# Choices of the explorer's alignment radio: the real pipeline (what Verify does) or the renderer's landmarks.
EXPLORER_ALIGNMENTS = (("real pipeline (as Verify)", "pipeline"), ("oracle: renderer's landmarks", "oracle"))


@dataclass
class SweepState:
    """What the explorer keeps of a sweep (gr.State) to redraw the 3D view: yaws, scores and the points."""
    yaws: list[float]
    scores: list[float | None]  # None: no face found at that yaw
    points: np.ndarray  # P x 3 canonical frame (cm)
    point_attention: np.ndarray | None  # P


def within_time(items: Any, seconds: float) -> Any:
    """Yield `items`, raising a gr.Error once `seconds` have passed (the sweep's request time limit)."""
    start = time.monotonic()
    for item in items:
        if time.monotonic() - start > seconds:
            raise gr.Error(f"The sweep took over {seconds:.0f} s and was stopped (the server is busy); "
                           "try again later.", print_exception=False)
        yield item


@readable_errors
@forgets_uploads
def explore_endpoint(mode: str, identity: float | None, photo: str | None, scan: Any, checkpoint: str | None,
                     opacity: float, alignment: str = "pipeline", progress: gr.Progress = gr.Progress()) -> tuple:
    """Sweep yaw from -90 to +90 (pose3dfr.inference.explore): a synthetic identity, or a frontal photo and a
    3D scan of the same person; every render is scored against the frontal enrollment, through the real
    pipeline (as Verify) or, with alignment="oracle", aligned by the renderer's own landmarks."""
    from pose3dfr.inference import explore

    if mode not in EXPLORER_MODES:
        raise user_error(f"Unknown explorer mode {echo(mode)}.")
    if alignment not in explore.ALIGNMENTS:
        raise user_error(f"Unknown alignment {echo(alignment)}; use one of {', '.join(explore.ALIGNMENTS)}.")
    if mode == EXPLORER_UPLOAD:
        photo, scan = _required(photo, "frontal photo"), _required(_file_path(scan), "3D scan")
    elif identity is None or int(identity) < 1:
        raise gr.Error("Synthetic identities are numbered from 1.", print_exception=False)
    verifier = MODELS.get(resolve_checkpoint(checkpoint))
    def iterate(yaws: list) -> Any:
        return progress.tqdm(within_time(yaws, SWEEP_TIME_LIMIT_SECONDS), desc="rendering and scoring",
                             total=len(yaws))
    progress(0, desc="preparing the subject")
    if mode == EXPLORER_UPLOAD:
        sweep = explore.explore_photo_and_scan(verifier, photo, scan, iterate=iterate, alignment=alignment)
    else:
        sweep = explore.explore_synthetic(verifier, int(identity), iterate=iterate, alignment=alignment)
    gallery = [(_sweep_image(v, float(opacity)), _sweep_caption(v)) for v in sweep.views]
    frontal = min(sweep.views, key=lambda v: abs(v.yaw))
    state = SweepState(list(sweep.yaws), list(sweep.scores), sweep.points, sweep.point_attention)
    return gallery, sweep_figure(sweep), sweep_attention_figure(sweep, frontal.yaw), state


def _file_path(upload: Any) -> str | None:
    """The path of a gr.File upload (a path string, or an object with .name / .path)."""
    if upload is None or isinstance(upload, str):
        return upload
    return getattr(upload, "path", None) or getattr(upload, "name", None)


def _sweep_image(view: Any, opacity: float) -> np.ndarray:
    """The chip the model saw with its heatmap, or the render itself when no face was found there."""
    from pose3dfr.viz import overlay_heatmap

    return view.image if view.crop is None else overlay_heatmap(view.crop, view.heatmap, opacity)


def _sweep_caption(view: Any) -> str:
    """Short enough for a gallery thumbnail (Gradio cuts captions to one line): yaw, score, detected yaw."""
    if view.score is None:
        return f"yaw {view.yaw:+.0f}°: no face"
    seen = "" if view.detected_yaw is None else f", det. {view.detected_yaw:+.0f}°"
    return f"yaw {view.yaw:+.0f}°: {view.score:.2f}{seen}"


def sweep_figure(sweep: Any) -> Any:
    """Similarity to the frontal enrollment against probe yaw."""
    import plotly.graph_objects as go

    figure = go.Figure(go.Scatter(x=sweep.yaws, y=sweep.scores, mode="lines+markers", name="similarity",
                                  connectgaps=False))  # a yaw with no face found is a gap (a rejection)
    missed = [v.yaw for v in sweep.views if v.score is None]
    if missed:
        figure.add_trace(go.Scatter(x=missed, y=[sweep.threshold] * len(missed), mode="markers", name="no face found",
                                    marker=dict(symbol="x", size=10, color="crimson")))
    figure.add_hline(y=sweep.threshold, line_dash="dash", line_color="grey",
                     annotation_text=f"threshold at FAR {explore_far():g}", annotation_position="bottom right")
    how = "real pipeline" if sweep.alignment == "pipeline" else "oracle alignment"
    figure.update_layout(xaxis=dict(title="probe yaw (°)", range=[-95, 95]), yaxis_title="similarity to frontal",
                         title=f"similarity vs yaw ({how})<br><sub>{html.escape(sweep.source)}</sub>",
                         margin=dict(l=70, r=20, t=80, b=60))
    return figure


def explore_far() -> float:
    """The FAR of the threshold line drawn with the sweep curve."""
    from pose3dfr.inference.explore import SWEEP_FAR

    return SWEEP_FAR


def sweep_attention_figure(sweep: Any, yaw: float) -> Any:
    """The scan coloured by 3D attention, seen from where the camera of the render at `yaw` stood."""
    figure = attention_figure(sweep.points, sweep.point_attention, f"3D attention, seen from yaw {yaw:+.0f}°")
    if figure is not None:  # the face turned by +yaw = a camera at Ry(-yaw) (0, 0, 1) in the face frame
        angle = math.radians(yaw)
        figure.update_layout(scene_camera=dict(up=dict(x=0, y=1, z=0),
                                               eye=dict(x=-2.0 * math.sin(angle), y=0.0, z=2.0 * math.cos(angle))))
    return figure


def select_sweep_point(sweep: Any, evt: gr.SelectData) -> Any:
    """Show the 3D attention from the viewpoint of the render clicked in the gallery (matched by its yaw)."""
    caption = str(evt.value.get("caption", "") if isinstance(evt.value, dict) else "")
    match = re.match(r"yaw ([+-]\d+)", caption)
    if sweep is None or match is None or float(match.group(1)) not in sweep.yaws:
        return gr.skip()
    return sweep_attention_figure(sweep, float(match.group(1)))


def toggle_explorer_mode(mode: str) -> tuple:
    """Show the identity number in synthetic mode, the two uploads in upload mode."""
    upload = mode == EXPLORER_UPLOAD
    return gr.update(visible=not upload), gr.update(visible=upload)


# ----------------------------------------------------------------------------- about

ABOUT = """
## The method

pose3dfr reimplements **2D-3D Attention and Entropy for Pose Robust 2D Facial Recognition**
(J. Brennan Peace, Shuowen Hu, Benjamin S. Riggan, IEEE FG 2025). During training a 2D face network
(IResNet) and a point-cloud network (PointNet++) share the query and key projections of one self-attention
map (joint attention mapping, JAM); a joint-entropy loss pulls the two attention maps together, so the 2D
network learns which face regions stay reliable as the head turns. At test time the 2D network alone
compares a frontal enrollment photo with a probe at any pose, up to full profile; a scan, when given,
only adds the 3D attention view.

```mermaid
flowchart LR
  I[2D face crop] --> B2[IResNet trunk] --> Z2[z_2D]
  P[3D point cloud] --> B3[PointNet++ + reshaping block] --> Z3[z_3D]
  Z2 --> J[JAM: shared Q, K]
  Z3 --> J
  J --> A2[attention A_2D] --> E2[2D embedding + AdaFace loss]
  J --> A3[attention A_3D] --> E3[3D embedding + AdaFace loss]
  A2 --> JE[joint entropy loss]
  A3 --> JE
  E2 --> V[test time: cosine score of 2D embeddings]
```

## Citation

```bibtex
@inproceedings{peace2025pose3dfr,
  title     = {2D-3D Attention and Entropy for Pose Robust 2D Facial Recognition},
  author    = {Peace, J. Brennan and Hu, Shuowen and Riggan, Benjamin S.},
  booktitle = {IEEE International Conference on Automatic Face and Gesture Recognition (FG)},
  year      = {2025},
  note      = {arXiv:2505.09073}
}
```
"""


# Hex digits of a sha256 shown in the About tab's licence table: a 64-character token leaves the other
# columns one character wide; the full digests stay in assets/NOTICE.md.
SHA_SHOWN = 12


def licences_markdown() -> str:
    """The shipped files' provenance and licences, from assets/NOTICE.md (sha256 digests shortened so that
    the table stays readable; no autolinks)."""
    notice = ASSETS_DIR / "NOTICE.md"
    if not notice.is_file():
        return "assets/NOTICE.md is missing."
    text = re.sub(r"`([0-9a-f]{%d})[0-9a-f]{%d}`" % (SHA_SHOWN, 64 - SHA_SHOWN), r"`\1…`", notice.read_text())
    return no_autolinks(text) + "\n\n(sha256 shortened here; the full digests are in `assets/NOTICE.md`.)"


# ----------------------------------------------------------------------------- layout

def _checkpoint_dropdown() -> gr.Dropdown:
    return gr.Dropdown(choices=list_checkpoints(), value=default_checkpoint(), label="checkpoint",
                       info="from checkpoints/", allow_custom_value=True)  # resolve_checkpoint confines it


def _verify_tab(demo: gr.Blocks) -> None:
    with gr.Row():
        enroll = photo_upload("enrollment photo (frontal)", elem_id="enroll")
        probe = photo_upload("probe photo (any pose; upload, webcam or paste)", elem_id="probe", webcam=True)
        with gr.Column():
            scan = gr.File(label="3D scan of the enrollee (optional)", file_types=list(_scan_suffixes()),
                           elem_id="scan")
            far = gr.Radio(FAR_CHOICES, value=DEFAULT_FAR, label="false accept rate (FAR)")
            checkpoint = _checkpoint_dropdown()
            button = gr.Button("Verify", variant="primary", elem_id="verify-button")
    gr.Examples(real_photo_examples(), [enroll, probe, scan], label="Real photos (US public domain)")
    synthetic = synthetic_examples()
    if synthetic:
        gr.Examples(synthetic, [enroll, probe, scan], label="Synthetic renders (frontal vs 45° and 90°) with scan")
    verdict = gr.Markdown(elem_id="verdict")
    poses = gr.Markdown()
    with gr.Row():
        # no fixed height: the box fits the enlarged crop (a fixed height clipped it under the label bar)
        enroll_view = gr.Image(label="enrollment crop + attention", interactive=False, elem_id="enroll-crop")
        probe_view = gr.Image(label="probe crop + attention", interactive=False, elem_id="probe-crop")
        with gr.Column(visible=False) as plot_box:
            plot = gr.Plot(label="3D point cloud coloured by attention", elem_id="attention-3d")
    gr.HTML(colour_scale_html(), elem_id="heatmap-scale")
    opacity = gr.Slider(0, 1, value=DEFAULT_OPACITY, step=0.05, label="heatmap opacity", elem_id="verify-opacity")
    with gr.Accordion("raw result (what the /verify API returns)", open=False):
        details = gr.JSON(label="result")
    state = gr.State(None, time_to_live=STATE_TTL_SECONDS)
    button.click(verify_endpoint, [enroll, probe, scan, far, checkpoint], [details, state],
                 api_name="verify", concurrency_id="model").success(
        render_verify, [state, opacity], [verdict, poses, enroll_view, probe_view, plot, plot_box, state],
        api_visibility="private")
    # .input fires for the number box too (typed values); .release alone missed them
    opacity.input(rerender_overlays, [state, opacity], [enroll_view, probe_view], api_visibility="private",
                  trigger_mode="always_last")
    with gr.Accordion("embedding (the /embed API)", open=False):
        with gr.Row():
            photo = photo_upload("photo", elem_id="embed-photo")
            embedding = gr.JSON(label="embedding")
        embed_button = gr.Button("Embed")
    embed_button.click(embed_endpoint, [photo, checkpoint], embedding, api_name="embed", concurrency_id="model")
    demo.load(refresh_checkpoints, checkpoint, checkpoint, api_visibility="private")


def _identify_tab(demo: gr.Blocks, public: bool) -> None:
    gr.Markdown("Search a gallery for the people closest to a probe face (1:N). The best identity is accepted "
                "only when its score reaches the threshold calibrated at the chosen FAR; otherwise the answer is "
                "\"no one in the gallery\". The demo gallery holds the three shipped public-domain photos "
                "(obama, biden, eileen-collins; try obama2 or obama3 as probes)."
                + ("" if public else " Other galleries: folders made with `pose3dfr gallery build` in "
                                     "`$POSE3DFR_GALLERY_DIR` (docs/app.md)."))
    with gr.Row():
        probe = photo_upload("probe photo (upload, webcam or paste)", elem_id="identify-probe", webcam=True)
        with gr.Column():
            gallery = gr.Dropdown(gallery_choices(), value=DEMO_GALLERY, label="gallery", elem_id="identify-gallery")
            checkpoint = _checkpoint_dropdown()
            top_k = gr.Number(DEFAULT_TOP_K, label="top-K", precision=0, minimum=1, maximum=MAX_TOP_K)
            far = gr.Radio(FAR_CHOICES, value=DEFAULT_FAR, label="false accept rate (FAR)")
            button = gr.Button("Identify", variant="primary", elem_id="identify-button")
    examples = [[str(PHOTOS_DIR / f)] for f in ("obama2.jpg", "obama3.jpg") if (PHOTOS_DIR / f).is_file()]
    if examples:
        gr.Examples(examples, [probe], label="Probes (US public domain)")
    verdict = gr.Markdown(elem_id="identify-verdict")
    table = gr.Dataframe(headers=IDENTIFY_COLUMNS, datatype=["number", "str", "str", "str"], interactive=False,
                         label="top-K identities", elem_id="identify-table")
    with gr.Accordion("raw result (what the /identify API returns)", open=False):
        details = gr.JSON(label="result")
    button.click(identify_endpoint, [probe, gallery, checkpoint, top_k, far], details, api_name="identify",
                 concurrency_id="model").success(render_identify, details, [table, verdict], api_visibility="private")
    demo.load(refresh_galleries, gallery, gallery, api_visibility="private")


def refresh_galleries(current: str | None) -> dict:
    """Dropdown update listing the galleries now (one built after start appears)."""
    return gr.update(choices=gallery_choices(), value=current if current in list_galleries() else DEMO_GALLERY)


def _scan_suffixes() -> tuple[str, ...]:
    try:
        from pose3dfr.data.scan_io import SCAN_SUFFIXES
    except ImportError:
        return (".ply", ".obj", ".npy")
    return tuple(SCAN_SUFFIXES)


def _explorer_tab() -> None:
    gr.Markdown("Render one face from -90° to +90° yaw and score each render against the frontal enrollment: "
                "a synthetic identity, or your frontal photo and a 3D scan of the same person (the scan is "
                "aligned to the canonical face, coloured from the photo and rendered at each yaw; the photo is "
                "the enrollment). Each render goes through the same detection, head pose and alignment as "
                "Verify (a render where no face is found is a rejection); the oracle option aligns renders with "
                "the renderer's own landmarks instead. Click a render to see the 3D attention from its viewpoint.")
    with gr.Row():
        with gr.Column():
            mode = gr.Radio(list(EXPLORER_MODES), value=EXPLORER_SYNTHETIC, label="subject", elem_id="explore-mode")
            identity = gr.Number(EXAMPLE_IDENTITY, label="synthetic identity", precision=0, minimum=1)
        with gr.Row(visible=False) as uploads:
            photo = photo_upload("frontal photo", elem_id="explore-photo")
            scan = gr.File(label="3D scan of the same person (mesh or point cloud)", file_types=list(_scan_suffixes()),
                           elem_id="explore-scan")
        with gr.Column():
            checkpoint = _checkpoint_dropdown()
            opacity = gr.Slider(0, 1, value=DEFAULT_OPACITY, step=0.05, label="heatmap opacity")
            alignment = gr.Radio(list(EXPLORER_ALIGNMENTS), value="pipeline", label="alignment of the renders",
                                 elem_id="explore-alignment")
            button = gr.Button("Sweep yaw", variant="primary")
    gallery = gr.Gallery(label="probe crops + attention (click one for its 3D view)", columns=7, height="auto",
                         object_fit="contain", allow_preview=True, elem_id="explore-gallery")
    gr.HTML(colour_scale_html())
    with gr.Row():
        curve = gr.Plot(label="similarity vs yaw")
        cloud = gr.Plot(label="3D attention")
    sweep = gr.State(None, time_to_live=STATE_TTL_SECONDS)
    mode.change(toggle_explorer_mode, mode, [identity, uploads], api_visibility="private")
    button.click(explore_endpoint, [mode, identity, photo, scan, checkpoint, opacity, alignment],
                 [gallery, curve, cloud, sweep],
                 api_visibility="private", concurrency_id="sweep", concurrency_limit=SWEEP_CONCURRENCY)
    gallery.select(select_sweep_point, sweep, cloud, api_visibility="private")


def _evaluate_tab(public: bool) -> gr.Dropdown | None:
    if public:
        gr.Markdown("Evaluation is off in public mode (it reads data sets from the server's disk and runs for "
                    "minutes). Run `python -m pose3dfr.cli eval` or the app locally.")
        return None
    gr.Markdown("The per-pose protocol: frontal gallery against probes binned by |yaw| (TAR at FAR 1% and "
                "0.1%, ROC per bin). Data sets live under `data/` or the app's cache. A TAR at a FAR needs at "
                "least 10 / FAR impostor pairs to be measured; the table warns where a bin has fewer.")
    with gr.Row():
        dataset = gr.Dropdown(list_datasets(), label="data set", allow_custom_value=True, elem_id="eval-dataset")
        split = gr.Dropdown(["test", "val", "train"], value="test", label="split")
        checkpoint = _checkpoint_dropdown()
    with gr.Row():
        generate = gr.Button("Generate a small synthetic data set")
        run = gr.Button("Evaluate", variant="primary")
    table = gr.Markdown(elem_id="eval-table")
    roc = gr.Plot(label="ROC per pose bin")
    generate.click(generate_small_dataset, None, dataset, api_visibility="private", concurrency_id="background",
                   concurrency_limit=1)
    run.click(evaluate_endpoint, [dataset, checkpoint, split], [table, roc], api_visibility="private",
              concurrency_id="background", concurrency_limit=1)
    return dataset


def _train_tab(public: bool) -> gr.Dropdown | None:
    if public:
        gr.Markdown("Training is off in public mode (it writes checkpoints). Run the app locally, or set "
                    "`POSE3DFR_PUBLIC=0` in a private Space, to train from here.")
        return None
    gr.Markdown("Train a checkpoint on a data set in the background (`pose3dfr train`). The run first validates "
                "its starting model, then validates once per epoch; a finished run is listed in Verify only when "
                f"its overall validation TAR at FAR 1% is not below its start's.")
    with gr.Row():
        presets = train_presets()
        preset = gr.Dropdown(presets, value=presets[0] if presets else None, label="preset", elem_id="train-preset")
        configs = train_configs()
        config = gr.Dropdown(configs, value=next((c for c in configs if c.endswith("synth-cpu.yaml")), configs[0]),
                             label="config file", info="configs/*.yaml: the shipped recipe, or the preset alone",
                             elem_id="train-config")
        steps = gr.Number(0, label="steps (0: the recipe's own)", precision=0, minimum=0, maximum=MAX_TRAIN_STEPS,
                          elem_id="train-steps")
    with gr.Row():
        dataset = gr.Dropdown(list_datasets(), label="data set", allow_custom_value=True, elem_id="train-dataset")
        name = gr.Textbox("my-run", label="run name (becomes the checkpoint name)")
    with gr.Row():
        start = gr.Button("Start training", variant="primary")
        stop = gr.Button("Stop", variant="stop")
        publish = gr.Button("Publish anyway", visible=False, elem_id="train-publish")
    status = gr.Markdown("No training run yet.", elem_id="train-status")
    curves = gr.Plot(label="loss curves")
    timer = gr.Timer(TRAIN_POLL_SECONDS, active=False)
    start.click(start_training, [preset, dataset, name, config, steps], [status, timer, publish],
                api_visibility="private")
    stop.click(stop_training, None, status, api_visibility="private")
    publish.click(publish_anyway, None, [status, publish], api_visibility="private")
    timer.tick(poll_training, None, [status, curves, timer, publish], api_visibility="private")
    return dataset


STORAGE_NOTE = ("**Your photos and scans are not kept:** each upload and every face image made from it is deleted "
                "from the server once the answer is sent (anything left over within 55 s); nothing is logged.")


def build_demo(public: bool | None = None) -> gr.Blocks:
    """The whole UI; in public mode (default: public_mode()) without the Train and Evaluate handlers."""
    public = public_mode() if public is None else public
    with gr.Blocks(title="pose3dfr", analytics_enabled=False, delete_cache=delete_cache_setting()) as demo:
        gr.Markdown(f"# pose3dfr {pose3dfr.__version__}\n"
                    "Pose-robust 2D face recognition that learns from 3D "
                    "(Peace, Hu, Riggan, FG 2025).")
        with gr.Tab("Verify"):
            _verify_tab(demo)
        with gr.Tab("Identify"):
            _identify_tab(demo, public)
        with gr.Tab("Pose explorer"):
            _explorer_tab()
        with gr.Tab("Evaluate") as evaluate_tab:
            eval_dataset = _evaluate_tab(public)
        with gr.Tab("Train") as train_tab:
            train_dataset = _train_tab(public)
        for tab, dropdown in ((evaluate_tab, eval_dataset), (train_tab, train_dataset)):
            if dropdown is not None:  # data sets made after start appear on page load and on tab select
                demo.load(refresh_datasets, dropdown, dropdown, api_visibility="private")
                tab.select(refresh_datasets, dropdown, dropdown, api_visibility="private")
        with gr.Tab("About"):
            gr.Markdown(STORAGE_NOTE)
            gr.Markdown(ABOUT)
            gr.Markdown(licences_markdown())
    _DEMO[:] = [demo]
    return demo


def mcp_enabled() -> bool:
    """The MCP server (tools verify, embed, identify at /gradio_api/mcp/) is on unless POSE3DFR_MCP=0 or
    `--no-mcp`, and only where gradio[mcp] is installed."""
    if os.environ.get("POSE3DFR_MCP") == "0":
        return False
    return importlib.util.find_spec("mcp") is not None


def server_host() -> str:
    """0.0.0.0 inside a Hugging Face Space (SPACE_ID is set), 127.0.0.1 elsewhere."""
    return "0.0.0.0" if os.environ.get("SPACE_ID") else "127.0.0.1"


def server_port(cli_port: int | None) -> int:
    """--port wins, then GRADIO_SERVER_PORT, then 7860."""
    if cli_port is not None:
        return cli_port
    return int(os.environ.get("GRADIO_SERVER_PORT", DEFAULT_PORT))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="pose3dfr web app")
    parser.add_argument("--port", type=int, default=None, help="port (default: GRADIO_SERVER_PORT or 7860)")
    parser.add_argument("--public", action="store_true", help="public mode (as POSE3DFR_PUBLIC=1; see docs/app.md)")
    parser.add_argument("--no-mcp", action="store_true", help="no MCP server (as POSE3DFR_MCP=0)")
    parser.add_argument("--verbose", action="store_true", help="show the native libraries' logs (MediaPipe, TFLite)")
    args = parser.parse_args(argv)
    if args.public:
        os.environ["POSE3DFR_PUBLIC"] = "1"
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # Gradio's own health checks
    demo = build_demo()
    log.info("public mode %s", "on" if public_mode() else "off")
    demo.queue(max_size=QUEUE_MAX_SIZE, default_concurrency_limit=CONCURRENCY_LIMIT)
    # allowed_paths: none. Gradio serves only its own upload folder (uploads, output images, the examples'
    # copies), under unguessable hashed names, and never the checkpoints or the app's cache.
    mcp = mcp_enabled() and not args.no_mcp
    log.info("MCP server %s", "on at /gradio_api/mcp/" if mcp else "off")
    with native_logs_silenced(not args.verbose):
        demo.launch(server_name=server_host(), server_port=server_port(args.port), show_error=False,
                    max_file_size=MAX_FILE_SIZE, allowed_paths=[], mcp_server=mcp)


if __name__ == "__main__":
    main()
