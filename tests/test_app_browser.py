"""The app in a real browser: headless Chromium (Debian packages chromium + chromium-driver) driven by
playwright loads the page, uploads two photos, clicks Verify and waits for the verdict and the 3D plot, sends
a photo without a face (the error takes the verdict's place, the previous result is cleared), runs an Identify
search of the demo gallery, then clicks the synthetic examples after Gradio's cache sweep has run (with the
test's short sweep: POSE3DFR_DELETE_CACHE, as a visitor would more than a minute after start).
A screenshot lands in test-artifacts/ (gitignored). Skipped only off CI when Chromium is not installed."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import running_app


CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-quic", "--disable-sync"]
# Generous for a loaded 2-core CI machine: first request loads the model and the face pipeline.
VERDICT_TIMEOUT_MS = 90_000
FIRST_CLICK_TIMEOUT_MS = 45_000  # then Verify is clicked once more (_profile_example_in_the_browser)
ON_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
# The app's cache sweep in this test: every 1 s, files older than 8 s (production: 10, 45). The examples are
# clicked only after SWEPT_AFTER_SECONDS, when an unkept example copy is gone (issue 32, item 7: the scan was,
# a minute after start in production).
SWEEP = (1, 8)
SWEPT_AFTER_SECONDS = sum(SWEEP) + 3

pytestmark = pytest.mark.skipif(not CHROMIUM.exists() and not ON_CI,
                                reason="needs /usr/bin/chromium (apt-get install chromium chromium-driver, "
                                       "or `bash scripts/setup.sh dev`); required when CI is set")


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.mark.browser
@pytest.mark.slow
def test_verify_in_the_browser_shows_verdict_and_3d_attention(browser, project_root, photos_dir, tmp_path):
    # its own app, fresh as a user's: on the session's shared app, after the API tests, the example clicks of
    # this test twice got no new answer under a busy second xdist worker (passed alone and serially)
    with running_app(project_root, tmp_path, extra_env={"POSE3DFR_DELETE_CACHE": ",".join(map(str, SWEEP))}) as url:
        _verify_in_the_browser(browser, url, project_root, photos_dir, tmp_path, started=time.monotonic())


def _verify_in_the_browser(browser, url: str, project_root: Path, photos_dir: Path, tmp_path: Path,
                           started: float) -> None:
    artifacts = project_root / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1400, "height": 1500})
    page.goto(url, wait_until="domcontentloaded")  # Gradio keeps a connection open: never "networkidle"
    page.locator("#verify-button").wait_for(timeout=30_000)
    assert "pose3dfr" in page.title()
    page.locator("#enroll input[type=file]").set_input_files(str(photos_dir / "obama.jpg"))
    page.locator("#probe input[type=file]").set_input_files(str(photos_dir / "obama2.jpg"))
    page.locator("#enroll img").wait_for(timeout=30_000)
    page.locator("#probe img").wait_for(timeout=30_000)
    page.locator("#verify-button").click()
    verdict = page.locator("#verdict")
    verdict.locator("h2").filter(has_text=re.compile("Same person|Different people")).wait_for(
        timeout=VERDICT_TIMEOUT_MS)
    assert "threshold" in verdict.inner_text()
    page.locator("#attention-3d .js-plotly-plot").wait_for(timeout=30_000)
    page.locator("#enroll-crop img").wait_for(timeout=30_000)
    page.wait_for_timeout(500)  # let Plotly finish its first draw before the screenshot
    screenshot = artifacts / "app_verify.png"
    page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.stat().st_size > 10_000
    assert not page.locator(".toast-body.error").count(), "the page shows an error toast"
    _heatmap_is_hottest_on_the_face(page, photos_dir / "obama.jpg", artifacts)
    _error_replaces_the_result(page, tmp_path, artifacts)
    _identify_in_the_browser(page, photos_dir, artifacts)
    page.wait_for_timeout(max(0.0, SWEPT_AFTER_SECONDS - (time.monotonic() - started)) * 1000)
    _profile_example_in_the_browser(page, artifacts, row=1, probe_yaw=90, min_yaw=60)
    # the 45 degree example shares the scan: an example's files must survive the first answer's cleanup
    _profile_example_in_the_browser(page, artifacts, row=0, probe_yaw=45, min_yaw=30)
    page.close()


def _profile_example_in_the_browser(page, artifacts: Path, row: int, probe_yaw: int, min_yaw: float) -> None:
    """A Verify-tab example of a synthetic profile ("frontal vs 90°"): clicking it and Verify ends in a verdict,
    and the pose table shows the probe turned by at least `min_yaw` (found, its pose estimated)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    page.get_by_role("tab", name="Verify").click()
    page.locator(f"#synthetic-examples [data-testid=dataset-cell-{row}-1]").click()
    page.locator(f"#probe img[src*='yaw%2B{probe_yaw}']").wait_for(timeout=30_000)
    before = page.locator("#poses").inner_text()  # the previous answer's table: the new one must differ
    new_verdict = ("([before, minYaw]) => { const t = document.querySelector('#poses')?.innerText || '';"
                   " const m = /probe\\s+([+-]?\\d+(?:\\.\\d+)?)°/.exec(t);"
                   " return t !== before && m !== null && Math.abs(parseFloat(m[1])) >= minYaw; }")
    # On a busy 2-core machine (two test workers) a click while the example was still loading got, three times,
    # no new answer (the click dropped or sent with the previous inputs; no error shown); a user clicks again,
    # and so does this test, once. Not diagnosed further (session note of 2026-12-02).
    for attempt, timeout in enumerate((FIRST_CLICK_TIMEOUT_MS, VERDICT_TIMEOUT_MS)):
        page.locator("#verify-button").click()
        try:
            page.wait_for_function(new_verdict, arg=[before, min_yaw], timeout=timeout)
            break
        except PlaywrightTimeout:
            if attempt == 0:
                continue
            page.screenshot(path=str(artifacts / f"app_verify_yaw{probe_yaw}_timeout.png"), full_page=True)
            toasts = page.locator(".toast-body").all_inner_texts()
            raise AssertionError(f"no new verdict for the {probe_yaw}-degree example: poses before {before!r}, "
                                 f"now {page.locator('#poses').inner_text()!r}; toasts {toasts}") from None
    text = page.locator("#verdict").inner_text()
    assert re.search("Same person|Different people", text) and "threshold" in text, text
    page.screenshot(path=str(artifacts / f"app_verify_yaw{probe_yaw}.png"), full_page=True)
    assert not page.locator(".toast-body.error").count(), "the page shows an error toast"


