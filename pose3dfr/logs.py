"""Quiet native logs: MediaPipe, TFLite and glog write straight to descriptor 2 (about 15 lines per process);
the CLI and the app drop them unless asked to show them (`--verbose`). Python's own output (sys.stderr and
every logging handler that wrote to it) keeps reaching the real stderr meanwhile."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from typing import Iterator


@contextlib.contextmanager
def native_logs_silenced(enabled: bool = True) -> Iterator[None]:
    """While active, native (C++) writes to descriptor 2, where MediaPipe, TFLite and glog log, go to /dev/null.

    Python's sys.stderr moves to a copy of the original descriptor meanwhile, and so does every logging handler
    that held the old sys.stderr (logging.basicConfig binds it when called, before this context): errors,
    warnings, progress bars and the server log still show; only what native libraries write straight to
    descriptor 2 is dropped (`--verbose` keeps it). Handlers made inside (uvicorn's) move back at the end.
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
        _retarget_handlers(python_stderr, sys.stderr)
    try:
        yield
    finally:
        if move:
            copy = sys.stderr
            sys.stderr = python_stderr
            _retarget_handlers(copy, python_stderr)
            copy.close()
        os.dup2(saved, 2)
        os.close(saved)


def _retarget_handlers(old, new) -> None:
    """Point every logging.StreamHandler that writes to the stream `old` (on any logger) at `new`."""
    loggers = [logging.getLogger()] + [v for v in list(logging.Logger.manager.loggerDict.values())
                                       if isinstance(v, logging.Logger)]
    for logger in loggers:
        for handler in list(logger.handlers):
            if isinstance(handler, logging.StreamHandler) and handler.stream is old:
                handler.setStream(new)


def _fileno(stream) -> int | None:
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError):
        return None
