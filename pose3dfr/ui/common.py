"""What every tab of the app shares: public mode, readable errors (plain short text, no server paths),
the FAR choices, JSON-safe results and the app's own cache folder."""

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

from pose3dfr.errors import Pose3DFRError


# Gradio's cache (uploads, bare /gradio_api/upload files, images written for outputs) is swept every
# DELETE_EVERY seconds of files older than DELETE_AGE seconds: nothing stays longer than 45 + 10 = 55 s.
# POSE3DFR_DELETE_CACHE="every,age" overrides both (tests use short intervals).
DELETE_EVERY_SECONDS, DELETE_AGE_SECONDS = 10, 45
# A session's view state (two face crops with heatmaps, a sweep's points) is dropped after this long.
STATE_TTL_SECONDS = 600
# Longest error message shown; longer ones (e.g. a 100 KB input echoed back) are cut.
MAX_ERROR_CHARS = 300
# Longest echo of a user-given value inside a message.
MAX_ECHO_CHARS = 40


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


def plain_message(text: str) -> str:
    """`text` safe to show to a user and an API caller alike: plain text (no '<' or '>': Gradio renders
    messages as HTML, so no markup can form), server paths cut to their file name, at most MAX_ERROR_CHARS."""
    text = _SERVER_PATH.sub(lambda m: m.group(0).rsplit("/", 1)[-1], str(text))
    text = text.replace("<", "\u2039").replace(">", "\u203a")
    return text if len(text) <= MAX_ERROR_CHARS else text[:MAX_ERROR_CHARS - 1] + "\u2026"


def user_error(text: str) -> gr.Error:
    """A gr.Error with a plain, short message (see plain_message); no stack trace is printed."""
    return gr.Error(plain_message(text), print_exception=False)


def echo(value: Any) -> str:
    """repr() of a user-given value for a message, cut to MAX_ECHO_CHARS."""
    text = repr(value)
    return text if len(text) <= MAX_ECHO_CHARS else text[:MAX_ECHO_CHARS - 1] + "\u2026"

def readable_errors(fn: Callable) -> Callable:
    """Turn every exception of an event handler into a gr.Error with a readable message (never a trace).

    pose3dfr errors carry a message meant for the user; anything else is logged on the server (type and
    stack frames only: the exception's text may name an upload) and shown as a short generic line. Every
    message goes through plain_message."""

    def convert(exc: Exception) -> gr.Error:
        if isinstance(exc, gr.Error):
            exc.message = plain_message(exc.message)
            return exc
        if isinstance(exc, Pose3DFRError):
            return user_error(str(exc))
        log.error("unexpected error in %s (%s)\n%s", fn.__name__, type(exc).__name__,
                  "".join(traceback.format_tb(exc.__traceback__)))
        return gr.Error(f"Something went wrong ({type(exc).__name__}); the details are in the server log.",
                        print_exception=False)

    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def generator_wrapper(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except Exception as exc:
                raise convert(exc) from None
        return generator_wrapper

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            raise convert(exc) from None
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
