"""The Verify tab (1:1) and its /verify and /embed endpoints (also MCP tools): verdict, head poses, the aligned
crops with the heatmap (each cell's share of the embedding) and, with a scan, the 3D view coloured the same way."""

from __future__ import annotations

import dataclasses
import html
from dataclasses import dataclass
from typing import Any

import cv2
import gradio as gr
import numpy as np

from pose3dfr.eval.thresholds import EVIDENCE_NONE, EVIDENCE_REAL, EVIDENCE_RENDERS
from pose3dfr.inference.face_checks import rejection_summary
from pose3dfr.ui.common import (DEFAULT_FAR, DEFAULT_OPACITY, STATE_TTL_SECONDS, error_markdown, far_label, far_radio,
                                far_value, json_safe, mcp_tool, readable_errors)
from pose3dfr.ui.examples import real_photo_examples, synthetic_examples
from pose3dfr.ui.figures import attention_figure, colour_scale_html
from pose3dfr.ui.models import MODELS, checkpoint_dropdown, checkpoint_tar, refresh_checkpoints, resolve_checkpoint
from pose3dfr.ui.uploads import (forgets_uploads, keep_example_files, optional_upload, photo_upload, required_upload,
                                 scan_upload)
from pose3dfr.viz import overlay_heatmap


# Display height (px) of the aligned crops: 112-150 px chips upscaled to where the heatmap can be read.
CROP_VIEW_HEIGHT = 320


@dataclass
class VerifyView:
    """What the Verify tab draws from one result (kept server-side in a gr.State): the result without the
    overlays and landmarks; the points only until the first render (the slider needs crops + heatmaps)."""
    result: Any
    checkpoint: str


def slim_view(result: Any, checkpoint: str, keep_points: bool = True) -> VerifyView:
    """A VerifyView holding only what re-rendering needs (crop and heatmap of each face; points if asked)."""
    faces = {side: dataclasses.replace(getattr(result, side), overlay=np.zeros((0, 0, 3), np.uint8), landmarks=None)
             for side in ("enroll", "probe")}
    points = {} if keep_points else {"points": None, "point_attention": None}
    return VerifyView(dataclasses.replace(result, **faces, **points), checkpoint)


def _verify(enroll: str | None, probe: str | None, scan: str | None, far: Any,
            checkpoint: str | None) -> tuple[dict, VerifyView]:
    """The /verify answer and the view the tab draws from it."""
    enroll, probe = required_upload(enroll, "enrollment photo"), required_upload(probe, "probe photo")
    scan = optional_upload(scan, "3D scan")
    far = far_value(far)
    name = resolve_checkpoint(checkpoint)
    result = MODELS.get(name).verify(enroll, probe, scan=scan, far=far)
    payload = json_safe(result.to_dict())
    payload["checkpoint"] = name
    payload["threshold_provenance"] = result.threshold_source  # the Verifier says what it rests on
    payload["tar_at_threshold"] = render_tar(result, name)
    payload["tar_measured_on"] = "synthetic validation renders, not real photos" \
        if payload["tar_at_threshold"] is not None else None
    return payload, slim_view(result, name)


def render_tar(result: Any, checkpoint: str) -> float | None:
    """The checkpoint's recorded TAR for the probe's bin, only when the pair was decided by the very render
    threshold that TAR was measured at (a real-photo rule is another threshold: its render TAR would mislead)."""
    if result.threshold_evidence != EVIDENCE_RENDERS:
        return None
    return checkpoint_tar(checkpoint, result.probe.bin, result.far)


@mcp_tool("verify")
@readable_errors
@forgets_uploads
def verify_endpoint(enroll: str | None, probe: str | None, scan: str | None = None, far: float = DEFAULT_FAR,
                    checkpoint: str | None = None) -> dict:
    """Decide whether two face photos show the same person (1:1 verification), at any head pose.

    Scores the cosine similarity of the two faces' embeddings against the threshold calibrated at the chosen
    false accept rate, and reports each face's head pose. Uploads are deleted once the answer is sent.

    Args:
        enroll: Enrollment photo (a public http(s) URL or a base64 data URL): a frontal face of the claimed person.
        probe: Probe photo to check against the enrollment (URL or base64); any head pose up to profile.
        scan: Optional 3D scan of the enrollee (.ply/.obj/.npy); it only adds the 3D attention view.
        far: False accept rate of the decision threshold, a number: 0.01 (1%) or 0.001 (0.1%).
        checkpoint: Checkpoint name, e.g. "default".

    Returns:
        A dict with "match", "score", "threshold", "far", "threshold_evidence" ("real photos", "synthetic
        renders" or "none"), "threshold_provenance" (what the threshold rests on, in words), each face's yaw,
        pitch, roll and pose bin, and "tar_at_threshold" (render TAR of that very threshold, else null).
    """
    return _verify(enroll, probe, scan, far, checkpoint)[0]


