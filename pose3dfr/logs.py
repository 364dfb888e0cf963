"""Quiet native logs: MediaPipe, TFLite and glog write straight to descriptor 2 (about 15 lines per process);
the CLI and the app drop them unless asked to show them (`--verbose`)."""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Iterator


@contextlib.contextmanager
def native_logs_silenced(enabled: bool = True) -> Iterator[None]:
    """While active, native (C++) writes to descriptor 2, where MediaPipe, TFLite and glog log, go to /dev/null.

    Python's sys.stderr moves to a copy of the original descriptor meanwhile, so errors, warnings and progress
    bars still show; only what native libraries write straight to descriptor 2 is dropped (`--verbose` keeps it).
    """
    try:
        if not enabled:
            raise OSError("not enabled")
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # disabled, or no real descriptor 2 (embedded, captured)
        yield
        return
    python_stderr = sys.stderr
    move = _fileno(python_stderr) == 2  # else sys.stderr is already elsewhere (a test's capture): leave it
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    if move:
        sys.stderr = os.fdopen(os.dup(saved), "w", buffering=1, encoding=getattr(python_stderr, "encoding", None),
                               errors="backslashreplace")
    try:
        yield
    finally:
        if move:
            sys.stderr.close()
            sys.stderr = python_stderr
        os.dup2(saved, 2)
        os.close(saved)


def _fileno(stream) -> int | None:
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError):
        return None
