"""The Pose explorer tab: one face rendered from -90 to +90 degrees yaw (a synthetic identity, or the user's
photo and scan), each render scored against the frontal enrollment; for researchers, each view's heatmap beside
its 3D point heat with the attention statistics per view (pose3dfr.eval.attention)."""

from __future__ import annotations

import html
import math
import re
import time
from dataclasses import dataclass
from typing import Any

import gradio as gr
import numpy as np
import plotly.graph_objects as go

from pose3dfr.inference import explore
from pose3dfr.ui.common import DEFAULT_OPACITY, STATE_TTL_SECONDS, echo, readable_errors, user_error
from pose3dfr.ui.examples import EXAMPLE_IDENTITY
from pose3dfr.ui.figures import attention_figure, colour_scale_html
from pose3dfr.ui.models import MODELS, checkpoint_dropdown, resolve_checkpoint
from pose3dfr.ui.uploads import file_upload_path, forgets_uploads, photo_upload, required_upload, scan_upload
from pose3dfr.eval.attention_views import sweep_grid, view_column
from pose3dfr.viz import overlay_heatmap


# Pose sweeps (13 renders, each scored) run one at a time in their own group, so they never hold the
# slots of /verify and /embed; one that runs longer than this is stopped with a message.
SWEEP_CONCURRENCY = 1
SWEEP_TIME_LIMIT_SECONDS = 120


# Choices of the explorer's subject radio: a synthetic identity, or the user's photo and scan.
EXPLORER_SYNTHETIC = "synthetic identity"
EXPLORER_UPLOAD = "upload photo + scan"
EXPLORER_MODES = (EXPLORER_SYNTHETIC, EXPLORER_UPLOAD)
# Choices of the explorer's alignment radio: the real pipeline (what Verify does) or the renderer's landmarks.
EXPLORER_ALIGNMENTS = (("real pipeline (as Verify)", "pipeline"), ("oracle: renderer's landmarks", "oracle"))


@dataclass
class SweepState:
    """What the explorer keeps of a sweep (gr.State) to redraw the 3D view: yaws, scores and the points."""
    yaws: list[float]
    scores: list[float | None]  # None: no face found at that yaw
    points: np.ndarray  # P x 3 canonical frame (cm)
    point_attention: np.ndarray | None  # P
    # yaw -> (P x 3 points, P heat: share of the 3D embedding, NaN unseen) registered to that view (3D branch)
    view_points: dict[float, tuple[np.ndarray, np.ndarray]] | None = None


def within_time(items: Any, seconds: float) -> Any:
    """Yield `items`, raising a gr.Error once `seconds` have passed (the sweep's request time limit)."""
    start = time.monotonic()
    for item in items:
        if time.monotonic() - start > seconds:
            raise gr.Error(f"The sweep took over {seconds:.0f} s and was stopped (the server is busy); "
                           "try again later.", print_exception=False)
        yield item


@readable_errors
@forgets_uploads
def explore_endpoint(mode: str, identity: float | None, photo: str | None, scan: Any, checkpoint: str | None,
                     opacity: float, alignment: str = "pipeline", attention: bool = True,
                     progress: gr.Progress = gr.Progress()) -> tuple:
    """Sweep yaw from -90 to +90 (pose3dfr.inference.explore): a synthetic identity, or a frontal photo and a
    3D scan of the same person; every render is scored against the frontal enrollment, through the real
    pipeline (as Verify) or, with alignment="oracle", aligned by the renderer's own landmarks. With `attention`
    also every view's heatmap beside its 3D point heat (one image) and the statistics per view (a table)."""
    if mode not in EXPLORER_MODES:
        raise user_error(f"Unknown explorer mode {echo(mode)}.")
    if alignment not in explore.ALIGNMENTS:
        raise user_error(f"Unknown alignment {echo(alignment)}; use one of {', '.join(explore.ALIGNMENTS)}.")
    if mode == EXPLORER_UPLOAD:
        photo, scan = required_upload(photo, "frontal photo"), required_upload(file_upload_path(scan), "3D scan")
    elif identity is None or int(identity) < 1:
        raise gr.Error("Synthetic identities are numbered from 1.", print_exception=False)
    verifier = MODELS.get(resolve_checkpoint(checkpoint))
    def iterate(yaws: list) -> Any:
        return progress.tqdm(within_time(yaws, SWEEP_TIME_LIMIT_SECONDS), desc="rendering and scoring",
                             total=len(yaws))
    progress(0, desc="preparing the subject")
    attention = bool(attention)
    if mode == EXPLORER_UPLOAD:
        sweep = explore.explore_photo_and_scan(verifier, photo, scan, iterate=iterate, alignment=alignment,
                                               attention=attention)
    else:
        sweep = explore.explore_synthetic(verifier, int(identity), iterate=iterate, alignment=alignment,
                                          attention=attention)
    gallery = [(_sweep_image(v, float(opacity)), _sweep_caption(v)) for v in sweep.views]
    frontal = min(sweep.views, key=lambda v: abs(v.yaw))
    view_points = {v.yaw: (v.point_heat.xyz, v.point_heat.heat) for v in sweep.views if v.point_heat is not None}
    state = SweepState(list(sweep.yaws), list(sweep.scores), sweep.points, sweep.point_attention, view_points or None)
    return (gallery, sweep_figure(sweep), sweep_attention_figure(state, frontal.yaw), state,
            attention_grid(sweep, verifier), attention_table(sweep))


