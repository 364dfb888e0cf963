"""The Identify tab (1:N) and its /identify endpoint (also an MCP tool): galleries in GALLERY_DIR and the demo
gallery of the shipped photos, each loaded once per checkpoint."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import gradio as gr

from pose3dfr.errors import GalleryError
from pose3dfr.inference.face_checks import rejection_summary
from pose3dfr.inference.identify import enrol_photos, in_use, load_gallery, new_gallery, search_photo
from pose3dfr.paths import PHOTOS_DIR
from pose3dfr.ui.common import (CACHE_DIR, DEFAULT_FAR, echo, error_markdown, far_radio, far_value, mcp_tool,
                                readable_errors, user_error)
from pose3dfr.ui.models import MODELS, checkpoint_dropdown, resolve_checkpoint
from pose3dfr.ui.uploads import forgets_uploads, keep_example_files, photo_upload, required_upload


# Galleries offered besides the demo: every `<name>/gallery.json` here (built with `pose3dfr gallery build`).
GALLERY_DIR = Path(os.environ.get("POSE3DFR_GALLERY_DIR") or CACHE_DIR / "galleries")
# The gallery the app builds itself from the shipped public-domain photos (identity -> photo in assets/photos).
DEMO_GALLERY = "demo"
DEMO_GALLERY_LABEL = "demo: obama, biden, eileen-collins (shipped photos)"
DEMO_IDENTITIES = {"obama": "obama.jpg", "biden": "biden.jpg", "eileen-collins": "astronaut.png"}
# Where the demo gallery of each checkpoint is saved once built (a gallery must match its checkpoint).
DEMO_GALLERY_CACHE = CACHE_DIR / "demo-galleries"
# Largest top-K offered (a gallery ranks every identity; the table stays readable).
MAX_TOP_K = 50
DEFAULT_TOP_K = 5


def list_galleries() -> list[str]:
    """Gallery choices: the demo gallery, then every gallery folder in GALLERY_DIR."""
    found = sorted(p.parent.name for p in GALLERY_DIR.glob("*/gallery.json")) if GALLERY_DIR.is_dir() else []
    return [DEMO_GALLERY, *(name for name in found if name != DEMO_GALLERY)]


def gallery_choices() -> list[tuple[str, str]]:
    """(label, value) of each gallery for the dropdown."""
    return [(DEMO_GALLERY_LABEL if name == DEMO_GALLERY else name, name) for name in list_galleries()]


class GalleryCache:
    """Each (gallery, checkpoint) loaded once and shared (searches are read-only); a gallery file that changes
    on disk is reloaded. The demo gallery is built on its first use per checkpoint and saved in the cache."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, str], tuple[Any, Any]] = {}  # (gallery, checkpoint) -> (stamp, Gallery)

    def get(self, choice: str, checkpoint: str, verifier: Any) -> Any:
        folder = self._folder(choice, checkpoint)
        with self._lock:
            if choice == DEMO_GALLERY and not (folder / "gallery.json").is_file():
                self._build_demo(verifier, folder)
            stamp = (folder / "gallery.json").stat().st_mtime_ns if (folder / "gallery.json").is_file() else None
            key = (choice, checkpoint)
            cached = self._entries.get(key)
            if cached is None or cached[0] != stamp:
                if stamp is None:
                    raise user_error(f"Gallery {echo(choice)} is gone; choose another.")
                cached = (stamp, self._load(choice, folder, verifier))
                self._entries[key] = cached
            cached[1].check_checkpoint(*in_use(verifier))
            return cached[1]

    def _load(self, choice: str, folder: Path, verifier: Any) -> Any:
        try:
            return load_gallery(folder, verifier)
        except GalleryError:
            if choice != DEMO_GALLERY:
                raise
            self._build_demo(verifier, folder)  # the checkpoint's weights changed since: rebuild the demo
            return load_gallery(folder, verifier)

    @staticmethod
    def _folder(choice: str, checkpoint: str) -> Path:
        if choice == DEMO_GALLERY:
            return DEMO_GALLERY_CACHE / checkpoint
        if choice not in list_galleries():  # confined to GALLERY_DIR's own folders: no paths, no traversal
            raise user_error(f"Unknown gallery {echo(choice)}; available: {', '.join(list_galleries())}.")
        return GALLERY_DIR / choice

    @staticmethod
    def _build_demo(verifier: Any, folder: Path) -> None:
        gallery = new_gallery(verifier)
        photos = [(name, PHOTOS_DIR / photo) for name, photo in DEMO_IDENTITIES.items()]
        report = enrol_photos(gallery, verifier, photos)
        if not len(gallery):
            raise user_error(f"The demo gallery could not be built: {report.failures[0].reason}")
        gallery.save(folder)


