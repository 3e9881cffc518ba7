"""A scripted OpenAI-compatible server on 127.0.0.1 (real HTTP, real sockets) for tests.

It answers ``POST /v1/chat/completions`` and ``GET /v1/models``. Generation prompts (from
``promptmix_core.generate``) get numbered examples that mention the class asked for; classifier
prompts get a class name. Faults are scripted per request (``script``) or drawn at random
(``fault_rate``): 429 with or without Retry-After, 500/502/503, slow answers, dropped connections,
empty, truncated, garbage or very long content. The server serves at most ``max_requests`` and
shuts itself down after ``lifetime`` seconds, so nothing outlives a test.

Optional features, each ``"accept"``, ``"refuse"`` (HTTP 400 naming the field, as vLLM/llama.cpp
builds without them answer) or ``"ignore"`` (the field is dropped, as ``transformers serve`` does):

* ``structured`` for ``response_format`` (json_schema with one enum property): accepted, the answer is
  ``{"<key>": "<value>"}`` with the value the classifier picks if it is in the enum, else the first;
* ``stop`` for stop sequences: only ``"refuse"`` or ``"ignore"`` (the answers are short already);
* ``logprobs`` for ``logprobs``/``top_logprobs``: accepted, the answer comes in tokens of up to four
  characters whose logprobs put ``answer_confidence`` on the label (the whole answer for free text;
  the JSON value and its closing quote for a structured one; scaffolding 0).
"""

from __future__ import annotations

import itertools
import json
import random
import re
import socket
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

FAULTS = ("429", "429-retry", "500", "502", "503", "slow", "drop", "drop-mid", "empty", "truncated", "garbage", "long")
# Hostile behaviours, scripted only (never drawn at random): "trickle" sends a correct answer one byte
# every ``trickle_interval`` seconds, "huge-usage" reports 10^20 prompt tokens, "stream" answers with
# server-sent events although no stream was asked for.
HOSTILE = ("trickle", "huge-usage", "stream")

_GEN = re.compile(r"Generate a diverse set of (\d+) short examples")
_MIX = re.compile(r'belongs (\d+)% to category "([^"]+)" and (\d+)% to category "([^"]+)"')
_PLAIN = re.compile(r'that belong to category "([^"]+)"')
_TEXT = re.compile(r"^Text: (.*)$", re.MULTILINE)
_CATS = re.compile(r"^Category: (.+)$", re.MULTILINE)

_OPENERS = [
    "Can you help me, {a}",
    "I have a question: {a}",
    "Quick one about {a}",
    "Not sure if this is {a} or {b}",
    "Something about {a}, maybe {b}",
    "Please check {a} for me",
    "Why is {a} happening",
    "Is this {a}",
]


def _words(name: str) -> str:
    return name.replace("_", " ").replace("-", " ")


