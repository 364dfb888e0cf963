"""Time budgets of requests. The app runs each model event inside `time_budget(seconds)`; the pipeline calls
`check_time(step)` between its steps (decoding, detection, landmarks, embedding) and stops with TimeLimitError once
the budget is spent, and waits that can be cut short (the image decoder's) last at most `remaining(...)`. Outside a
budget (library calls, the CLI) both are no-ops.

The budget lives in a context variable, so concurrent requests (threads) each have their own. One-time set-up
inside a request (loading a checkpoint or the face detector on first use) runs under `not_counted()`.
"""

from __future__ import annotations

import contextlib
import time
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Iterator

from pose3dfr.errors import TimeLimitError


@dataclass
class _Budget:
    seconds: float  # what the request was given
    deadline: float  # time.monotonic() at which it is spent


_BUDGET: ContextVar[_Budget | None] = ContextVar("pose3dfr_time_budget", default=None)


@contextlib.contextmanager
def time_budget(seconds: float | None) -> Iterator[None]:
    """Run the body with `seconds` to spend (None: no budget); inside another budget the earlier deadline holds."""
    outer = _BUDGET.get()
    if seconds is None:
        yield
        return
    budget = _Budget(float(seconds), time.monotonic() + seconds)
    if outer is not None and outer.deadline <= budget.deadline:
        budget = outer
    token = _BUDGET.set(budget)
    try:
        yield
    finally:
        _BUDGET.reset(token)


def check_time(step: str) -> None:
    """TimeLimitError naming `step` if the current budget is spent; nothing outside a budget."""
    budget = _BUDGET.get()
    if budget is not None and time.monotonic() > budget.deadline:
        raise TimeLimitError(f"the request took over {budget.seconds:.0f} s and was stopped before {step} (the "
                             "server is busy, or the input costs too much to process); try again later")


def remaining(limit: float) -> float:
    """Seconds a wait inside the current request may last: `limit`, or less when the budget ends sooner."""
    budget = _BUDGET.get()
    return limit if budget is None else max(0.0, min(limit, budget.deadline - time.monotonic()))


@contextlib.contextmanager
def not_counted() -> Iterator[None]:
    """The body's time is added back to the current budget (one-time set-up such as loading a model)."""
    budget, start = _BUDGET.get(), time.monotonic()
    try:
        yield
    finally:
        if budget is not None:
            budget.deadline += time.monotonic() - start
