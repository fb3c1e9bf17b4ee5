"""The viewer in a real browser: notebooks/viewer.ipynb served by voila, driven by headless chromium.

voila executes the notebook on a tiny embedded world (generated into a temporary BEVLIB_CACHE),
playwright drives Debian's /usr/bin/chromium (never a downloaded browser), and the test checks that
moving the keyframe slider, toggling a layer and clicking a BEV cell each redraw the camera panel.
Screenshots go to outputs/viewer/.

Needs: /usr/bin/chromium (apt: chromium; ``scripts/ensure_chromium.sh`` installs it when it may), the
python packages voila, playwright and anywidget. Skipped, with the reason, when any of them is missing.
"""
import importlib.util
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
OUT = ROOT / "outputs" / "viewer"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run"]


def _missing() -> str | None:
    if not CHROMIUM.exists():
        return f"{CHROMIUM} not found (run scripts/ensure_chromium.sh as root, or apt-get install -y chromium)"
    for mod in ("playwright", "voila", "anywidget"):
        if importlib.util.find_spec(mod) is None:
            return f"python package {mod!r} not installed (pip install -c constraints.txt voila playwright anywidget)"
    return None


pytestmark = [pytest.mark.slow, pytest.mark.skipif(_missing() is not None, reason=_missing() or "")]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            raise AssertionError(f"voila exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            # /voila/static answers without executing the notebook (unlike the page itself)
            with urllib.request.urlopen(url + "voila/static/", timeout=2):
                return
        except urllib.error.HTTPError:
            return   # the server answered
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"voila did not answer at {url} within {timeout} s:\n{log.read_text()[-3000:]}")


def _stop(proc: subprocess.Popen) -> None:
    """Stop voila and the kernels it started (they run in sessions of their own, and voila leaves
    them behind on SIGTERM), by process id."""
    import psutil

    try:
        children = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    for c in children:
        try:
            c.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(children, timeout=5)
    for c in alive:
        c.kill()


def test_viewer_in_voila_and_chromium(tmp_path):
    from playwright.sync_api import sync_playwright

    OUT.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    url = f"http://127.0.0.1:{port}/"
    env = dict(os.environ, BEVLIB_CACHE=str(tmp_path / "cache"), BEVLIB_VIEWER_WORLD_SCENES="2",
               BEVLIB_VIEWER_WORLD_KEYFRAMES="3", BEVLIB_VIEWER_WORLD_IMAGE_WH="320,180",
               BEVLIB_VIEWER_DATAROOT="null", JUPYTER_PLATFORM_DIRS="1", PYTHONUNBUFFERED="1")
    log = tmp_path / "voila.log"
    with open(log, "w") as logf:
        proc = subprocess.Popen(
            [sys.executable, "-m", "voila", str(ROOT / "notebooks" / "viewer.ipynb"), "--port", str(port),
             "--Voila.ip=127.0.0.1", "--no-browser", "--Voila.token=", "--Voila.auto_token=False"],
            cwd=ROOT, env=env, stdout=logf, stderr=subprocess.STDOUT)
    try:
        _wait_http(url, proc, log, timeout=30)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, timeout=30_000)
            try:
                page = browser.new_page(viewport={"width": 1700, "height": 1150})
                page.set_default_timeout(30_000)
                # Hermetic: the page may only talk to our voila (voila's template asks a CDN for fonts).
                page.route("**/*", lambda r: r.continue_() if r.request.url.startswith((url, "data:"))
                           else r.abort())
                # Shown with a failure; not asserted: anywidget reports a slow model start as an error
                # although the viewer does not depend on it (see BEVViewer._figure_widget).
                page.on("pageerror", lambda e: print("page error:", e))
                _drive(page, url, log)
            finally:
                browser.close()
    finally:
        _stop(proc)


def _render_count(page) -> int:
    return int(page.get_attribute(".bevlib-status [data-render]", "data-render"))


def _wait_render(page, after: int, log: Path, timeout: float = 30.0) -> None:
    """Wait until the viewer has redrawn (its status counter passed ``after``) without error, and
    the camera panel's pixels stopped changing (plotly decodes the images asynchronously)."""
    t0 = time.monotonic()
    while _render_count(page) <= after:
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"viewer did not redraw within {timeout} s:\n{log.read_text()[-3000:]}")
        page.wait_for_timeout(100)
    status = page.inner_text(".bevlib-status")
    assert "error" not in status, status
    _stable_shot(page)


def _stable_shot(page, timeout: float = 10.0) -> bytes:
    cam = page.locator(".bevlib-camera-fig")
    prev = cam.screenshot()
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        page.wait_for_timeout(250)
        cur = cam.screenshot()
        if cur == prev:
            return cur
        prev = cur
    return prev


def _drive(page, url: str, log: Path) -> None:
    t0 = time.monotonic()
    page.goto(url, timeout=60_000)   # returns once voila has executed the notebook (world generation included)
    page.wait_for_selector(".bevlib-status [data-render]", timeout=60_000)
    page.wait_for_selector(".bevlib-camera-fig .main-svg image", timeout=30_000)
    page.wait_for_selector(".bevlib-bev-fig .main-svg .hm", timeout=30_000)
    assert "error" not in page.inner_text(".bevlib-status"), page.inner_text(".bevlib-status")
    assert page.locator(".bevlib-camera-fig .main-svg image").count() == 6
    shot0 = _stable_shot(page)
    page.screenshot(path=str(OUT / "viewer_page.png"), full_page=True)
    (OUT / "viewer_cameras_0_initial.png").write_bytes(shot0)
    assert "keyframe 1/3" in page.inner_text(".bevlib-status")

    # move the keyframe slider one step with the keyboard (noUiSlider handle)
    n = _render_count(page)
    page.locator(".bevlib-sample .noUi-handle").first.focus()
    page.keyboard.press("ArrowRight")
    _wait_render(page, n, log)
    assert "keyframe 2/3" in page.inner_text(".bevlib-status")
    shot1 = _stable_shot(page)
    (OUT / "viewer_cameras_1_next_keyframe.png").write_bytes(shot1)
    assert shot1 != shot0, "moving the keyframe slider did not change the camera panel"

    # toggle a layer: BEV ground truth rendered into the cameras goes away
    n = _render_count(page)
    page.locator(".bevlib-layer-bev_gt input[type=checkbox]").click()
    _wait_render(page, n, log)
    shot2 = _stable_shot(page)
    (OUT / "viewer_cameras_2_bev_gt_off.png").write_bytes(shot2)
    assert shot2 != shot1, "toggling the BEV ground-truth layer did not change the camera panel"

    # and back on, then pick a BEV cell 15 m ahead: a marker appears in CAM_FRONT
    n = _render_count(page)
    page.locator(".bevlib-layer-bev_gt input[type=checkbox]").click()
    _wait_render(page, n, log)
    box = page.locator(".bevlib-bev-fig .nsewdrag").first.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] * 0.25   # plot x range is y in [15, -15], y is x in [-30, 30]
    page.mouse.move(x, y)
    page.wait_for_timeout(200)
    n = _render_count(page)
    page.mouse.click(x, y)
    _wait_render(page, n, log)
    pick = page.inner_text(".bevlib-viewer")
    assert "x = +15.00 m" in pick and "CAM_FRONT:" in pick, pick[-800:]
    shot3 = _stable_shot(page)
    (OUT / "viewer_cameras_3_picked.png").write_bytes(shot3)
    assert shot3 != shot1, "picking a BEV cell did not mark the cameras"
    page.screenshot(path=str(OUT / "viewer_page_picked.png"), full_page=True)
    assert time.monotonic() - t0 < 120
