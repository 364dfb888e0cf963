"""The benchmark scripts' shared helpers: wall times of repeated calls after a warm-up, the JSON report, thread
caps, and the command line a result records."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence


def wall_times_ms(fn: Callable[[], object], repeats: int, warmup: int = 2) -> list[float]:
    """Milliseconds of each of `repeats` calls of fn(), after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000.0)
    return times


def report(results: dict[str, Any], json_path: str | None) -> None:
    """Print the results as JSON, and write them to `json_path` when one is given."""
    print(json.dumps(results, indent=2))
    if json_path:
        Path(json_path).write_text(json.dumps(results, indent=2))


def set_threads(threads: int) -> None:
    """Cap BLAS/OpenMP (dlib, numpy), OpenCV and torch threads; call before the systems load."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)
    import cv2

    cv2.setNumThreads(threads)
    if "torch" in sys.modules:  # only pose3dfr imports torch; the peers' processes stay free of it
        sys.modules["torch"].set_num_threads(threads)


def command_line(module: str, argv: Sequence[str] | None) -> str:
    """The command that reruns a benchmark from the repository root: `python -m benchmarks.<module> ARGS`
    (`argv` None: this process's own arguments)."""
    return " ".join(["python -m benchmarks." + module, *(sys.argv[1:] if argv is None else argv)])
