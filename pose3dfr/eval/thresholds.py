"""The threshold policy: which decision threshold a pair gets, what evidence stands behind it, and the pair's
decision (its score on the route the policy took, against that threshold).

One typed object answers for the Verifier, galleries, the app, the CLI and the benchmarks, so the rule is
written once. A frontal-teacher model's route (which network scores the pair, pose3dfr.models.frontal_gate) is
decided here once per pair: the threshold is that route's, and `decide_pair` scores on the same route. Two
populations ask:

- "real" (what a user's photos get): a threshold with real-photo evidence wherever the checkpoint has one (a
  pretrained network's published operating point, such as OpenCV's cosine 0.363 for SFace or dlib's distance
  0.6, or the project's own real-photo measurement), at every yaw and at every FAR asked for; the answer says
  when the FAR asked for was never measured on real photos. Only where no real evidence exists (a network
  fine-tuned on renders) is a render threshold used, and it says so: it is never offered as a real-photo rate.
- "renders" (the synthetic benchmarks): the thresholds measured on validation renders, per |yaw| (the yaw curve
  interpolated at the probe's estimated |yaw|, else its bin's, else the overall one), at the nearest calibrated
  FAR (log scale).

The calibration format itself (thresholds per FAR, yaw curves, the real-photo rule) is read and written by
pose3dfr.eval.calibration only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from pose3dfr.errors import Pose3DFRError
from pose3dfr.eval.calibration import (RealPhotoRule, calibrated_on, checkpoint_calibration, curve_threshold,
                                      published_real_photo_rule, read_real_photo_rule, threshold_table,
                                      trained_network_bin)
from pose3dfr.geometry import pose_bin as yaw_bin
from pose3dfr.models.frontal_gate import Routing, pair_route_yaw, pair_score

EVIDENCE_REAL = "real photos"
EVIDENCE_RENDERS = "synthetic renders"
EVIDENCE_NONE = "none"
POPULATIONS = ("real", "renders")
# A checkpoint with neither calibration nor a published rule: a cosine that chance-level 128-512-D embeddings
# essentially never reach (no evidence; the answer says so).
FALLBACK_COSINE = 0.5
FALLBACK_SOURCE = "no evidence: a fixed cosine fallback (the checkpoint has no calibration and no published rule)"


@dataclass(frozen=True)
class Threshold:
    """A decision threshold (accept when score >= value) and what it rests on."""

    value: float
    far: float  # the FAR this threshold stands for: the one asked, or the nearest calibrated one (renders)
    evidence: str  # what it was measured on: EVIDENCE_REAL, EVIDENCE_RENDERS or EVIDENCE_NONE
    far_measured: bool  # the false accept rate was measured at this threshold on `evidence`'s population
    source: str  # one line for people: where it comes from and what is not measured
    # the pair's route: True when the frontal teacher scores it, False the trained network; None without routing
    teacher: bool | None = None

    @property
    def calibrated(self) -> bool:
        """Whether `far` is a measured rate on the threshold's own evidence."""
        return self.far_measured

    @property
    def real_evidence(self) -> bool:
        return self.evidence == EVIDENCE_REAL


@dataclass(frozen=True)
class PairDecision:
    """One (enrolment, probe) pair decided: its score and the threshold it is held to (accept when score >= value)."""

    score: float
    threshold: Threshold

    @property
    def match(self) -> bool:
        return bool(self.score >= self.threshold.value)


def check_far(far: float) -> float:
    """`far` as a float in (0, 1), else Pose3DFRError (bad arguments fail before any model runs)."""
    try:
        value = float(far)
    except (TypeError, ValueError):
        raise Pose3DFRError(f"far must be a number in (0, 1), got {far!r}") from None
    if not 0.0 < value < 1.0:
        raise Pose3DFRError(f"far must be in (0, 1), got {far}")
    return value