def _sweep_image(view: Any, opacity: float) -> np.ndarray:
    """The chip the model saw with its heatmap, or the render itself when no face was found there."""
    return view.image if view.crop is None else overlay_heatmap(view.crop, view.heatmap, opacity, grid=view.grid)


def attention_grid(sweep: Any, verifier: Any) -> np.ndarray | None:
    """Every analysed view side by side: its statistics, its heatmap and (3D branch) its 3D point heat."""
    views = [v for v in sweep.views if v.attention is not None]
    if not views:
        return None
    with_points = getattr(verifier.model, "point_encoder", None) is not None
    columns = [view_column(v.crop, v.attention, v.grid, v.point_heat, with_points) for v in views]
    return sweep_grid(columns, f"{sweep.source}: heatmap (share of the embedding)"
                      + (" and 3D point heat per view" if with_points else " per view"))


def attention_table(sweep: Any) -> str:
    """Markdown: the attention statistics of each view (empty without them)."""
    views = [v for v in sweep.views if v.attention is not None]
    if not views:
        return ""
    sink = views[0].attention.attention is not None
    rows = ["| yaw | score | deletion AUC heatmap | AUC random | entropy | centre of mass on face | mass on face"
            + (" | attention sink share |" if sink else " |"), "|---" * (7 + sink) + "|"]
    for v in views:
        a, heat = v.attention, v.attention.maps["heatmap"]
        cells = [f"{v.yaw:+.0f}°", f"{v.score:.2f}", f"{a.auc['heatmap']:.2f}", f"{a.auc['random']:.2f}",
                 f"{heat['entropy']:.2f}", _yes_no(heat["com_in_face"]), _percent(heat["face_mass"])]
        if sink:
            cells.append(f"{a.attention['sink_share']:.0%} at {tuple(a.attention['sink_cell'])}")
        rows.append("| " + " | ".join(cells) + " |")
    note = ("Deletion AUC: how fast the embedding moves (1 - cosine) as the cells the heatmap ranks highest are greyed, "
            f"area over k/N at k = 1, N and {', '.join(f'{f:g}' for f in explore.EXPLORER_DELETION_FRACTIONS)} N "
            "(random: one random order); higher than random = the heatmap shows what the embedding uses. Entropy of "
            "the heatmap's positive part (0: one cell, 1: uniform); face: the hull of the renderer's landmarks.")
    return "\n".join(rows) + "\n\n" + note


def _yes_no(value: float | None) -> str:
    return "?" if value is None else ("yes" if value else "no")


def _percent(value: float | None) -> str:
    return "?" if value is None else f"{value:.0%}"


def _sweep_caption(view: Any) -> str:
    """Short enough for a gallery thumbnail (Gradio cuts captions to one line): yaw, score, detected yaw."""
    if view.score is None:
        return f"yaw {view.yaw:+.0f}°: no face"
    seen = "" if view.detected_yaw is None else f", det. {view.detected_yaw:+.0f}°"
    return f"yaw {view.yaw:+.0f}°: {view.score:.2f}{seen}"


def sweep_figure(sweep: Any) -> Any:
    """Similarity to the frontal enrollment against probe yaw."""
    figure = go.Figure(go.Scatter(x=sweep.yaws, y=sweep.scores, mode="lines+markers", name="similarity",
                                  connectgaps=False))  # a yaw with no face found is a gap (a rejection)
    missed = [v.yaw for v in sweep.views if v.score is None]
    if missed:
        figure.add_trace(go.Scatter(x=missed, y=[sweep.threshold] * len(missed), mode="markers", name="no face found",
                                    marker=dict(symbol="x", size=10, color="crimson")))
    figure.add_hline(y=sweep.threshold, line_dash="dash", line_color="grey",
                     annotation_text=f"threshold at FAR {explore_far():g}", annotation_position="bottom right")
    how = "real pipeline" if sweep.alignment == "pipeline" else "oracle alignment"
    figure.update_layout(xaxis=dict(title="probe yaw (°)", range=[-95, 95]), yaxis_title="similarity to frontal",
                         title=f"similarity vs yaw ({how})<br><sub>{html.escape(sweep.source)}</sub>",
                         margin=dict(l=70, r=20, t=80, b=60))
    return figure


def explore_far() -> float:
    """The FAR of the threshold line drawn with the sweep curve."""
    return explore.SWEEP_FAR


