"""The web app's UI (the top layer, beside the CLI): one module per tab, built into one gr.Blocks by layout.py;
`python app.py` calls `main`. The handlers only check input and call the library (no model logic here)."""

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # read when gradio is imported: before any tab module

from pose3dfr.ui.layout import main  # noqa: E402

__all__ = ["main"]
