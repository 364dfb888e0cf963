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


# The synthetic set the app generates (Evaluate, Train). A run is judged by its overall validation TAR at FAR 1%,
# which needs 10 / FAR = 1,000 impostor pairs (pose3dfr.eval.reports): 13 validation identities x 7 yaws give
# 13 x 91 - 91 = 1,092 (per pose bin 156-312: those TARs are shown with the table's warning); the 10-identity
# set it replaces had 1 validation identity, so no validation at all. 26 training identities (182 images) fill
# batches of 32; 13 test identities. 15 s to generate on the shared 2-core machine (docs/app.md).
SMALL_SYNTH_IDENTITIES = 52
SMALL_SYNTH_SPLIT = (0.5, 0.25, 0.25)  # train / val / test identities
SMALL_SYNTHETIC = CACHE_DIR / "datasets" / f"synthetic-{SMALL_SYNTH_IDENTITIES}"
GENERATE_LABEL = f"Generate a synthetic data set ({SMALL_SYNTH_IDENTITIES} identities: trains and validates)"


def small_synth_config() -> SynthConfig:
    """The SynthConfig of the app's data set: one expression, a 30-degree yaw grid, 128-px renders."""
    return SynthConfig(identities=SMALL_SYNTH_IDENTITIES, expressions=1, yaw_step=30.0, image_size=128, points=512,
                       split_fractions=SMALL_SYNTH_SPLIT)


@readable_errors
def generate_small_dataset(progress: gr.Progress = gr.Progress(track_tqdm=True)) -> dict:
    """Make the app's synthetic benchmark in the cache (about half a minute) and select it."""
    progress(0, desc="rendering a synthetic data set")
    generate_benchmark(SMALL_SYNTHETIC, small_synth_config(), progress=True)
    return gr.update(choices=list_datasets(), value=display_path(SMALL_SYNTHETIC))


def refresh_datasets(current: str | None) -> dict:
    """Dropdown update listing the data sets now (one generated or copied in after start appears)."""
    names = list_datasets()
    return gr.update(choices=names, value=current or None)
