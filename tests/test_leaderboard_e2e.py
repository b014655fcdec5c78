"""End to end: `bench leaderboard` serves the app; headless Chromium loads it and the table is
there. A screenshot is kept (pytest's tmp folder; copied to $BENCH_SCREENSHOT_OUT when set).

Chromium is driven over the DevTools protocol (a WebSocket, with the ``websockets`` package that
Streamlit's server already depends on): ``--dump-dom`` and ``--screenshot`` return before a
Streamlit page has rendered, since the page draws itself from a WebSocket after load.

Set ``BENCH_E2E_RESULTS=DIR`` to serve an existing results folder instead of the fixture runs
(that is how docs/leaderboard.png is taken from real demo results).
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.results.publish import publish
from results_fixtures import make_run

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or \
    ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
ws_client = pytest.importorskip("websockets.sync.client", reason="websockets (a Streamlit dependency) is absent")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
                  "--window-size=1400,900"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


class Browser:
    """Headless Chromium with one page, driven over the DevTools protocol."""

    def __init__(self, url: str, user_dir: Path):
        self.proc = subprocess.Popen(
            [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={user_dir}", "--remote-debugging-port=0",
             "--remote-debugging-address=127.0.0.1", url],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = user_dir / "DevToolsActivePort"
        end = time.monotonic() + 30
        while not (port_file.exists() and "\n" in port_file.read_text()):
            if time.monotonic() > end or self.proc.poll() is not None:
                self.close()
                raise RuntimeError("chromium did not start its DevTools endpoint")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as r:
            page = next(t for t in json.load(r) if t["type"] == "page")
        self._stack = contextlib.ExitStack()
        self.ws = self._stack.enter_context(ws_client.connect(page["webSocketDebuggerUrl"], max_size=None))
        self.n = 0
        # an exact viewport (the window size includes the browser's own chrome)
        self.call("Emulation.setDeviceMetricsOverride", width=1400, height=900, deviceScaleFactor=1, mobile=False)

    def call(self, method: str, **params):
        self.n += 1
        self.ws.send(json.dumps({"id": self.n, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv(timeout=60))
            if msg.get("id") == self.n:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg["result"]

    def js(self, expression: str):
        return self.call("Runtime.evaluate", expression=expression, returnByValue=True)["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 60) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.js(expression):
                return
            time.sleep(0.3)
        raise TimeoutError(f"page never satisfied {expression}")

    def screenshot(self) -> bytes:
        return base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])

    def close(self) -> None:
        try:
            if getattr(self, "_stack", None) is not None:
                self._stack.close()
        finally:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@pytest.fixture
def results(tmp_path: Path) -> tuple[Path, list[str]]:
    given = os.environ.get("BENCH_E2E_RESULTS")
    if given:
        from bench.leaderboards.data import load_runs

        runs = load_runs(given).runs
        assert runs, f"BENCH_E2E_RESULTS={given} holds no valid run"
        return Path(given), sorted({r.adapter for r in runs})
    res = tmp_path / "results"
    publish(make_run(tmp_path / "runs" / "a", adapter="alpha-net", run_id="r1",
                     per_sample={"clean": {"miou": [0.5, 0.6, 0.7], "f1": [0.3, 0.4, 0.5]},
                                 "jpeg(quality=50)": {"miou": [0.4, 0.5, 0.6], "f1": [0.2, 0.3, 0.4]}}), res)
    publish(make_run(tmp_path / "runs" / "b", adapter="beta-net", run_id="r2",
                     per_sample={"clean": {"miou": [0.4, 0.5, 0.5], "f1": [0.2, 0.3, 0.3]},
                                 "jpeg(quality=50)": {"miou": [0.3, 0.4, 0.5], "f1": [0.1, 0.2, 0.2]}}), res)
    return res, ["alpha-net", "beta-net"]


@pytest.fixture
def server(results):
    res, _ = results
    port = free_port()
    log = tempfile.TemporaryFile()
    # the command under test; its own process group so the Streamlit child stops with it
    proc = subprocess.Popen([sys.executable, "-m", "bench.cli", "leaderboard", "--results", str(res),
                             "--port", str(port), "--address", "127.0.0.1", "--headless"],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/_stcore/health", 60)
        yield f"http://127.0.0.1:{port}"
    except Exception:
        log.seek(0)
        print(log.read().decode(errors="replace")[-3000:])
        raise
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


GRID_TEXT = ("Array.from(document.querySelectorAll('[data-testid=\"stDataFrame\"] table'))"
             ".map(t => t.textContent).join('\\n')")


def test_leaderboard_in_chromium(server: str, results, tmp_path: Path) -> None:
    _, adapters = results
    browser = Browser(server + "/", tmp_path / "chromium-profile")
    try:
        # the table is rendered (Streamlit's data grid keeps an accessible copy of its cells)
        cond = " && ".join(f"({GRID_TEXT}).includes({json.dumps(a)})" for a in adapters)
        browser.wait_for(cond, timeout=90)
        assert browser.js("document.querySelector('h1') && document.querySelector('h1').textContent") == "Leaderboard"
        grid = browser.js(GRID_TEXT)
        if not os.environ.get("BENCH_E2E_RESULTS"):
            assert "50.00–70.00" in grid  # alpha-net's clean mIoU interval, x100
        browser.js("window.scrollTo(0, 0)")
        time.sleep(1.0)  # let the canvas grid paint
        png = browser.screenshot()
        # the robustness page draws a chart in the real browser too
        browser.call("Page.navigate", url=server + "/robustness")
        browser.wait_for("document.querySelectorAll('.vega-embed canvas, .vega-embed svg').length > 0", timeout=90)
    finally:
        browser.close()
    shot = tmp_path / "leaderboard.png"
    shot.write_bytes(png)
    img = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    assert img.shape == (900, 1400, 3)
    assert img.std() > 10  # not a blank page
    out = os.environ.get("BENCH_SCREENSHOT_OUT")
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, out)
