"""Shared test setup: small thread counts (CI has 2 cores) and paths to shipped files."""

from __future__ import annotations

import os
import socket

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
