"""Attention reports that rerun from one command: `pose3dfr attention` (a PNG grid per identity of its yaw sweep
and a JSON of the statistics per |yaw| bin) and the faithfulness table of benchmarks/attention_faithfulness.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import cv2

from pose3dfr.eval.attention import ChipReport, FaceChip, Ranking, chip_report, summarise
from pose3dfr.eval.attention_data import dataset_faces
from pose3dfr.eval.attention_views import sweep_grid, view_column, view_point_heat

REPORT_FILE = "attention.json"


def faithfulness(verifier: Any, faces: Iterable[FaceChip], every_k: bool = False,
                 progress: Callable[[ChipReport], None] | None = None,
                 extra: dict[str, Ranking] | None = None) -> list[ChipReport]:
    """chip_report of every face with the Verifier's model (pose3dfr.eval.attention), with `extra` rankings."""
    reports = []
    for face in faces:
        reports.append(chip_report(verifier.model, face, every_k=every_k, extra=extra))
        if progress is not None:
            progress(reports[-1])
    return reports


def identity_figure(verifier: Any, faces: Sequence[FaceChip], reports: Sequence[ChipReport], title: str):
    """RGB grid of one identity's views by yaw: caption, heatmap overlay and (3D branch) the point heat."""
    model = verifier.model
    with_points = getattr(model, "point_encoder", None) is not None
    order = sorted(range(len(faces)), key=lambda i: (faces[i].yaw is None, faces[i].yaw or 0.0))
    columns = [view_column(faces[i].chip, reports[i], verifier.grid,
                           view_point_heat(model, faces[i]) if with_points else None, with_points) for i in order]
    return sweep_grid(columns, title)


def attention_report(verifier: Any, root: str | Path, identities: Sequence[str], out: str | Path,
                     every_k: bool = False, log: Callable[[str], None] = print) -> dict[str, Any]:
    """For each identity: OUT/<identity>.png (its views side by side) and, for all, OUT/attention.json (the
    statistics per |yaw| bin and per view). Returns the JSON's content."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    everything: list[ChipReport] = []
    for identity in identities:
        faces = list(dataset_faces(verifier, root, [identity]))
        reports = faithfulness(verifier, faces, every_k)
        everything.extend(reports)
        if faces:
            figure = identity_figure(verifier, faces, reports, f"{verifier.name}: identity {identity} "
                                     "(heatmap: each cell's share of the embedding; row 3: 3D point heat)")
            cv2.imwrite(str(out / f"{identity}.png"), figure[:, :, ::-1])
        log(f"identity {identity}: {len(faces)} views")
    content = {"checkpoint": verifier.name, "data": Path(root).name, "identities": list(identities),
               "every_k": every_k, "per_bin": summarise(everything), "views": [r.to_dict() for r in everything]}
    (out / REPORT_FILE).write_text(json.dumps(content, indent=1))
    return content


def summary_table(summaries: dict[str, dict[str, Any]], extra: Sequence[str] = ()) -> str:
    """Markdown table, one row per (checkpoint, |yaw| bin): deletion AUC of the heatmap, of the map the app drew
    before (attention received, or the feature norm), of random cells and of any `extra` rankings, how often the
    heatmap beats random, and the heatmap's statistics."""
    head = ["checkpoint", "bin", "chips", "AUC heatmap", "AUC previous map", "AUC random", *(f"AUC {e}" for e in extra),
            "heatmap > random", "entropy", "CoM in face", "mass on face", "sink share"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, per_bin in summaries.items():
        for label, s in per_bin.items():
            auc = s["auc"]
            previous = next((v for k, v in auc.items() if k not in ("heatmap", "random", *extra)), None)
            heat = s["maps"]["heatmap"]
            sink = s.get("attention", {}).get("sink_share")
            cells = [name, label, str(s["chips"]), _fmt(auc["heatmap"]), _fmt(previous), _fmt(auc["random"]),
                     *(_fmt(auc.get(e)) for e in extra), f"{s['beats_random']:.0%}", f"{heat['entropy']:.2f}",
                     _pct(heat["com_in_face"]), _pct(heat["face_mass"]), _pct(sink)]
            rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"
