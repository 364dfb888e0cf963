"""`pose3dfr verify-pairs`: a CSV of pairs scored, per-pair errors in a column (exit status 1 when any pair
failed), relative photo paths taken from the current folder (or --root)."""

from __future__ import annotations

import csv
import shutil

import numpy as np
from PIL import Image

from pose3dfr.cli import main


def test_verify_pairs_scores_and_reports_errors(photos_dir, tmp_path, capsys, monkeypatch):
    for name in ("obama.jpg", "obama2.jpg", "biden.jpg"):
        shutil.copy(photos_dir / name, tmp_path / name)
    Image.fromarray(np.full((200, 200, 3), 128, np.uint8)).save(tmp_path / "grey.png")
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("enroll,probe,note\nobama.jpg,obama2.jpg,same\nobama.jpg,biden.jpg,other\n"
                     "obama.jpg,missing.jpg,x\ngrey.png,obama.jpg,y\n")
    out = tmp_path / "scores.csv"
    monkeypatch.chdir(tmp_path)
    assert main(["verify-pairs", str(pairs), "--out", str(out)]) == 1  # two pairs failed: not a success
    captured = capsys.readouterr()
    assert "4 pairs, 5 photos, 2 pairs with an error" in captured.out
    assert "2 of 4 pairs failed" in captured.err and "missing.jpg" in captured.err
    rows = list(csv.DictReader(out.open()))
    assert [r["match"] for r in rows[:2]] == ["true", "false"] and float(rows[0]["score"]) > float(rows[1]["score"])
    assert rows[0]["error"] == "" and rows[0]["enroll_yaw"] and float(rows[0]["threshold"]) > 0
    assert rows[2]["error"].startswith("probe: ") and "missing.jpg" in rows[2]["error"] and rows[2]["score"] == ""
    assert rows[3]["error"].startswith("enroll: ") and rows[3]["score"] == ""


def test_relative_paths_start_from_the_current_folder_or_root(photos_dir, tmp_path, capsys, monkeypatch):
    """Issue 32, item 13: paths were resolved against the CSV's folder, so a CSV kept elsewhere failed every pair
    whose path was written from where the command runs (and the command still exited 0)."""
    (tmp_path / "photos").mkdir()
    for name in ("obama.jpg", "obama2.jpg"):
        shutil.copy(photos_dir / name, tmp_path / "photos" / name)
    (tmp_path / "lists").mkdir()
    pairs = tmp_path / "lists" / "pairs.csv"
    pairs.write_text("enroll,probe\nphotos/obama.jpg,photos/obama2.jpg\n")
    monkeypatch.chdir(tmp_path)
    assert main(["verify-pairs", "lists/pairs.csv", "--out", "scores.csv"]) == 0
    assert "1 pairs, 2 photos, 0 pairs with an error" in capsys.readouterr().out
    (tmp_path / "lists" / "beside.csv").write_text("enroll,probe\n../photos/obama.jpg,../photos/obama2.jpg\n")
    monkeypatch.chdir(tmp_path / "photos")
    assert main(["verify-pairs", str(tmp_path / "lists" / "beside.csv"), "--root", str(tmp_path / "lists"),
                 "--out", str(tmp_path / "beside-scores.csv")]) == 0
    assert [r["match"] for r in csv.DictReader((tmp_path / "beside-scores.csv").open())] == ["true"]


def test_verify_pairs_needs_the_columns(tmp_path, capsys):
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("a,b\nx.jpg,y.jpg\n")
    assert main(["verify-pairs", str(pairs), "--out", str(tmp_path / "o.csv")]) == 1
    assert "enroll, probe" in capsys.readouterr().err
