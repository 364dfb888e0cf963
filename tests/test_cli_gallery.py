"""`pose3dfr gallery build|search|add|remove` and `pose3dfr export` from the command line, and --verbose."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

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
sys.path.insert(0, {root!r})
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
    out = subprocess.run([sys.executable, "-c", LOGGING_CHILD.format(root=str(project_root))], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    for line in ("logged while silenced", "handler made inside", "handler made inside, after the end", "logged after"):
        assert line in out.stderr, out.stderr
    assert "native line" not in out.stderr