@dataclass(frozen=True)
class ThresholdPolicy:
    """The thresholds of one checkpoint (see the module docstring); `decide` is the whole policy."""

    calibration: Mapping[str, Any] | None = None  # the calibration format (thresholds measured on renders)
    real_rule: RealPhotoRule | None = None
    routing: Routing | None = None  # a frontal-teacher model's routing (pose3dfr.models.frontal_gate)
    per_yaw: bool = True  # hold each probe to its |yaw|'s render threshold (yaw curve, bin), not the overall one
    renders_name: str = "synthetic validation renders"  # what the render thresholds were measured on, in words

    @classmethod
    def for_checkpoint(cls, meta: Mapping[str, Any], routing: Routing | None = None, *, backbone: str | None = None,
                       per_yaw: bool = True) -> "ThresholdPolicy":
        """The policy of a loaded checkpoint: its calibration (JSON or calibration file), its real-photo rule,
        or, for a pretrained network used unchanged (extra["pretrained"]), its backbone's
        published operating point."""
        calibration = checkpoint_calibration(meta)
        rule = read_real_photo_rule(calibration) if calibration else None
        if rule is None and backbone is not None and _unchanged_pretrained(meta):
            rule = read_real_photo_rule({"real_photos": published_real_photo_rule(backbone)})
        name = calibrated_on(meta, calibration) if calibration else "synthetic validation renders"
        return cls(calibration, rule, routing, per_yaw, name)

    def decide(self, far: float, probe_yaw: float | None = None, enroll_yaw: float | None = None, *,
               probe_bin: str | None = None, population: str = "real") -> Threshold:
        """The threshold of one (enrolment, probe) pair at `far` for `population` ("real" or "renders").

        `probe_yaw`: the probe's estimated yaw (None: unknown); `probe_bin` overrides the bin it falls in (a bin
        given without a yaw). `enroll_yaw`: with the probe's, it routes a frontal-teacher model's pair."""
        far = check_far(far)
        if population not in POPULATIONS:
            raise Pose3DFRError(f"population must be one of {POPULATIONS}, got {population!r}")
        pose_bin = probe_bin if probe_bin is not None else (None if _unknown(probe_yaw) else yaw_bin(probe_yaw))
        teacher = None
        if self.routing is not None:
            teacher = bool(self.routing.to_teacher([pair_route_yaw(enroll_yaw, probe_yaw)], 1)[0])
        if population == "real" and self.real_rule is not None and self.real_rule.covers(pose_bin, teacher):
            return self._real(far, pose_bin, teacher)
        rendered = self._renders(far, pose_bin, probe_yaw, teacher, population)
        if rendered is not None:
            return rendered
        if self.real_rule is not None and self.real_rule.covers(pose_bin, teacher):
            return self._real(far, pose_bin, teacher)
        return Threshold(FALLBACK_COSINE, far, EVIDENCE_NONE, False, FALLBACK_SOURCE, teacher)

    def decide_pair(self, far: float, enroll_embedding: np.ndarray, probe_embedding: np.ndarray,
                    enroll_yaw: float | None = None, probe_yaw: float | None = None, *, probe_bin: str | None = None,
                    population: str = "real") -> PairDecision:
        """The decision of one pair of a checkpoint's embeddings (D, or 2D + 1 routed): `decide`'s threshold and
        the pair's score on the route that threshold was decided for (pose3dfr.models.frontal_gate.pair_score)."""
        threshold = self.decide(far, probe_yaw, enroll_yaw, probe_bin=probe_bin, population=population)
        return PairDecision(pair_score(enroll_embedding, probe_embedding, self.routing, threshold.teacher), threshold)

    def real_photo_rule_text(self) -> str | None:
        """One line on the real-photo evidence of this checkpoint, or None when it has none."""
        return None if self.real_rule is None else self.real_rule.source

    # ------------------------------------------------------------------ the two kinds of evidence
    def _real(self, far: float, pose_bin: str | None, teacher: bool | None) -> Threshold:
        rule = self.real_rule  # a "teacher" rule's threshold is stored on the routed scale already
        value = rule.threshold
        measured = rule.far is not None and math.isclose(rule.far, far, rel_tol=1e-6)
        where = {"teacher": ", for pairs the pretrained network scores",
                 "bins": f", for probes in {pose_bin}"}.get(rule.scope, ", at every yaw")
        if measured:
            note = f"; FAR {far:g} measured on real photos"
        elif rule.far is None:
            note = f"; its false accept rate on real photos is not stated upstream nor measured here (asked: {far:g})"
        else:
            note = (f"; no real-photo threshold at FAR {far:g} exists, so the one measured at FAR {rule.far:g} is "
                    "used")
        return Threshold(float(value), far, EVIDENCE_REAL, measured, rule.source + where + note, teacher)

    def _renders(self, far: float, pose_bin: str | None, yaw: float | None, teacher: bool | None,
                 population: str) -> Threshold | None:
        calibration = self.calibration
        if not calibration:
            return None
        if teacher is False and pose_bin is not None and self.routing is not None:
            pose_bin = trained_network_bin(pose_bin, self.routing.route_yaw)
        use_bin = pose_bin if self.per_yaw else None
        table = threshold_table(calibration, use_bin)
        if not table:
            return None
        nearest = min(table, key=lambda f: abs(math.log10(f) - math.log10(far)))
        value, how = float(table[nearest]), f" for probes in {use_bin}" if use_bin else ""
        if not _unknown(yaw) and self.per_yaw:
            min_yaw = self.routing.route_yaw if teacher is False and self.routing is not None else None
            curve = curve_threshold(calibration, nearest, float(yaw), min_yaw)
            if curve is not None:
                value, how = curve[0], f", {curve[1]}"
        source = f"measured on {self.renders_name} at FAR {nearest:g}{how}"
        if population == "real":
            source += "; measured on renders only: its false accept rate on real photos is unknown"
        return Threshold(value, float(nearest), EVIDENCE_RENDERS, population == "renders", source, teacher)


def _unknown(yaw: float | None) -> bool:
    return yaw is None or not math.isfinite(float(yaw))


def _unchanged_pretrained(meta: Mapping[str, Any]) -> bool:
    """Whether a checkpoint's embedding is a pretrained network's own (its published rule then holds)."""
    extra = meta.get("extra") or {}
    return bool(extra.get("pretrained"))
