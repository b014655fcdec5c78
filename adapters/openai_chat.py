"""``openai-chat``: explanations from a multimodal LLM behind an OpenAI-compatible chat API
(GPT-4o, or Qwen2-VL / LLaVA served by vLLM, ...).

Per image, one ``POST {base_url}/chat/completions`` with the prompt and the image as a base64
PNG data URL (lossless: the harness's exact, possibly perturbed, pixels). The reply's text,
stripped, is the explanation (no other cleaning).

Config: ``base_url`` (default ``https://api.openai.com/v1``), ``model`` (required), ``prompt``,
``system`` (optional system message), ``max_tokens`` (512), ``temperature`` (0), ``seed``
(optional, sent when set), ``detail`` (optional image detail: ``low``/``high``/``auto``),
``timeout_s`` (120 per request), ``max_retries`` (5), ``backoff_s`` (1.0, doubled each retry,
capped by ``backoff_max_s`` 60; a ``Retry-After`` header is honoured up to that cap),
``concurrency`` (4 requests in flight), ``api_key_env`` (name of the environment variable holding
the key, default ``OPENAI_API_KEY``; ``null`` sends no key, e.g. for a local vLLM server).

Retried: HTTP 429 and 5xx, timeouts, connection errors. Other errors fail that sample with
the server's message. The key is read from the environment when a request is made; it is never
put in the config, the identity, results, logs or error messages (any echo of it is masked).
Only the standard library is used (``urllib``).
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import logging
import os
import random
import socket
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar, Sequence

import numpy as np

from bench.adapters import register_adapter
from bench.adapters._util import AdapterLoadError, failed_prediction
from bench.errors import BenchError
from bench.core.types import Adapter, ModelInput, Prediction

log = logging.getLogger(__name__)

DEFAULT_PROMPT = (
    "This image may be AI-generated. Examine it carefully and describe every visual artifact you "
    "find: where it is in the image and what is wrong with it (for example deformed anatomy, "
    "impossible physics or lighting, distorted text, texture or colour errors). Answer in one "
    "paragraph of plain text."
)
RETRY_STATUS = frozenset({429, 500, 502, 503, 504}) | frozenset(range(505, 600))


class _Retryable(Exception):
    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


def png_data_url(image: np.ndarray) -> str:
    """RGB uint8 H x W x 3 -> ``data:image/png;base64,...`` (lossless)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8), mode="RGB").save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def message_text(reply: dict[str, Any]) -> str:
    """The assistant text of a chat-completions reply (string content or a list of text parts)."""
    try:
        content = reply["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise ValueError(f"reply has no choices[0].message.content: {json.dumps(reply)[:300]}") from None
    if isinstance(content, list):
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    if not isinstance(content, str):
        raise ValueError(f"message content is {type(content).__name__}, not text")
    return content.strip()


@register_adapter
class OpenAIChatAdapter(Adapter):
    """Explanations from an OpenAI-compatible chat-completions API (see the module doc)."""

    name = "openai-chat"
    version = "1"
    tasks = frozenset({"explain"})
    requirements: ClassVar[dict[str, Any]] = {
        "batch_size": 16, "num_gpus": 0, "gpu_memory_gb": 0, "needs_setup": True,
    }
    flags: ClassVar[dict[str, Any]] = {"api": True}
    summary = "MLLM explanations via an OpenAI-compatible chat API (GPT-4o, vLLM ...)"
    #: a hosted model is not guaranteed to answer the same twice, even at temperature 0
    deterministic = False
    #: config keys that do not change outputs (a cache may ignore them)
    runtime_keys: ClassVar[frozenset[str]] = frozenset(
        {"timeout_s", "max_retries", "backoff_s", "backoff_max_s", "concurrency", "api_key_env", "batch_size"})
    config_keys: ClassVar[frozenset[str]] = frozenset(
        {"base_url", "model", "prompt", "system", "max_tokens", "temperature", "seed", "detail"})

    def __init__(self, **config: Any):
        for forbidden in ("api_key", "key", "token"):
            if forbidden in config:
                raise BenchError(
                    f"adapter 'openai-chat': do not put the key in the config ({forbidden!r}); "
                    "set an environment variable and name it with api_key_env"
                )
        config.setdefault("base_url", "https://api.openai.com/v1")
        config.setdefault("prompt", DEFAULT_PROMPT)
        config.setdefault("max_tokens", 512)
        config.setdefault("temperature", 0)
        config.setdefault("api_key_env", "OPENAI_API_KEY")
        super().__init__(**config)
        if "batch_size" in config:
            self.requirements = dict(type(self).requirements, batch_size=int(config["batch_size"]))
        if not config.get("model"):
            raise BenchError("adapter 'openai-chat': config 'model' is required")
        self._local = threading.local()

    # -- settings that do not change outputs are read with defaults, not stored ------------
    def _opt(self, key: str, default: Any) -> Any:
        v = self.config.get(key)
        return default if v is None else v

    def _api_key(self) -> str | None:
        env = self.config.get("api_key_env")
        if not env:
            return None
        key = os.environ.get(str(env))
        if not key:
            raise AdapterLoadError(
                f"adapter 'openai-chat': environment variable {env} is not set (it holds the API key; "
                "use --config api_key_env=null for a server that needs none)"
            )
        return key

    def load(self, device: str = "cpu") -> None:
        self._api_key()  # fail early when the key is missing
        url = str(self.config["base_url"])
        if not url.startswith(("http://", "https://")):
            raise AdapterLoadError(f"adapter 'openai-chat': base_url {url!r} is not an http(s) URL")

    def _mask(self, text: str) -> str:
        try:
            key = self._api_key()
        except AdapterLoadError:
            key = None
        return text.replace(key, "***") if key else text

    def request_body(self, image: np.ndarray) -> dict[str, Any]:
        image_part: dict[str, Any] = {"url": png_data_url(image)}
        if self.config.get("detail"):
            image_part["detail"] = self.config["detail"]
        messages: list[dict[str, Any]] = []
        if self.config.get("system"):
            messages.append({"role": "system", "content": str(self.config["system"])})
        messages.append({"role": "user", "content": [
            {"type": "text", "text": str(self.config["prompt"])},
            {"type": "image_url", "image_url": image_part},
        ]})
        body: dict[str, Any] = {
            "model": self.config["model"], "messages": messages,
            "max_tokens": int(self.config["max_tokens"]), "temperature": float(self.config["temperature"]),
        }
        if self.config.get("seed") is not None:
            body["seed"] = int(self.config["seed"])
        return body

    def _post_once(self, body: bytes) -> dict[str, Any]:
        url = str(self.config["base_url"]).rstrip("/") + "/chat/completions"
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        key = self._api_key()
        if key:
            headers["Authorization"] = f"Bearer {key}"
        req = urllib.request.Request(url, data=body, headers=headers, method="POST")
        timeout = float(self._opt("timeout_s", 120.0))
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                payload = resp.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:500].decode("utf-8", errors="replace")
            msg = self._mask(f"HTTP {exc.code} from {url}: {detail}")
            if exc.code in RETRY_STATUS:
                ra = exc.headers.get("Retry-After") if exc.headers else None
                try:
                    retry_after = float(ra) if ra is not None else None
                except ValueError:
                    retry_after = None
                raise _Retryable(msg, retry_after) from None
            raise RuntimeError(msg) from None
        except (TimeoutError, socket.timeout) as exc:
            raise _Retryable(f"request to {url} timed out after {timeout:.0f} s ({exc})") from None
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, (TimeoutError, socket.timeout)):
                raise _Retryable(f"request to {url} timed out after {timeout:.0f} s") from None
            raise _Retryable(self._mask(f"cannot reach {url}: {reason}")) from None
        except (ConnectionError, http.client.HTTPException) as exc:
            raise _Retryable(self._mask(f"connection to {url} failed: {exc}")) from None
        try:
            return json.loads(payload)
        except ValueError:
            raise RuntimeError(f"reply from {url} is not JSON: {payload[:200]!r}") from None

    def ask(self, image: np.ndarray) -> str:
        """One explanation, with retries and exponential back-off on 429/5xx/timeouts."""
        body = json.dumps(self.request_body(image)).encode("utf-8")
        retries = int(self._opt("max_retries", 5))
        base = float(self._opt("backoff_s", 1.0))
        cap = float(self._opt("backoff_max_s", 60.0))
        attempt = 0
        while True:
            try:
                return message_text(self._post_once(body))
            except _Retryable as exc:
                if attempt >= retries:
                    raise RuntimeError(f"{exc} (gave up after {attempt + 1} attempts)") from None
                delay = min(cap, base * (2 ** attempt))
                delay = delay * (0.5 + random.random() / 2)  # jitter: concurrent workers spread out
                if exc.retry_after is not None:
                    delay = min(cap, max(delay, exc.retry_after))
                log.info("openai-chat: %s; retry %d/%d in %.2f s", str(exc).split("\n")[0], attempt + 1, retries, delay)
                time.sleep(delay)
                attempt += 1

    def predict(self, batch: Sequence[ModelInput]) -> list[Prediction]:
        if not batch:
            return []

        def one(item: ModelInput) -> Prediction:
            try:
                return Prediction(explanation=self.ask(item.image))
            except (RuntimeError, ValueError, AdapterLoadError) as exc:
                return failed_prediction(self._mask(f"{item.sample_id}: {exc}"))

        workers = max(1, min(int(self._opt("concurrency", 4)), len(batch)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="openai-chat") as pool:
            return list(pool.map(one, batch))

