"""The end-to-end protocol (pose3dfr.eval.end_to_end) on hand-made records: enrolment, no-face rejections, val
thresholds; its report's sections and the paired comparison of two recipes."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from pose3dfr.eval import end_to_end as e2e
from pose3dfr.eval import end_to_end_paired as paired_e2e
from pose3dfr.eval.doc_sections import kept_sections, write_section


def _records(identities: int = 8):
    return [SimpleNamespace(identity=i, expression=exp, yaw=yaw, pitch=0.0)
            for i in range(identities) for exp in ("1_neutral", "2_smile") for yaw in (-90.0, 0.0, 45.0, 90.0)]


def _embeddings(records, rng, noise=0.05):
    centres = rng.normal(size=(max(r.identity for r in records) + 1, 16))
    return [centres[r.identity] + noise * rng.normal(size=16) for r in records]


def test_enrolment_is_the_frontal_neutral_render_only():
    records = _records(3)
    mask = e2e.enrolment_mask(records)
    assert mask.sum() == 3
    assert all(records[i].yaw == 0 and records[i].expression == "1_neutral" for i in np.flatnonzero(mask))


def test_no_face_is_a_rejection_and_thresholds_come_from_validation():
    rng = np.random.default_rng(0)
    val, test = _records(), _records()
    p_val, p_test = e2e.pairs(val), e2e.pairs(test)
    thresholds = e2e.val_thresholds(e2e.score_matrix(_embeddings(val, rng), p_val["enrol"]), p_val)
    emb = _embeddings(test, rng)
    for i, r in enumerate(test):
        if abs(r.yaw) == 90.0:
            emb[i] = None  # the detector found nothing
    found = np.array([x is not None for x in emb])
    truth = np.array([[r.yaw, r.pitch] for r in test])
    estimate = truth + 2.0
    estimate[~found] = np.nan
    columns = e2e.probe_thresholds(thresholds, None, truth[:, 0])
    rows = e2e.per_yaw(e2e.score_matrix(emb, p_test["enrol"]), p_test, columns, found, {"net": estimate}, truth)
    assert set(rows) == {"0", "45", "90"}  # folded |yaw|
    assert rows["90"]["face_found"] == 0.0 and rows["90"]["tar_0.01"] == 0.0 and rows["90"]["yaw_mae_net"] is None
    assert rows["45"]["face_found"] == 1.0 and rows["45"]["tar_0.01"] == 1.0
    assert abs(rows["45"]["yaw_mae_net"] - 2.0) < 1e-9 and rows["45"]["pose_from_net"] == 1.0
    assert rows["0"]["probes"] == 8  # the smile render at 0 (the neutral one enrols)
    assert rows["45"]["impostor_accept_0.01"] <= 0.05


def test_pose3dfr_decides_with_the_yaw_curve_at_the_estimated_yaw():
    """Each probe is held to the validation thresholds measured per |yaw|, interpolated at the pipeline's yaw
    estimate: a 90 degree profile estimated at 84 gets nearly the 90 degree threshold, not the 45 one."""
    rng = np.random.default_rng(1)
    val = _records(12)  # 132 impostor pairs at 0 degrees: enough for a 1% point (>= 1 / FAR), not for 0.1%
    p_val = e2e.pairs(val)
    scores = e2e.score_matrix(_embeddings(val, rng), p_val["enrol"])
    calibration = e2e.val_calibration(scores, p_val)
    curve = calibration["far"]["1e-2"]["yaw_curve"]
    assert curve["yaw"] == [0.0, 45.0, 90.0]  # the validation probes' |yaw| groups
    assert calibration["far"]["1e-3"]["yaw_curve"]["yaw"] == []  # too few impostor pairs for any 0.1% point
    overall = e2e.val_thresholds(scores, p_val)
    columns = e2e.probe_thresholds(overall, calibration, np.array([0.0, 45.0, -90.0, np.nan, 84.0, 120.0]))
    t, (t0, t45, t90) = columns["0.01"], curve["threshold"]
    assert t[0] == t0 and t[1] == t45 and t[2] == t90 and t[5] == t90  # constant beyond the last point
    assert t[3] == overall["0.01"]  # pose unknown: the overall threshold
    assert t[4] == pytest.approx(t45 + (t90 - t45) * 39 / 45)
    assert e2e.probe_thresholds(overall, None, np.array([84.0]))["0.01"][0] == overall["0.01"]  # peers: one


def test_report_writes_its_section_and_both_charts(tmp_path):
    """One system's rows through system_rows and the report: the page keeps its text, the section names the
    command as it runs today, and the tables hold the rows (every face found: 100 at each |yaw|)."""
    from pose3dfr.eval.end_to_end_report import write_report

    rng = np.random.default_rng(2)
    records = _records()
    p = e2e.pairs(records)
    emb = _embeddings(records, rng)
    scores = e2e.score_matrix(emb, p["enrol"])
    truth = np.array([[r.yaw, r.pitch] for r in records])
    rows = e2e.system_rows("default", "pipeline", {"val": scores, "test": scores}, {"val": p, "test": p}, emb,
                           {"pipeline": truth + 1.0}, {"pipeline": truth + 1.0}, truth)
    assert rows["yaw_curve_from_val"] is not None and rows["by_yaw"]["45"]["yaw_mae_pipeline"] == pytest.approx(1.0)
    results = {"identities": {"val": 8, "test": 8}, "images": {"val": len(records), "test": len(records)},
               "systems": {"default/pipeline": rows},
               "command": "python benchmarks/end_to_end.py --data x"}  # recorded before benchmarks/ was a package
    doc = tmp_path / "b.md"
    doc.write_text("# Page\n")
    section = write_report(results, doc)
    text = doc.read_text()
    assert text.startswith("# Page") and "<!-- END_TO_END:START -->" in text and section.strip() in text
    assert "Command: `python -m benchmarks.end_to_end --data x` (8 test identities" in section  # the working one
    assert "| default/pipeline | 100 | 100 | 100 |" in section  # face found at 0, 45 and 90 degrees
    assert (tmp_path / "b_end_to_end.html").stat().st_size > 0 and (tmp_path / "b_end_to_end.png").stat().st_size > 0


def test_sections_are_replaced_in_place_and_kept(tmp_path):
    doc = tmp_path / "b.md"
    doc.write_text("# Page\n")
    write_section(doc, "A", "first")
    write_section(doc, "B", "other")
    write_section(doc, "A", "second")
    text = doc.read_text()
    assert text.count("A:START") == 1 and "second" in text and "first" not in text and "other" in text
    assert "# Page" not in kept_sections(text) and "second" in kept_sections(text)


def _e2e_result(path, seed: int, tars: dict[str, tuple[float, float]]):
    """An end-to-end result JSON with one pipeline system per prefix: {prefix: (TAR@1% at 0°, at 90°)}."""
    systems = {f"{prefix}{seed}/pipeline": {"by_yaw": {"0": {"tar_0.01": t0, "tar_0.001": t0 / 2},
                                                       "90": {"tar_0.01": t90, "tar_0.001": None}}}
               for prefix, (t0, t90) in tars.items()}
    systems[f"jam{seed}/oracle"] = {"by_yaw": {}}  # the oracle variant is never read
    path.write_text(json.dumps({"systems": systems}))
    return path


def test_paired_end_to_end_differences_pair_recipes_by_seed(tmp_path):
    files = [_e2e_result(tmp_path / "s1.json", 1, {"jam": (0.9, 0.5), "zv-full": (0.9, 0.6)}),
             _e2e_result(tmp_path / "s0.json", 0, {"jam": (1.0, 0.4), "zv-full": (0.8, 0.6)})]
    table = paired_e2e.paired(files, "jam", "zv-full")
    assert table["seeds"] == [0, 1] and table["yaws"] == ["0", "90"]
    diff = table["rows"]["difference"]["0.01"]
    assert diff["90"]["values"] == pytest.approx([20.0, 10.0]) and diff["90"]["mean"] == pytest.approx(15.0)
    assert diff["0"]["values"] == pytest.approx([-20.0, 0.0])
    assert table["rows"]["difference"]["0.001"]["90"]["mean"] is None  # no TAR@0.1% known at 90: no difference
    assert "zv-full minus jam" in paired_e2e.markdown(table, "jam", "zv-full")
    # a file without one of the recipes is refused, and so is one whose recipes come from different seeds
    _e2e_result(tmp_path / "bad.json", 2, {"jam": (1.0, 0.4)})
    with pytest.raises(ValueError, match="expected one system zv-full"):
        paired_e2e.paired([tmp_path / "bad.json"], "jam", "zv-full")
    mixed = json.loads(files[0].read_text())
    mixed["systems"]["zv-full3/pipeline"] = mixed["systems"].pop("zv-full1/pipeline")
    (tmp_path / "mixed.json").write_text(json.dumps(mixed))
    with pytest.raises(ValueError, match="jam seed 1 beside zv-full seed 3"):
        paired_e2e.paired([tmp_path / "mixed.json"], "jam", "zv-full")