def sweep_attention_figure(sweep: Any, yaw: float) -> Any:
    """The face's points seen from where the camera of the render at `yaw` stood, coloured by the 3D point heat
    registered to that view when the sweep has it (else the enrollment's)."""
    per_view = getattr(sweep, "view_points", None) or {}
    if yaw in per_view:
        points, heat = per_view[yaw]
        figure = attention_figure(points, heat, f"3D point heat of the view at yaw {yaw:+.0f}° "
                                  "(share of the 3D embedding of each point's cell)")
    else:
        figure = attention_figure(sweep.points, sweep.point_attention, f"3D attention, seen from yaw {yaw:+.0f}°")
    if figure is not None:  # the face turned by +yaw = a camera at Ry(-yaw) (0, 0, 1) in the face frame
        angle = math.radians(yaw)
        figure.update_layout(scene_camera=dict(up=dict(x=0, y=1, z=0),
                                               eye=dict(x=-2.0 * math.sin(angle), y=0.0, z=2.0 * math.cos(angle))))
    return figure


def select_sweep_point(sweep: Any, evt: gr.SelectData) -> Any:
    """Show the 3D attention from the viewpoint of the render clicked in the gallery (matched by its yaw)."""
    caption = str(evt.value.get("caption", "") if isinstance(evt.value, dict) else "")
    match = re.match(r"yaw ([+-]\d+)", caption)
    if sweep is None or match is None or float(match.group(1)) not in sweep.yaws:
        return gr.skip()
    return sweep_attention_figure(sweep, float(match.group(1)))


def clear_sweep() -> tuple:
    """After a failed sweep (its error shows as a message): no renders, curve or 3D view of an earlier one."""
    return None, None, None, None, None, ""


def toggle_explorer_mode(mode: str) -> tuple:
    """Show the identity number in synthetic mode, the two uploads in upload mode."""
    upload = mode == EXPLORER_UPLOAD
    return gr.update(visible=not upload), gr.update(visible=upload)


def explorer_tab() -> None:
    gr.Markdown("Render one face from -90° to +90° yaw and score each render against the frontal enrollment: "
                "a synthetic identity, or your frontal photo and a 3D scan of the same person (the scan is "
                "aligned to the canonical face, coloured from the photo and rendered at each yaw; the photo is "
                "the enrollment). Each render goes through the same detection, head pose and alignment as "
                "Verify (a render where no face is found is a rejection); the oracle option aligns renders with "
                "the renderer's own landmarks instead. Click a render to see the 3D attention from its viewpoint. "
                "Heatmaps show each place's share of the embedding (where it comes from, not the raw attention "
                "weights: docs/attention.md); with \"attention per view\" each view also gets its 3D point heat "
                "(the 3D branch on the face's points registered to that view) and its statistics, among them a "
                "deletion test: does greying the hottest cells move the embedding more than greying random ones?")
    with gr.Row():
        with gr.Column():
            mode = gr.Radio(list(EXPLORER_MODES), value=EXPLORER_SYNTHETIC, label="subject", elem_id="explore-mode")
            identity = gr.Number(EXAMPLE_IDENTITY, label="synthetic identity", precision=0, minimum=1)
        with gr.Row(visible=False) as uploads:
            photo = photo_upload("frontal photo", elem_id="explore-photo")
            scan = scan_upload("3D scan of the same person (mesh or point cloud)", elem_id="explore-scan")
        with gr.Column():
            checkpoint = checkpoint_dropdown()
            opacity = gr.Slider(0, 1, value=DEFAULT_OPACITY, step=0.05, label="heatmap opacity")
            alignment = gr.Radio(list(EXPLORER_ALIGNMENTS), value="pipeline", label="alignment of the renders",
                                 elem_id="explore-alignment")
            attention = gr.Checkbox(True, label="attention per view (heatmap, 3D point heat, statistics; a few "
                                    "seconds more)", elem_id="explore-attention")
            button = gr.Button("Sweep yaw", variant="primary")
    gallery = gr.Gallery(label="probe crops + attention (click one for its 3D view)", columns=7, height="auto",
                         object_fit="contain", allow_preview=True, elem_id="explore-gallery")
    gr.HTML(colour_scale_html())
    with gr.Row():
        curve = gr.Plot(label="similarity vs yaw")
        cloud = gr.Plot(label="3D attention")
    grid = gr.Image(label="attention per view: statistics, heatmap, 3D point heat (each point drawn where the "
                          "view shows it; points the view does not see are left out)", type="numpy", interactive=False,
                    elem_id="explore-attention-grid")
    table = gr.Markdown(elem_id="explore-attention-table")
    sweep = gr.State(None, time_to_live=STATE_TTL_SECONDS)
    mode.change(toggle_explorer_mode, mode, [identity, uploads], api_visibility="private")
    outputs = [gallery, curve, cloud, sweep, grid, table]
    button.click(explore_endpoint, [mode, identity, photo, scan, checkpoint, opacity, alignment, attention],
                 outputs, api_visibility="private", concurrency_id="sweep", concurrency_limit=SWEEP_CONCURRENCY).failure(
        clear_sweep, None, outputs, api_visibility="private")
    gallery.select(select_sweep_point, sweep, cloud, api_visibility="private")
