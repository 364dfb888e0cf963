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
def synth_views():
    """Identity 38 of the synthetic benchmark (seed 0; a test-split identity, never trained on) rendered at a few
    yaws: {yaw: (256 x 256 x 3 uint8 RGB, 468 x 3 landmarks x, y, visible)}, plus "other": identity 39 frontal.
    Renders need no files (pose3dfr.data.synthetic.render_identity_view)."""
    from pose3dfr.data.synthetic import render_identity_view

    views = {yaw: render_identity_view(38, float(yaw)) for yaw in (0, 45, 75, 90, -90)}
    views["other"] = render_identity_view(39, 0.0)
    return views
