"""What every tab of the app shares: public mode, readable errors (plain short text, no server paths, no long
echo of what a user sent, also for the errors Gradio raises before a handler runs), the time limit of the model
events, the FAR choices, JSON-safe results and the app's own cache folder."""

from __future__ import annotations

import functools
import inspect
import logging
import math
import os
import re
import tempfile
import traceback
from pathlib import Path
from typing import Any, Callable

import gradio as gr
import numpy as np

from pose3dfr.deadline import time_budget
from pose3dfr.errors import Pose3DFRError
from pose3dfr.resources import trim_memory


# Gradio's cache (uploads, bare /gradio_api/upload files, images written for outputs) is swept every
# DELETE_EVERY seconds of files older than DELETE_AGE seconds: nothing stays longer than 45 + 10 = 55 s.
# POSE3DFR_DELETE_CACHE="every,age" overrides both (tests use short intervals).
DELETE_EVERY_SECONDS, DELETE_AGE_SECONDS = 10, 45
# A session's view state (two face crops with heatmaps, a sweep's points) is dropped after this long.
STATE_TTL_SECONDS = 600
# Longest error message shown; longer ones (e.g. a 100 KB input echoed back) are cut.
MAX_ERROR_CHARS = 300
# Longest echo of a user-given value inside a message; also the longest run of non-space characters any message
# keeps (Gradio's own checks echo a rejected value in full: a 5 MB dropdown value came back whole).
MAX_ECHO_CHARS = 40
# Time budget of one /verify, /embed or /identify (concurrency group "model"), checked between the pipeline's
# steps (pose3dfr.deadline): about 0.5 s normally, a few seconds on a busy 2-core Space; loading a model on first
# use does not count. With 2 model slots, no request waits longer than this for one to free up.
MODEL_EVENT_SECONDS = 20


# Operating points offered in Verify: (label, FAR).
FAR_CHOICES: list[tuple[str, float]] = [("1%", 0.01), ("0.1%", 0.001)]
DEFAULT_FAR = 0.01
# Default opacity of the attention heatmap over the aligned crops.
DEFAULT_OPACITY = 0.45


# Where the app writes what it makes (generated examples, data sets, training runs); never user uploads.
CACHE_DIR = Path(os.environ.get("POSE3DFR_CACHE_DIR") or Path(tempfile.gettempdir()) / "pose3dfr-app")


log = logging.getLogger("pose3dfr.app")


def public_mode() -> bool:
    """Public mode: POSE3DFR_PUBLIC=1 (or `--public`); unset, it is on inside a Hugging Face Space (SPACE_ID).
    POSE3DFR_PUBLIC=0 turns it off (a private Space). Public mode builds no handler that writes outside temp
    or starts a long job: no Train, no data set generation, no Evaluate."""
    value = os.environ.get("POSE3DFR_PUBLIC")
    if value in ("0", "1"):
        return value == "1"
    return bool(os.environ.get("SPACE_ID"))


def delete_cache_setting() -> tuple[int, int]:
    """(every, age) seconds for gr.Blocks(delete_cache=...): POSE3DFR_DELETE_CACHE="every,age", else defaults."""
    every, _, age = os.environ.get("POSE3DFR_DELETE_CACHE", "").partition(",")
    if every.isdigit() and age.isdigit() and int(every) > 0 and int(age) > 0:
        return int(every), int(age)
    return DELETE_EVERY_SECONDS, DELETE_AGE_SECONDS


# ----------------------------------------------------------------------------- errors

# An absolute POSIX path of two or more parts (a server path in a message); replaced by its last part.
_SERVER_PATH = re.compile(r"(?<![\w.])(/[^\s/'\"():,]+){2,}")


# A run of non-space characters longer than an echo may be.
_LONG_TOKEN = re.compile(r"\S{%d,}" % (MAX_ECHO_CHARS + 1))


def plain_message(text: str) -> str:
    """`text` safe to show to a user and an API caller alike: plain text (no '<' or '>': Gradio renders
    messages as HTML, so no markup can form), server paths cut to their file name, no run of non-space
    characters over MAX_ECHO_CHARS, at most MAX_ERROR_CHARS."""
    text = _SERVER_PATH.sub(lambda m: m.group(0).rsplit("/", 1)[-1], str(text))
    text = _LONG_TOKEN.sub(lambda m: m.group(0)[:MAX_ECHO_CHARS - 1] + "\u2026", text)
    text = text.replace("<", "\u2039").replace(">", "\u203a")
    return text if len(text) <= MAX_ERROR_CHARS else text[:MAX_ERROR_CHARS - 1] + "\u2026"


def user_error(text: str) -> gr.Error:
    """A gr.Error with a plain, short message (see plain_message); no stack trace is printed."""
    return gr.Error(plain_message(text), print_exception=False)


def echo(value: Any) -> str:
    """repr() of a user-given value for a message, cut to MAX_ECHO_CHARS."""
    text = repr(value)
    return text if len(text) <= MAX_ECHO_CHARS else text[:MAX_ECHO_CHARS - 1] + "\u2026"

