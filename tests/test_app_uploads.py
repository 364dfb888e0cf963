"""What the app keeps on disk, in-process (no server): Gradio's sweep bookkeeping holds only regular files, the
examples' copies survive every sweep, our folder-wide sweep deletes old files whoever wrote them (never a kept
or busy one, never through a link), per-request deletion never touches a folder, scan uploads leave no
temporary file, image URLs of the server's own networks are refused with a reason, FAR is a number in the API,
and a failed Verify or Identify clears the previous result and shows the error where the verdict goes."""

from __future__ import annotations

import asyncio
from pathlib import Path

import gradio as gr
import pytest
from gradio.data_classes import FileData
from gradio.route_utils import delete_files_created_by_app

from pose3dfr.ui import common, identify, layout, sweep, uploads, verify


@pytest.fixture
def upload_root(tmp_path, monkeypatch) -> Path:
    """A private GRADIO_TEMP_DIR for blocks built in this test (Gradio reads it when a block is made)."""
    root = tmp_path / "gradio-uploads"
    root.mkdir()
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(root))
    return root


def _stored(root: Path, name: str, folder: str = "ab" * 32, data: bytes = b"user bytes") -> Path:
    """A file where Gradio stores an upload: <root>/<hex digest>/<name>."""
    path = root / folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_gradio_sweep_survives_a_folder_and_keeps_the_examples_scan(upload_root):
    """Items 2 and 7 of issue 32: Gradio's sweep stopped for good on os.remove(<a folder>), and it deleted the
    synthetic examples' scan copy, so clicking the example a minute after start failed."""
    demo = layout.build_demo(public=True)
    scan_copies = {Path(p) for b in demo.blocks.values() for p in getattr(b, "keep_in_cache", ())
                   if str(p).endswith(".ply")}
    assert scan_copies and all(p.is_file() for p in scan_copies)
    upload = _stored(upload_root, "photo.jpg")
    demo.upload_file_set.add(str(upload))
    for files in (demo.upload_file_set, next(iter(demo.blocks.values())).temp_files):
        files.add(str(upload_root))  # what a FileData naming the folder did
        files.add(str(upload.parent))
    delete_files_created_by_app(demo, age=0)  # raised IsADirectoryError, which ended Gradio's sweep task
    assert upload_root.is_dir() and not upload.exists()
    assert all(p.is_file() for p in scan_copies)


def test_discard_uploads_never_touches_the_folder_or_a_directory(upload_root):
    photo = _stored(upload_root, "photo.jpg")
    uploads.discard_uploads([str(upload_root), str(photo.parent), str(upload_root / "missing.jpg")])
    assert photo.is_file()
    uploads.discard_uploads([str(photo)])
    assert not photo.exists() and not photo.parent.exists()
    with pytest.raises(gr.Error, match="not an uploaded file"):
        uploads.required_upload(str(upload_root), "enrollment photo")


def test_the_sweep_deletes_old_files_whoever_wrote_them_but_no_kept_busy_or_linked_one(upload_root, tmp_path):
    outside = tmp_path / "outside.jpg"
    outside.write_bytes(b"not ours")
    mcp_copy = _stored(upload_root, "file.jpg", "cd" * 32)  # the MCP server's base64 copy: tracked by no one
    leftover = upload_root / "tmpk2j4abcd"  # gr.File's 0-byte temporary file
    leftover.write_bytes(b"")
    kept, busy = _stored(upload_root, "example.png", "ef" * 32), _stored(upload_root, "busy.jpg", "01" * 32)
    link = upload_root / ("23" * 32) / "link.jpg"
    link.parent.mkdir()
    link.symlink_to(outside)
    odd = upload_root / ("45" * 32) / "folder-named.jpg"
    odd.mkdir(parents=True)
    (upload_root / "not-a-hash").mkdir()

    class Demo:  # the served Blocks as the sweep reads it: blocks with keep_in_cache
        blocks = {0: type("Block", (), {"keep_in_cache": {str(kept)}})()}

    sweeper = sweep.UploadSweeper(Demo(), every=1, age=3600, in_use=lambda: {str(busy)})
    assert sweeper.sweep_once() == 0 and mcp_copy.exists()  # younger than the age: stays
    assert sweeper.sweep_once(0.0) == 3  # the copy, the temporary file, the link (never its target)
    sweeper.sweep_once(0.0)  # folders emptied by the first pass are removed by the next
    assert not mcp_copy.exists() and not leftover.exists() and not link.is_symlink() and outside.is_file()
    assert kept.is_file() and busy.is_file() and odd.is_dir() and (upload_root / "not-a-hash").is_dir()
    assert not mcp_copy.parent.exists() and not link.parent.exists()
    sweeper.sweep_once(0.0, final=True)  # the process is ending: a busy file goes too, a kept one stays
    assert not busy.exists() and kept.is_file()


