"""The benchmark scripts' shared helpers: wall times of repeated calls after a warm-up, and the JSON report."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable


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
