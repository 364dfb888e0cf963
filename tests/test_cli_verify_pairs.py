"""`pose3dfr verify-pairs`: a CSV of pairs scored, per-pair errors in a column, not fatal."""

from __future__ import annotations

import csv
import shutil

import numpy as np
from PIL import Image

from pose3dfr.cli import main


def test_verify_pairs_scores_and_reports_errors(photos_dir, tmp_path, capsys):
    for name in ("obama.jpg", "obama2.jpg", "biden.jpg"):
        shutil.copy(photos_dir / name, tmp_path / name)
    Image.fromarray(np.full((200, 200, 3), 128, np.uint8)).save(tmp_path / "grey.png")
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("enroll,probe,note\nobama.jpg,obama2.jpg,same\nobama.jpg,biden.jpg,other\n"
                     "obama.jpg,missing.jpg,x\ngrey.png,obama.jpg,y\n")
    out = tmp_path / "scores.csv"
    assert main(["verify-pairs", str(pairs), "--out", str(out)]) == 0
    assert "4 pairs, 5 photos, 2 pairs with an error" in capsys.readouterr().out
    rows = list(csv.DictReader(out.open()))
    assert [r["match"] for r in rows[:2]] == ["true", "false"] and float(rows[0]["score"]) > float(rows[1]["score"])
    assert rows[0]["error"] == "" and rows[0]["enroll_yaw"] and float(rows[0]["threshold"]) > 0
    assert rows[2]["error"].startswith("probe: ") and "missing.jpg" in rows[2]["error"] and rows[2]["score"] == ""
    assert rows[3]["error"].startswith("enroll: ") and rows[3]["score"] == ""


def test_verify_pairs_needs_the_columns(tmp_path, capsys):
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("a,b\nx.jpg,y.jpg\n")
    assert main(["verify-pairs", str(pairs), "--out", str(tmp_path / "o.csv")]) == 1
    assert "enroll, probe" in capsys.readouterr().err