GALLERIES = GalleryCache()


def top_k_value(top_k: Any) -> int:
    """The top-K asked for, else a gr.Error."""
    if not isinstance(top_k, (int, float)) or int(top_k) != top_k or not 1 <= top_k <= MAX_TOP_K:
        raise user_error(f"top_k must be a whole number from 1 to {MAX_TOP_K}; got {echo(top_k)}.")
    return int(top_k)


def _identify(probe: str | None, gallery: str | None, checkpoint: str | None, top_k: Any, far: Any) -> dict:
    """The /identify answer."""
    probe = required_upload(probe, "probe photo")
    if not gallery:
        raise gr.Error("Choose a gallery.", print_exception=False)
    far, top_k, name = far_value(far), top_k_value(top_k), resolve_checkpoint(checkpoint)
    verifier = MODELS.get(name)
    result = search_photo(GALLERIES.get(gallery, name, verifier), verifier, probe, top_k=top_k, far=far)
    t = result.threshold
    return {"best": result.best.name if result.best else None,
            "matches": [{"rank": i + 1, "name": m.name, "score": round(float(m.score), 4), "match": bool(m.match)}
                        for i, m in enumerate(result.matches)],
            "threshold": round(float(t.value), 4), "far": t.far, "calibrated": t.calibrated,
            "threshold_evidence": t.evidence, "threshold_source": t.source, "threshold_provenance": t.source,
            "probe_yaw": None if result.probe_yaw is None else round(float(result.probe_yaw), 1),
            "probe_bin": result.probe_bin, "probe_faces": result.probe_faces,
            "probe_face_box": None if result.probe_box is None else [round(float(v)) for v in result.probe_box],
            "rejected_faces": result.rejected_faces,
            "gallery": gallery, "checkpoint": name}


@mcp_tool("identify")
@readable_errors
@forgets_uploads
def identify_endpoint(probe: str | None, gallery: str | None, checkpoint: str | None, top_k: int = DEFAULT_TOP_K,
                      far: float = DEFAULT_FAR) -> dict:
    """Search a gallery for the people closest to the face in a probe photo (1:N identification).

    Ranks the gallery's identities by cosine similarity to the probe's embedding and accepts the best one only
    when its score reaches the threshold calibrated at the chosen false accept rate; otherwise the answer is
    "no one in the gallery". The photo is deleted once the answer is sent.

    Args:
        probe: Photo of one person's face (a public http(s) URL or a base64 data URL); in a photo of several
            faces the largest is used ("probe_faces", "probe_face_box"). Any head pose up to profile.
        gallery: Gallery name: the demo gallery (obama, biden, eileen-collins) or one from the server's gallery folder.
        checkpoint: Checkpoint name (the gallery is versioned with the checkpoint it was built with), e.g. "default".
        top_k: How many identities to return, best first (1 to 50).
        far: False accept rate of the decision threshold, a number: 0.01 (1%) or 0.001 (0.1%).

    Returns:
        A dict with "best" (the accepted identity, or None for no one in the gallery), "matches" (rank, name,
        score, match), "threshold", "far", "threshold_provenance", the probe's yaw and pose bin, and how many
        faces the probe photo holds and the box (x0, y0, x1, y1 px) of the one searched.
    """
    return _identify(probe, gallery, checkpoint, top_k, far)


@forgets_uploads
def identify_for_view(probe: str | None, gallery: str | None, checkpoint: str | None, top_k: Any,
                      far: Any) -> tuple:
    """The Identify button: the /identify answer, or on bad input none (the previous table is cleared) and
    the error where the verdict goes."""
    try:
        return readable_errors(_identify)(probe, gallery, checkpoint, top_k, far), gr.skip()
    except gr.Error as exc:
        return None, error_markdown(exc.message)


