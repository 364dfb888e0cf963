"""Gradio's upload folder is swept so that nothing a user sent outlives its answer by more than a minute,
whatever wrote it: our own sweep of the whole folder (uploads, output images, the MCP server's base64 copies,
downloads of image URLs), and Gradio's bookkeeping kept to regular files so that its own sweep keeps running.

Gradio 6.31 sweeps only the files it tracked, and its sweep task stops for good at the first entry that is
not a file: a FileData naming the upload folder itself was enough (issue 32, item 2). Its MCP server writes
base64 photos to the folder without tracking them (item 3)."""

from __future__ import annotations

import atexit
import os
import re
import signal
import stat
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import gradio as gr
from gradio.utils import get_upload_folder

from pose3dfr.ui.common import delete_cache_setting, log


# Name of the folders Gradio makes for each stored file: a hex digest (sha256 of the content, or of a URL).
_HASHED_FOLDER = re.compile(r"^[0-9a-f]{32,128}$")
# Deepest level searched below the upload folder (Gradio writes <root>/<hash>/<name>; deeper is never ours).
MAX_SWEEP_DEPTH = 4


def upload_root() -> Path:
    """Gradio's upload folder (GRADIO_TEMP_DIR), resolved."""
    return Path(get_upload_folder()).resolve()


def is_stored_file(path: Any) -> bool:
    """True for a regular file (not a folder, link or device) strictly inside a folder of the upload root:
    where Gradio stores an upload (`<root>/<hash>/<name>`)."""
    try:
        candidate = Path(str(path))
        if not stat.S_ISREG(os.lstat(candidate).st_mode):
            return False
        resolved = candidate.resolve()
    except (OSError, ValueError):
        return False
    root = upload_root()
    return resolved.is_relative_to(root) and resolved.parent != root


def _is_regular_file(path: Any) -> bool:
    try:
        return stat.S_ISREG(os.lstat(str(path)).st_mode)
    except (OSError, ValueError):
        return False


class RegularFiles(set):
    """A set of file paths for Gradio's sweep that takes only regular files: Gradio's sweep calls os.remove on
    each entry and dies on the first IsADirectoryError, so a folder must never be recorded."""

    def add(self, path: Any) -> None:
        if _is_regular_file(path):
            super().add(path)

    def update(self, *iterables: Iterable[Any]) -> None:
        for iterable in iterables:
            for path in iterable:
                self.add(path)


def guard_cache_bookkeeping(demo: gr.Blocks) -> None:
    """Replace every set of files Gradio sweeps (each block's temp_files, the uploads' set) by a RegularFiles
    holding the same files (Gradio 6.31 internals: Blocks.temp_file_sets, Block.temp_files, upload_file_set)."""
    replaced: dict[int, RegularFiles] = {}

    def guarded(files: set) -> RegularFiles:
        if isinstance(files, RegularFiles):
            return files
        if id(files) not in replaced:
            replaced[id(files)] = RegularFiles(p for p in files if _is_regular_file(p))
        return replaced[id(files)]

    for block in (demo, *demo.blocks.values()):
        if isinstance(getattr(block, "temp_files", None), set):
            block.temp_files = guarded(block.temp_files)
    if isinstance(getattr(demo, "upload_file_set", None), set):
        demo.upload_file_set = guarded(demo.upload_file_set)
    if isinstance(getattr(demo, "temp_file_sets", None), list):
        demo.temp_file_sets[:] = [guarded(s) for s in demo.temp_file_sets]


def kept_files(demo: gr.Blocks | None) -> set[str]:
    """Files Gradio keeps on purpose: the examples' copies (shipped public-domain photos, synthetic renders)."""
    kept: set[str] = set()
    for block in demo.blocks.values() if demo is not None else ():
        kept.update(str(p) for p in getattr(block, "keep_in_cache", ()))
    return kept


class UploadSweeper:
    """Every `every` seconds, delete each file in the upload folder older than `age` seconds (by its change
    time, as Gradio ages files), except the examples' kept copies and the files `in_use()` names (requests
    running or queued), and the empty per-file folders; whoever wrote the file. A pass never raises: a file
    that cannot be deleted is skipped (the next pass tries again)."""

    def __init__(self, demo: gr.Blocks | None, every: float, age: float, root: Path | None = None,
                 in_use: Callable[[], set[str]] = set) -> None:
        self.demo, self.every, self.age, self.in_use = demo, float(every), float(age), in_use
        self.root = (root or upload_root()).resolve()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sweep_once(self, age: float | None = None, final: bool = False) -> int:
        """One pass; files older than `age` (default: the sweeper's) go, and with `final` (the process is
        ending) also those requests still use. Returns how many were deleted."""
        try:
            busy = set() if final else self.in_use()
            kept = {str(Path(p).resolve()) for p in kept_files(self.demo) | busy}
            return self._sweep(self.root, self.age if age is None else age, kept, time.time(), 0)
        except Exception as exc:  # never stop sweeping: the next pass tries again
            log.error("upload sweep failed (%s)", type(exc).__name__)
            return 0

    def _sweep(self, folder: Path, age: float, kept: set[str], now: float, depth: int) -> int:
        deleted = 0
        try:
            entries = list(os.scandir(folder))
        except OSError:
            return 0
        for entry in entries:
            try:
                info = entry.stat(follow_symlinks=False)
                if stat.S_ISDIR(info.st_mode):
                    if depth < MAX_SWEEP_DEPTH:
                        deleted += self._sweep(Path(entry.path), age, kept, now, depth + 1)
                    if _HASHED_FOLDER.match(entry.name) and now - os.lstat(entry.path).st_mtime > age:
                        os.rmdir(entry.path)  # only when empty (OSError otherwise)
                elif now - max(info.st_ctime, info.st_mtime) > age and entry.path not in kept \
                        and str(Path(entry.path).resolve()) not in kept:
                    os.unlink(entry.path)
                    deleted += 1
            except OSError:
                continue  # gone already, not empty, or not ours to delete: the next pass looks again
        return deleted

    def start(self) -> "UploadSweeper":
        """Sweep in a daemon thread until the process ends; at exit (also on SIGTERM) sweep every file but the
        examples' copies."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="pose3dfr-upload-sweep", daemon=True)
            self._thread.start()
            atexit.register(self.sweep_once, 0.0, True)
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.sweep_once()

    def stop(self) -> None:
        self._stop.set()


def start_upload_sweeper(demo: gr.Blocks, in_use: Callable[[], set[str]] = set) -> UploadSweeper:
    """Start the sweep of the served app's upload folder (delete_cache_setting's interval and age). On SIGTERM
    (a Space stopping, `kill`) every file but the examples' copies is deleted before the process ends by the
    signal as before; SIGTERM used to end it at once, leaving the folder as it was."""
    every, age = delete_cache_setting()
    sweeper = UploadSweeper(demo, every, age, in_use=in_use).start()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda signum, frame: _sweep_and_die(sweeper, signum))
    return sweeper


def _sweep_and_die(sweeper: UploadSweeper, signum: int) -> None:
    sweeper.sweep_once(0.0, final=True)
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
