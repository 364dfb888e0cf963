"""The app in public mode, end to end on loopback: the handlers that train, generate data sets or publish
cannot be reached by fn_index, a flooded queue refuses work with a clear message, after a burst of requests
no uploaded photo, scan or derived image stays in Gradio's folder (GRADIO_TEMP_DIR), nothing sent through the
UI's events, the API or the MCP tools stays either, a FileData naming the folder itself is refused without
stopping the sweep, and the MCP tools take base64 photos and say why a loopback URL is refused.

The server runs with short cache intervals (POSE3DFR_DELETE_CACHE=1,8) and a small queue
(POSE3DFR_QUEUE_SIZE) so the test is fast; tests/test_app.py checks the production values."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import numpy as np
import pytest
from PIL import Image

from pose3dfr.ui import explorer, layout
from conftest import running_app

QUEUE_SIZE = 3
# Image, scan and array files a request may leave behind (everything the app is given or derives).
FACE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".ply", ".obj", ".npy", ".pcd"}
# Gradio's cache deletion in this test: every 1 s, files older than 8 s. At 2 s a request queued behind others on
# a busy 2-core machine (two test workers) lost its upload before it ran; 8 s is still far below production's.
DELETE_CACHE = "1,8"
# Seconds after the last response within which the folder must be clean (the deletion age plus slack).
CLEAN_WITHIN_SECONDS = 25
# The bound of issue 32: nothing a user sent is on disk this long after its answer (whichever door it came in by).
NOTHING_LEFT_AFTER_SECONDS = 90


@pytest.fixture(scope="module")
def upload_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("public-uploads")


@pytest.fixture(scope="module")
def public_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("public-cache")


@pytest.fixture(scope="module")
def server(project_root, public_cache, upload_dir) -> Iterator[str]:
    env = {"GRADIO_TEMP_DIR": str(upload_dir), "POSE3DFR_DELETE_CACHE": DELETE_CACHE,
           "POSE3DFR_QUEUE_SIZE": str(QUEUE_SIZE)}
    with running_app(project_root, public_cache, 300, ("--public",), env) as url:
        yield url


@pytest.fixture(scope="module")
def server_log(server, public_cache) -> Path | None:
    """The server's stdout and stderr (None for an external app: POSE3DFR_TEST_APP_URL)."""
    return None if os.environ.get("POSE3DFR_TEST_APP_URL") else public_cache / "server.log"


def face_files(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in FACE_SUFFIXES}


def all_files(folder: Path) -> set[Path]:
    """Every file in the folder, whatever its name (0-byte temporary files, base64 copies named `file`)."""
    return {p for p in folder.rglob("*") if p.is_file() or p.is_symlink()}


def wait_until_gone(folder: Path, before: set[Path], seconds: float) -> set[Path]:
    """Files made after `before` that are still there once `seconds` have passed (or none, as soon as none is)."""
    deadline = time.monotonic() + seconds
    left = all_files(folder) - before
    while left and time.monotonic() < deadline:
        time.sleep(0.5)
        left = all_files(folder) - before
    return left


def file_data(path: str) -> dict:
    """An uploaded file as the browser sends it in an event's data."""
    return {"path": path, "orig_name": Path(path).name, "meta": {"_type": "gradio.FileData"}}