IDENTIFY_COLUMNS = ["rank", "identity", "score", "above threshold?"]


def render_identify(payload: dict | None) -> tuple:
    """The top-K table and the verdict line of an /identify answer (without one: the table cleared and the
    verdict, which shows the error, kept)."""
    if not payload:
        return gr.update(value=[]), gr.skip()
    rows = [[m["rank"], m["name"], f"{m['score']:.3f}", "yes" if m["match"] else "no"] for m in payload["matches"]]
    pose = "" if payload["probe_yaw"] is None else f" Probe yaw {payload['probe_yaw']:+.0f}° (bin {payload['probe_bin']})."
    threshold = f"{payload['threshold']:.3f} ({payload['threshold_provenance']})"
    face = face_used(payload.get("probe_faces"), payload.get("probe_face_box"))
    if payload.get("rejected_faces"):
        face += f" {rejection_summary([r['reason'] for r in payload['rejected_faces']])} (not searched)."
    if payload["best"]:
        verdict = f"## Best match: {payload['best']}\n\nScore ≥ threshold {threshold}.{pose}{face}"
    else:
        verdict = f"## No one in the gallery\n\nNo identity reaches the threshold {threshold}.{pose}{face}"
    return gr.update(value=rows), verdict


def face_used(faces: int | None, box: list | None) -> str:
    """Which face of the probe photo was searched, when it holds several."""
    if not faces or faces < 2:
        return ""
    where = "" if not box else f", at x {box[0]}-{box[2]}, y {box[1]}-{box[3]} px"
    return f" **{faces} faces** in the photo: the largest was searched{where}."


def identify_tab(demo: gr.Blocks, public: bool) -> None:
    gr.Markdown("Search a gallery for the people closest to a probe face (1:N). The best identity is accepted "
                "only when its score reaches the threshold calibrated at the chosen FAR; otherwise the answer is "
                "\"no one in the gallery\". The demo gallery holds the three shipped public-domain photos "
                "(obama, biden, eileen-collins; try obama2 or obama3 as probes)."
                + ("" if public else " Other galleries: folders made with `pose3dfr gallery build` in "
                                     "`$POSE3DFR_GALLERY_DIR` (docs/app.md)."))
    with gr.Row():
        probe = photo_upload("probe photo (upload, webcam or paste)", elem_id="identify-probe", webcam=True)
        with gr.Column():
            gallery = gr.Dropdown(gallery_choices(), value=DEMO_GALLERY, label="gallery", elem_id="identify-gallery")
            checkpoint = checkpoint_dropdown()
            top_k = gr.Number(DEFAULT_TOP_K, label="top-K", precision=0, minimum=1, maximum=MAX_TOP_K)
            far = far_radio()
            button = gr.Button("Identify", variant="primary", elem_id="identify-button")
    examples = [[str(PHOTOS_DIR / f)] for f in ("obama2.jpg", "obama3.jpg") if (PHOTOS_DIR / f).is_file()]
    if examples:
        keep_example_files(gr.Examples(examples, [probe], label="Probes (US public domain)"))
    verdict = gr.Markdown(elem_id="identify-verdict")
    table = gr.Dataframe(headers=IDENTIFY_COLUMNS, datatype=["number", "str", "str", "str"], interactive=False,
                         label="top-K identities", elem_id="identify-table")
    with gr.Accordion("raw result (what the /identify API returns)", open=False):
        details = gr.JSON(label="result")
    inputs = [probe, gallery, checkpoint, top_k, far]
    button.click(identify_for_view, inputs, [details, verdict], api_visibility="private", concurrency_id="model"
                 ).then(render_identify, details, [table, verdict], api_visibility="private")
    # The /identify endpoint and MCP tool (the same inputs; the UI's event is private, as in Verify).
    gr.Button(visible=False, elem_id="identify-api").click(identify_endpoint, inputs, details, api_name="identify",
                                                           concurrency_id="model")
    demo.load(refresh_galleries, gallery, gallery, api_visibility="private")


def refresh_galleries(current: str | None) -> dict:
    """Dropdown update listing the galleries now (one built after start appears)."""
    return gr.update(choices=gallery_choices(), value=current if current in list_galleries() else DEMO_GALLERY)