class FakeLLM:
    def __init__(
        self,
        *,
        model: str = "fake-model",
        latency: float = 0.0,
        fault_rate: float = 0.0,
        faults: tuple[str, ...] = FAULTS,
        seed: int = 0,
        api_key: str | None = None,
        max_requests: int = 20_000,
        lifetime: float = 900.0,
        slow_seconds: float = 5.0,
        retry_after: float = 0.05,
        responder: Callable[[dict[str, Any]], str] | None = None,
        classify: Callable[[str, list[str]], str] | None = None,
        structured: str = "ignore",
        logprobs: str = "ignore",
        stop: str = "ignore",
        answer_confidence: float = 0.8,
        answer_model: str | None = None,
        trickle_interval: float = 1.0,
        basic_auth: tuple[str, str] | None = None,
    ):
        assert structured in ("accept", "refuse", "ignore") and logprobs in ("accept", "refuse", "ignore")
        self.structured = structured
        self.logprobs_mode = logprobs
        assert stop in ("refuse", "ignore")
        self.stop_mode = stop  # "refuse": 400 to any stop sequences, as OpenAI's reasoning models answer
        self.answer_confidence = answer_confidence
        self.model = model
        self.answer_model = answer_model or model  # the model the answers say answered
        self.trickle_interval = trickle_interval
        self.basic_auth = basic_auth  # (user, password) a request must carry, as from http://user:pw@host
        self.latency = latency
        self.fault_rate = fault_rate
        self.faults = faults
        self.api_key = api_key
        self.max_requests = max_requests
        self.lifetime = lifetime
        self.slow_seconds = slow_seconds
        self.retry_after = retry_after
        self.responder = responder
        self.classify = classify
        self.script: deque[str] = deque()
        self.requests: list[dict[str, Any]] = []
        self.auth_headers: list[str] = []  # the Authorization header of every request (GET and POST), "" if none
        self.outcomes: list[str] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._rng = random.Random(seed)
        self._counter = itertools.count(1)
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._timer: threading.Timer | None = None
        self.down = False  # when True every request gets 503

    # ------------------------------------------------------------------ lifecycle
    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def calls(self) -> int:
        return len(self.requests)

    def start(self) -> "FakeLLM":
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:  # noqa: N802
                fake.auth_headers.append(self.headers.get("Authorization", ""))
                if self.path.rstrip("/").endswith("/models"):
                    fake._send_json(self, 200, {"object": "list", "data": [{"id": fake.model, "object": "model"}]})
                elif self.path.rstrip("/").endswith("/health"):
                    fake._send_json(self, 200, {"status": "ok"})
                else:
                    fake._send_json(self, 404, {"error": {"message": "not found"}})

            def do_POST(self) -> None:  # noqa: N802
                fake.auth_headers.append(self.headers.get("Authorization", ""))
                fake._handle_post(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True, name="fake-llm")
        self._thread.start()
        self._timer = threading.Timer(self.lifetime, self.stop)
        self._timer.daemon = True
        self._timer.start()
        return self

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "FakeLLM":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # ------------------------------------------------------------------- answers
    @staticmethod
    def _send_json(handler: BaseHTTPRequestHandler, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            handler.send_header(k, v)
        handler.end_headers()
        handler.wfile.write(data)

    def _completion(self, content: str, body: dict[str, Any], finish: str = "stop") -> dict[str, Any]:
        prompt_chars = sum(len(m.get("content", "")) for m in body.get("messages", []))
        choice: dict[str, Any] = {"index": 0, "message": {"role": "assistant", "content": content},
                                  "finish_reason": finish}
        if self.logprobs_mode == "accept" and (body.get("logprobs") or body.get("top_logprobs")):
            choice["logprobs"] = {"content": self._token_logprobs(content, body)}
        return {
            "id": f"chatcmpl-{next(self._counter)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.answer_model,
            "choices": [choice],
            "usage": {
                "prompt_tokens": prompt_chars // 4 + 1,
                "completion_tokens": len(content) // 4 + 1,
                "total_tokens": prompt_chars // 4 + len(content) // 4 + 2,
            },
        }

    @staticmethod
    def _enum(body: dict[str, Any]) -> tuple[str, list[str]] | None:
        rf = body.get("response_format")
        if not isinstance(rf, dict) or rf.get("type") != "json_schema":
            return None
        props = ((rf.get("json_schema") or {}).get("schema") or {}).get("properties") or {}
        for key, prop in props.items():
            if isinstance(prop, dict) and prop.get("enum"):
                return key, list(prop["enum"])
        return None

    def _token_logprobs(self, content: str, body: dict[str, Any]) -> list[dict[str, Any]]:
        import math

        span = (0, len(content))
        enum = self._enum(body) if self.structured == "accept" else None
        if enum is not None and content.startswith("{"):
            m = re.search(r'"%s"\s*:\s*"([^"]*)"' % re.escape(enum[0]), content)
            if m:
                span = (m.start(1), m.end(1) + 1)
        pieces: list[tuple[int, int]] = []
        cuts = sorted({0, span[0], span[1], len(content)})
        for a, b in zip(cuts, cuts[1:]):
            pieces.extend((i, min(i + 4, b)) for i in range(a, b, 4))
        inside = [p for p in pieces if p[0] < span[1] and p[1] > span[0]]
        each = math.log(self.answer_confidence) / max(1, len(inside))
        top_n = int(body.get("top_logprobs") or 0)
        out = []
        for a, b in pieces:
            tok = content[a:b]
            lp = each if (a, b) in inside else 0.0
            out.append({"token": tok, "logprob": lp, "bytes": list(tok.encode()),
                        "top_logprobs": [{"token": tok, "logprob": lp, "bytes": list(tok.encode())}][:top_n]})
        return out

    def default_answer(self, body: dict[str, Any]) -> str:
        enum = self._enum(body) if self.structured == "accept" else None
        if enum is not None:
            free = self._free_answer(body)
            key, values = enum
            return json.dumps({key: free if free in values else values[0]})
        return self._free_answer(body)

    def _free_answer(self, body: dict[str, Any]) -> str:
        prompt = body.get("messages", [{}])[-1].get("content", "")
        gen = _GEN.search(prompt)
        if gen:
            n = int(gen.group(1))
            mix = _MIX.search(prompt)
            if mix:
                ci, cj = mix.group(2), mix.group(4)
            else:
                plain = _PLAIN.search(prompt)
                ci = plain.group(1) if plain else "something"
                cj = ci
            lines = []
            for i in range(1, n + 1):
                k = next(self._counter)
                opener = self._rng.choice(_OPENERS).format(a=_words(ci), b=_words(cj))
                lines.append(f"{i}. {opener} (case {k})")
            return "Here are the examples:\n" + "\n".join(lines)
        text = _TEXT.search(prompt)
        cats = _CATS.findall(prompt)
        if text and cats:
            if self.classify is not None:
                return self.classify(text.group(1), cats)
            lowered = text.group(1).lower()
            # the first category named in the text wins; borderline ones ("Not sure if this is A or B")
            # name two, and the later-listed one is picked, giving some "changed" relabels
            named = [c for c in cats if _words(c).lower() in lowered]
            if named:
                return named[-1] if lowered.startswith("not sure") else named[0]
            return cats[0]
        return "OK"

    def _pick_action(self) -> str:
        with self._lock:
            if self.script:
                return self.script.popleft()
            if self.fault_rate and self._rng.random() < self.fault_rate:
                return self._rng.choice(self.faults)
        return "ok"

    def _handle_post(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            self._send_json(handler, 400, {"error": {"message": "invalid JSON"}})
            return
        if not handler.path.rstrip("/").endswith("/chat/completions"):
            self._send_json(handler, 404, {"error": {"message": f"no route {handler.path}"}})
            return
        with self._lock:
            if len(self.requests) >= self.max_requests:
                over = True
            else:
                over = False
                self.requests.append(body)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if over:
                self.outcomes.append("over-limit")
                self._send_json(handler, 503, {"error": {"message": "request limit reached"}})
                return
            if self.basic_auth is not None:
                import base64

                want = "Basic " + base64.b64encode(":".join(self.basic_auth).encode()).decode()
                if handler.headers.get("Authorization", "") != want:
                    self.outcomes.append("401")
                    self._send_json(handler, 401, {"error": {"message": "bad user or password"}})
                    return
            if self.api_key is not None:
                auth = handler.headers.get("Authorization", "")
                if auth != f"Bearer {self.api_key}":
                    self.outcomes.append("401")
                    self._send_json(handler, 401, {"error": {"message": "Incorrect API key provided", "code": "invalid_api_key"}})
                    return
            if body.get("model") != self.model:
                self.outcomes.append("404")
                self._send_json(
                    handler, 404,
                    {"error": {"message": f"The model `{body.get('model')}` does not exist", "code": "model_not_found"}},
                )
                return
            refused = None
            if self.structured == "refuse" and body.get("response_format") is not None:
                refused = ("response_format", "Unsupported parameter: 'response_format' is not supported by this server")
            elif self.logprobs_mode == "refuse" and (body.get("logprobs") or body.get("top_logprobs") is not None):
                refused = ("logprobs", "logprobs is not supported with this model")
            elif self.stop_mode == "refuse" and body.get("stop"):
                refused = ("stop", "Unsupported parameter: 'stop' is not supported with this model.")
            if refused is not None:
                self.outcomes.append(f"400-{refused[0]}")
                self._send_json(handler, 400, {"error": {"message": refused[1], "type": "invalid_request_error",
                                                         "param": refused[0]}})
                return
            action = "503" if self.down else self._pick_action()
            self.outcomes.append(action)
            if self.latency:
                time.sleep(self.latency)
            self._act(handler, action, body)
        finally:
            with self._lock:
                self.in_flight -= 1

    def _act(self, handler: BaseHTTPRequestHandler, action: str, body: dict[str, Any]) -> None:
        if action == "ok":
            content = self.responder(body) if self.responder else self.default_answer(body)
            self._send_json(handler, 200, self._completion(content, body))
        elif action == "429":
            self._send_json(handler, 429, {"error": {"message": "Rate limit reached", "type": "rate_limit"}})
        elif action.startswith("429-retry"):
            secs = action.split(":", 1)[1] if ":" in action else f"{self.retry_after:g}"
            self._send_json(handler, 429, {"error": {"message": "Rate limit reached"}}, {"Retry-After": secs})
        elif action == "400":
            self._send_json(handler, 400, {"error": {"message": "This model's maximum context length is exceeded",
                                                     "type": "invalid_request_error"}})
        elif action in ("500", "502", "503"):
            self._send_json(handler, int(action), {"error": {"message": f"server error {action}"}})
        elif action.startswith("slow"):
            secs = float(action.split(":", 1)[1]) if ":" in action else self.slow_seconds
            time.sleep(secs)
            try:
                self._send_json(handler, 200, self._completion(self.default_answer(body), body))
            except (BrokenPipeError, ConnectionResetError):
                pass
        elif action == "drop":
            handler.close_connection = True
            try:
                handler.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        elif action == "drop-mid":
            data = json.dumps(self._completion(self.default_answer(body), body)).encode()
            handler.send_response(200)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data[: len(data) // 2])
            handler.wfile.flush()
            handler.close_connection = True
            try:
                handler.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        elif action == "empty":
            self._send_json(handler, 200, self._completion("", body))
        elif action == "truncated":
            full = self.default_answer(body)
            self._send_json(handler, 200, self._completion(full[: max(1, len(full) * 2 // 3)], body, finish="length"))
        elif action == "garbage":
            data = b"<html>\x00\xff not json at all"
            handler.send_response(200)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data)
        elif action == "long":
            self._send_json(handler, 200, self._completion("lorem ipsum " * 20_000, body))
        elif action == "trickle":
            data = json.dumps(self._completion(self.default_answer(body), body)).encode()
            handler.send_response(200)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            try:
                for i in range(len(data)):
                    handler.wfile.write(data[i : i + 1])
                    handler.wfile.flush()
                    if self._server is None:  # stopped: end the trickle with the test
                        break
                    time.sleep(self.trickle_interval)
            except (BrokenPipeError, ConnectionResetError, OSError):
                pass  # the client gave up: what the test wants
            handler.close_connection = True
        elif action == "huge-usage":
            answer = self._completion(self.default_answer(body), body)
            answer["usage"] = {"prompt_tokens": 10**20, "completion_tokens": 10**20, "total_tokens": 2 * 10**20}
            self._send_json(handler, 200, answer)
        elif action == "stream":
            content = self.default_answer(body)
            chunks = [content[i : i + 20] for i in range(0, len(content), 20)]
            events = []
            for piece in chunks:
                events.append({"id": "chatcmpl-s", "object": "chat.completion.chunk", "model": self.answer_model,
                               "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]})
            payload = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
            data = payload.encode()
            handler.send_response(200)
            handler.send_header("Content-Type", "text/event-stream")
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data)
        else:
            raise ValueError(f"unknown action {action}")
