"""Shared test setup: small thread counts (CI has 2 cores) and paths to shipped files."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import torch  # noqa: E402

torch.set_num_threads(2)

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
                extra_args: tuple[str, ...] = ()) -> Iterator[str]:
    """URL of the app started as `python app.py` on a free loopback port; stopped afterwards.

    POSE3DFR_TEST_APP_URL, when set, points the tests at an app that is already running instead."""
    if os.environ.get("POSE3DFR_TEST_APP_URL"):
        yield os.environ["POSE3DFR_TEST_APP_URL"].rstrip("/") + "/"
        return
    port = free_port()
    env = {**os.environ, "GRADIO_SERVER_PORT": str(port), "POSE3DFR_CACHE_DIR": str(cache_dir)}
    env.pop("SPACE_ID", None)
    log_path = cache_dir / "server.log"
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
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="session")
def default_verifier():
    """The shipped `default` checkpoint's Verifier (torch backend), loaded once."""
    from pose3dfr.inference.verifier import Verifier

    return Verifier.from_pretrained("default")


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
