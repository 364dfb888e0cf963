"""The web app's UI (the top layer, beside the CLI): one module per tab, built into one gr.Blocks by layout.py;
`python app.py` calls `main`. The handlers only check input and call the library (no model logic here)."""

import os
import tempfile

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # read when gradio is imported: before any tab module
# The app sweeps its whole upload folder (pose3dfr.ui.sweep), so it does not share Gradio's default <tmp>/gradio
# with other Gradio apps; some Gradio modules read this when imported.
os.environ.setdefault("GRADIO_TEMP_DIR", os.path.join(tempfile.gettempdir(), "pose3dfr-gradio"))

from pose3dfr.ui.layout import main  # noqa: E402

__all__ = ["main"]