def _heatmap_is_hottest_on_the_face(page, photo: Path, artifacts: Path) -> None:
    """Issue 33: the enrollment crop's heatmap drawn alone (opacity 1, typed into the slider's box) is hottest
    inside the face: the hull of the photo's landmarks in the chip, as the default Verifier aligns it, and
    away from the crop's border (the old map was hottest on the left column whatever the face)."""
    import io

    import cv2

    from pose3dfr.eval.attention import face_hull
    from pose3dfr.inference.verifier import Verifier
    from pose3dfr.viz import HEATMAP_COLORMAP

    crop = page.locator("#enroll-crop img")
    before = crop.get_attribute("src")
    box = page.locator("#verify-opacity input[type=number]")
    box.fill("1")
    box.press("Enter")
    page.wait_for_function("(before) => { const i = document.querySelector('#enroll-crop img');"
                           " return i !== null && i.src !== before; }", arg=before, timeout=30_000)
    page.wait_for_timeout(300)
    page.screenshot(path=str(artifacts / "app_verify_heatmap.png"), full_page=True)
    drawn = np.asarray(Image.open(io.BytesIO(page.request.get(crop.evaluate("i => i.src")).body())).convert("RGB"))
    ramp = cv2.applyColorMap(np.arange(256, dtype=np.uint8)[:, None], HEATMAP_COLORMAP)[:, 0, ::-1].astype(int)
    levels = np.abs(drawn.astype(int)[:, :, None, :] - ramp[None, None]).sum(-1).argmin(-1)  # colour -> level
    ys, xs = np.nonzero(levels >= levels.max() - 12)  # the hottest place (about 5% of the scale)
    side = drawn.shape[0]
    prepared = Verifier.from_pretrained("default").prepare(photo)  # the app's default checkpoint, same pipeline
    hull = face_hull(prepared.landmarks[:468, :2], prepared.matrix) * side / prepared.crop.shape[0]
    centre = (float(xs.mean()), float(ys.mean()))
    assert cv2.pointPolygonTest(hull.reshape(-1, 1, 2).astype(np.float32), centre, False) >= 0, centre
    assert min(*centre, side - centre[0], side - centre[1]) > 0.15 * side, centre  # not the border


def _error_replaces_the_result(page, tmp_path: Path, artifacts: Path) -> None:
    """Issue 32, item 10: a probe without a face; the error shows where the verdict goes, and the previous
    pose table and crops are gone (they stayed beside the new photos)."""
    noise = tmp_path / "noise.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (240, 240, 3), dtype=np.uint8)).save(noise)
    page.locator("#probe button[aria-label='Remove Image']").click()
    page.locator("#probe input[type=file]").set_input_files(str(noise))
    page.locator("#probe img").wait_for(timeout=30_000)
    page.locator("#verify-button").click()
    page.locator("#verdict h2").filter(has_text="Error").wait_for(timeout=VERDICT_TIMEOUT_MS)
    assert "noise.png" in page.locator("#verdict").inner_text()
    page.wait_for_function("() => !document.querySelector('#enroll-crop img') && "
                           "!(document.querySelector('#poses')?.innerText || '').includes('probe')", timeout=30_000)
    page.screenshot(path=str(artifacts / "app_verify_error.png"), full_page=True)


def _identify_in_the_browser(page, photos_dir: Path, artifacts: Path) -> None:
    """The Identify tab: a probe of a person in the demo gallery is named, with a top-K table."""
    page.get_by_role("tab", name="Identify").click()
    page.locator("#identify-probe input[type=file]").set_input_files(str(photos_dir / "obama3.jpg"))
    page.locator("#identify-probe img").wait_for(timeout=30_000)
    page.locator("#identify-button").click()
    verdict = page.locator("#identify-verdict")
    verdict.locator("h2").filter(has_text=re.compile("Best match|No one in the gallery")).wait_for(
        timeout=VERDICT_TIMEOUT_MS)
    assert "Best match: obama" in verdict.inner_text()
    assert "OpenCV Zoo's published SFace operating point for real photos" in verdict.inner_text()
    page.wait_for_timeout(500)
    page.screenshot(path=str(artifacts / "app_identify.png"), full_page=True)
    table = page.locator("#identify-table").inner_text()
    assert {"obama", "biden", "eileen-collins"} <= set(re.findall(r"[a-z-]+", table))
    assert not page.locator(".toast-body.error").count(), "the page shows an error toast"
