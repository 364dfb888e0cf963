"""The Train tab: a training run in the background (pose3dfr.ui.jobs), its loss curves and validation
against its starting model; a run is listed in Verify only when it is not worse than its start."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import gradio as gr
import plotly.graph_objects as go

from pose3dfr.engine.config import list_presets
from pose3dfr.eval.metrics import far_key
from pose3dfr.paths import CHECKPOINTS_DIR, PROJECT_ROOT
from pose3dfr.ui.common import CACHE_DIR, echo, public_mode, readable_errors, user_error
from pose3dfr.ui.datasets import GENERATE_LABEL, dataset_dir, generate_small_dataset, list_datasets
from pose3dfr.ui.jobs import (TrainManager, compare_with_start, job_state, read_metrics, total_steps, train_command,
                              validation_note)
from pose3dfr.ui.models import list_checkpoints


# Checkpoint names a training run may never take (shipped files and the library's built-ins).
RESERVED_CHECKPOINT_NAMES = ("default", "dlib-pretrained", "dlib_resnet", "sface-pretrained", "sface")


# Seconds between two refreshes of a running training job's curves.
TRAIN_POLL_SECONDS = 2.0


def train_enabled() -> bool:
    """Training is on outside public mode only (see public_mode)."""
    return not public_mode()


def train_presets() -> list[str]:
    """Preset names of pose3dfr.engine.config (empty when the trainer is not in this build)."""
    return list_presets()


_RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def taken_names() -> set[str]:
    """Lower-cased names a run may not take: the reserved built-ins, every file stem in checkpoints/ and every
    run folder already made (so a run never replaces a shipped or existing checkpoint, nor another run)."""
    names = set(RESERVED_CHECKPOINT_NAMES) | set(list_checkpoints())
    for folder in (CHECKPOINTS_DIR, CACHE_DIR / "runs"):
        if folder.is_dir():
            names |= {p.name.split(".")[0] for p in folder.iterdir()}
    return {n.lower() for n in names}


def validate_run_name(name: Any) -> str:
    """`name` if it is a well-formed, unused run name (compared case-insensitively), else a gr.Error."""
    if not isinstance(name, str) or not _RUN_NAME.match(name) or ".." in name:
        raise gr.Error("Run name: letters, digits, '_', '-' or '.', at most 64 characters.", print_exception=False)
    if name.lower() in taken_names() or name.split(".")[0].lower() in taken_names():
        raise user_error(f"A checkpoint or run named {echo(name)} exists already; choose another run name.")
    return name


CONFIGS_DIR = PROJECT_ROOT / "configs"
# Config choice meaning "the preset alone".
NO_CONFIG = "none (the preset alone)"
# Steps a run may take from the Train tab (0 = the preset's or config's own count).
MAX_TRAIN_STEPS = 100_000

TRAINER = TrainManager(CHECKPOINTS_DIR, CACHE_DIR / "runs")


def train_configs() -> list[str]:
    """Config choices of the Train tab: none, then every configs/*.yaml (the shipped recipe among them)."""
    found = sorted(p.relative_to(PROJECT_ROOT).as_posix() for p in CONFIGS_DIR.glob("*.y*ml")) \
        if CONFIGS_DIR.is_dir() else []
    return [NO_CONFIG, *found]


def config_path(choice: str | None) -> Path | None:
    """The configs/ file a choice names (None for the preset alone); anything else is a gr.Error."""
    if not choice or choice == NO_CONFIG:
        return None
    if choice not in train_configs():
        raise user_error(f"Unknown config {echo(choice)}; choose one of configs/*.yaml.")
    return PROJECT_ROOT / choice


def step_count(steps: Any) -> int | None:
    """The step count asked for (None: the preset's or config's own), else a gr.Error."""
    if steps in (None, "", 0):
        return None
    if not isinstance(steps, (int, float)) or int(steps) != steps or not 1 <= steps <= MAX_TRAIN_STEPS:
        raise user_error(f"Steps must be a whole number from 1 to {MAX_TRAIN_STEPS:,} (0: the recipe's own); "
                         f"got {echo(steps)}.")
    return int(steps)


def loss_figure(records: list[dict]) -> Any:
    """Every loss_* series of the run against its step."""
    figure = go.Figure()
    keys = sorted({k for r in records for k in r if k == "loss" or k.startswith("loss_")})
    for key in keys:
        points = [(r.get("step", i), r[key]) for i, r in enumerate(records) if isinstance(r.get(key), (int, float))]
        if points:
            xs, ys = zip(*points)
            figure.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name=key))
    figure.update_layout(xaxis_title="step", yaxis_title="loss", title="training losses",
                         margin=dict(l=60, r=20, t=50, b=50))
    return figure


@readable_errors
def start_training(preset: str | None, dataset: str | None, name: str | None, config: str | None = NO_CONFIG,
                   steps: Any = None) -> tuple:
    """Start `python -m pose3dfr.cli train ...` in the background and turn the poll timer on."""
    if not train_enabled():
        raise gr.Error("Training is off in public mode.", print_exception=False)
    if preset not in train_presets():
        raise user_error(f"Unknown preset {echo(preset)}.")
    validate_run_name(name)
    data, recipe, count = dataset_dir(dataset), config_path(config), step_count(steps)
    job = TRAINER.start(name, lambda run_dir: train_command(preset, data, run_dir, recipe, count))
    recipe_text = f" with `{config}`" if recipe else ""
    steps_text = f"{count} steps" if count else "the recipe's step count"
    return (f"Started run `{job.name}`: preset `{preset}`{recipe_text}, {steps_text}.", gr.Timer(active=True),
            gr.update(visible=False))


@readable_errors
def stop_training() -> str:
    return "Stopped by you." if TRAINER.stop() else "No training run is running."


@readable_errors
def publish_anyway() -> tuple:
    """Publish a held-back run knowingly (the user read why it was held back)."""
    job = TRAINER.job
    if job is None or job.held_back is None:
        raise gr.Error("No run is waiting to be published.", print_exception=False)
    if TRAINER.publish(force=True) is None:
        raise gr.Error("The run could not be published (it wrote no final model).", print_exception=False)
    return (f"Run `{job.name}` published knowingly: it is now listed in Verify as `{job.name}`.",
            gr.update(visible=False))


def validation_markdown(records: list[dict], ended: bool = False, note: str | None = None) -> str:
    """Validation TAR per pose bin of the run's latest validation against its starting model's (step 0); for a
    run that `ended` without one, that it has none and why (`note`: the run log's line about it)."""
    comparison = compare_with_start(records)
    if not comparison.labels:
        if ended:
            why = f" ({note})" if note else ""
            return (f"No validation was recorded{why}. A run is validated on its data set's validation split, "
                    "which needs at least 2 identities (the data set this tab generates has enough).")
        return "No validation yet (the run validates its starting model first, then once per epoch)."
    fars = sorted({float(k.rsplit("_", 1)[1]) for row in (comparison.start, comparison.latest) if row for k in row},
                  reverse=True)
    step = f"step {comparison.latest_step}" if comparison.latest_step else "run (not validated yet)"
    header = ["probe yaw bin"] + [f"{col} TAR at FAR {100 * far:g}%" for far in fars for col in ("start", step)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label in comparison.labels:
        cells = [label]
        for far in fars:
            key = f"{label}/tar_at_far_{far_key(far)}"
            for row in (comparison.start, comparison.latest):
                value = (row or {}).get(key)
                cells.append("–" if value is None else f"{value:.1%}")
        lines.append("| " + " | ".join(cells) + " |")
    return ("Validation (synthetic validation renders of the data set; start = the model before step 1):\n\n"
            + "\n".join(lines))


def poll_training() -> tuple:
    """Status (validation against the start, then the state in words and progress: the status ends in what
    happened), loss curves, the timer and the "publish anyway" button; stops the timer once the run ended."""
    job = TRAINER.job
    if job is None:
        return "No training run yet.", None, gr.Timer(active=False), gr.update(visible=False)
    records = read_metrics(job.run_dir)
    losses = [r for r in records if "loss" in r]
    step, total = (losses[-1]["step"] if losses else 0), total_steps(job.run_dir)
    progress = f"step {step} of {total} ({step / total:.0%})" if total else f"step {step}"
    state = job_state(job)
    table = validation_markdown(records, ended=state != "running", note=validation_note(job.log_file))
    if state == "running":
        return (f"{table}\n\nRun `{job.name}` running: {progress}.", loss_figure(losses), gr.Timer(active=True),
                gr.update(visible=False))
    held = False
    if state == "finished":
        TRAINER.publish()
        if job.published:
            verdict = f"finished ({progress}); it is not worse than its start, so it is now listed in Verify"
        elif job.held_back:
            verdict = (f"finished ({progress}) but is **not listed in Verify**: {job.held_back}. "
                       "Publish it anyway only if you know why")
            held = True
        else:
            verdict = "finished, but wrote no final model"
    else:
        verdict = f"{state} ({progress})"
    return f"{table}\n\nRun `{job.name}` {verdict}.", loss_figure(losses), gr.Timer(active=False), \
        gr.update(visible=held)


def train_tab(public: bool) -> gr.Dropdown | None:
    if public:
        gr.Markdown("Training is off in public mode (it writes checkpoints). Run the app locally, or set "
                    "`POSE3DFR_PUBLIC=0` in a private Space, to train from here.")
        return None
    gr.Markdown("Train a checkpoint on a data set in the background (`pose3dfr train`). The run first validates "
                "its starting model, then validates once per epoch; a finished run is listed in Verify only when "
                "its overall validation TAR at FAR 1% is not below its start's.")
    with gr.Row():
        presets = train_presets()
        preset = gr.Dropdown(presets, value=presets[0] if presets else None, label="preset", elem_id="train-preset")
        configs = train_configs()
        config = gr.Dropdown(configs, value=next((c for c in configs if c.endswith("synth-cpu.yaml")), configs[0]),
                             label="config file", info="configs/*.yaml: the shipped recipe, or the preset alone",
                             elem_id="train-config")
        steps = gr.Number(0, label="steps (0: the recipe's own)", precision=0, minimum=0, maximum=MAX_TRAIN_STEPS,
                          elem_id="train-steps")
    with gr.Row():
        dataset = gr.Dropdown(list_datasets(), label="data set", allow_custom_value=True, elem_id="train-dataset")
        name = gr.Textbox("my-run", label="run name (becomes the checkpoint name)")
        generate = gr.Button(GENERATE_LABEL)
    with gr.Row():
        start = gr.Button("Start training", variant="primary")
        stop = gr.Button("Stop", variant="stop")
        publish = gr.Button("Publish anyway", visible=False, elem_id="train-publish")
    status = gr.Markdown("No training run yet.", elem_id="train-status")
    curves = gr.Plot(label="loss curves")
    timer = gr.Timer(TRAIN_POLL_SECONDS, active=False)
    start.click(start_training, [preset, dataset, name, config, steps], [status, timer, publish],
                api_visibility="private")
    generate.click(generate_small_dataset, None, dataset, api_visibility="private", concurrency_id="background",
                   concurrency_limit=1)
    stop.click(stop_training, None, status, api_visibility="private")
    publish.click(publish_anyway, None, [status, publish], api_visibility="private")
    timer.tick(poll_training, None, [status, curves, timer, publish], api_visibility="private")
    return dataset