def readable_error(exc: Exception, where: str) -> gr.Error:
    """`exc` as a gr.Error with a plain, short message that Gradio does not print. pose3dfr errors carry a message
    meant for the user; anything else is logged on the server (type and stack frames only: the exception's text
    may name an upload or hold a value a user sent) and shown as a short generic line."""
    if isinstance(exc, gr.Error):
        exc.message = plain_message(exc.message)
        exc.print_exception = False
        return exc
    if isinstance(exc, Pose3DFRError):
        return user_error(str(exc))
    log.error("unexpected error in %s (%s)\n%s", where, type(exc).__name__,
              "".join(traceback.format_tb(exc.__traceback__)))
    return gr.Error(f"Something went wrong ({type(exc).__name__}); the details are in the server log.",
                    print_exception=False)


def readable_errors(fn: Callable) -> Callable:
    """Turn every exception of an event handler into a gr.Error with a readable message (never a trace;
    see readable_error)."""

    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def generator_wrapper(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except Exception as exc:
                raise readable_error(exc, fn.__name__) from None
        return generator_wrapper

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            raise readable_error(exc, fn.__name__) from None
    return wrapper


def readable_processing_errors(demo: gr.Blocks) -> None:
    """Every error of an event, also those Gradio raises around the handler (a Dropdown or Radio value that is
    not a choice, too few inputs, a file reference it refuses), leaves as readable_error makes it: Gradio's own
    messages echo the rejected value in full (a 5 MB dropdown value went into the reply and, with its stack
    trace, into the server log)."""
    process_api = demo.process_api

    @functools.wraps(process_api)
    async def guarded(*args, **kwargs):
        try:
            return await process_api(*args, **kwargs)
        except Exception as exc:
            raise readable_error(exc, "an event") from None

    demo.process_api = guarded


def time_limited_events(demo: gr.Blocks, seconds: dict[str, float]) -> None:
    """Run each event of a concurrency group named in `seconds` (e.g. {"model": MODEL_EVENT_SECONDS}) inside a
    time budget of that many seconds (pose3dfr.deadline: checked between pipeline steps, so the event stops
    with a TimeLimitError message), and hand freed memory back to the system after each (a large photo's
    buffers otherwise keep the server's resident memory at its peak)."""
    for block_fn in demo.fns.values():
        budget = seconds.get(block_fn.concurrency_id)
        if budget is not None and block_fn.fn is not None and not inspect.isgeneratorfunction(block_fn.fn):
            block_fn.fn = _within_budget(block_fn.fn, budget)


def _within_budget(fn: Callable, seconds: float) -> Callable:
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            with time_budget(seconds):
                return fn(*args, **kwargs)
        finally:
            trim_memory()
    return wrapper


def mcp_tool(name: str) -> Callable[[Callable], Callable]:
    """Name a handler's MCP tool `name` (Gradio names each tool after its function's __name__; the
    description and argument help come from the docstring's summary and Args section)."""
    def rename(fn: Callable) -> Callable:
        fn.__name__ = name
        return fn
    return rename


def far_value(far: Any) -> float:
    """The FAR of a choice (0.01 / 0.001, or a label such as '1%'), else a gr.Error."""
    for label, value in FAR_CHOICES:
        if far == label or (isinstance(far, (int, float)) and math.isclose(float(far), value)):
            return value
    raise user_error(f"FAR must be one of {', '.join(l for l, _ in FAR_CHOICES)}; got {echo(far)}.")


def far_radio() -> gr.Radio:
    """The FAR choice of a model event. Its API type is a number from FAR_CHOICES: Gradio's Radio declares
    {"type": "string", "enum": [0.01, 0.001]}, which no value satisfies, so MCP clients refused every FAR."""
    radio = gr.Radio(FAR_CHOICES, value=DEFAULT_FAR, label="false accept rate (FAR)")
    schema = {"type": "number", "enum": [value for _, value in FAR_CHOICES], "title": "FAR"}
    radio.api_info = lambda: dict(schema)  # replaced on the instance (a subclass would write a .pyi stub)
    return radio


def error_markdown(message: str) -> str:
    """An error shown where a tab's verdict goes: a heading and the plain message, with Markdown escaped."""
    return "## Error\n\n" + re.sub(r"([\\`*_{}\[\]()#+\-.!|~])", r"\\\1", plain_message(message))


def far_label(far: float) -> str:
    return next((label for label, value in FAR_CHOICES if math.isclose(far, value)), f"{far:g}")


def json_safe(value: Any) -> Any:
    """`value` with numpy scalars/arrays turned into JSON types (small arrays only; big ones dropped)."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items() if json_safe(v) is not _DROP}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist() if value.size <= 4096 else _DROP
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


_DROP = object()


def no_autolinks(markdown: str) -> str:
    """Markdown whose '@' cannot become a mailto: link (Gradio's Markdown links `TAR@0.1%FAR` as an e-mail)."""
    return markdown.replace("@", "&#64;")
