"""Bounding what one input may cost a process that serves many: child processes that parse untrusted files
under resource limits (the scan reader, pose3dfr.data.scan_io; the image decoder, pose3dfr.face.bounded_decode)
and handing freed memory back to the operating system after a large request."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from pathlib import Path

# Threads of the numeric libraries in a child: one (a child parses one file; the server runs several at once).
CHILD_THREADS = "1"


def child_command(module: str, function: str) -> list[str]:
    """argv of a fresh `python` running `module.function(sys.argv[1:])` from this checkout (nothing else imported:
    no torch, Open3D or gradio), exiting with its return value."""
    root = str(Path(__file__).resolve().parents[1])
    return [sys.executable, "-c", f"import sys; sys.path.insert(0, {root!r}); "
            f"from {module} import {function}; sys.exit({function}(sys.argv[1:]))"]


def child_env() -> dict[str, str]:
    """The environment of such a child: the parent's, with single-threaded numeric libraries."""
    return {**os.environ, "OMP_NUM_THREADS": CHILD_THREADS, "OPENBLAS_NUM_THREADS": CHILD_THREADS,
            "MKL_NUM_THREADS": CHILD_THREADS}


def limit_own_resources(memory_bytes: int, cpu_seconds: int, file_bytes: int) -> None:
    """Cap this process's address space, CPU time and file writes, and turn off core dumps. Called by the child
    itself before it reads a byte of input (preexec_fn is unsafe in a threaded server)."""
    import resource

    for limit, value in ((resource.RLIMIT_AS, memory_bytes), (resource.RLIMIT_CPU, cpu_seconds),
                         (resource.RLIMIT_FSIZE, file_bytes), (resource.RLIMIT_CORE, 0)):
        resource.setrlimit(limit, (value, value))


_LIBC: list = []


def trim_memory() -> bool:
    """Hand the heap's free pages back to the operating system (glibc's malloc_trim(0)): after a large image the
    allocator otherwise keeps them, and the process's resident memory stays at its peak. False where the C
    library has no malloc_trim (not glibc)."""
    if not _LIBC:
        name = ctypes.util.find_library("c")
        library = ctypes.CDLL(name) if name else None
        _LIBC.append(library if library is not None and hasattr(library, "malloc_trim") else None)
    if _LIBC[0] is None:
        return False
    _LIBC[0].malloc_trim(0)
    return True
