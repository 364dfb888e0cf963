"""Decoding untrusted image bytes in worker processes with a time and memory limit, as scans are read
(pose3dfr.data.scan_io): whatever a file makes the decoder do, it costs the server at most DECODE_SECONDS and
DECODER_MEMORY_BYTES of another process, never a stuck request slot or a heap that stays at its peak.

pose3dfr.face.image_io.load_image sends the bytes here when isolated decoding is on (the app turns it on). A worker is a
`python` that imports only numpy, Pillow and pose3dfr.face (no torch, no gradio), caps its own address space,
file writes and, before each image, its CPU time, and then answers requests over a pipe:

    request:  8-byte length + JSON {"name", "max_pixels"}, 8-byte length + the file's bytes
    reply:    8-byte length + JSON {"shape": [H, W, 3]} then H*W*3 bytes of RGB, or {"error", "message"}

Nothing is pickled. The server checks the reply's shape against image_decode's limits before reading the pixels.
Idle workers are kept for the next request (starting one costs about 0.1 s); a worker that overruns, crashes
or runs out of memory is killed and the image refused with InvalidImageError.
"""

from __future__ import annotations

import atexit
import json
import os
import select
import signal
import subprocess
import threading
import time

import numpy as np

from pose3dfr.deadline import check_time, remaining
from pose3dfr.errors import ImageTooLargeError, InvalidImageError, Pose3DFRError
from pose3dfr.face.image_decode import MAX_DECODE_SIDE, MIN_SIDE, decode_bytes
from pose3dfr.resources import child_command, child_env, limit_own_resources, trim_memory

# Address space of a worker (about 110 MiB of it is Python, numpy and Pillow): decoding a 39.9-megapixel progressive
# JPEG adds about 160 MiB at its peak, a 15.9-megapixel 16-bit PNG about 105 MiB (benchmarks/bench_decode.py), a
# 38 MB 4:4:4 progressive JPEG of 40 megapixels about 300 MiB.
DECODER_MEMORY_BYTES = 1024 * 2**20
# Wall and CPU seconds of one decode: the slowest legal image measured (a 40-megapixel progressive 4:4:4 JPEG
# of 38 MB) takes 1.5 CPU s; a scan bomb that got past image_structure is stopped here.
DECODE_SECONDS = 10.0
# Workers kept idle between requests: the app's two model slots (ui.layout.CONCURRENCY_LIMIT) decode one photo
# at a time each; a burst beyond them starts more workers, which end when they are done.
IDLE_WORKERS = 2
# Images a worker decodes before it is replaced (a fresh process returns all its memory to the system).
WORKER_DECODES = 200
# CPU seconds of a worker's whole life (each decode also has its own DECODE_SECONDS limit).
WORKER_CPU_SECONDS = 3600
# Longest JSON header of a request or reply (bytes).
MAX_HEADER_BYTES = 4096
_LENGTH_BYTES = 8


class _WorkerFailed(Exception):
    """The worker did not answer in time, died, or broke the protocol (it is killed)."""

    def __init__(self, why: str, timed_out: bool = False) -> None:
        super().__init__(why)
        self.why, self.timed_out = why, timed_out


