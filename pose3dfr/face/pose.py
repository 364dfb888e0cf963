"""Head pose of a photographed face from MediaPipe's facial transformation matrix (thin layer over geometry).

MediaPipe's 4 x 4 matrix maps canonical face model coordinates (cm) to its metric camera frame, which
is an OpenGL camera (x right, y up, looking down -z: faces sit at negative z). That is the frame
pair `pose3dfr.geometry` is defined on, so its rotation part goes straight into
`geometry.euler_angles` with no sign change. Checked on the shipped photos: the nose tip lies to
the image right of the eye centre exactly when yaw > 0, and mirroring a photo flips the sign of yaw
and roll while keeping pitch (tests/test_detect.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pose3dfr.geometry import euler_angles, pose_bin
from pose3dfr.errors import Pose3DFRError


@dataclass(frozen=True)
class HeadPose:
    """Yaw, pitch, roll in degrees (pose3dfr.geometry convention) and the |yaw| bin label."""

    yaw: float
    pitch: float
    roll: float
    bin: str


def rotation_from_transform(matrix: np.ndarray) -> np.ndarray:
    """The nearest proper rotation (3 x 3) to the upper-left block of a 4 x 4 (or 3 x 3) pose matrix.

    MediaPipe's matrix may carry a small scale; SVD orthonormalisation removes it.
    """
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape not in ((4, 4), (3, 3)) or not np.isfinite(m).all():
        raise Pose3DFRError(f"expected a finite 4 x 4 or 3 x 3 transformation matrix, got shape {m.shape}")
    u, _, vt = np.linalg.svd(m[:3, :3])
    r = u @ vt
    if np.linalg.det(r) < 0:  # a reflection is never a head pose; flip the weakest axis
        u[:, -1] *= -1
        r = u @ vt
    return r


def head_pose(matrix: np.ndarray) -> HeadPose:
    """Head pose of a face from MediaPipe's facial transformation matrix."""
    yaw, pitch, roll = euler_angles(rotation_from_transform(matrix))
    return HeadPose(yaw=yaw, pitch=pitch, roll=roll, bin=pose_bin(yaw))
