"""The end-to-end report (pose3dfr.eval.end_to_end's results): its section of docs/benchmarks.md (between
END_TO_END markers), an interactive chart (<stem>_end_to_end.html) and a PNG (<stem>_end_to_end.png)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pose3dfr.eval.doc_sections import current_command, write_section

SECTION = "END_TO_END"  # its section of docs/benchmarks.md (pose3dfr.eval.doc_sections)
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")  # one per system, both variants


def _colour(results: dict[str, Any], name: str) -> str:
    systems = list(dict.fromkeys(n.split("/")[0] for n in results["systems"]))
    return COLOURS[systems.index(name.split("/")[0]) % len(COLOURS)]


def _curve_lines(systems: dict[str, Any]) -> list[str]:
    """The yaw curves at 1% FAR the pose3dfr rows decide with (validation thresholds per |yaw|)."""
    rows = []
    for name, s in systems.items():
        curve = ((s.get("yaw_curve_from_val") or {}).get("far") or {}).get("1e-2", {}).get("yaw_curve") or {}
        if curve.get("yaw"):
            rows.append(f"{name}: " + ", ".join(f"{y:g}° {t:.3f}" for y, t in zip(curve["yaw"], curve["threshold"])))
    return ["Yaw curves at 1% FAR (|yaw|: threshold): " + "; ".join(rows) + ".", ""] if rows else []


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.0f}"


def _deg(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.1f}"


def markdown(results: dict[str, Any], command: str, html: str, png: str) -> str:
    """The END_TO_END section: face found, TAR at both FARs, impostor accepts and pose errors per |yaw|."""
    systems = results["systems"]
    yaws = list(next(iter(systems.values()))["by_yaw"])
    head = "| system | " + " | ".join(f"{y}°" for y in yaws) + " |\n|---|" + "---|" * len(yaws)
    lines = ["## End to end by yaw (detection and alignment included)", "",
             f"Command: `{command}` ({results['identities']['test']} test identities, "
             f"{results['images']['test']} renders; thresholds from {results['identities']['val']} validation "
             "identities through the same pipeline). Enrolment: each identity's frontal neutral render; probes: "
             "every other render, signed yaw folded to |yaw|; no face found = rejection. `pipeline`: what a user "
             "gets (FaceAnalyzer + align_detection); `oracle`: the same images aligned with ground-truth landmarks "
             "(analysis only). Peers use their own detector and alignment (pose3dfr.eval.peers). Decisions: pose3dfr "
             "holds each probe to the validation thresholds measured per |yaw| (every 15 degrees), interpolated at "
             "its estimated |yaw| (the threshold policy's yaw curve, pose3dfr.eval.thresholds; oracle: at "
             "the true yaw); the peers have no pose, one threshold.", ""]
    for title, key, fmt in (("Face found (%)", "face_found", _pct), ("TAR at 1% FAR (%)", "tar_0.01", _pct),
                            ("TAR at 0.1% FAR (%)", "tar_0.001", _pct),
                            ("Impostor accept rate at the 1% threshold (%, on test identities)",
                             "impostor_accept_0.01", lambda v: "n/a" if v is None else f"{100 * v:.1f}")):
        lines += [f"### {title}", "", head]
        for name, s in systems.items():
            if key == "face_found" and name.endswith("/oracle"):
                continue
            lines.append(f"| {name} | " + " | ".join(fmt(s["by_yaw"][y][key]) for y in yaws) + " |")
        lines.append("")
    pose_rows = [(name, k) for name, s in systems.items() for k in s["by_yaw"][yaws[0]] if k.startswith("yaw_mae_")]
    if pose_rows:
        first = pose_rows[0][0]
        lines += ["### Head pose of found faces: mean absolute error (degrees) and share of found faces with a pose",
                  "", head]
        for name, k in pose_rows:
            if name != first:
                continue
            source = k[len("yaw_mae_"):]
            by = systems[name]["by_yaw"]
            lines.append(f"| yaw, {source} | " + " | ".join(_deg(by[y][k]) for y in yaws) + " |")
            lines.append(f"| pitch, {source} | " + " | ".join(_deg(by[y][f'pitch_mae_{source}']) for y in yaws) + " |")
            lines.append(f"| with a pose, {source} (%) | " + " | ".join(_pct(by[y][f'pose_from_{source}'])
                                                                      for y in yaws) + " |")
        lines.append("")
    lines += ["Thresholds (cosine; dlib's pipeline: minus the Euclidean distance) from the validation identities: "
              + "; ".join(f"{n}: {s['thresholds_from_val']['0.01']:.3f} at 1%, {s['thresholds_from_val']['0.001']:.3f}"
                          " at 0.1%" for n, s in systems.items()), "", *_curve_lines(systems),
              "Reading: the shipped pose3dfr checkpoints are trained on the pipeline's own crops and route pairs by "
              "pose: below 22.5 degrees of yaw (0 and 15 here) they score with dlib's pretrained network, "
              "unchanged, which is why they equal `dlib-pretrained` there; beyond it the fine-tuned network "
              "scores (docs/results.md, section 7). `oracle` rows align with ground-truth landmarks and route "
              "by the true yaw. "
              "With `--pose-model PATH` the head-pose network's errors appear as a second source beside MediaPipe's.",
              "", f"Chart: [{html}]({html}) (interactive), ![TAR at 1% FAR by yaw]({png})"]
    return "\n".join(lines) + "\n"


def figure(results: dict[str, Any]):
    """Plotly: TAR at 1% FAR and face found per |yaw|, one line per system (oracle dashed)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("TAR at 1% FAR", "Face found"))
    for name, s in results["systems"].items():
        yaws = [int(y) for y in s["by_yaw"]]
        dash = "dash" if name.endswith("/oracle") else "solid"
        line = {"dash": dash, "color": _colour(results, name)}
        fig.add_trace(go.Scatter(x=yaws, y=[100 * s["by_yaw"][str(y)]["tar_0.01"] for y in yaws], name=name,
                                 line=line), row=1, col=1)
        if not name.endswith("/oracle"):
            fig.add_trace(go.Scatter(x=yaws, y=[100 * s["by_yaw"][str(y)]["face_found"] for y in yaws], name=name,
                                     showlegend=False, line=line), row=1, col=2)
    fig.update_xaxes(title_text="probe |yaw| (degrees)")
    fig.update_yaxes(title_text="%", range=[0, 101])
    fig.update_layout(template="plotly_white", width=1100, height=450, title="End to end by yaw")
    return fig


