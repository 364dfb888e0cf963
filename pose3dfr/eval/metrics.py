"""Verification metrics from genuine and impostor pair scores (higher score = more alike).

Convention: a pair is accepted when score >= t. FAR(t) = share of impostor scores >= t,
TAR(t) = share of genuine scores >= t. Everything is exact with tied scores and vectorised over
sorted arrays (O(n log n), no Python loop over scores), so 10 million pair scores take about a second.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from pose3dfr.errors import Pose3DFRError

ArrayLike = np.ndarray | Sequence[float]


def _as_scores(scores: ArrayLike, name: str) -> np.ndarray:
    """1-D float64 copy of `scores`; raise on empty, non-numeric or NaN input (naming the argument)."""
    try:
        array = np.asarray(scores, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise Pose3DFRError(f"{name}: scores must be numbers ({exc})") from exc
    if array.size == 0:
        raise Pose3DFRError(f"{name} is empty: need at least one score to compute a rate")
    if np.isnan(array).any():
        raise Pose3DFRError(f"{name} contains NaN scores")
    return array


def _as_fars(far: float | ArrayLike) -> np.ndarray:
    fars = np.asarray(far, dtype=np.float64).reshape(-1)
    if fars.size == 0 or np.isnan(fars).any() or (fars < 0).any():
        raise Pose3DFRError(f"far must be a number >= 0 (or a list of them), got {far!r}")
    return fars


@dataclass(frozen=True)
class SortedScores:
    """Genuine and impostor scores sorted once, so several operating points reuse one sort."""

    genuine: np.ndarray   # ascending, float64
    impostor: np.ndarray  # ascending, float64

    @classmethod
    def from_scores(cls, genuine_scores: ArrayLike, impostor_scores: ArrayLike) -> "SortedScores":
        genuine = _as_scores(genuine_scores, "genuine_scores")
        impostor = _as_scores(impostor_scores, "impostor_scores")
        genuine.sort()
        impostor.sort()
        return cls(genuine, impostor)

    def operating_points(self, fars: float | ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        """(best TAR, threshold reaching it) for each FAR bound: see `tar_at_far`."""
        fars = _as_fars(fars)
        imp, gen = self.impostor, self.genuine
        n_imp, n_gen = imp.size, gen.size
        # Smallest impostor count c in [1, n_imp] whose rate c / n_imp exceeds the bound: a threshold
        # accepting c or more impostors is forbidden. floor(far * n) + 1, corrected for rounding.
        c = np.floor(fars * n_imp).astype(np.int64) + 1
        for _ in range(2):
            c = np.where((c > 1) & ((c - 1) / n_imp > fars), c - 1, c)
            c = np.where((c <= n_imp) & (c / n_imp <= fars), c + 1, c)
        allowed_all = c > n_imp  # even accepting every impostor keeps FAR within the bound
        # v = the largest impostor score that, used as threshold, accepts too many impostors; the best
        # allowed threshold lies just above it and accepts exactly the genuine scores > v.
        v = imp[np.clip(n_imp - c, 0, n_imp - 1)]
        gen_above = n_gen - np.searchsorted(gen, v, side="right")
        tars = np.where(allowed_all, 1.0, gen_above / n_gen)
        thresholds = np.where(allowed_all, min(gen[0], imp[0]), self._next_score_above(v))
        return tars, thresholds

    def _next_score_above(self, v: np.ndarray) -> np.ndarray:
        """Smallest score of either class strictly above each v (nextafter(v) when there is none)."""
        candidates = [np.full_like(v, np.inf)]
        for scores in (self.genuine, self.impostor):
            index = np.searchsorted(scores, v, side="right")
            inside = index < scores.size
            candidates.append(np.where(inside, scores[np.minimum(index, scores.size - 1)], np.inf))
        best = np.minimum.reduce(candidates)
        return np.where(np.isinf(best), np.nextafter(v, np.inf), best)


def tar_at_far(genuine_scores: ArrayLike, impostor_scores: ArrayLike, far: float) -> float:
    """Largest TAR(t) over all thresholds t with FAR(t) <= far (exact with ties; far=0 allowed)."""
    tars, _ = SortedScores.from_scores(genuine_scores, impostor_scores).operating_points(far)
    return float(tars[0])


def threshold_at_far(genuine_scores: ArrayLike, impostor_scores: ArrayLike, far: float) -> float:
    """A threshold t reaching `tar_at_far`: FAR(t) <= far and TAR(t) is the largest possible.

    Among the thresholds with that TAR it is the smallest score (of either class) above the last
    forbidden impostor score, so `score >= t` reproduces exactly the reported TAR and FAR on these scores.
    """
    _, thresholds = SortedScores.from_scores(genuine_scores, impostor_scores).operating_points(far)
    return float(thresholds[0])


def roc_curve(genuine_scores: ArrayLike, impostor_scores: ArrayLike
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(far, tar, thresholds): one point per distinct score, thresholds descending, from (0, 0) at +inf."""
    gen = np.sort(_as_scores(genuine_scores, "genuine_scores"))
    imp = np.sort(_as_scores(impostor_scores, "impostor_scores"))
    thresholds = np.unique(np.concatenate([gen, imp]))[::-1]
    tar = (gen.size - np.searchsorted(gen, thresholds, side="left")) / gen.size
    far = (imp.size - np.searchsorted(imp, thresholds, side="left")) / imp.size
    return (np.concatenate([[0.0], far]), np.concatenate([[0.0], tar]),
            np.concatenate([[np.inf], thresholds]))


