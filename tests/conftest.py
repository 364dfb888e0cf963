"""Shared test setup: small thread counts (CI has 2 cores), paths to shipped files, and the session-wide
fixtures several test modules use (a tiny synthetic benchmark, a tiny training run, one running app that every
end-to-end app test shares, since each start costs half a minute of the suite's time)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import torch  # noqa: E402

# 2 cores: one pytest process uses both; under xdist (scripts/test.sh runs 2 workers) each worker uses one, since
# two processes of 2 torch threads on 2 cores slow each other down far more than they gain.
torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else 2)

from pose3dfr.paths import ASSETS_DIR, PHOTOS_DIR, PROJECT_ROOT  # noqa: E402


@pytest.fixture(scope="session")
def photos_dir():
    return PHOTOS_DIR


@pytest.fixture(scope="session")
def project_root():
    return PROJECT_ROOT


@pytest.fixture(scope="session")
def assets_dir():
    return ASSETS_DIR


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Seconds the app may take to answer its first page (gradio import, UI build, example renders).
SERVER_START_SECONDS = 90


@contextlib.contextmanager
def running_app(project_root: Path, cache_dir: Path, start_seconds: float = SERVER_START_SECONDS,
                extra_args: tuple[str, ...] = (), extra_env: dict[str, str] | None = None) -> Iterator[str]:
    """URL of the app started as `python app.py` on a free loopback port; stopped afterwards.

    POSE3DFR_TEST_APP_URL, when set, points the tests at an app that is already running instead."""
    if os.environ.get("POSE3DFR_TEST_APP_URL"):
        yield os.environ["POSE3DFR_TEST_APP_URL"].rstrip("/") + "/"
        return
    with app_process(project_root, cache_dir, start_seconds, extra_args, extra_env) as (url, _):
        yield url


@contextlib.contextmanager
def app_process(project_root: Path, cache_dir: Path, start_seconds: float = SERVER_START_SECONDS,
                extra_args: tuple[str, ...] = (), extra_env: dict[str, str] | None = None
                ) -> Iterator[tuple[str, subprocess.Popen]]:
    """(URL, process) of `python app.py` started on a free loopback port (for tests that watch the process
    itself, e.g. that it never dies); stopped afterwards. Each app gets its own upload folder (GRADIO_TEMP_DIR,
    unless `extra_env` names one): the app sweeps its whole folder, so apps must not share one."""
    port = free_port()
    env = {**os.environ, "GRADIO_SERVER_PORT": str(port), "POSE3DFR_CACHE_DIR": str(cache_dir),
           "GRADIO_TEMP_DIR": str(cache_dir / "gradio-uploads"), **(extra_env or {})}
    env.pop("SPACE_ID", None)
    log_path = cache_dir / "server.log"
    cache_dir.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "app.py", *extra_args], cwd=project_root, env=env, stdout=log,
                                stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.time() + start_seconds
        while True:
            try:
                with urllib.request.urlopen(url, timeout=5) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            assert proc.poll() is None, f"app exited early:\n{log_path.read_text()}"
            assert time.time() < deadline, f"app did not answer within {start_seconds} s"
            time.sleep(0.5)
        yield url, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


@dataclass(frozen=True)
class AppServer:
    """The shared app: its URL, its process (None when POSE3DFR_TEST_APP_URL names an external app) and the
    folder where Gradio stores its uploads (GRADIO_TEMP_DIR)."""

    url: str
    process: subprocess.Popen | None
    upload_dir: Path

    def alive(self) -> bool:
        return self.process is None or self.process.poll() is None


# Start-up allowance of the shared app on a shared, busy 2-core CPU: the tests are about serving, not start-up.
SHARED_APP_START_SECONDS = 300


@pytest.fixture(scope="session")
def shared_app(project_root, tmp_path_factory) -> Iterator[AppServer]:
    """`python app.py` (not --public) started once for the session; tests must leave it serving."""
    upload_dir = tmp_path_factory.mktemp("app-uploads")
    if os.environ.get("POSE3DFR_TEST_APP_URL"):
        yield AppServer(os.environ["POSE3DFR_TEST_APP_URL"].rstrip("/") + "/", None, upload_dir)
        return
    with app_process(project_root, tmp_path_factory.mktemp("app-cache"), SHARED_APP_START_SECONDS,
                     extra_env={"GRADIO_TEMP_DIR": str(upload_dir)}) as (url, proc):  # where the server stores uploads
        yield AppServer(url, proc, upload_dir)


@pytest.fixture(scope="session")
def default_verifier():
    """The shipped `default` checkpoint's Verifier (torch backend), loaded once."""
    from pose3dfr.inference.verifier import Verifier

    return Verifier.from_pretrained("default")


@pytest.fixture(scope="session")
def small_3d_checkpoint(tmp_path_factory):
    """A small untrained model with a 3D branch (112 px arcface template), saved with a calibration: the stem."""
    from pose3dfr.models import create_model, save_model

    model = create_model("mobilefacenet-fast", num_points=256, sa1_centres=64, sa2_centres=16)
    calibration = {"far": {"1e-2": {"overall": 0.42, "bins": {"[0,30)": 0.40, "[30,60)": None}},
                           "1e-3": {"overall": 0.61, "bins": {}}}, "metric": "cosine"}
    stem = tmp_path_factory.mktemp("ckpt") / "tiny"
    save_model(model, stem, extra={"calibration": calibration})
    return stem