def write_png(results: dict[str, Any], path: Path) -> None:
    """The same two panels drawn with matplotlib, for the Markdown page."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for name, s in results["systems"].items():
        yaws = [int(y) for y in s["by_yaw"]]
        style = "--" if name.endswith("/oracle") else "-"
        colour = _colour(results, name)
        axes[0].plot(yaws, [100 * s["by_yaw"][str(y)]["tar_0.01"] for y in yaws], style, marker="o", label=name,
                     color=colour)
        if not name.endswith("/oracle"):
            axes[1].plot(yaws, [100 * s["by_yaw"][str(y)]["face_found"] for y in yaws], style, marker="o", label=name,
                         color=colour)
    for ax, title in zip(axes, ("TAR at 1% FAR (%)", "Face found (%)")):
        ax.set(title=title, xlabel="probe |yaw| (degrees)", ylim=(0, 101))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write_report(results: dict[str, Any], out: str | Path) -> str:
    """Write the chart (HTML and PNG) next to `out` and the END_TO_END section into it; return the section."""
    out = Path(out)
    html, png = out.with_name(out.stem + "_end_to_end.html"), out.with_name(out.stem + "_end_to_end.png")
    figure(results).write_html(html, include_plotlyjs="cdn")
    write_png(results, png)
    section = markdown(results, current_command(results["command"]), html.name, png.name)
    write_section(out, SECTION, section)
    return section
