"""Real-photo inference: safe image loading, detection + landmarks + head pose, alignment, the Verifier.

Import the parts from their modules (e.g. `from pose3dfr.inference.verifier import Verifier`); the
names below are resolved lazily so importing this package stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "load_image": "pose3dfr.inference.image_io",
    "align_face": "pose3dfr.inference.align",
    "FaceAnalyzer": "pose3dfr.inference.detect",
    "head_pose": "pose3dfr.inference.pose",
    "Verifier": "pose3dfr.inference.verifier",
    "VerifyResult": "pose3dfr.inference.verifier",
    "FaceResult": "pose3dfr.inference.verifier",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
