"""pose3dfr web app: builds the Gradio UI and calls the pose3dfr library (no model logic here).

Run `python app.py [--port N]`. Binds 127.0.0.1 locally and 0.0.0.0 inside a Hugging Face Space
(env SPACE_ID); the port comes from --port, else GRADIO_SERVER_PORT, else 7860.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported

import gradio as gr  # noqa: E402

import pose3dfr  # noqa: E402

DEFAULT_PORT = 7860


def build_demo() -> gr.Blocks:
    """The whole UI."""
    with gr.Blocks(title="pose3dfr", analytics_enabled=False) as demo:
        gr.Markdown(f"# pose3dfr {pose3dfr.__version__}\n"
                    "Pose-robust 2D face recognition that learns from 3D "
                    "(Peace, Hu, Riggan, FG 2025).")
    return demo


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
    args = parser.parse_args(argv)
    demo = build_demo()
    demo.queue(default_concurrency_limit=2)
    demo.launch(server_name=server_host(), server_port=server_port(args.port), show_error=False)


if __name__ == "__main__":
    main()
