"""The app under concurrent load and hostile uploads, end to end through gradio_client on loopback.

40 /verify requests at once all complete with correct results; a bad upload afterwards gets a readable
error and the app keeps serving; uploaded file names never become paths outside Gradio's upload folder.
Latency and memory numbers come from benchmarks/bench_load.py, not from here (docs/reliability.md).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

# One worker runs every test of the session's shared app (xdist --dist loadgroup): it starts once.
pytestmark = pytest.mark.xdist_group("app")


CONCURRENT_REQUESTS = 40
# Per HTTP call of gradio_client (its default is 20 s): 40 uploads at once to a busy 2-core server can queue longer.
HTTP_TIMEOUT_SECONDS = 300


@pytest.fixture(scope="module")
def upload_dir(shared_app) -> Path:
    return shared_app.upload_dir  # where the server stores uploads


@pytest.fixture(scope="module")
def server(shared_app) -> str:
    return shared_app.url


@pytest.fixture(scope="module")
def client(server):
    from gradio_client import Client

    return Client(server, verbose=False, download_files=False, httpx_kwargs={"timeout": HTTP_TIMEOUT_SECONDS})


def _verify(client, enroll: Path, probe: Path) -> dict:
    from gradio_client import handle_file

    return client.predict(handle_file(str(enroll)), handle_file(str(probe)), None, 0.01, "default",
                          api_name="/verify")


@pytest.mark.slow
def test_forty_concurrent_verifies_all_complete_correctly(client, photos_dir):
    pairs = [("obama.jpg", "obama2.jpg", True), ("obama.jpg", "biden.jpg", False)] * (CONCURRENT_REQUESTS // 2)
    with ThreadPoolExecutor(max_workers=CONCURRENT_REQUESTS) as pool:
        futures = [pool.submit(_verify, client, photos_dir / a, photos_dir / b) for a, b, _ in pairs]
        results = [future.result(timeout=600) for future in futures]
    assert len(results) == CONCURRENT_REQUESTS
    same = [r["score"] for r, (_, _, genuine) in zip(results, pairs) if genuine]
    different = [r["score"] for r, (_, _, genuine) in zip(results, pairs) if not genuine]
    assert min(same) > max(different)
    # Concurrency changes nothing: every request of a pair gets the same answer.
    assert max(same) - min(same) < 1e-5 and max(different) - min(different) < 1e-5
    assert all(r["match"] for r in results[0::2]) and not any(r["match"] for r in results[1::2])
    assert all(r["enroll"]["faces"] == 1 and r["probe"]["faces"] == 1 for r in results)


def test_bad_upload_under_load_gets_an_error_and_the_app_keeps_serving(client, photos_dir, tmp_path):
    from gradio_client.exceptions import AppError

    garbage = tmp_path / "<img src=x onerror=alert(1)>.jpg"
    garbage.write_bytes(os.urandom(5000))
    with pytest.raises(AppError) as exc:
        _verify(client, garbage, photos_dir / "obama2.jpg")
    message = str(exc.value)
    # Gradio strips "<" and ">" from uploaded names (and the app HTML-escapes messages): never live markup.
    assert "img src=x onerror=alert(1)" in message and "<" not in message and "not an image" in message
    assert "Traceback" not in message
    assert _verify(client, photos_dir / "obama.jpg", photos_dir / "obama2.jpg")["match"]


@pytest.mark.parametrize("name", ["../../../escaped.jpg", "/tmp/absolute.jpg", "..", "a/../../b.jpg"])
def test_uploaded_file_names_never_become_paths_outside_the_upload_folder(server, upload_dir, photos_dir, name):
    import httpx

    data = (photos_dir / "obama.jpg").read_bytes()
    response = httpx.post(server + "gradio_api/upload", files={"files": (name, data, "image/jpeg")},
                          timeout=HTTP_TIMEOUT_SECONDS)
    assert response.status_code in (200, 400)  # stored under a safe name, or refused (Gradio refuses "..")
    if response.status_code == 200:
        (stored,) = response.json()
        stored = Path(stored).resolve()
        assert stored.is_relative_to(upload_dir.resolve()), stored
        assert stored.read_bytes() == data
    for outside in (upload_dir.parent / "escaped.jpg", Path("/tmp/absolute.jpg"), upload_dir.parent / "b.jpg"):
        assert not outside.exists() or outside.stat().st_size != len(data)
