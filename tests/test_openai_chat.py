"""The OpenAI-compatible chat adapter against a local HTTP server (127.0.0.1) speaking the
chat-completions protocol: request format, lossless image, retries with back-off on 429/5xx and
timeouts, the concurrency limit, and the API key never leaving the request header."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from PIL import Image

from bench.adapters._util import AdapterLoadError
from bench.adapters.openai_chat import OpenAIChatAdapter
from bench.errors import BenchError
from bench.core.types import ModelInput

KEY = "sk-test-0123456789-SECRET"


class FakeAPI:
    """A chat-completions server. ``script`` is a list of (status, delay_s) used in order for
    successive requests; after it runs out every request succeeds."""

    def __init__(self) -> None:
        self.script: list[tuple[int, float]] = []
        self.requests: list[dict] = []
        self.auth: list[str | None] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.success_delay = 0.0
        self.lock = threading.Lock()
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):  # quiet
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with api.lock:
                    api.requests.append(body)
                    api.auth.append(self.headers.get("Authorization"))
                    step = api.script.pop(0) if api.script else (200, api.success_delay)
                    api.in_flight += 1
                    api.max_in_flight = max(api.max_in_flight, api.in_flight)
                try:
                    status, delay = step
                    time.sleep(delay)
                    if self.path != "/v1/chat/completions":
                        status = 404
                    if status == 200:
                        url = body["messages"][-1]["content"][1]["image_url"]["url"]
                        png = base64.b64decode(url.split(",", 1)[1])
                        arr = np.asarray(Image.open(io.BytesIO(png)))
                        text = f"  sha={hashlib.sha256(arr.tobytes()).hexdigest()} shape={arr.shape}\n"
                        payload = {"id": "x", "object": "chat.completion", "choices": [
                            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]}
                    else:
                        # a careless server echoing the caller's header
                        payload = {"error": {"message": f"failure for {self.headers.get('Authorization')}"}}
                    data = json.dumps(payload).encode()
                    self.send_response(status)
                    if status == 429:
                        self.send_header("Retry-After", "0")
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    try:
                        self.wfile.write(data)
                    except (BrokenPipeError, ConnectionResetError):
                        pass
                finally:
                    with api.lock:
                        api.in_flight -= 1

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def api(monkeypatch):
    monkeypatch.setenv("BENCH_TEST_API_KEY", KEY)
    s = FakeAPI()
    yield s
    s.server.shutdown()
    s.server.server_close()


def _adapter(api: FakeAPI, **kw) -> OpenAIChatAdapter:
    cfg = dict(base_url=api.url, model="gpt-test", api_key_env="BENCH_TEST_API_KEY", backoff_s=0.01)
    cfg.update(kw)
    a = OpenAIChatAdapter(**cfg)
    a.load()
    return a


def _items(n: int = 3) -> list[ModelInput]:
    rng = np.random.default_rng(5)
    return [ModelInput(f"o{i}", rng.integers(0, 256, (10 + i, 13, 3), dtype=np.uint8), f"o{i}.png")
            for i in range(n)]


def _expected(img: np.ndarray) -> str:
    return f"sha={hashlib.sha256(img.tobytes()).hexdigest()} shape={img.shape}"


def test_request_format_and_lossless_image(api):
    a = _adapter(api, max_tokens=77, system="be precise", seed=4)
    items = _items()
    preds = a.predict(items)
    for item, p in zip(items, preds):
        assert p.explanation == _expected(item.image)  # pixels arrived unchanged; reply stripped
    body = api.requests[0]
    assert body["model"] == "gpt-test" and body["max_tokens"] == 77 and body["temperature"] == 0
    assert body["seed"] == 4
    assert body["messages"][0] == {"role": "system", "content": "be precise"}
    user = body["messages"][1]
    assert user["role"] == "user" and user["content"][0]["type"] == "text"
    assert user["content"][0]["text"] == a.config["prompt"]
    assert user["content"][1]["image_url"]["url"].startswith("data:image/png;base64,")
    assert set(api.auth) == {f"Bearer {KEY}"}


def test_retries_on_429_500_and_timeout_then_succeeds(api):
    api.script = [(429, 0.0), (500, 0.0), (200, 1.5)]  # the third request times out
    a = _adapter(api, timeout_s=0.5, max_retries=4)
    item = _items(1)[0]
    pred = a.predict([item])[0]
    assert pred.explanation == _expected(item.image), pred.extras
    assert len(api.requests) == 4


def test_gives_up_after_max_retries_and_does_not_retry_400(api):
    api.script = [(503, 0.0)] * 10
    a = _adapter(api, max_retries=2)
    p = a.predict(_items(1))[0]
    assert "HTTP 503" in p.extras["error"] and "gave up after 3 attempts" in p.extras["error"]
    assert len(api.requests) == 3
    api.script = [(400, 0.0)]
    p = a.predict(_items(1))[0]
    assert "HTTP 400" in p.extras["error"]
    assert len(api.requests) == 4  # not retried


def test_concurrency_limit(api):
    api.success_delay = 0.25
    a = _adapter(api, concurrency=2)
    items = _items(6)
    preds = a.predict(items)
    assert [p.explanation for p in preds] == [_expected(i.image) for i in items]  # order kept
    assert api.max_in_flight == 2


def test_key_never_in_config_identity_logs_or_errors(api, caplog):
    caplog.set_level(logging.DEBUG)
    api.script = [(401, 0.0)]
    a = _adapter(api)
    p = a.predict(_items(1))[0]
    assert api.auth[0] == f"Bearer {KEY}"  # it was sent ...
    assert "HTTP 401" in p.extras["error"] and "***" in p.extras["error"]
    api.script = [(429, 0.0), (500, 0.0)]
    a.predict(_items(1))
    everything = json.dumps(a.identity()) + json.dumps(a.config) + p.extras["error"] + caplog.text
    assert KEY not in everything  # ... and nowhere else
    assert "retry" in caplog.text  # the retries were logged (without the key)
    with pytest.raises(BenchError, match="do not put the key in the config"):
        OpenAIChatAdapter(model="m", api_key=KEY)


def test_missing_key_variable_is_a_load_error(monkeypatch):
    monkeypatch.delenv("BENCH_NO_SUCH_KEY", raising=False)
    a = OpenAIChatAdapter(model="m", api_key_env="BENCH_NO_SUCH_KEY")
    with pytest.raises(AdapterLoadError, match="BENCH_NO_SUCH_KEY is not set"):
        a.load()


def test_no_key_for_a_local_server(api):
    a = _adapter(api, api_key_env=None)
    assert a.predict(_items(1))[0].explanation
    assert api.auth == [None]