def auc(genuine_scores: ArrayLike, impostor_scores: ArrayLike) -> float:
    """Area under the ROC curve = P(genuine > impostor) + P(tie) / 2 (trapezoids over the exact curve)."""
    far, tar, _ = roc_curve(genuine_scores, impostor_scores)
    return float(np.trapezoid(tar, far))


def eer(genuine_scores: ArrayLike, impostor_scores: ArrayLike) -> float:
    """Equal error rate: where FAR equals FRR = 1 - TAR on the piecewise-linear ROC curve."""
    far, tar, _ = roc_curve(genuine_scores, impostor_scores)
    return eer_from_roc(far, tar)


def eer_from_roc(far: np.ndarray, tar: np.ndarray) -> float:
    """EER of a ROC curve given as points from (0, 0) to (1, 1) with non-decreasing far and tar."""
    gap = far - (1.0 - tar)  # non-decreasing along the curve: -1 at (0, 0), +1 at (1, 1)
    k = int(np.searchsorted(gap, 0.0, side="left"))
    if k == 0:
        return float(far[0])
    step = gap[k] - gap[k - 1]
    alpha = 0.0 if step == 0 else -gap[k - 1] / step
    return float(far[k - 1] + alpha * (far[k] - far[k - 1]))


def verification_summary(genuine_scores: ArrayLike, impostor_scores: ArrayLike,
                         fars: Sequence[float] = (1e-2, 1e-3), roc_points: int = 200) -> dict:
    """All metrics of one set of pairs (TAR and threshold per FAR, AUC, EER, a thinned ROC curve).

    Keys: tar_at_far_<far>, threshold_at_far_<far> (far written as in `far_key`), auc, eer,
    genuine_pairs, impostor_pairs, roc ({"far": [...], "tar": [...]}, at most `roc_points` points).
    """
    scores = SortedScores.from_scores(genuine_scores, impostor_scores)
    tars, thresholds = scores.operating_points(list(fars))
    far, tar, _ = roc_curve(scores.genuine, scores.impostor)
    summary: dict = {}
    for f, t, th in zip(fars, tars, thresholds):
        summary[f"tar_at_far_{far_key(f)}"] = float(t)
        summary[f"threshold_at_far_{far_key(f)}"] = float(th)
    summary.update(auc=float(np.trapezoid(tar, far)), eer=eer_from_roc(far, tar),
                   genuine_pairs=int(scores.genuine.size), impostor_pairs=int(scores.impostor.size),
                   roc=thin_roc(far, tar, roc_points))
    return summary


def thin_roc(far: np.ndarray, tar: np.ndarray, max_points: int = 200) -> dict[str, list[float]]:
    """At most `max_points` ROC points, log-spaced in FAR (keeps the low-FAR end a plot needs)."""
    if far.size <= max_points:
        return {"far": far.tolist(), "tar": tar.tolist()}
    positive = far[far > 0]
    low = np.log10(positive.min()) if positive.size else -6.0
    grid = np.concatenate([[0.0], np.logspace(low, 0.0, max_points - 1)])
    # Best TAR among ROC points with FAR <= each grid value (ROC is non-decreasing).
    index = np.searchsorted(far, grid, side="right") - 1
    return {"far": far[index].tolist(), "tar": tar[index].tolist()}


def far_key(far: float) -> str:
    """How a FAR appears in result keys: 0.01 -> '1e-2', 0.001 -> '1e-3', 0.05 -> '5e-2'."""
    mantissa, exponent = f"{far:.6e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{int(exponent)}"
