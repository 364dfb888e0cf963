"""The one timing helper of the benchmark scripts: wall times of repeated calls, after a warm-up."""

from __future__ import annotations

import time
from typing import Callable


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
