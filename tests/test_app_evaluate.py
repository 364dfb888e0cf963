"""The Evaluate tab's handlers in-process: the per-pose protocol on a tiny synthetic set generated here with the
"default" checkpoint (TAR table per pose bin, ROC per bin), data set paths that must be refused, and the data
set the app generates (Evaluate and Train): a run trained on it is validated, at a measured operating point."""

from __future__ import annotations

import json
import re
from pathlib import Path

import gradio as gr
import pytest

from pose3dfr.geometry import pose_bin_labels
from pose3dfr.ui import datasets, evaluate


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory) -> Path:
    """Four identities, two expressions (two frontal images per identity: genuine pairs in the frontal bin),
    a 22.5-degree yaw grid (every pose bin, no view on a bin edge), 128 px; half the identities in the test
    split (impostor pairs)."""
    from pose3dfr.data.synthetic import SynthConfig, generate_benchmark

    root = tmp_path_factory.mktemp("data") / "tiny"
    generate_benchmark(root, SynthConfig(identities=4, expressions=2, yaw_step=22.5, image_size=128, points=16,
                                         split_fractions=(0.25, 0.25, 0.5)))
    return root


@pytest.fixture
def allowed(tiny_root, monkeypatch) -> Path:
    """The tiny set's parent is the only data root the app accepts."""
    monkeypatch.setattr(datasets, "DATA_ROOTS", (tiny_root.parent,))
    return tiny_root.parent


def _table_rows(markdown: str) -> dict[str, list[str]]:
    rows = {}
    for line in markdown.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) > 3 and re.match(r"^\d+$", cells[1] or ""):
            rows[cells[0]] = cells[1:]
    return rows


def test_evaluate_reports_tar_for_every_pose_bin_and_overall(tiny_root, allowed):
    table, figure = evaluate.evaluate_endpoint(str(tiny_root), "default", "test")
    rows = _table_rows(table)
    assert set(rows) == set(pose_bin_labels()) | {"overall"}
    for label, cells in rows.items():
        genuine, impostor = int(cells[0]), int(cells[1])
        assert genuine > 0 and impostor > 0, label
        tar_1, tar_01 = (float(c) for c in cells[2:4])  # TAR@1%FAR, TAR@0.1%FAR in percent
        assert 0.0 <= tar_01 <= tar_1 <= 100.0
    assert "TAR&#64;1%FAR" in table and "TAR&#64;0.1%FAR" in table and "@" not in table  # no mailto: links
    # 2 test identities: far fewer impostor pairs than 10 / FAR, and the table says so
    assert "Warning: TAR at FAR 0.1% is not measured reliably" in table and "10,000 impostor pairs" in table
    traces = {trace.name for trace in figure.data}
    assert set(pose_bin_labels()) | {"overall"} <= traces
    for trace in figure.data:
        assert len(trace.x) == len(trace.y) > 1 and all(0.0 <= y <= 1.0 for y in trace.y)


def test_evaluate_refuses_a_data_set_outside_the_allowed_roots(tiny_root, allowed, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "manifest.json").write_text((tiny_root / "manifest.json").read_text())
    for path in (str(outside), str(allowed / ".." / outside.name), "/etc"):
        with pytest.raises(gr.Error) as exc:
            evaluate.evaluate_endpoint(path, "default", "test")
        assert "data sets must lie inside" in exc.value.message and "Traceback" not in exc.value.message


def test_evaluate_refuses_a_folder_without_manifest(allowed):
    empty = allowed / "no-manifest"
    empty.mkdir(exist_ok=True)
    with pytest.raises(gr.Error) as exc:
        evaluate.evaluate_endpoint(str(empty), "default", "test")
    assert "no-manifest" in exc.value.message and "no manifest.json" in exc.value.message
    with pytest.raises(gr.Error, match="Choose a data set"):
        evaluate.evaluate_endpoint("", "default", "test")


def test_evaluate_refuses_unknown_checkpoints(tiny_root, allowed):
    with pytest.raises(gr.Error, match="Unknown checkpoint"):
        evaluate.evaluate_endpoint(str(tiny_root), "../../etc/passwd", "test")


def test_small_synthetic_data_set_settings_are_valid_and_hold_out_test_identities():
    from pose3dfr.data.synthetic.benchmark import _identity_splits

    config = datasets.small_synth_config()
    config.validate()
    splits = _identity_splits(config.identities, config.seed, config.split_fractions)
    assert len(splits["test"]) >= 2  # genuine and impostor pairs in the test split


def test_the_generated_data_set_trains_and_validates(tmp_path):
    """Issue 32, item 12: the app's only data set had one validation identity, so a run from the Train tab had
    no validation and could never be listed. The app's set (rendered smaller here: same identities, split and
    yaws) gives a run validations at its start and end, at an operating point with enough impostor pairs."""
    import dataclasses

    import numpy as np

    from pose3dfr.data.synthetic import generate_benchmark
    from pose3dfr.ui import jobs
    from pose3dfr.engine.train import train
    from pose3dfr.eval.config import EvalConfig
    from pose3dfr.eval.protocol import protocol_pairs
    from pose3dfr.eval.reports import MIN_IMPOSTORS_PER_INVERSE_FAR
    from conftest import tiny_train_config

    config = dataclasses.replace(datasets.small_synth_config(), image_size=64, texture_size=128, points=128)
    root = generate_benchmark(tmp_path / "synth", config).parent
    manifest = json.loads((root / "manifest.json").read_text())
    val = manifest["splits"]["val"]
    pairs = protocol_pairs(np.repeat(val, len(manifest["yaws"])), np.tile(manifest["yaws"], len(val)), EvalConfig())
    impostors = int((pairs["valid"] & ~pairs["genuine"]).sum())
    assert impostors >= MIN_IMPOSTORS_PER_INVERSE_FAR / jobs.JUDGE_FAR  # the run's judging point is measured
    # one step, validated once at its end (the start's validation is the same computation); oracle crops: no
    # detector pass over the 273 images
    train(tiny_train_config(1, "align=oracle", "eval.align=oracle", "val_at_start=false"), root, tmp_path / "run")
    comparison = jobs.compare_with_start(jobs.read_metrics(tmp_path / "run"))
    assert comparison.latest_step == 1 and comparison.judged[1] is not None  # the run has a validation TAR