@pytest.fixture(scope="session")
def one_identity_benchmark(tmp_path_factory) -> Path:
    """Root of a synthetic benchmark of identity 1 only, one expression, yaw -90, 0, 90, 256 px renders."""
    from pose3dfr.data.synthetic import SynthConfig, generate_benchmark

    root = tmp_path_factory.mktemp("one_identity") / "synth"
    generate_benchmark(root, SynthConfig(identities=1, expressions=1, yaw_step=90.0, image_size=256, points=8192))
    return root


@pytest.fixture(scope="session")
def sink_attention_model():
    """Pretrained SFace with a joint attention that has an attention sink, as the dlib-based default learned one:
    every query looks at the cell of least activation (query bias only, key = minus the channel mean), and the
    paper's zero-value start (V = 0, gamma = 1) leaves the embedding SFace's. The attention received shows the
    sink; the embedding does not come from it."""
    from pose3dfr.models import create_model
    from pose3dfr.models.sface import SFACE_WEIGHTS

    model = create_model("jam", backbone="sface", backbone_weights=str(SFACE_WEIGHTS), use_3d=False, use_je=False,
                         num_classes=2, jam_gamma_init=1.0, jam_zero_value=True, flip_average=False,
                         alignment="keypoints").eval()
    attention, channels = model.attention, model.backbone.feature_channels
    with torch.no_grad():
        attention.query["shared"].weight.zero_()
        attention.query["shared"].bias.fill_(1.0)
        attention.key["shared"].weight.fill_(-20.0 / channels)  # energy_ij = -20 sqrt(d) mean_c z_cj: least active j
        attention.key["shared"].bias.zero_()
    return model


@pytest.fixture(scope="session")
def people_folder(tmp_path_factory, photos_dir):
    """A tiny <identity>/<photo> folder from the shipped photos, with a faceless photo and an empty identity."""
    import shutil

    import numpy as np
    from PIL import Image

    root = tmp_path_factory.mktemp("people")
    layout = {"obama": ["obama.jpg", "obama2.jpg"], "biden": ["biden.jpg"], "collins": ["astronaut.png"]}
    for name, files in layout.items():
        (root / name).mkdir()
        for file in files:
            shutil.copy(photos_dir / file, root / name / file)
    (root / "blank").mkdir()
    Image.fromarray(np.full((200, 200, 3), 128, np.uint8)).save(root / "blank" / "grey.png")
    (root / "empty").mkdir()
    return root


@pytest.fixture(scope="session")
def onnx_export(tmp_path_factory):
    """`pose3dfr export --checkpoint default --onnx ...` run once: the .onnx path (its .json beside it)."""
    from pose3dfr.cli import main

    out = tmp_path_factory.mktemp("onnx") / "default.onnx"
    assert main(["export", "--checkpoint", "default", "--onnx", str(out)]) == 0
    return out


@pytest.fixture(scope="session")
def synth_views():
    """Identity 38 of the synthetic benchmark (seed 0; a test-split identity, never trained on) rendered at a few
    yaws: {yaw: (256 x 256 x 3 uint8 RGB, 468 x 3 landmarks x, y, visible)}, plus "other": identity 39 frontal.
    Renders need no files (pose3dfr.data.synthetic.render_identity_view)."""
    from pose3dfr.data.synthetic import render_identity_view

    views = {yaw: render_identity_view(38, float(yaw)) for yaw in (0, 45, 75, 90, -90)}
    views["other"] = render_identity_view(39, 0.0)
    return views


# ----------------------------------------------------------------------------------------------
# A tiny synthetic benchmark and a tiny training run on it (evaluation, training, publishing tests)
# ----------------------------------------------------------------------------------------------

# Smallest useful training run: batch 2, 128 points, no TensorBoard (`--set` items of `pose3dfr train`).
TINY_TRAIN = ["batch_size=2", "model_overrides.num_points=128", "model_overrides.sa1_centres=32",
              "model_overrides.sa2_centres=8", "model_overrides.point_group_size=8", "tensorboard=false"]


def make_tiny_benchmark(root: Path, expressions: int = 2) -> Path:
    """8 identities (4 train, 2 val, 2 test) x expressions x yaw -90..90 in steps of 45, 64 px images."""
    from pose3dfr.data.synthetic import SynthConfig, generate_benchmark

    config = SynthConfig(identities=8, expressions=expressions, yaw_step=45.0, image_size=64, points=512,
                         texture_size=128, split_fractions=(0.5, 0.25, 0.25))
    return generate_benchmark(root, config).parent


def tiny_train_config(steps: int = 4, *extra: str):
    """The `fast` preset with TINY_TRAIN and `extra` set items, for `steps` steps."""
    from pose3dfr.engine.config import build_train_config

    return build_train_config("fast", set_items=[*TINY_TRAIN, *extra], steps=steps)


@pytest.fixture(scope="session")
def tiny_benchmark(tmp_path_factory) -> Path:
    """make_tiny_benchmark with 2 expressions (point clouds pair across expressions)."""
    return make_tiny_benchmark(tmp_path_factory.mktemp("tiny_benchmark") / "synth")


@pytest.fixture(scope="session")
def tiny_train_data(tmp_path_factory) -> Path:
    """make_tiny_benchmark with 1 expression: 4 train identities x 5 yaws (-90, -45, 0, 45, 90)."""
    return make_tiny_benchmark(tmp_path_factory.mktemp("tiny_train_data") / "synth", expressions=1)


@pytest.fixture(scope="session")
def tiny_train_run(tiny_train_data, tmp_path_factory) -> Path:
    """Run folder of a finished 4-step tiny run (checkpoints at steps 2 and 4); tests must not modify it."""
    from pose3dfr.engine.train import train

    out = tmp_path_factory.mktemp("tiny_train_run")
    train(tiny_train_config(4, "checkpoint_interval=2"), tiny_train_data, out)
    return out