class DecoderWorker:
    """One decoder process and its pipes; used by one thread at a time (see decode_isolated)."""

    def __init__(self) -> None:
        command = child_command("pose3dfr.face.bounded_decode", "worker_main")
        self.proc = subprocess.Popen(command + [str(DECODER_MEMORY_BYTES), str(DECODE_SECONDS)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     env=child_env(), bufsize=0, close_fds=True)
        self.decodes = 0

    def decode(self, data: bytes, name: str, max_pixels: int, seconds: float) -> np.ndarray:
        """H x W x 3 uint8 RGB, or the decoder's InvalidImageError; _WorkerFailed when the process fails."""
        deadline = time.monotonic() + seconds
        header = json.dumps({"name": name, "max_pixels": int(max_pixels)}).encode()
        for part in (_framed(header), len(data).to_bytes(_LENGTH_BYTES, "little"), data):  # no copy of the data
            _write_all(self.proc.stdin.fileno(), part, deadline)
        try:
            reply = json.loads(_read_frame(self.proc.stdout.fileno(), deadline, MAX_HEADER_BYTES))
        except (UnicodeDecodeError, ValueError):
            raise _WorkerFailed("the decoder broke the protocol") from None
        if not isinstance(reply, dict):
            raise _WorkerFailed("the decoder broke the protocol")
        self.decodes += 1
        if "error" in reply:
            error = ImageTooLargeError if reply["error"] == "ImageTooLargeError" else InvalidImageError
            if reply["error"] == "MemoryError":
                raise _WorkerFailed(f"it needs more than {DECODER_MEMORY_BYTES // 2**20} MiB to decode")
            raise error(str(reply.get("message", f"{name}: not a readable image"))[:500])
        shape = reply.get("shape")
        if not (isinstance(shape, list) and len(shape) == 3 and shape[2] == 3 and all(isinstance(v, int) for v in shape)
                and MIN_SIDE <= min(shape[:2]) and max(shape[:2]) <= MAX_DECODE_SIDE):
            raise _WorkerFailed(f"the decoder returned an invalid shape {str(shape)[:40]}")
        pixels = _read_exactly(self.proc.stdout.fileno(), shape[0] * shape[1] * 3, deadline)
        return np.frombuffer(pixels, np.uint8).reshape(shape)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            pipe.close()

    def close(self) -> None:
        """Ask an idle worker to end (end of input), then make sure it has."""
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            pass
        self.kill()


_IDLE: list[DecoderWorker] = []
_LOCK = threading.Lock()


def decode_isolated(data: bytes, name: str, max_pixels: int) -> np.ndarray:
    """`data` decoded by image_decode.decode_bytes in a worker process (see the module docstring): H x W x 3 uint8
    RGB; InvalidImageError / ImageTooLargeError as decode_bytes gives them, and also when the decoder takes over
    DECODE_SECONDS, needs over DECODER_MEMORY_BYTES or crashes; TimeLimitError when the request's budget ends."""
    check_time(f"decoding {name}")
    with _LOCK:
        worker = _IDLE.pop() if _IDLE else None
    worker = worker or DecoderWorker()
    try:
        rgb = worker.decode(data, name, max_pixels, remaining(DECODE_SECONDS))
    except _WorkerFailed as failure:
        worker.kill()
        check_time(f"decoding {name}")  # the request's own budget ran out: say so
        raise InvalidImageError(f"{name}: could not be decoded safely ({_reason(failure, worker)})") from None
    except InvalidImageError:  # the decoder's own answer: the worker is fine
        _release(worker)
        raise
    except BaseException:  # interrupted mid-exchange: the pipes are in an unknown state
        worker.kill()
        raise
    _release(worker)
    return rgb


def _release(worker: DecoderWorker) -> None:
    """Keep a healthy worker for the next request, or end it."""
    if worker.proc.poll() is None and worker.decodes < WORKER_DECODES:
        with _LOCK:
            if len(_IDLE) < IDLE_WORKERS:
                _IDLE.append(worker)
                return
    worker.close()


def _reason(failure: _WorkerFailed, worker: DecoderWorker) -> str:
    code = worker.proc.returncode
    if failure.timed_out or code == -signal.SIGXCPU:
        return f"the decoder took over {DECODE_SECONDS:.0f} s"
    if code is not None and code < 0 and code != -signal.SIGKILL:
        return f"the decoder stopped: signal {-code}"
    return failure.why


@atexit.register
def close_idle_workers() -> None:
    """End the idle workers (also done by the workers themselves when the server's pipes close)."""
    with _LOCK:
        idle, _IDLE[:] = list(_IDLE), []
    for worker in idle:
        worker.close()


# ---------------------------------------------------------------------------------------------- pipes

def _framed(payload: bytes) -> bytes:
    return len(payload).to_bytes(_LENGTH_BYTES, "little") + payload


def _write_all(fd: int, data: bytes, deadline: float) -> None:
    view = memoryview(data)
    try:
        while view:
            _wait(fd, deadline, write=True)
            view = view[os.write(fd, view[: 1 << 20]):]
    except (BrokenPipeError, ConnectionResetError):
        raise _WorkerFailed("the decoder stopped reading") from None


def _read_frame(fd: int, deadline: float, limit: int) -> bytes:
    length = int.from_bytes(_read_exactly(fd, _LENGTH_BYTES, deadline), "little")
    if length > limit:
        raise _WorkerFailed("the decoder broke the protocol")
    return _read_exactly(fd, length, deadline)


def _read_exactly(fd: int, size: int, deadline: float) -> bytearray:
    out = bytearray(size)
    view, got = memoryview(out), 0
    while got < size:
        _wait(fd, deadline, write=False)
        chunk = os.readv(fd, [view[got:]])
        if chunk == 0:
            raise _WorkerFailed("the decoder stopped")
        got += chunk
    return out


def _wait(fd: int, deadline: float, write: bool) -> None:
    left = deadline - time.monotonic()
    ready = select.select([], [fd], [], max(0.0, left)) if write else select.select([fd], [], [], max(0.0, left))
    if not any(ready):
        raise _WorkerFailed("timed out", timed_out=True)


# ---------------------------------------------------------------------------------------------- the worker

def worker_main(argv: list[str]) -> int:
    """A decoder process (argv: address-space bytes, CPU seconds per image): limit its own resources, then decode
    requests from stdin until it closes."""
    import resource

    replies = os.fdopen(os.dup(1), "wb", buffering=0)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)  # nothing a library prints can mix with the replies
    memory_bytes, seconds = int(argv[0]), float(argv[1])
    limit_own_resources(memory_bytes, WORKER_CPU_SECONDS, 0)
    requests = os.fdopen(0, "rb", buffering=0)
    while True:
        header = _receive_frame(requests, MAX_HEADER_BYTES)
        data = None if header is None else _receive_frame(requests, 2**31)
        if data is None:
            return 0
        request = json.loads(header)
        used = resource.getrusage(resource.RUSAGE_SELF)
        cpu = int(used.ru_utime + used.ru_stime + seconds) + 1
        resource.setrlimit(resource.RLIMIT_CPU, (min(cpu, WORKER_CPU_SECONDS), WORKER_CPU_SECONDS))
        body = b""
        try:
            rgb = decode_bytes(data, name=str(request["name"]), max_pixels=int(request["max_pixels"]))
            reply, body = {"shape": list(rgb.shape)}, np.ascontiguousarray(rgb).data
        except MemoryError:
            reply = {"error": "MemoryError"}
        except Pose3DFRError as exc:
            reply = {"error": type(exc).__name__, "message": str(exc)}
        del data
        _send(replies, _framed(json.dumps(reply).encode()))
        _send(replies, body)
        body = rgb = None
        trim_memory()  # the decoder's buffers go back to the system between images


def _send(stream, payload) -> None:
    view = memoryview(payload).cast("B")
    while view:
        view = view[stream.write(view):]


def _receive_exactly(stream, size: int) -> bytearray | None:
    out, got = bytearray(size), 0
    view = memoryview(out)
    while got < size:
        n = stream.readinto(view[got:])
        if not n:
            return None  # the server closed the pipe: end
        got += n
    return out


def _receive_frame(stream, limit: int) -> bytearray | None:
    prefix = _receive_exactly(stream, _LENGTH_BYTES)
    if prefix is None or int.from_bytes(prefix, "little") > limit:
        return None
    return _receive_exactly(stream, int.from_bytes(prefix, "little"))
