"""Photo and scan uploads: upload boxes that hand the handler the file's path (and fetch image URLs only from
public hosts), and the rule that nothing a user uploads is kept: each handler's uploads are deleted once it has
answered (unless another request still uses the same file). The folder-wide sweep is pose3dfr.ui.sweep."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import hashlib
import ipaddress
import os
import threading
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlparse

import gradio as gr
from gradio_client import utils as client_utils

from pose3dfr.data.scan_io import SCAN_SUFFIXES
from pose3dfr.ui.common import echo, user_error
from pose3dfr.ui.sweep import guard_cache_bookkeeping, is_stored_file, kept_files, upload_root


# ----------------------------------------------------------------------------- upload boxes

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
    return public_urls_only(image)


def _scan_path(scan: gr.File, payload: Any) -> str | None:
    """Preprocess of a scan upload: the uploaded file's path. gr.File's own preprocess also opens a named
    temporary file in the upload folder for each upload and never closes or deletes it (a 0-byte tmpXXXX)."""
    if payload is None:
        return None
    path = str(payload.path)
    if not client_utils.is_valid_file(path, scan.file_types):
        raise user_error(f"{echo(Path(path).name)} is not a 3D scan file; use one of {', '.join(SCAN_SUFFIXES)}.")
    return path


def scan_upload(label: str, elem_id: str) -> gr.File:
    """An upload box for a 3D scan (any format of pose3dfr.data.scan_io) whose handler receives the file path."""
    scan = gr.File(label=label, file_types=list(SCAN_SUFFIXES), elem_id=elem_id)
    scan.preprocess = functools.partial(_scan_path, scan)
    return public_urls_only(scan)


def required_upload(value: str | None, what: str) -> str:
    """`value` (an upload's path), or a gr.Error saying what to upload (also when the file was deleted, or
    when the path names something that is not a file, such as the upload folder itself)."""
    if not value:
        raise gr.Error(f"Upload the {what}.", print_exception=False)
    path = Path(value)
    if not path.exists() and _in_upload_folder(path):
        raise gr.Error(f"The {what} is no longer on the server (uploads are deleted after each answer); "
                       "upload it again.", print_exception=False)
    if path.exists() and not path.is_file():
        raise gr.Error(f"The {what} is not an uploaded file; upload a file.", print_exception=False)
    return value


def optional_upload(value: str | None, what: str) -> str | None:
    """None when nothing was given, else required_upload's checks."""
    return required_upload(value, what) if value else None


def _in_upload_folder(path: Path) -> bool:
    return path.resolve().is_relative_to(upload_root())


# ----------------------------------------------------------------------------- image URLs

async def _fetch_public_only(fetch: Callable, url_or_path: Any) -> Any:
    """Gradio's fetch of an input file, refusing image URLs of hosts that are not public (the server's own
    machine and networks: SSRF) with a message that says so, and naming a failed download. Local paths go on."""
    if not (isinstance(url_or_path, str) and client_utils.is_http_url_like(url_or_path)):
        return await fetch(url_or_path)
    await _check_public_url(url_or_path)
    try:
        return await fetch(url_or_path)
    except gr.Error:
        raise
    except Exception as exc:
        raise user_error(f"Could not download the image at {echo(url_or_path)} ({type(exc).__name__}); give a "
                         "public http(s) URL that serves the image, or send the image itself (base64).") from None


async def _check_public_url(url: str) -> None:
    """A gr.Error unless every address of the URL's host is a public (global) internet address."""
    host = urlparse(url).hostname
    if not host:
        raise user_error(f"{echo(url)} is not a valid image URL.")
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, None)
    except (OSError, UnicodeError):
        raise user_error(f"Could not find the host {echo(host)} of the image URL; give a public http(s) URL, "
                         "or send the image itself (base64).") from None
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if not address.is_global:
            raise user_error(f"Image URLs must point to a public internet host; {echo(host)} is a "
                             f"{_address_kind(address)} address, refused so that no request reaches the server's "
                             "own network. Send the image itself (base64) instead.")


def _address_kind(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    kinds = ("loopback", "link_local", "unspecified", "multicast", "private", "reserved")  # specific first
    return next((k.replace("_", "-") for k in kinds if getattr(address, f"is_{k}")), "non-public")


def public_urls_only(component: gr.components.Component) -> Any:
    """`component` with its input fetch replaced on the instance by _fetch_public_only."""
    component.async_move_resource_to_block_cache = functools.partial(
        _fetch_public_only, component.async_move_resource_to_block_cache)
    return component


# ----------------------------------------------------------------------------- examples are kept

def keep_example_files(examples: gr.Examples) -> None:
    """Keep the cached copy of every example file for the server's lifetime (they are our own public files).

    Gradio keeps the copies of image examples but not a gr.File's: the synthetic examples' scan was swept a
    minute after start, and clicking the example then failed with "no such scan file" (issue 32, item 7)."""
    for row in examples.examples or []:
        for component, value in zip(examples.inputs, row if isinstance(row, (list, tuple)) else [row]):
            if isinstance(value, (str, Path)) and Path(value).is_file() and hasattr(component, "keep_in_cache"):
                component.keep_in_cache.add(component.move_resource_to_block_cache(str(value)))


# ----------------------------------------------------------------------------- uploads are not kept

_IN_USE: dict[str, int] = {}  # upload path -> handlers using it now
_IN_USE_LOCK = threading.Lock()
_DEMO: list[gr.Blocks] = []  # the served Blocks (for its example files and its queue)


def register_demo(demo: gr.Blocks) -> None:
    """Remember the served Blocks (its examples' copies are kept, its queue is read by discard_uploads) and keep
    Gradio's sweep bookkeeping to regular files (pose3dfr.ui.sweep.guard_cache_bookkeeping)."""
    guard_cache_bookkeeping(demo)
    _DEMO[:] = [demo]


def served_demo() -> gr.Blocks | None:
    return _DEMO[0] if _DEMO else None


def _example_digests() -> set[str]:
    """sha256 of every example's source file, so that a copy of an example made at click time is recognised."""
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


def files_in_use() -> set[str]:
    """Upload paths a handler uses now or a queued event names (the sweep leaves them)."""
    with _IN_USE_LOCK:
        busy = {p for p, n in _IN_USE.items() if n > 0}
    with contextlib.suppress(Exception):  # Gradio's queue is read without its lock: a changing list may raise
        busy |= set(_queued_paths())
    return busy


def discard_uploads(paths: list[str]) -> None:
    """Delete these uploaded files (and their folder once empty) unless another request still uses them;
    only regular files inside Gradio's per-file folders of the upload folder (never the folder itself, nor a
    directory), never an example's copy."""
    kept, queued, examples = kept_files(served_demo()), _queued_paths(), None
    with _IN_USE_LOCK:
        busy = {p for p, n in _IN_USE.items() if n > 0}
    for path in set(paths):
        others = queued[path] - paths.count(path)  # references beyond this request's own event
        if not is_stored_file(path) or others > 0:
            continue
        resolved = Path(path).resolve()
        if {path, str(resolved)} & (kept | busy):
            continue
        with contextlib.suppress(OSError):
            examples = _example_digests() if examples is None else examples
            if hashlib.sha256(resolved.read_bytes()).hexdigest() in examples:
                continue  # an example's copy (our own public file), which later clicks of the example still use
            resolved.unlink(missing_ok=True)
            resolved.parent.rmdir()  # Gradio's per-upload hashed folder, once empty


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
    path = getattr(upload, "path", None) or getattr(upload, "name", None)
    return path if isinstance(path, str) else None
