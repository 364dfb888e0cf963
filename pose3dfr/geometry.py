"""Head-pose conventions shared by the renderer, the loaders, the landmark pipeline and the evaluation.

Frames: the canonical face frame is MediaPipe's canonical mesh frame (cm; x towards the image right,
i.e. the subject's left, y up, z out of the face towards the viewer). Cameras use the OpenGL
convention (x right, y up, looking down -z). A head pose is the rotation R taking canonical face
coordinates to camera coordinates, R = Ry(yaw) @ Rx(-pitch) @ Rz(roll), angles in degrees:
  yaw   > 0: the face turns towards the image right (the subject's own left); |yaw| = 90 is profile.
  pitch > 0: the face looks up.
  roll  > 0: the face rotates counter-clockwise in the image.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

# Protocol of paper.md: probes binned by |yaw| into [0,30), [30,60), [60,90), [90,+).
POSE_BIN_EDGES: tuple[float, ...] = (0.0, 30.0, 60.0, 90.0)
# Gallery images of the protocol are frontal: |yaw| below this.
FRONTAL_MAX_YAW: float = 15.0

# OpenCV camera (x right, y down, z forward) to OpenGL camera (x right, y up, z backward).
CV_TO_GL = np.diag([1.0, -1.0, -1.0])


def _rx(deg: float) -> np.ndarray:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]], dtype=np.float64)


def _ry(deg: float) -> np.ndarray:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]], dtype=np.float64)


def _rz(deg: float) -> np.ndarray:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]], dtype=np.float64)


def rotation_matrix(yaw: float, pitch: float = 0.0, roll: float = 0.0) -> np.ndarray:
    """3x3 rotation taking canonical face coordinates to (OpenGL) camera coordinates."""
    return _ry(yaw) @ _rx(-pitch) @ _rz(roll)


def euler_angles(rotation: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees of a face-to-camera rotation; inverse of `rotation_matrix`."""
    r = np.asarray(rotation, dtype=np.float64)[:3, :3]
    yaw = math.degrees(math.atan2(r[0, 2], r[2, 2]))
    pitch = math.degrees(math.asin(float(np.clip(r[1, 2], -1.0, 1.0))))
    roll = math.degrees(math.atan2(r[1, 0], r[1, 1]))
    return yaw, pitch, roll


def pose_bin_labels(edges: Sequence[float] = POSE_BIN_EDGES) -> list[str]:
    """Labels of the |yaw| bins, e.g. ['[0,30)', '[30,60)', '[60,90)', '[90,+)']."""
    e = [_fmt(x) for x in edges]
    return [f"[{a},{b})" for a, b in zip(e[:-1], e[1:])] + [f"[{e[-1]},+)"]


def pose_bin(yaw: float, edges: Sequence[float] = POSE_BIN_EDGES) -> str:
    """Label of the |yaw| bin a face at this yaw (degrees) falls in."""
    index = int(np.searchsorted(np.asarray(edges, dtype=np.float64), abs(float(yaw)), side="right")) - 1
    return pose_bin_labels(edges)[max(index, 0)]


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)
