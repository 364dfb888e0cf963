"""Photo and scan uploads: an upload box that hands the handler the file's path, and the rule that nothing a
user uploads is kept: each handler's uploads are deleted once it has answered (unless another request still
uses the same file)."""

from __future__ import annotations

import collections
import contextlib
import functools
import hashlib
import os
import threading
from pathlib import Path
from typing import Any, Callable

import gradio as gr
from gradio.utils import get_upload_folder


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


def required_upload(value: str | None, what: str) -> str:
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


def register_demo(demo: gr.Blocks) -> None:
    """Remember the served Blocks: its examples' copies are kept, its queue is read by discard_uploads."""
    _DEMO[:] = [demo]


def _upload_root() -> Path:
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


def _example_digests() -> set[str]:
    """sha256 of every example's source file. Gradio copies some examples (a gr.File's scan) into the upload
    folder only when the example is clicked, so such a copy looks like an upload and is recognised by content."""
    digests: set[str] = set()
    for demo in _DEMO:
        for block in demo.blocks.values():
            for sample in getattr(block, "raw_samples", None) or []:
                for value in sample if isinstance(sample, (list, tuple)) else [sample]:
                    if isinstance(value, (str, Path)) and Path(value).is_file():
                        digests.add(_file_sha256(Path(value)))
    return digests


@functools.lru_cache(maxsize=64)
def _cached_source_sha256(path: str, mtime: float, size: int) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _file_sha256(path: Path) -> str:
    stat = path.stat()
    return _cached_source_sha256(str(path), stat.st_mtime, stat.st_size)


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
    root, kept, queued, examples = _upload_root(), _kept_files(), _queued_paths(), None
    with _IN_USE_LOCK:
        busy = {p for p, n in _IN_USE.items() if n > 0}
    for path in set(paths):
        resolved = Path(path).resolve()
        others = queued[path] - paths.count(path)  # references beyond this request's own event
        if not resolved.is_relative_to(root) or {path, str(resolved)} & (kept | busy) or others > 0:
            continue
        examples = _example_digests() if examples is None else examples
        if resolved.is_file() and hashlib.sha256(resolved.read_bytes()).hexdigest() in examples:
            continue  # an example's copy (our own public file), which later clicks of the example still use
        resolved.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            resolved.parent.rmdir()  # Gradio's per-upload hashed folder


def forgets_uploads(fn: Callable) -> Callable:
    """Run an upload-taking handler, then delete its uploaded files (photos, scans) once it has answered."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        paths = [p for p in (file_upload_path(v) for v in (*args, *kwargs.values()))
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


def file_upload_path(upload: Any) -> str | None:
    """The path of a gr.File upload (a path string, or an object with .name / .path)."""
    if upload is None or isinstance(upload, str):
        return upload
    return getattr(upload, "path", None) or getattr(upload, "name", None)