def upload(url: str, path: Path) -> str:
    """POST a file to /gradio_api/upload as the browser does; its path on the server."""
    response = httpx.post(url + "gradio_api/upload", files={"files": (path.name, path.read_bytes())}, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()[0]


def completed(url: str, fn_index: int, data: list, session: str) -> dict:
    """The process_completed message of one event sent as the browser sends it."""
    assert join(url, fn_index, data, session).status_code == 200
    done = [m for m in wait_done(url, session) if m.get("msg") == "process_completed"]
    assert done, session
    return done[-1]


def mcp(url: str, calls: list[tuple[str, dict]]) -> list[Any]:
    """Results of MCP tool calls (name, arguments) made in one session on the app's streamable HTTP endpoint."""
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    async def run() -> list[Any]:
        async with streamable_http_client(url + "gradio_api/mcp/") as (read, write, _):
            async with ClientSession(read, write) as session:
                await session.initialize()
                tools = {t.name: t for t in (await session.list_tools()).tools}
                return [tools] + [await session.call_tool(name, args) for name, args in calls]

    return asyncio.run(run())


def text_of(result: Any) -> str:
    return " ".join(getattr(c, "text", "") for c in result.content)


def data_url(path: Path) -> str:
    return f"data:image/{path.suffix.lstrip('.').replace('jpg', 'jpeg')};base64," + \
        base64.b64encode(path.read_bytes()).decode()


@pytest.fixture
def own_photos(photos_dir, tmp_path) -> dict[str, Path]:
    """The shipped photos re-encoded (bytes unlike any example's, so no copy can pass for an example's) and a
    face scan (synthetic identity 2's face points; the examples use identity 1)."""
    from pose3dfr.data.pointcloud import save_point_cloud
    from pose3dfr.data.synthetic import build_head, sample_face_points, sample_identity

    photos = {}
    for name in ("obama.jpg", "obama2.jpg", "biden.jpg"):
        photos[name] = tmp_path / f"mine-{name}"
        Image.open(photos_dir / name).convert("RGB").save(photos[name], quality=91)
    photos["scan"] = tmp_path / "mine-scan.ply"
    save_point_cloud(photos["scan"], sample_face_points(build_head(sample_identity(0, 2)), 1024,
                                                        np.random.default_rng(3)))
    return photos


def join(url: str, fn_index: int, data: list, session: str) -> httpx.Response:
    body = {"data": data, "fn_index": fn_index, "session_hash": session, "event_data": None, "trigger_id": None}
    return httpx.post(url + "gradio_api/queue/join", json=body, timeout=60)


def wait_done(url: str, session: str, timeout: float = 300) -> list[dict]:
    """Messages of the session's queue stream until every event completed."""
    messages = []
    with httpx.stream("GET", url + "gradio_api/queue/data", params={"session_hash": session}, timeout=timeout) as r:
        for line in r.iter_lines():
            if line.startswith("data:"):
                message = json.loads(line[5:])
                messages.append(message)
                if message.get("msg") == "close_stream":
                    break
    return messages


def fn_index_of(demo, name: str) -> int:
    return next(i for i, fn in demo.fns.items() if fn.name == name)


def test_writing_handlers_cannot_be_called_by_fn_index(server, upload_dir):
    private = layout.build_demo(public=False)
    targets = {name: fn_index_of(private, name) for name in
               ("start_training", "stop_training", "poll_training", "generate_small_dataset", "evaluate_endpoint")}
    for name, index in targets.items():
        response = join(server, index, ["fast", "data/x", "dlib_resnet"], f"probe-{name}")
        assert response.status_code >= 400, (name, response.status_code, response.text)
    config = httpx.get(server + "config", timeout=60).json()
    assert max(d["id"] for d in config["dependencies"]) < min(targets.values())


def test_no_upload_or_derived_image_remains_after_a_burst(server, upload_dir, photos_dir, tmp_path):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    before = face_files(upload_dir)  # the examples' copies (shipped photos, synthetic renders): kept on purpose
    photos = {}
    for i, name in enumerate(("obama.jpg", "obama2.jpg", "biden.jpg")):
        photos[name] = tmp_path / f"person-{i}{Path(name).suffix}"
        shutil.copyfile(photos_dir / name, photos[name])
    garbage = tmp_path / "rejected-upload.jpg"
    garbage.write_bytes(b"not a photo" * 100)
    client = Client(server, verbose=False, download_files=False)
    for enroll, probe in (("obama.jpg", "obama2.jpg"), ("obama.jpg", "biden.jpg")) * 2:
        out = client.predict(handle_file(str(photos[enroll])), handle_file(str(photos[probe])), None, 0.01,
                             "default", api_name="/verify")
        assert out["score"] > -1
    with pytest.raises(AppError):
        client.predict(handle_file(str(garbage)), handle_file(str(photos["obama2.jpg"])), None, 0.01, "default",
                       api_name="/verify")
    client.predict(handle_file(str(photos["biden.jpg"])), "default", api_name="/embed")
    bare = httpx.post(server + "gradio_api/upload", timeout=60,
                      files={"files": ("bare-upload.jpg", photos["obama2.jpg"].read_bytes(), "image/jpeg")})
    assert bare.status_code == 200
    session = "sweep-outputs"  # a synthetic sweep: Gradio writes 13 gallery images for its outputs
    demo = layout.build_demo(public=True)
    assert join(server, fn_index_of(demo, "explore_endpoint"),
                [explorer.EXPLORER_SYNTHETIC, 1, None, None, "default", 0.5, "pipeline", True],
                session).status_code == 200  # with the attention per view: its grid image is an output file too
    messages = wait_done(server, session)
    assert any(m.get("msg") == "process_completed" and m.get("success") for m in messages), [m.get("output") for m in messages if m.get("msg") == "process_completed"]
    last_response = time.monotonic()
    leftover = face_files(upload_dir) - before
    while leftover and time.monotonic() - last_response < CLEAN_WITHIN_SECONDS:
        time.sleep(0.5)
        leftover = face_files(upload_dir) - before
    assert not leftover, sorted(str(p.relative_to(upload_dir)) for p in leftover)
    assert not any(p.name.startswith(("person-", "rejected-", "bare-")) for p in face_files(upload_dir))


def test_a_folder_named_as_an_upload_is_refused_and_the_sweep_keeps_running(server, upload_dir, own_photos):
    """Issue 32, item 2: a FileData whose path is the upload folder itself answered "IsADirectoryError" and
    stopped Gradio's sweep for good (os.remove of a folder); uploads were never deleted again."""
    demo = layout.build_demo(public=True)
    folder = {"path": str(upload_dir), "meta": {"_type": "gradio.FileData"}}
    for i, scan in enumerate((None, folder)):  # the folder as the photos and checkpoint, then as the scan too
        message = completed(server, fn_index_of(demo, "verify"), [folder, folder, scan, 0.01, folder], f"folder-{i}")
        assert message["success"] is False
        assert ("not an uploaded file" if scan is None else "is not a 3D scan file") in message["output"]["error"]
    assert upload_dir.is_dir()
    bare = Path(upload(server, own_photos["obama.jpg"]))  # an upload no event uses: only a sweep deletes it
    assert bare.is_file()
    deadline = time.monotonic() + CLEAN_WITHIN_SECONDS
    while bare.exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not bare.exists(), "the sweep stopped after the folder was sent as an upload"


def test_nothing_a_user_sent_stays_through_any_door(server, upload_dir, own_photos):
    """Photos and a scan through the UI's events, the API (gradio_client) and the MCP tools (base64): no file
    they made is left in GRADIO_TEMP_DIR once the sweep age has passed (issue 32: base64 copies stayed forever,
    each scan upload left a 0-byte temporary file)."""
    from gradio_client import Client, handle_file

    before = all_files(upload_dir)  # the examples' copies: kept on purpose
    demo = layout.build_demo(public=True)
    enroll, probe, scan = (upload(server, own_photos[k]) for k in ("obama.jpg", "obama2.jpg", "scan"))
    ui = completed(server, fn_index_of(demo, "verify_for_view"),
                   [file_data(enroll), file_data(probe), file_data(scan), 0.01, "default"], "ui-door")
    assert ui["success"] and ui["output"]["data"][0]["match"], ui["output"]
    ui = completed(server, fn_index_of(demo, "identify_for_view"),
                   [file_data(upload(server, own_photos["obama2.jpg"])), "demo", "default", 3, 0.01], "ui-identify")
    assert ui["success"] and ui["output"]["data"][0]["best"] == "obama", ui["output"]
    client = Client(server, verbose=False, download_files=False)
    api = client.predict(handle_file(str(own_photos["obama.jpg"])), handle_file(str(own_photos["biden.jpg"])),
                         handle_file(str(own_photos["scan"])), 0.01, "default", api_name="/verify")
    assert api["match"] is False
    assert client.predict(handle_file(str(own_photos["biden.jpg"])), "default", api_name="/embed")["dim"] > 0
    assert client.predict(handle_file(str(own_photos["obama2.jpg"])), "demo", "default", 3, 0.01,
                          api_name="/identify")["best"] == "obama"
    photo = {k: data_url(own_photos[k]) for k in ("obama.jpg", "obama2.jpg", "biden.jpg")}
    _, verified, embedded, identified = mcp(server, [
        ("verify", {"enroll": photo["obama.jpg"], "probe": photo["obama2.jpg"], "far": 0.01, "checkpoint": "default"}),
        ("embed", {"image": photo["biden.jpg"], "checkpoint": "default"}),
        ("identify", {"probe": photo["obama2.jpg"], "gallery": "demo", "checkpoint": "default", "top_k": 3,
                      "far": 0.01})])
    answers = (verified, embedded, identified)
    assert not any(r.isError for r in answers), [text_of(r) for r in answers]
    left = wait_until_gone(upload_dir, before, NOTHING_LEFT_AFTER_SECONDS)
    assert not left, sorted(str(p.relative_to(upload_dir)) for p in left)


def test_mcp_tools_take_base64_photos_and_a_numeric_far_and_say_why_a_url_is_refused(server, own_photos):
    """Issue 32, item 8: `far` was declared a string with numeric choices (0.01 and "0.01" both refused), the
    verify tool failed on its State output, and a loopback image URL got a generic error."""
    tools, verified, loopback, private = mcp(server, [
        ("verify", {"enroll": data_url(own_photos["obama.jpg"]), "probe": data_url(own_photos["obama2.jpg"]),
                    "far": 0.01, "checkpoint": "default"}),
        ("embed", {"image": "http://127.0.0.1:9/face.jpg", "checkpoint": "default"}),
        ("embed", {"image": "http://10.11.12.13/face.jpg", "checkpoint": "default"})])
    for name in ("verify", "identify"):
        assert tools[name].inputSchema["properties"]["far"]["type"] == "number"
    assert not verified.isError and "'match': True" in text_of(verified), text_of(verified)
    assert loopback.isError and "loopback address" in text_of(loopback) and "public" in text_of(loopback)
    assert private.isError and "private address" in text_of(private), text_of(private)


# The bound: a normal /verify sent while scan bombs are being "decoded" is answered within this.
VERIFY_WAIT_SECONDS = 30


def test_a_scan_bomb_to_embed_does_not_hold_up_a_concurrent_verify(server, photos_dir, tmp_path):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError
    from PIL import Image

    buf = io.BytesIO()  # the file: 5000 x 5000 progressive JPEG + 100,000 empty scans (1.1 MB)
    Image.new("L", (5000, 5000)).save(buf, "JPEG", progressive=True)
    bombs = []
    for i in range(2):  # sent twice, as in the issue (one scan apart: Gradio stores identical uploads as one file)
        bombs.append(tmp_path / f"bomb{i}.jpg")
        bombs[-1].write_bytes(buf.getvalue()[:-2] + b"\xff\xda\x00\x08\x01\x01\x00\x00\x00\x10" * (100_000 + i)
                              + b"\xff\xd9")
    enroll, probe = tmp_path / "enroll.jpg", tmp_path / "probe.jpg"
    shutil.copyfile(photos_dir / "obama.jpg", enroll)
    shutil.copyfile(photos_dir / "obama2.jpg", probe)
    refusals: list[str] = []

    def send_bomb(bomb: Path) -> None:
        try:
            Client(server, verbose=False, download_files=False).predict(handle_file(str(bomb)), "default",
                                                                        api_name="/embed")
        except AppError as exc:
            refusals.append(str(exc))

    senders = [threading.Thread(target=send_bomb, args=(bomb,)) for bomb in bombs]
    for thread in senders:
        thread.start()
    time.sleep(0.5)
    client = Client(server, verbose=False, download_files=False)
    start = time.monotonic()
    out = client.predict(handle_file(str(enroll)), handle_file(str(probe)), None, 0.01, "default", api_name="/verify")
    waited = time.monotonic() - start
    for thread in senders:
        thread.join(timeout=120)
    assert out["match"] and waited < VERIFY_WAIT_SECONDS, waited
    assert len(refusals) == 2 and all("over 64 scans" in r for r in refusals), refusals


def test_a_huge_value_is_echoed_short_in_the_reply_and_not_in_the_log(server, server_log, photos_dir, tmp_path):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    photo = tmp_path / "photo.jpg"
    shutil.copyfile(photos_dir / "obama.jpg", photo)
    huge = "9" * 5_000_000  # a FAR that is not one of the Radio's choices: Gradio itself refuses it
    client = Client(server, verbose=False, download_files=False)
    with pytest.raises(AppError) as refused:
        client.predict(handle_file(str(photo)), handle_file(str(photo)), None, huge, "default", api_name="/verify")
    assert "not in the list of choices" in str(refused.value) and len(str(refused.value)) <= 300
    if server_log is not None:
        assert "9" * 100 not in server_log.read_text(errors="replace")


def test_an_unexpected_error_is_in_the_server_log_as_the_reply_says(server, server_log):
    demo = layout.build_demo(public=True)
    session = "too-few-inputs"  # Gradio refuses the event before the handler: a ValueError, not a pose3dfr error
    assert join(server, fn_index_of(demo, "verify"), [], session).status_code == 200
    errors = [m["output"]["error"] for m in wait_done(server, session) if m.get("msg") == "process_completed"]
    assert errors and "the details are in the server log" in errors[0], errors
    if server_log is not None:
        deadline = time.monotonic() + 10
        while "unexpected error in an event (ValueError)" not in server_log.read_text(errors="replace"):
            assert time.monotonic() < deadline, server_log.read_text(errors="replace")[-3000:]
            time.sleep(0.2)


def test_every_model_event_runs_under_a_time_budget(monkeypatch, photos_dir):
    import gradio as gr

    monkeypatch.setattr(layout, "MODEL_EVENT_SECONDS", 0)
    demo = layout.build_demo(public=True)
    limited = {fn.name for fn in demo.fns.values() if hasattr(fn.fn, "__wrapped__") and fn.concurrency_id in
               ("model", "sweep")}
    assert {"verify", "embed", "identify", "explore_endpoint"} <= limited
    verify = next(fn for fn in demo.fns.values() if fn.name == "verify")
    with pytest.raises(gr.Error, match="took over 0 s and was stopped before"):
        verify.fn(str(photos_dir / "obama.jpg"), str(photos_dir / "obama2.jpg"), None, 0.01, "default")


def test_a_flooded_queue_refuses_work_with_a_clear_message(server):
    demo = layout.build_demo(public=True)
    index = fn_index_of(demo, "explore_endpoint")
    codes, refusals = [], []
    for i in range(QUEUE_SIZE + 6):  # sweeps run one at a time: the rest wait until the queue is full
        response = join(server, index, [explorer.EXPLORER_SYNTHETIC, 1, None, None, "default", 0.5, "pipeline", False],
                        f"flood-{i}")
        codes.append(response.status_code)
        if response.status_code != 200:
            refusals.append(response.json()["detail"])
    assert 503 in codes and codes[0] == 200
    assert all(d.startswith(f"Queue is full. Max size is {QUEUE_SIZE}") for d in refusals)
