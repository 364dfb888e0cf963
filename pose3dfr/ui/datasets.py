"""Data sets the Evaluate and Train tabs may read (confined to ./data and the app's cache) and the small
synthetic one the app can generate."""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from pose3dfr.data.synthetic import SynthConfig, generate_benchmark
from pose3dfr.paths import PROJECT_ROOT
from pose3dfr.ui.common import CACHE_DIR, echo, readable_errors, user_error


# Data set directories the Evaluate and Train tabs may read: ./data and the app's cache, nothing else.
DATA_ROOTS: tuple[Path, ...] = (PROJECT_ROOT / "data", CACHE_DIR / "datasets")


def dataset_dir(choice: str | None) -> Path:
    """The data set directory `choice` names, if it lies inside an allowed root; else a gr.Error."""
    if not choice:
        raise gr.Error("Choose a data set (or generate the small synthetic one).", print_exception=False)
    path = Path(choice)
    if not path.is_absolute():
        path = PROJECT_ROOT / path
    resolved = path.resolve()
    for root in DATA_ROOTS:
        if resolved.is_relative_to(root.resolve()) and resolved != root.resolve():
            if not (resolved / "manifest.json").is_file():
                raise user_error(f"{echo(Path(choice).name)}: not a data set (no manifest.json).")
            return resolved
    roots = ", ".join(display_path(root) for root in DATA_ROOTS)
    raise user_error(f"{echo(Path(choice).name)}: data sets must lie inside {roots}.")


def display_path(path: Path) -> str:
    return str(path.relative_to(PROJECT_ROOT)) if path.is_relative_to(PROJECT_ROOT) else str(path)


def list_datasets() -> list[str]:
    """Data set directories (with a manifest.json) found directly under the allowed roots."""
    found = []
    for root in DATA_ROOTS:
        if root.is_dir():
            found += [display_path(p.parent) for p in sorted(root.glob("*/manifest.json"))]
    return found


SMALL_SYNTHETIC = CACHE_DIR / "datasets" / "synthetic-small"


@readable_errors
def generate_small_dataset(progress: gr.Progress = gr.Progress(track_tqdm=True)) -> dict:
    """Make a small synthetic benchmark in the cache (seconds) and select it."""
    progress(0, desc="rendering a small synthetic data set")
    generate_benchmark(SMALL_SYNTHETIC, SynthConfig(**_small_synth_kwargs(SynthConfig)), progress=True)
    return gr.update(choices=list_datasets(), value=display_path(SMALL_SYNTHETIC))


def _small_synth_kwargs(config_cls: type) -> dict:
    """SynthConfig of a data set small enough to build in seconds: 10 identities (2 held out for the
    test split), one expression, a 30-degree yaw grid, 128-px renders."""
    return {"identities": 10, "expressions": 1, "yaw_step": 30.0, "image_size": 128, "points": 512}


def refresh_datasets(current: str | None) -> dict:
    """Dropdown update listing the data sets now (one generated or copied in after start appears)."""
    names = list_datasets()
    return gr.update(choices=names, value=current or None)