@forgets_uploads
def verify_for_view(enroll: str | None, probe: str | None, scan: str | None, far: Any,
                    checkpoint: str | None) -> tuple:
    """The Verify button: the /verify answer and the view to draw; on bad input (no face, unreadable photo)
    no view, so that the previous result is cleared, and the error where the verdict goes."""
    try:
        payload, view = readable_errors(_verify)(enroll, probe, scan, far, checkpoint)
    except gr.Error as exc:
        return None, None, error_markdown(exc.message)
    return payload, view, gr.skip()


def verdict_markdown(view: VerifyView) -> str:
    """Verdict, score against threshold and what the FAR means, in words."""
    r = view.result
    far_text = far_label(r.far)
    head = "## Match: Same person" if r.match else "## No match: Different people"
    sign = "≥" if r.score >= r.threshold else "<"
    lines = [head, f"Score **{r.score:.3f}** {sign} threshold **{r.threshold:.3f}** (`{view.checkpoint}`)."]
    evidence = getattr(r, "threshold_evidence", EVIDENCE_NONE)
    if evidence == EVIDENCE_REAL:
        lines.append(f"Threshold with real-photo evidence: {r.threshold_source}.")
    elif evidence == EVIDENCE_RENDERS:
        lines.append(f"This checkpoint has no real-photo threshold: it was {r.threshold_source}. Among those "
                     f"renders about 1 in {round(1 / r.far):,} pairs of different people is accepted.")
    else:
        lines.append(f"Note: {r.threshold_source}.")
    tar = render_tar(r, view.checkpoint)
    if tar is not None:
        lines.append(f"At this very threshold, for probes in pose bin **{r.probe.bin}**, `{view.checkpoint}` accepts "
                     f"**{tar:.1%}** of genuine render pairs (TAR @ FAR {far_text} on synthetic validation renders, "
                     "not real photos).")
    return "\n\n".join(lines)


def _face_count(face: Any) -> int:
    faces = getattr(face, "faces", 1)
    return faces if isinstance(faces, int) else len(faces)


def pose_markdown(view: VerifyView) -> str:
    """Table of each face's head pose and pose bin."""
    rows = ["| photo | yaw | pitch | roll | pose bin | faces found |", "|---|---|---|---|---|---|"]
    for label, face in (("enrollment", view.result.enroll), ("probe", view.result.probe)):
        count = _face_count(face)
        used = f"{count} (used #{face.face_index + 1})" if count > 1 else str(count)
        angles = " | ".join("?" if v is None else f"{v:+.1f}°" for v in (face.yaw, face.pitch, face.roll))
        rows.append(f"| {label} | {angles} | {face.bin or '?'} | {used} |")
    notes = [f"{label}: {rejection_summary([r['reason'] for r in face.rejected_faces])} (not used)."
             for label, face in (("Enrollment", view.result.enroll), ("Probe", view.result.probe))
             if getattr(face, "rejected_faces", None)]
    return "\n".join(rows) + "".join(f"\n\n{note}" for note in notes)


def overlays(view: VerifyView | None, opacity: float) -> tuple[Any, Any]:
    """Enrollment and probe crops with the heatmap (each cell's share of the embedding) blended at `opacity`."""
    if view is None:
        return None, None
    return tuple(enlarged(overlay_heatmap(face.crop, face.heatmap, float(opacity), grid=face.grid))
                 for face in (view.result.enroll, view.result.probe))


def enlarged(image: np.ndarray, height: int = CROP_VIEW_HEIGHT) -> np.ndarray:
    """`image` scaled up to `height` px (a 112-150 px chip is shown at its own size by the browser)."""
    h, w = image.shape[:2]
    if h >= height:
        return image
    return cv2.resize(image, (round(w * height / h), height), interpolation=cv2.INTER_CUBIC)


@readable_errors
def render_verify(view: VerifyView | None, opacity: float) -> tuple:
    """Everything the Verify tab shows for a result; without one (the request failed) the previous result's
    pose table, crops and 3D view are cleared and the verdict keeps the error."""
    if view is None:
        return gr.skip(), "", None, None, None, gr.update(visible=False), None
    enroll_overlay, probe_overlay = overlays(view, opacity)
    source = getattr(view.result, "points_source", None)
    figure = attention_figure(view.result.points, view.result.point_attention,
                              f"3D attention<br><sub>points: {html.escape(source)}</sub>" if source else "3D attention")
    return (verdict_markdown(view), pose_markdown(view), enroll_overlay, probe_overlay, figure,
            gr.update(visible=figure is not None), slim_view(view.result, view.checkpoint, keep_points=False))


