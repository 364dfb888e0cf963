"""The whole app: the tabs in one gr.Blocks, the queue and launch settings, and `main` (the entry point of
`python app.py [--port N] [--public] [--verbose] [--no-mcp]`)."""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os

import gradio as gr

import pose3dfr
from pose3dfr.face.image_io import set_isolated_decoding
from pose3dfr.logs import native_logs_silenced
from pose3dfr.ui.about import ABOUT, STORAGE_NOTE, licences_markdown
from pose3dfr.ui.common import (MODEL_EVENT_SECONDS, delete_cache_setting, log, public_mode, readable_processing_errors,
                                time_limited_events)
from pose3dfr.ui.datasets import refresh_datasets
from pose3dfr.ui.evaluate import evaluate_tab
from pose3dfr.ui.explorer import SWEEP_TIME_LIMIT_SECONDS, explorer_tab
from pose3dfr.ui.identify import identify_tab
from pose3dfr.ui.train import train_tab
from pose3dfr.ui.sweep import start_upload_sweeper
from pose3dfr.ui.uploads import files_in_use, register_demo
from pose3dfr.ui.verify import verify_tab


DEFAULT_PORT = 7860
# Largest upload (Gradio refuses bigger files before they reach us); a phone photo is 2-8 MB.
MAX_FILE_SIZE = "20mb"
# Requests served at once per event (queue); two fit the 2-core CPU of a free Space.
CONCURRENCY_LIMIT = 2


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    return int(value) if value.isdigit() else default


# Events waiting in the queue at most (all events together); more are refused with "Queue is full".
# 64 holds a burst of 40 verifies (about 0.5 s each, 2 at a time: about 15 s of waiting). POSE3DFR_QUEUE_SIZE
# overrides it (tests use a small queue).
QUEUE_MAX_SIZE = _env_int("POSE3DFR_QUEUE_SIZE", 64)


def build_demo(public: bool | None = None) -> gr.Blocks:
    """The whole UI; in public mode (default: public_mode()) without the Train and Evaluate handlers."""
    public = public_mode() if public is None else public
    with gr.Blocks(title="pose3dfr", analytics_enabled=False, delete_cache=delete_cache_setting()) as demo:
        gr.Markdown(f"# pose3dfr {pose3dfr.__version__}\n"
                    "Pose-robust 2D face recognition that learns from 3D "
                    "(Peace, Hu, Riggan, FG 2025).")
        with gr.Tab("Verify"):
            verify_tab(demo)
        with gr.Tab("Identify"):
            identify_tab(demo, public)
        with gr.Tab("Pose explorer"):
            explorer_tab()
        with gr.Tab("Evaluate") as evaluate_page:
            eval_dataset = evaluate_tab(public)
        with gr.Tab("Train") as train_page:
            train_dataset = train_tab(public)
        for tab, dropdown in ((evaluate_page, eval_dataset), (train_page, train_dataset)):
            if dropdown is not None:  # data sets made after start appear on page load and on tab select
                demo.load(refresh_datasets, dropdown, dropdown, api_visibility="private")
                tab.select(refresh_datasets, dropdown, dropdown, api_visibility="private")
        with gr.Tab("About"):
            gr.Markdown(STORAGE_NOTE)
            gr.Markdown(ABOUT)
            gr.Markdown(licences_markdown())
    register_demo(demo)
    readable_processing_errors(demo)
    # every model event has a deadline: /verify, /embed, /identify ("model") and pose sweeps ("sweep")
    time_limited_events(demo, {"model": MODEL_EVENT_SECONDS, "sweep": SWEEP_TIME_LIMIT_SECONDS})
    return demo


def mcp_enabled() -> bool:
    """The MCP server (tools verify, embed, identify at /gradio_api/mcp/) is on unless POSE3DFR_MCP=0 or
    `--no-mcp`, and only where gradio[mcp] is installed."""
    if os.environ.get("POSE3DFR_MCP") == "0":
        return False
    return importlib.util.find_spec("mcp") is not None


def server_host() -> str:
    """0.0.0.0 inside a Hugging Face Space (SPACE_ID is set), 127.0.0.1 elsewhere."""
    return "0.0.0.0" if os.environ.get("SPACE_ID") else "127.0.0.1"


def server_port(cli_port: int | None) -> int:
    """--port wins, then GRADIO_SERVER_PORT, then 7860."""
    if cli_port is not None:
        return cli_port
    return int(os.environ.get("GRADIO_SERVER_PORT", DEFAULT_PORT))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="pose3dfr web app")
    parser.add_argument("--port", type=int, default=None, help="port (default: GRADIO_SERVER_PORT or 7860)")
    parser.add_argument("--public", action="store_true", help="public mode (as POSE3DFR_PUBLIC=1; see docs/app.md)")
    parser.add_argument("--no-mcp", action="store_true", help="no MCP server (as POSE3DFR_MCP=0)")
    parser.add_argument("--verbose", action="store_true", help="show the native libraries' logs (MediaPipe, TFLite)")
    args = parser.parse_args(argv)
    if args.public:
        os.environ["POSE3DFR_PUBLIC"] = "1"
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # Gradio's own health checks
    # uploads are decoded in time- and memory-limited worker processes (pose3dfr.face.bounded_decode)
    set_isolated_decoding(True)
    demo = build_demo()
    log.info("public mode %s", "on" if public_mode() else "off")
    demo.queue(max_size=QUEUE_MAX_SIZE, default_concurrency_limit=CONCURRENCY_LIMIT)
    # allowed_paths: none. Gradio serves only its own upload folder (uploads, output images, the examples'
    # copies), under unguessable hashed names, and never the checkpoints or the app's cache.
    mcp = mcp_enabled() and not args.no_mcp
    log.info("MCP server %s", "on at /gradio_api/mcp/" if mcp else "off")
    start_upload_sweeper(demo, in_use=files_in_use)  # the whole upload folder, whoever wrote (docs/reliability.md)
    with native_logs_silenced(not args.verbose):
        demo.launch(server_name=server_host(), server_port=server_port(args.port), show_error=False,
                    max_file_size=MAX_FILE_SIZE, allowed_paths=[], mcp_server=mcp)
