"""The Evaluate tab: the per-pose protocol (TAR at FAR per yaw bin, ROC curves) on a data set's split."""

from __future__ import annotations

from typing import Any

import gradio as gr

from pose3dfr.eval.config import EvalConfig
from pose3dfr.eval.evaluate import evaluate_split
from pose3dfr.eval.reports import results_markdown, roc_figure
from pose3dfr.ui.common import no_autolinks, readable_errors
from pose3dfr.ui.datasets import GENERATE_LABEL, dataset_dir, display_path, generate_small_dataset, list_datasets
from pose3dfr.ui.models import MODELS, checkpoint_dropdown, resolve_checkpoint


@readable_errors
def evaluate_endpoint(dataset: str | None, checkpoint: str | None, split: str,
                      progress: gr.Progress = gr.Progress(track_tqdm=True)) -> tuple[str, Any]:
    """Run the per-pose protocol on a data set's split with a checkpoint: TAR@FAR per bin and ROC curves."""
    root = dataset_dir(dataset)
    name = resolve_checkpoint(checkpoint)
    progress(0, desc="loading the model")
    model = MODELS.get(name).model
    progress(0.05, desc="embedding the images")
    results = evaluate_split(model, root, EvalConfig(split=split, device="cpu", batch_size=16))
    table = results_markdown(results, title=f"{name} on {display_path(root)} ({split})")
    return no_autolinks(table), roc_figure(results)


def evaluate_tab(public: bool) -> gr.Dropdown | None:
    if public:
        gr.Markdown("Evaluation is off in public mode (it reads data sets from the server's disk and runs for "
                    "minutes). Run `python -m pose3dfr.cli eval` or the app locally.")
        return None
    gr.Markdown("The per-pose protocol: frontal gallery against probes binned by |yaw| (TAR at FAR 1% and "
                "0.1%, ROC per bin). Data sets live under `data/` or the app's cache. A TAR at a FAR needs at "
                "least 10 / FAR impostor pairs to be measured; the table warns where a bin has fewer.")
    with gr.Row():
        dataset = gr.Dropdown(list_datasets(), label="data set", allow_custom_value=True, elem_id="eval-dataset")
        split = gr.Dropdown(["test", "val", "train"], value="test", label="split")
        checkpoint = checkpoint_dropdown()
    with gr.Row():
        generate = gr.Button(GENERATE_LABEL)
        run = gr.Button("Evaluate", variant="primary")
    table = gr.Markdown(elem_id="eval-table")
    roc = gr.Plot(label="ROC per pose bin")
    generate.click(generate_small_dataset, None, dataset, api_visibility="private", concurrency_id="background",
                   concurrency_limit=1)
    run.click(evaluate_endpoint, [dataset, checkpoint, split], [table, roc], api_visibility="private",
              concurrency_id="background", concurrency_limit=1)
    return dataset
