"""The Markdown table of an eval-photos report (pose3dfr.eval.photo_folder.evaluate_photo_folder): what was
compared, then one table per system."""

from __future__ import annotations

import math
from typing import Any, Mapping

from pose3dfr.eval.photo_folder import OURS


def markdown_report(report: Mapping[str, Any]) -> str:
    """The report as Markdown: what was compared, then one table per system."""
    ef, labelled, estimated = report["empirical_far"], report["labelled_probes"], report["estimated_probes"]
    lines = [f"# eval-photos: {report['photos']} photos of {report['identities']} identities", "",
             f"Enrolment: each identity's most frontal photo (\\|yaw\\| <= {report['frontal_max_yaw']:g}); every other "
             "photo is a probe against every enrolment (same identity: genuine, other: impostor). Probes are grouped "
             f"by \\|yaw\\|: labelled for {labelled}, estimated by pose3dfr ({report['checkpoint']}) for {estimated}. "
             "Accepted: each system's own decision; a photo in which a system finds no face is a reject. "
             f"TAR at {_percent(ef)} FAR: with the threshold set on the group's own impostor pairs (their number in "
             f"brackets; none below {math.ceil(1 / ef - 1e-9)}).", ""]
    if report["skipped"]:
        lines += [f"Skipped: {len(report['skipped'])} files (listed on stderr and in the JSON).", ""]
    lines += [f"Warning: {w}." for w in report["warnings"]] + ([""] if report["warnings"] else [])
    for key, system in report["systems"].items():
        ours = key == OURS
        header = ["probe \\|yaw\\|", "probes", "faces found", "genuine accepted", "impostors accepted", "AUC",
                  f"TAR at {_percent(ef)} FAR (impostor pairs)"] + (["yaw error: median / mean (flips)"] if ours else [])
        decision = system["decision"]
        if ours:
            evidence = system["rows"][-1].get("threshold_evidence") or {}
            decision += "; thresholds resting on " + (", ".join(f"{e}: {n} pairs" for e, n in evidence.items())
                                                       or "nothing (no pair had both faces)")
        lines += [f"## {system['label']}", "", f"Decision: {decision}.", "",
                  "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(_cells(row, ours)) + " |" for row in system["rows"]]
        lines.append("")
    return "\n".join(lines)


def _cells(row: Mapping[str, Any], ours: bool) -> list[str]:
    empirical = row["empirical"]
    need = math.ceil(1 / empirical["far"] - 1e-9)
    tar = (f"{empirical['tar']:.2f} ({empirical['impostor_pairs']})" if empirical["tar"] is not None
           else f"- ({empirical['impostor_pairs']} < {need})" if empirical["impostor_pairs"] < need else "-")
    cells = [row["group"], str(row["probes"]), str(row["faces_found"]),
             _accepts(row["genuine_accepted"], row["genuine_pairs"], row["genuine_accept_rate"], 0),
             _accepts(row["impostors_accepted"], row["impostor_pairs"], row["impostor_accept_rate"], 1),
             "-" if row["auc"] is None else f"{row['auc']:.3f}", tar]
    if ours:
        error = row.get("yaw_error")
        cells.append("-" if error is None else
                     f"{error['median_abs']:.1f} / {error['mean_abs']:.1f} ({error['flips']} of {error['photos']})")
    return cells


def _accepts(accepted: int, pairs: int, rate: float | None, decimals: int) -> str:
    return "-" if rate is None else f"{accepted}/{pairs} ({100 * rate:.{decimals}f}%)"


def _percent(far: float) -> str:
    """"1%" for 0.01, "0.1%" for 0.001."""
    return f"{100 * far:g}%"
