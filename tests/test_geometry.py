"""Head-pose convention and pose bins."""

from __future__ import annotations

import numpy as np
import pytest

from pose3dfr.geometry import euler_angles, pose_bin, pose_bin_labels, rotation_matrix


@pytest.mark.parametrize("yaw,pitch,roll", [(0, 0, 0), (37, -12, 8), (-89, 20, -30), (120, 5, 3)])
def test_euler_round_trip(yaw, pitch, roll):
    assert np.allclose(euler_angles(rotation_matrix(yaw, pitch, roll)), (yaw, pitch, roll), atol=1e-9)


def test_sign_convention():
    forward = np.array([0.0, 0.0, 1.0])  # out of the face
    assert (rotation_matrix(30) @ forward)[0] > 0  # yaw > 0: towards the image right
    assert (rotation_matrix(0, 20) @ forward)[1] > 0  # pitch > 0: looks up
    assert (rotation_matrix(0, 0, 20) @ np.array([1.0, 0, 0]))[1] > 0  # roll > 0: counter-clockwise


def test_pose_bins():
    assert pose_bin_labels() == ["[0,30)", "[30,60)", "[60,90)", "[90,+)"]
    assert [pose_bin(y) for y in (0, -29.9, 30, 59, -60, 89.9, 90, -135)] == [
        "[0,30)", "[0,30)", "[30,60)", "[30,60)", "[60,90)", "[60,90)", "[90,+)", "[90,+)"]
