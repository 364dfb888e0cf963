"""Alignment of MediaPipe-indexed landmarks onto the backbone templates."""

from __future__ import annotations

import numpy as np
import pytest

from pose3dfr.data.mesh import load_canonical_mesh
from pose3dfr.geometry import rotation_matrix
from pose3dfr.inference.align import (TEMPLATES, align_face, alignment_matrix, choose_mode, similarity_transform,
                                      template_points, transform_points)


def _projected(yaw: float, scale: float = 10.0, shift=(300.0, 250.0)) -> np.ndarray:
    """Canonical mesh turned by `yaw`, orthographically projected to image pixels (y down)."""
    v = load_canonical_mesh().vertices @ rotation_matrix(yaw).T
    return np.stack([v[:, 0] * scale + shift[0], -v[:, 1] * scale + shift[1]], axis=1)


def test_similarity_transform_recovers_known_transform():
    rng = np.random.default_rng(0)
    src = rng.normal(size=(5, 2)) * 20
    angle, scale, t = 0.3, 1.7, np.array([5.0, -3.0])
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    dst = src @ (scale * rot).T + t
    m = similarity_transform(src, dst)
    assert np.allclose(transform_points(src, m), dst, atol=1e-9)


@pytest.mark.parametrize("template", ["arcface", "dlib"])
def test_frontal_five_points_land_on_template(template):
    lm = _projected(0)
    m, mode = alignment_matrix(lm, template)
    assert mode == "five_point"
    err = np.abs(transform_points(template_points(lm, template), m) - TEMPLATES[template].points).max()
    assert err < 4.0  # the canonical face is not the template's mean face, but close to it


def test_auto_switches_to_box_at_large_yaw():
    assert choose_mode(_projected(0)) == "five_point"
    assert choose_mode(_projected(30)) == "five_point"
    assert choose_mode(_projected(60)) == "box"
    assert choose_mode(_projected(-90)) == "box"


def test_box_and_five_point_agree_in_scale_at_frontal():
    lm = _projected(0)
    five, _ = alignment_matrix(lm, "arcface", mode="five_point")
    box, _ = alignment_matrix(lm, "arcface", mode="box")
    a, b = transform_points(lm, five), transform_points(lm, box)
    assert np.abs(np.ptp(a, 0) - np.ptp(b, 0)).max() < 1.0
    assert np.abs(a.mean(0) - b.mean(0)).max() < 2.0


def test_align_face_outputs_chip_and_none_mode_resizes():
    image = np.random.default_rng(0).integers(0, 255, (500, 600, 3), dtype=np.uint8)
    chip = align_face(image, _projected(75), "arcface")
    assert chip.image.shape == (112, 112, 3) and chip.mode == "box"
    whole = align_face(image, None, "dlib")
    assert whole.image.shape == (150, 150, 3) and whole.mode == "none"
