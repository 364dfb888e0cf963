"""Interrupted training: `pose3dfr train` killed with SIGKILL right after its first checkpoint leaves only
complete, loadable checkpoint files (atomic writes; temporary files only under `.tmp_` names, which resume
ignores), and `--resume` ends with the weights of an uninterrupted run. See docs/reliability.md."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from conftest import TINY_TRAIN, tiny_train_config
from pose3dfr.engine.checkpoint import latest_checkpoint
from pose3dfr.engine.train import train
from pose3dfr.models import load_model
from pose3dfr.paths import PROJECT_ROOT

STEPS = 6
# One checkpoint a step, no validation: the kill lands in a step or in a checkpoint write.
RUN_SETTINGS = [*TINY_TRAIN, "checkpoint_interval=1", "keep_checkpoints=2", "val_split=null"]
FINAL_NAME = re.compile(r"^step_\d{8}(\.json|\.safetensors|\.train\.safetensors)$")
START_SECONDS = 600  # generous: a shared CPU can be very busy
# One thread in the subprocesses and the reference run: equal thread counts give equal float sums, and on
# a busy shared CPU 2-thread OpenMP spin-waits far slower than 1 thread.
THREADS = 1


@pytest.fixture(autouse=True)
def one_thread():
    """In-process training at THREADS threads too (the subprocesses get OMP_NUM_THREADS=THREADS)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    yield
    torch.set_num_threads(threads)


def _train_command(data: Path, out: Path, resume: bool = False) -> list[str]:
    command = [sys.executable, "-m", "pose3dfr.cli", "train", "--preset", "fast", "--data", str(data),
               "--out", str(out), "--steps", str(STEPS)]
    command += [a for item in RUN_SETTINGS for a in ("--set", item)]
    return command + (["--resume"] if resume else [])


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": str(THREADS), "PYTHONPATH": str(PROJECT_ROOT)}


def _kill_after_first_checkpoint(data: Path, out: Path) -> None:
    with open(out.parent / f"{out.name}.log", "wb") as log:
        process = subprocess.Popen(_train_command(data, out), cwd=PROJECT_ROOT, env=_env(), stdout=log,
                                   stderr=subprocess.STDOUT)
    deadline = time.time() + START_SECONDS
    try:
        while not list((out / "checkpoints").glob("step_*.json")):
            assert process.poll() is None, (out.parent / f"{out.name}.log").read_text()[-3000:]
            assert time.time() < deadline, "no checkpoint appeared"
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        assert process.wait(timeout=60) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()


def _check_only_complete_files(out: Path) -> None:
    """Every file under a final name is whole; anything else is a `.tmp_` leftover that resume ignores."""
    folder = out / "checkpoints"
    for path in folder.iterdir():
        assert FINAL_NAME.match(path.name) or path.name.startswith(".tmp_"), path.name
        if path.name.endswith(".safetensors") and FINAL_NAME.match(path.name):
            with safe_open(str(path), framework="pt") as fh:  # a complete file (a half-written one fails)
                assert list(fh.keys())
    stems = sorted(folder.glob("step_*.json"))
    assert stems
    for meta in stems:
        load_model(meta)  # sha256 of the weights checked against the JSON
    assert latest_checkpoint(out) == stems[-1].with_suffix("")
    assert not (out / "model.safetensors").exists() and not (out / "model.json").exists()


@pytest.mark.slow
def test_sigkill_leaves_complete_checkpoints_and_resume_matches_an_uninterrupted_run(tiny_train_data, tmp_path):
    out = tmp_path / "killed"
    _kill_after_first_checkpoint(tiny_train_data, out)
    _check_only_complete_files(out)
    killed_at = int(latest_checkpoint(out).name.split("_")[1])
    assert 1 <= killed_at < STEPS

    resumed = subprocess.run(_train_command(tiny_train_data, out, resume=True), cwd=PROJECT_ROOT, env=_env(),
                             capture_output=True, text=True, timeout=START_SECONDS)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"at step {killed_at}/{STEPS}" in resumed.stdout

    reference_dir = tmp_path / "uninterrupted"
    train(tiny_train_config(STEPS, *RUN_SETTINGS[len(TINY_TRAIN):]), tiny_train_data, reference_dir)
    reference = load_file(str(reference_dir / "model.safetensors"))
    final = load_file(str(out / "model.safetensors"))
    assert final.keys() == reference.keys()
    for name in reference:
        torch.testing.assert_close(final[name], reference[name], rtol=1e-4, atol=1e-5, msg=name)
    load_model(out / "model")
    earliest = sorted((out / "checkpoints").glob("step_*.json"))[0].with_suffix(".safetensors")
    first = load_file(str(earliest))
    assert any(not torch.equal(first[k], final[k]) for k in final if final[k].is_floating_point())  # it trained


def test_stale_temporary_files_never_count_as_checkpoints(tiny_train_data, tmp_path):
    """What a kill inside a checkpoint write leaves behind (half-written temporary files) is never resumed from."""
    out = tmp_path / "run"
    train(tiny_train_config(2, *RUN_SETTINGS[len(TINY_TRAIN):]), tiny_train_data, out, stop_at_step=1)
    folder = out / "checkpoints"
    whole = (folder / "step_00000001.train.safetensors").read_bytes()
    (folder / ".tmp_step_00000002.train.safetensors").write_bytes(whole[: len(whole) // 2])
    (folder / ".tmp_x1y2").mkdir()
    (folder / ".tmp_x1y2" / "step_00000002.safetensors").write_bytes(b"\0" * 100)
    (folder / "step_00000002.train.safetensors").write_bytes(whole)  # renamed, but weights and JSON never came
    assert latest_checkpoint(out).name == "step_00000001"
    summary = train(tiny_train_config(2, *RUN_SETTINGS[len(TINY_TRAIN):]), tiny_train_data, out, resume=True)
    assert summary["finished"] and (out / "model.safetensors").is_file()
    load_model(out / "model")
