"""Exception types a user of pose3dfr can catch; each message says what was wrong and with which input."""

from __future__ import annotations


class Pose3DFRError(ValueError):
    """Base class of every error pose3dfr raises on bad input (a ValueError, so generic handlers work)."""


class InvalidImageError(Pose3DFRError):
    """The input is not a readable image (wrong type, corrupt, truncated, empty)."""


class ImageTooLargeError(InvalidImageError):
    """The image has more pixels than the configured limit (decompression-bomb guard)."""


class NoFaceError(Pose3DFRError):
    """No face was found in the image."""


class FaceTooSmallError(Pose3DFRError):
    """A face was found but is too small to recognise reliably."""


class InvalidScanError(Pose3DFRError):
    """A 3D scan is not readable, empty, degenerate, all NaN or over the point limit."""


class CheckpointError(Pose3DFRError):
    """A checkpoint is missing, truncated, tampered with (sha256 mismatch) or inconsistent with its config."""


class DatasetError(Pose3DFRError):
    """A data set on disk does not follow its layout (missing params.json, unreadable file, ...)."""


class GalleryError(Pose3DFRError):
    """A 1:N gallery is missing, corrupt or truncated, or was built with another checkpoint than the one in use."""


class OnnxModelError(Pose3DFRError):
    """An exported ONNX embedding network is missing, corrupt, or was exported from another checkpoint."""


class TimeLimitError(Pose3DFRError):
    """A request ran past its time budget (pose3dfr.deadline) and was stopped between two steps."""
