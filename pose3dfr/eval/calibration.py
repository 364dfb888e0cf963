"""The calibration format: decision thresholds per FAR (overall and per |yaw| bin), what they were measured
on, and the TARs recorded beside them. The one module that writes and reads it, wherever it is stored: a
checkpoint JSON's extra["calibration"] (written by training and `pose3dfr publish`) or a `pose3dfr calibrate`
file such as checkpoints/dlib-pretrained.calibration.json.

    {"far": {"1e-2": {"overall": t, "bins": {"[0,30)": t, ...},
                      "yaw_curve": {"yaw": [0, 15, ...], "threshold": [t, ...]}}, ...}, "metric": "cosine",
     "accept": "score >= threshold", "calibrated_on": "synthetic validation renders",
     "real_photos": {"threshold": t, "far": 0.01, "bins": ["[0,30)"], "source": "..."}, ...}

"yaw_curve" (optional) holds thresholds measured per |yaw| group (pose3dfr.eval.protocol.yaw_thresholds); a
probe's threshold is the curve interpolated at its estimated |yaw| (curve_threshold), so the decision does not
jump at a bin edge that the pose estimate straddles. Without a curve the probe's bin threshold applies.

"real_photos" is a threshold with real-photo evidence (read as a RealPhotoRule): a pretrained network's
published operating point at every yaw ("scope": "all"; SFace's cosine 0.363, dlib's distance 0.6), the pairs a
frontal-teacher model scores with that network ("route": "teacher"), or probes in listed bins ("bins", an older
form). "far" is the false accept rate measured on real photos at that threshold, or null for a published
operating point whose rate is not stated. Which threshold a pair gets is pose3dfr.eval.thresholds' policy.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from pose3dfr.errors import CheckpointError
from pose3dfr.eval.metrics import far_key
from pose3dfr.paths import CHECKPOINTS_DIR

# The default operating point: TAR @ 1% FAR is the paper's headline.
DEFAULT_FAR = 0.01
# What the UI and API say thresholds measured on the synthetic benchmark were calibrated on.
CALIBRATED_ON_SYNTHETIC = "synthetic validation renders"
# dlib's published rule for its face descriptor on real photos (dlib.net, face_recognition's tolerance): same
# person when the Euclidean distance is < 0.6 (99.38% accuracy on LFW). As a cosine of unit vectors, at the
# descriptor's mean norm on real photos' aligned chips (1.38-1.47 on the shipped photos; docs/inference.md).
DLIB_DISTANCE_THRESHOLD = 0.6
DLIB_DESCRIPTOR_NORM = 1.41
DLIB_RULE_COSINE = 1.0 - DLIB_DISTANCE_THRESHOLD ** 2 / (2.0 * DLIB_DESCRIPTOR_NORM ** 2)
DLIB_RULE_SOURCE = "dlib's published rule for real photos (Euclidean distance < 0.6, 99.38% on LFW)"
# OpenCV Zoo's published operating point for SFace (face_recognition_sface_2021dec): same person when the cosine
# of the two 128-D features is >= 0.363 (or their L2 distance <= 1.128), chosen on LFW; no FAR is stated upstream.
SFACE_RULE_COSINE = 0.363
SFACE_RULE_SOURCE = "OpenCV Zoo's published SFace operating point for real photos (cosine >= 0.363, chosen on LFW)"
# Published real-photo operating points of the pretrained backbones, used unchanged: (cosine, source).
PUBLISHED_RULES: dict[str, tuple[float, str]] = {
    "dlib_resnet": (DLIB_RULE_COSINE, DLIB_RULE_SOURCE),
    "sface": (SFACE_RULE_COSINE, SFACE_RULE_SOURCE),
}
RULE_SCOPES = ("all", "teacher", "bins")


@dataclass(frozen=True)
class RealPhotoRule:
    """A threshold with real-photo evidence (the calibration's "real_photos" entry), typed."""

    threshold: float
    source: str
    far: float | None  # the FAR measured on real photos at `threshold`; None: a published point, rate not stated
    scope: str = "all"  # "all" (every pair), "teacher" (pairs a frontal teacher scores), "bins" (probes in `bins`)
    bins: tuple[str, ...] = ()

    def covers(self, pose_bin: str | None, teacher_scored: bool | None) -> bool:
        """Whether the rule decides a pair whose probe is in `pose_bin` (None: unknown) and which the teacher of a
        frontal-teacher model does (True) or does not (False) score."""
        if self.scope == "teacher":
            return bool(teacher_scored)
        if self.scope == "bins":
            return pose_bin is not None and pose_bin in self.bins
        return True


# ----------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------

def calibration_from_results(results: dict[str, Any]) -> dict[str, Any]:
    """The thresholds of protocol results (pose3dfr.eval.protocol): {"far": {"1e-2": {"overall", "bins"}}}."""
    calibration: dict[str, Any] = {"far": {}, "metric": "cosine", "accept": "score >= threshold"}
    for far in results["protocol"]["fars"]:
        key = f"threshold_at_far_{far_key(far)}"
        calibration["far"][far_key(far)] = {
            "overall": results["overall"][key],
            "bins": {label: metrics[key] for label, metrics in results["bins"].items()},
        }
        curve = (results.get("yaw_thresholds") or {}).get(far_key(far))
        if curve and curve.get("yaw"):
            calibration["far"][far_key(far)]["yaw_curve"] = {"yaw": list(curve["yaw"]),
                                                              "threshold": list(curve["threshold"])}
    return calibration


def calibration_record(results: dict[str, Any], *, synthetic: bool, align: str, split: str,
                       command: str = "") -> dict[str, Any]:
    """The content of a `pose3dfr calibrate` file: the results' thresholds, what they were measured on and how."""
    calibration = dict(results["calibration"])
    calibration.update(calibrated_on=CALIBRATED_ON_SYNTHETIC if synthetic else f"the {split} split", align=align,
                       split=split, identities=results["protocol"]["identities"],
                       images=results["protocol"]["images"], command=command)
    if "face_found" in results:
        calibration["face_found"] = results["face_found"]
    return {"calibration": calibration, "overall": results["overall"], "bins": results["bins"]}


def published_real_photo_rule(backbone: str) -> dict[str, Any] | None:
    """The "real_photos" entry of a pretrained backbone's published operating point (every yaw, rate not stated),
    or None for a backbone without one."""
    if backbone not in PUBLISHED_RULES:
        return None
    threshold, source = PUBLISHED_RULES[backbone]
    return {"threshold": threshold, "far": None, "scope": "all", "source": source}


def teacher_real_photo_rule(routing: Any) -> dict[str, Any]:
    """The "real_photos" entry of a frontal-teacher model whose teacher is dlib's network: the rule holds for
    every pair the teacher scores (all below the route yaw, so inside the near-frontal range it covers), at
    dlib's cosine mapped onto the routed scale (`routing`: pose3dfr.models.frontal_gate.Routing)."""
    return {"threshold": routing.teacher_score(DLIB_RULE_COSINE), "far": None, "route": "teacher",
            "teacher_cosine": DLIB_RULE_COSINE, "source": DLIB_RULE_SOURCE}


def trained_network_bin(pose_bin: str, route_yaw: float) -> str:
    """The bin whose calibrated threshold a trained-network pair of a frontal-teacher model uses: its own, unless
    the teacher scores that bin's calibration probes (its lower edge is below route_yaw); then the first bin
    the trained network scores."""
    from pose3dfr.geometry import POSE_BIN_EDGES, pose_bin_labels

    labels = pose_bin_labels()
    if pose_bin not in labels or POSE_BIN_EDGES[labels.index(pose_bin)] >= route_yaw:
        return pose_bin
    return next((label for label, lower in zip(labels, POSE_BIN_EDGES) if lower >= route_yaw), labels[-1])


def write_calibration_file(path: str | Path, record: dict[str, Any]) -> Path:
    """Write a calibration_record as JSON."""
    path = Path(path)
    path.write_text(json.dumps(record, indent=1) + "\n")
    return path


# ----------------------------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------------------------

def read_calibration_file(path: str | Path) -> dict[str, Any] | None:
    """The "calibration" object of a `pose3dfr calibrate` file, or None when the file does not exist."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        calibration = json.loads(path.read_text()).get("calibration")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError) as exc:
        raise CheckpointError(f"{path.name}: unreadable calibration file ({exc})") from None
    if not isinstance(calibration, dict) or not isinstance(calibration.get("far"), dict):
        raise CheckpointError(f"{path.name}: expected {{\"calibration\": {{\"far\": ...}}}}")
    return calibration


def checkpoint_calibration(meta: Mapping[str, Any]) -> dict[str, Any] | None:
    """A checkpoint's calibration: its JSON's extra["calibration"], else the `pose3dfr calibrate` file in
    checkpoints/ that extra["calibration_file"] names (dlib's pretrained network has no JSON of its own);
    None when it has neither."""
    extra = meta.get("extra") or {}
    if isinstance(extra.get("calibration"), Mapping):
        return dict(extra["calibration"])
    if isinstance(extra.get("calibration_file"), str):
        return read_calibration_file(CHECKPOINTS_DIR / Path(extra["calibration_file"]).name)
    return None


def threshold_table(calibration: Any, pose_bin: str | None = None) -> dict[float, float]:
    """{far: threshold} of a calibration; with `pose_bin`, that bin's threshold where it was measured, else the
    overall one. Malformed or non-finite entries are skipped."""
    table: dict[float, float] = {}
    per_far = calibration.get("far") if isinstance(calibration, Mapping) else None
    for key, entry in (per_far.items() if isinstance(per_far, Mapping) else []):
        if isinstance(entry, Mapping):
            measured = (entry.get("bins") or {}).get(pose_bin) if pose_bin is not None else None
            value = measured if measured is not None else entry.get("overall")
        else:
            value = entry
        try:
            far, threshold = float(key), float(value)
        except (TypeError, ValueError):
            continue
        if 0.0 < far < 1.0 and math.isfinite(threshold):
            table[far] = threshold
    return table


def curve_threshold(calibration: Any, far: float, abs_yaw: float, min_yaw: float | None = None
                    ) -> tuple[float, str] | None:
    """(threshold, how it was found) from the calibration's yaw curve at `far` (a calibrated FAR), interpolated
    linearly at `abs_yaw` and constant beyond the first and last points; None without a usable curve. `min_yaw`:
    only points at or above it (a frontal-teacher model's trained network: the teacher scored the points below)."""
    per_far = calibration.get("far") if isinstance(calibration, Mapping) else None
    entry = per_far.get(far_key(far)) if isinstance(per_far, Mapping) else None
    curve = entry.get("yaw_curve") if isinstance(entry, Mapping) else None
    if not isinstance(curve, Mapping) or not math.isfinite(float(abs_yaw)):
        return None
    try:
        points = sorted((float(y), float(t)) for y, t in zip(curve["yaw"], curve["threshold"]))
    except (KeyError, TypeError, ValueError):
        return None
    points = [(y, t) for y, t in points if math.isfinite(y) and math.isfinite(t)
              and (min_yaw is None or y >= min_yaw)]
    if not points:
        return None
    yaws, thresholds = zip(*points)
    yaw = abs(float(abs_yaw))
    value = float(np.interp(yaw, yaws, thresholds))
    below = max((y for y in yaws if y <= yaw), default=None)
    above = min((y for y in yaws if y >= yaw), default=None)
    if below is None or above is None or below == above:
        where = f"the threshold measured at |yaw| {_deg(below if below is not None else above)}"
    else:
        where = f"interpolated at |yaw| {_deg(yaw)} between the thresholds at {_deg(below)} and {_deg(above)}"
    return value, where


def _deg(value: float) -> str:
    return f"{value:.0f} deg"


def read_real_photo_rule(calibration: Any) -> RealPhotoRule | None:
    """The calibration's "real_photos" entry as a RealPhotoRule, or None when it has none (or a malformed one).

    Entries written before the scope field: "route": "teacher" -> scope "teacher"; "bins" -> scope "bins"; the
    "far" they record (0.01) was the FAR the rule was offered at, not a rate measured on real photos."""
    rule = calibration.get("real_photos") if isinstance(calibration, Mapping) else None
    if not isinstance(rule, Mapping):
        return None
    scope = "teacher" if rule.get("route") == "teacher" else str(rule.get("scope") or ("bins" if "bins" in rule
                                                                                          else "all"))
    try:
        threshold = float(rule["threshold"])
        far = None if rule.get("far") is None or "scope" not in rule else float(rule["far"])
    except (KeyError, TypeError, ValueError):
        return None
    if scope not in RULE_SCOPES or not math.isfinite(threshold) or (far is not None and not 0.0 < far < 1.0):
        return None
    bins = tuple(str(b) for b in rule.get("bins") or ())
    return RealPhotoRule(threshold, str(rule.get("source") or "real photos"), far, scope, bins)


def calibrated_on(meta: Mapping[str, Any], calibration: Mapping[str, Any]) -> str:
    """What a checkpoint's thresholds were measured on, in words (for the UI and API)."""
    if isinstance(calibration.get("calibrated_on"), str):
        return calibration["calibrated_on"]
    data = (meta.get("extra") or {}).get("data")
    synthetic = isinstance(data, Mapping) and "synthetic" in str(data.get("generator", ""))
    return CALIBRATED_ON_SYNTHETIC if synthetic else "the checkpoint's validation split"


def recorded_tar(meta: Mapping[str, Any], pose_bin: str, far: float) -> float | None:
    """TAR at `far` for probes in `pose_bin` as the checkpoint's JSON records it: held-out test results
    (`pose3dfr publish`), else the last validation of training; None when not recorded."""
    extra = meta.get("extra") or {}
    for source in ("test_results", "validation"):
        value = ((extra.get(source) or {}).get("bins") or {}).get(pose_bin, {}).get(f"tar_at_far_{far_key(far)}")
        if isinstance(value, (int, float)):
            return float(value)
    return None
