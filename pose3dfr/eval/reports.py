"""Reports of protocol results: the Markdown table per pose bin, warnings on unmeasurable FARs, ROC figures,
and the JSON + Markdown + HTML files `pose3dfr eval` writes."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from pose3dfr.eval.metrics import far_key

def _fmt(value: Any, percent: bool = True) -> str:
    if value is None:
        return "n/a"
    return f"{100 * value:.2f}" if percent else f"{value:.4f}"


def results_markdown(results: dict[str, Any], title: str = "Verification by probe pose") -> str:
    """A Markdown table: one row per pose bin and overall; TAR in percent."""
    fars = results["protocol"]["fars"]
    header = (["Probe yaw bin", "Genuine pairs", "Impostor pairs"]
              + [f"TAR@{100 * f:g}%FAR" for f in fars] + ["AUC", "EER (%)"])
    lines = [f"## {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    rows = [*results["bins"].items(), ("overall", results["overall"])]
    for label, m in rows:
        cells = [label, str(m["genuine_pairs"]), str(m["impostor_pairs"])]
        cells += [_fmt(m[f"tar_at_far_{far_key(f)}"]) for f in fars]
        cells += [_fmt(m["auc"], percent=False), _fmt(m["eer"])]
        lines.append("| " + " | ".join(cells) + " |")
    warnings = far_warnings(results)
    if warnings:
        lines += [""] + [f"Warning: {w}" for w in warnings]
    p = results["protocol"]
    lines += ["", f"Gallery: {p['gallery_images']} frontal images (|yaw| < {p['frontal_max_yaw']:g}); "
                  f"{p['images']} probe images of {p['identities']} identities; accept when cosine >= threshold."]
    return "\n".join(lines) + "\n"


# Impostor pairs per 1/FAR needed before a TAR at that FAR is a measurement: with fewer than 10 / FAR
# pairs, fewer than 10 impostors lie above the threshold and a single pair moves it.
MIN_IMPOSTORS_PER_INVERSE_FAR = 10


def far_warnings(results: dict[str, Any]) -> list[str]:
    """One line per FAR and pose bin (or overall) whose impostor pairs are too few to measure that FAR."""
    warnings = []
    rows = [*results["bins"].items(), ("overall", results["overall"])]
    for far in results["protocol"]["fars"]:
        needed = math.ceil(MIN_IMPOSTORS_PER_INVERSE_FAR / far)
        short = [f"{label} ({m['impostor_pairs']:,})" for label, m in rows if m["impostor_pairs"] < needed]
        if short:
            warnings.append(f"TAR at FAR {100 * far:g}% is not measured reliably where there are fewer than "
                            f"{needed:,} impostor pairs (10 / FAR): {', '.join(short)}.")
    return warnings


def roc_figure(results: dict[str, Any], title: str = "ROC by probe pose"):
    """Plotly figure: TAR against FAR (log axis), one curve per pose bin and overall."""
    import plotly.graph_objects as go

    figure = go.Figure()
    for label, roc in results["roc"].items():
        if roc is None:
            continue
        far = np.asarray(roc["far"])
        keep = far > 0  # a log axis cannot show FAR = 0
        figure.add_trace(go.Scatter(x=far[keep], y=np.asarray(roc["tar"])[keep], mode="lines", name=label))
    for far in results["protocol"]["fars"]:
        figure.add_vline(x=far, line_dash="dot", line_color="grey")
    figure.update_layout(title=title, xaxis_title="False accept rate", yaxis_title="True accept rate",
                         xaxis_type="log", yaxis_range=[0, 1.01], template="plotly_white")
    return figure


def write_reports(results: dict[str, Any], json_path: str | Path) -> dict[str, Path]:
    """JSON at json_path, plus <stem>.md, <stem>_roc.html and <stem>_roc.png (PNG only with kaleido)."""
    json_path = Path(json_path)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    written = {"json": json_path, "markdown": json_path.with_suffix(".md"),
               "html": json_path.with_name(json_path.stem + "_roc.html")}
    json_path.write_text(json.dumps(results, indent=2))
    written["markdown"].write_text(results_markdown(results))
    figure = roc_figure(results)
    figure.write_html(written["html"], include_plotlyjs="cdn")
    if importlib.util.find_spec("kaleido") is not None:
        png = json_path.with_name(json_path.stem + "_roc.png")
        try:
            figure.write_image(png)
            written["png"] = png
        except Exception:  # kaleido present but without a usable browser: the PNG is optional
            pass
    return written