@readable_errors
def rerender_overlays(view: VerifyView | None, opacity: float) -> tuple[Any, Any]:
    """Only the crops, when the opacity slider moves (no model call)."""
    if view is None:
        return gr.skip(), gr.skip()
    return overlays(view, opacity)


@mcp_tool("embed")
@readable_errors
@forgets_uploads
def embed_endpoint(image: str | None, checkpoint: str | None) -> dict:
    """Compute the identity embedding of the largest face in a photo (an L2-normalised vector).

    Two embeddings of the same person have a high cosine similarity; compare them with /verify's threshold.
    The photo is deleted once the answer is sent.

    Args:
        image: Photo with a face (a public http(s) URL or a base64 data URL).
        checkpoint: Checkpoint name, e.g. "default".

    Returns:
        A dict with "embedding" (list of floats), "dim" (its length, set by the checkpoint's network) and
        "checkpoint".
    """
    image = required_upload(image, "photo")
    name = resolve_checkpoint(checkpoint)
    output = MODELS.get(name).embed(image)
    if hasattr(output, "to_dict"):
        payload = json_safe(output.to_dict())
    else:
        vector = np.asarray(getattr(output, "embedding", output), dtype=np.float64).reshape(-1)
        payload = {"embedding": vector.tolist()}
    payload["dim"] = len(payload.get("embedding") or [])
    payload["checkpoint"] = name
    return payload


def verify_tab(demo: gr.Blocks) -> None:
    with gr.Row():
        enroll = photo_upload("enrollment photo (frontal)", elem_id="enroll")
        probe = photo_upload("probe photo (any pose; upload, webcam or paste)", elem_id="probe", webcam=True)
        with gr.Column():
            scan = scan_upload("3D scan of the enrollee (optional)", elem_id="scan")
            far = far_radio()
            checkpoint = checkpoint_dropdown()
            button = gr.Button("Verify", variant="primary", elem_id="verify-button")
    keep_example_files(gr.Examples(real_photo_examples(), [enroll, probe, scan],
                                   label="Real photos (US public domain)"))
    synthetic = synthetic_examples()
    if synthetic:
        keep_example_files(gr.Examples(synthetic, [enroll, probe, scan], elem_id="synthetic-examples",
                                       label="Synthetic renders (frontal vs 45° and 90°) with scan"))
    verdict = gr.Markdown(elem_id="verdict")
    poses = gr.Markdown(elem_id="poses")
    with gr.Row():
        # no fixed height: the box fits the enlarged crop (a fixed height clipped it under the label bar)
        enroll_view = gr.Image(label="enrollment crop + heatmap (where the embedding comes from)", interactive=False,
                               elem_id="enroll-crop")
        probe_view = gr.Image(label="probe crop + heatmap (where the embedding comes from)", interactive=False,
                              elem_id="probe-crop")
        with gr.Column(visible=False) as plot_box:
            plot = gr.Plot(label="3D point cloud coloured by each point's share of the 3D embedding",
                           elem_id="attention-3d")
    gr.HTML(colour_scale_html(), elem_id="heatmap-scale")
    opacity = gr.Slider(0, 1, value=DEFAULT_OPACITY, step=0.05, label="heatmap opacity", elem_id="verify-opacity")
    with gr.Accordion("raw result (what the /verify API returns)", open=False):
        details = gr.JSON(label="result")
    state = gr.State(None, time_to_live=STATE_TTL_SECONDS)
    inputs = [enroll, probe, scan, far, checkpoint]
    button.click(verify_for_view, inputs, [details, state, verdict], api_visibility="private",
                 concurrency_id="model").then(
        render_verify, [state, opacity], [verdict, poses, enroll_view, probe_view, plot, plot_box, state],
        api_visibility="private")
    # The /verify endpoint and MCP tool: the same inputs, no gr.State output (Gradio's MCP server drops State
    # outputs by position from the client's answer, which has none: "pop index out of range" for every call).
    gr.Button(visible=False, elem_id="verify-api").click(verify_endpoint, inputs, details, api_name="verify",
                                                         concurrency_id="model")
    # .input fires for the number box too (typed values); .release alone missed them
    opacity.input(rerender_overlays, [state, opacity], [enroll_view, probe_view], api_visibility="private",
                  trigger_mode="always_last")
    with gr.Accordion("embedding (the /embed API)", open=False):
        with gr.Row():
            photo = photo_upload("photo", elem_id="embed-photo")
            embedding = gr.JSON(label="embedding")
        embed_button = gr.Button("Embed")
    embed_button.click(embed_endpoint, [photo, checkpoint], embedding, api_name="embed", concurrency_id="model")
    demo.load(refresh_checkpoints, checkpoint, checkpoint, api_visibility="private")