def test_sigterm_sweeps_the_folder_before_the_process_ends(upload_root):
    """Photos sent as base64 were still on disk 22 minutes after the server was stopped (issue 32, item 3)."""
    import signal
    import subprocess
    import sys

    left = _stored(upload_root, "file.jpg")
    code = ("import os, signal, sys, time, types\n"  # pose3dfr.ui without its __init__ (which builds every tab)
            f"sys.modules['pose3dfr.ui'] = types.ModuleType('pose3dfr.ui'); sys.modules['pose3dfr.ui'].__path__ = "
            f"[{str(Path(sweep.__file__).parent)!r}]\n"
            "from pose3dfr.ui.sweep import start_upload_sweeper\n"
            "class Demo: blocks = {}\n"
            "start_upload_sweeper(Demo())\n"
            "os.kill(os.getpid(), signal.SIGTERM)\n"
            "time.sleep(30)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == -signal.SIGTERM, done.stderr  # ended by the signal, as before
    assert not left.exists()


def test_the_sweep_bookkeeping_records_only_regular_files(upload_root):
    files = sweep.RegularFiles()
    photo = _stored(upload_root, "photo.jpg")
    files.add(str(upload_root))
    files.update([str(photo.parent), str(photo), str(upload_root / "missing.jpg")])
    assert files == {str(photo)}


def test_a_scan_upload_hands_over_its_path_and_leaves_no_temporary_file(upload_root):
    with gr.Blocks():
        scan = uploads.scan_upload("scan", elem_id="scan")
    stored = _stored(upload_root, "head.ply", data=b"ply\n")
    before = set(upload_root.rglob("*"))
    assert scan.preprocess(FileData(path=str(stored))) == str(stored)
    assert set(upload_root.rglob("*")) == before  # gr.File's own preprocess left a 0-byte tmpXXXX each time
    with pytest.raises(gr.Error, match="not a 3D scan file"):
        scan.preprocess(FileData(path=str(_stored(upload_root, "notes.txt"))))


def test_far_is_a_number_in_the_api_description():
    with gr.Blocks():
        far = common.far_radio()
    assert far.api_info() == {"type": "number", "enum": [0.01, 0.001], "title": "FAR"}
    assert far.preprocess(0.01) == 0.01


@pytest.mark.parametrize("url, kind", [("http://127.0.0.1:7860/x.jpg", "loopback"), ("http://[::1]/x.jpg", "loopback"),
                                       ("https://10.0.0.7/x.jpg", "private"), ("http://192.168.1.2/x.jpg", "private"),
                                       ("http://169.254.169.254/latest", "link-local"), ("http://0.0.0.0/", "unspecified")])
def test_image_urls_of_the_servers_own_networks_are_refused_with_the_reason(url, kind):
    fetched = []

    async def fetch(value):
        fetched.append(value)
        return value

    with pytest.raises(gr.Error) as refused:
        asyncio.run(uploads._fetch_public_only(fetch, url))
    assert f"is a {kind} address" in refused.value.message and "public internet host" in refused.value.message
    assert fetched == []
    assert asyncio.run(uploads._fetch_public_only(fetch, "/tmp/gradio/ab/photo.jpg")) == "/tmp/gradio/ab/photo.jpg"


def test_a_failed_verify_or_identify_clears_the_previous_result_and_shows_the_error(photos_dir):
    """Item 10: after an error the previous verdict, pose table and crops stayed beside the new photos."""
    photo = str(photos_dir / "obama.jpg")
    details, view, verdict = verify.verify_for_view(photo, photo, None, 0.01, "no-such-checkpoint")
    assert details is None and view is None
    assert verdict.startswith("## Error") and "Unknown checkpoint" in verdict
    shown = verify.render_verify(None, 0.5)
    assert shown[1:5] == ("", None, None, None) and shown[5]["visible"] is False and shown[6] is None
    details, verdict = identify.identify_for_view(None, "demo", "default", 3, 0.01)
    assert details is None and "Upload the probe photo" in verdict
    table, _ = identify.render_identify(None)
    assert table["value"] == []


def test_identify_says_which_face_of_a_group_photo_was_searched():
    assert identify.face_used(1, [0, 0, 10, 10]) == ""
    assert identify.face_used(3, [10, 20, 110, 140]) == \
        " **3 faces** in the photo: the largest was searched, at x 10-110, y 20-140 px."

