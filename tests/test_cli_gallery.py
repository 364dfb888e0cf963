"""`pose3dfr gallery build|search|add|remove` and `pose3dfr export` from the command line, and --verbose: a group
photo is enrolled with a warning and a search says which face it used; export writes only where asked."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from PIL import Image

from pose3dfr.cli import build_parser, main
from pose3dfr.logs import native_logs_silenced

# One worker runs every test of the session's ONNX export (xdist --dist loadgroup): it is exported once.
pytestmark = pytest.mark.xdist_group("onnx")


def test_gallery_commands_round_trip(people_folder, photos_dir, tmp_path, capsys):
    gallery = str(tmp_path / "g")
    assert main(["gallery", "build", str(people_folder), "--out", gallery]) == 0
    out = capsys.readouterr().out
    assert "enrolled 4 of 5 photos" in out and "blank/grey.png" in out and "empty/" in out
    assert main(["gallery", "build", str(people_folder), "--out", gallery]) == 1  # no silent overwrite
    assert "--overwrite" in capsys.readouterr().err
    assert main(["gallery", "search", gallery, str(photos_dir / "obama3.jpg"), "--top", "2", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["best"] == "obama" and len(result["matches"]) == 2 and result["matches"][0]["match"]
    assert main(["gallery", "remove", gallery, "obama"]) == 0
    assert "removed obama (2 templates)" in capsys.readouterr().out
    assert main(["gallery", "search", gallery, str(photos_dir / "obama3.jpg"), "--checkpoint", "dlib-pretrained"]) == 1
    assert "built with checkpoint 'default'" in capsys.readouterr().err


def _group_photo(photos_dir, path):
    """obama.jpg and a smaller biden.jpg side by side: two faces, obama's the larger."""
    left, right = (Image.open(photos_dir / name).convert("RGB") for name in ("obama.jpg", "biden.jpg"))
    left = left.resize((round(left.width * 400 / left.height), 400))
    right = right.resize((round(right.width * 320 / right.height), 320))
    canvas = Image.new("RGB", (left.width + right.width, 400), (128, 128, 128))
    canvas.paste(left, (0, 0))
    canvas.paste(right, (left.width, 40))
    canvas.save(path)


def test_gallery_build_warns_about_group_photos_and_search_names_the_face_used(photos_dir, tmp_path, capsys):
    """Issue 32, item 13: a group photo was enrolled under one name without a word."""
    people = tmp_path / "people"
    (people / "obama").mkdir(parents=True)
    _group_photo(photos_dir, people / "obama" / "group.jpg")
    assert main(["gallery", "build", str(people), "--out", str(tmp_path / "g")]) == 0
    err = capsys.readouterr().err
    assert "photos show several faces" in err and "obama/group.jpg: 2 faces found" in err
    assert main(["gallery", "search", str(tmp_path / "g"), str(people / "obama" / "group.jpg"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["probe_faces"] == 2 and len(result["probe_face_box"]) == 4 and result["best"] == "obama"
    assert main(["gallery", "search", str(tmp_path / "g"), str(people / "obama" / "group.jpg")]) == 0
    assert "2 faces in the photo: searched the largest, at x" in capsys.readouterr().out


def test_export_replaces_nothing_unasked(tmp_path, capsys, monkeypatch):
    """Issue 32, item 13: export left files in the working folder; it writes OUT.onnx and OUT.json only, and
    never replaces a file (nor a checkpoint's own record) without --overwrite. Refused before any model loads."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine.json").write_text("my notes")
    assert main(["export", "--onnx", "mine.onnx"]) == 1
    assert "mine.json exist already" in capsys.readouterr().err
    (tmp_path / "default.safetensors").write_bytes(b"weights")
    (tmp_path / "default.json").write_text("the checkpoint's record")
    assert main(["export", "--onnx", "default.onnx", "--overwrite"]) == 1
    assert "holds checkpoint default" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["default.json", "default.safetensors", "mine.json"]
    assert (tmp_path / "mine.json").read_text() == "my notes"


def test_export_writes_onnx_and_record(onnx_export):
    record = json.loads(onnx_export.with_suffix(".json").read_text())
    assert onnx_export.stat().st_size == record["onnx_bytes"] and record["input"][1] == "batch"


def test_native_logs_are_silenced_but_python_errors_show(capfd):
    with native_logs_silenced():
        os.write(2, b"native log line\n")
        print("python error line", file=sys.stderr)
    with native_logs_silenced(enabled=False):
        os.write(2, b"verbose native line\n")
    err = capfd.readouterr().err
    assert "python error line" in err and "verbose native line" in err and "native log line" not in err
    assert build_parser().parse_args(["--verbose", "info"]).verbose


LOGGING_CHILD = """
import logging, os, sys
logging.basicConfig(level=logging.INFO)  # as the app's main does: the handler holds sys.stderr (descriptor 2)
from pose3dfr.logs import native_logs_silenced
with native_logs_silenced():
    logging.getLogger("server").error("logged while silenced")
    os.write(2, b"native line\\n")
    made_inside = logging.getLogger("uvicorn-like")
    made_inside.addHandler(logging.StreamHandler())  # bound to the copy of stderr, as uvicorn's handlers are
    made_inside.error("handler made inside")
made_inside.error("handler made inside, after the end")
logging.getLogger("server").error("logged after")
"""


def test_server_log_lines_reach_the_real_stderr_while_native_logs_are_silenced(project_root):
    out = subprocess.run([sys.executable, "-c", LOGGING_CHILD], cwd=project_root,  # imports this checkout
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    for line in ("logged while silenced", "handler made inside", "handler made inside, after the end", "logged after"):
        assert line in out.stderr, out.stderr
    assert "native line" not in out.stderr
