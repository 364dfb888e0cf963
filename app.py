"""pose3dfr web app: the Hugging Face Space's entry point; the UI itself is built by pose3dfr.ui.

Run `python app.py [--port N] [--public] [--verbose] [--no-mcp]`. Binds 127.0.0.1 locally and 0.0.0.0 inside a
Hugging Face Space (env SPACE_ID); the port comes from --port, else GRADIO_SERVER_PORT, else 7860. Nothing is
downloaded at start and no model is loaded until the first request that needs it. See docs/app.md.
"""

from pose3dfr.ui import main
from pose3dfr.ui.layout import server_host, server_port

__all__ = ["main", "server_host", "server_port"]  # the entry point's launch rules (tests/test_foundation.py)

if __name__ == "__main__":
    main()
