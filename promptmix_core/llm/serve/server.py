"""HTTP: the OpenAI-compatible routes, the limits that keep the server up, and its lifetime.

Routes: ``POST /v1/chat/completions``, ``GET /v1/models``, ``GET /health``, ``GET /v1/stats``.

What keeps it up under load or abuse (docs/RELIABILITY.md):

* **connections**: a listen backlog of :data:`LISTEN_BACKLOG` and a thread per connection, so 64 or more
  clients at once are all accepted (no reset); past :data:`MAX_CONNECTIONS` open connections, or
  :data:`~.engine.MAX_QUEUED` open requests, the answer is ``503`` with ``Retry-After: 1``;
* **size**: ``Content-Length`` is checked before the body is read: over
  :data:`~.protocol.MAX_BODY_BYTES` is ``413`` (the body is drained in small chunks, never held),
  none is ``411``; a prompt too long for the context is ``400`` before it is tokenized;
* **abandoned requests**: while a request waits for the engine its handler watches the socket;
  when the client has gone (closed or timed out) the request is cancelled and leaves the batch;
* **lifetime**: ``--idle-timeout S`` exits after S seconds without a request; ``--parent-pid P
  --orphan-idle S`` exits once process P (the launcher) is gone and no request came for S seconds
  (0: at once); ``--state-file F`` removes the shared-server registration F on exit when it names this
  process. SIGTERM and SIGINT stop it cleanly.
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .engine import Engine, Pending
from .protocol import MAX_BODY_BYTES, MAX_TOKENS_CAP, RequestError, parse_request

HOST = "127.0.0.1"
LISTEN_BACKLOG = 256  # socketserver's default of 5 reset clients past the first few of a burst
MAX_CONNECTIONS = 512  # open connections (threads); more get 503 at once
DRAIN_LIMIT = 16 << 20  # an oversized body up to this is read and dropped so the 413 reaches the client
CLIENT_CHECK_SECONDS = 0.2  # how often a waiting handler looks whether its client is still there
READ_TIMEOUT = 60.0  # a client that stops sending headers or body for this long is dropped


class Server(ThreadingHTTPServer):
    """A threading HTTP server with a deep backlog, a connection cap and an activity clock."""

    request_queue_size = LISTEN_BACKLOG
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, handler, engine: Engine, model_id: str, max_tokens_cap: int = MAX_TOKENS_CAP,
                 max_connections: int = MAX_CONNECTIONS):
        self.engine, self.model_id, self.max_tokens_cap = engine, model_id, int(max_tokens_cap)
        self.max_connections = int(max_connections)
        self.started = int(time.time())
        self._lock = threading.Lock()
        self.connections = 0
        self.busy = 0  # requests being handled now
        self.last_activity = time.monotonic()
        super().__init__(address, handler)

    def process_request(self, request, client_address):
        with self._lock:
            full = self.connections >= self.max_connections
            if not full:
                self.connections += 1
        if full:
            with contextlib.suppress(OSError):
                body = b'{"error": {"message": "too many connections; retry shortly", "type": "server_busy", "code": "server_busy", "param": null}}'
                request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nConnection: close\r\n"
                                b"Content-Type: application/json\r\nContent-Length: " + str(len(body)).encode()
                                + b"\r\n\r\n" + body)
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._lock:
                self.connections -= 1

    @contextlib.contextmanager
    def activity(self):
        with self._lock:
            self.busy += 1
            self.last_activity = time.monotonic()
        try:
            yield
        finally:
            with self._lock:
                self.busy -= 1
                self.last_activity = time.monotonic()

    def idle_seconds(self) -> float:
        with self._lock:
            return 0.0 if self.busy else time.monotonic() - self.last_activity


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "promptmix-local/1"
    timeout = READ_TIMEOUT
    server: Server

    def log_message(self, fmt: str, *args: Any) -> None:  # one line per request in the server log
        sys.stderr.write("%s - %s\n" % (self.address_string(), fmt % args))

    def _json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str, code: str = "invalid_request_error", param: str | None = None,
               retry_after: float | None = None) -> None:
        headers = {"Retry-After": str(int(retry_after))} if retry_after else None
        if status in (411, 413):
            headers = {**(headers or {}), "Connection": "close"}
            self.close_connection = True
        self._json(status, {"error": {"message": message, "type": code, "code": code, "param": param}}, headers)

    def do_GET(self) -> None:  # noqa: N802
        with self.server.activity():
            path = self.path.split("?", 1)[0].rstrip("/")
            if path == "/health":
                self._json(200, {"status": "ok"})
            elif path in ("/v1/models", "/models"):
                self._json(200, {"object": "list", "data": [
                    {"id": self.server.model_id, "object": "model", "created": self.server.started,
                     "owned_by": "promptmix"}]})
            elif path in ("/v1/stats", "/stats"):
                self._json(200, {**self.server.engine.stats, "connections": self.server.connections})
            else:
                self._error(404, f"no route {self.path}", "not_found")

    # -- the body, bounded
    def _body_length(self) -> int | None:
        """The body's length from ``Content-Length``, or None after answering 411/413/400."""
        if self.headers.get("Transfer-Encoding"):
            self._error(411, "send the body with a Content-Length (chunked bodies are not accepted)",
                        "length_required")
            return None
        raw = self.headers.get("Content-Length")
        if raw is None:
            self._error(411, "a Content-Length header is required", "length_required")
            return None
        try:
            length = int(raw)
            if length < 0:
                raise ValueError(raw)
        except ValueError:
            self._error(400, "Content-Length is not a number")
            self.close_connection = True
            return None
        if length > MAX_BODY_BYTES:
            self._error(413, f"the request body has {length} bytes; this server takes at most {MAX_BODY_BYTES}",
                        "request_too_large")
            self._drain(length)
            return None
        return length

    def _drain(self, length: int) -> None:
        """Read and drop an oversized body (in 64 KiB pieces, at most DRAIN_LIMIT bytes, 5 s), so the
        client that is still sending it reads the 413 instead of a reset."""
        if length > DRAIN_LIMIT:
            return
        end = time.monotonic() + 5.0
        with contextlib.suppress(OSError):
            while length > 0 and time.monotonic() < end:
                chunk = self.rfile.read1(min(length, 65536)) if hasattr(self.rfile, "read1") else self.rfile.read(min(length, 65536))
                if not chunk:
                    break
                length -= len(chunk)

    def handle_expect_100(self) -> bool:  # a client that asks first hears 413 before it sends the body
        raw = self.headers.get("Content-Length")
        if raw and raw.isdigit() and int(raw) > MAX_BODY_BYTES:
            self._error(413, f"the request body has {raw} bytes; this server takes at most {MAX_BODY_BYTES}",
                        "request_too_large")
            return False
        return super().handle_expect_100()

    def _client_gone(self) -> bool:
        """Whether the client closed its end (a readable socket with nothing to read)."""
        sock = self.connection
        try:
            readable, _, _ = select.select([sock], [], [], 0)
            if not readable:
                return False
            return sock.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True

    def do_POST(self) -> None:  # noqa: N802
        with self.server.activity():
            self._post()

    def _post(self) -> None:
        server, engine = self.server, self.server.engine
        path = self.path.split("?", 1)[0].rstrip("/")
        length = self._body_length()
        if length is None:
            return
        try:
            raw = self.rfile.read(length) if length else b""
        except OSError:
            self.close_connection = True
            return
        if path not in ("/v1/chat/completions", "/chat/completions"):
            self._error(404, f"no route {self.path}", "not_found")
            return
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            self._error(400, "the request body is not valid JSON")
            return
        try:
            req = parse_request(body, server.model_id, max_tokens_cap=server.max_tokens_cap,
                                max_prompt_chars=engine.max_prompt_chars)
            pending = engine.submit(req)
        except RequestError as exc:
            self._error(exc.status, str(exc), exc.code, exc.param, exc.retry_after)
            return
        try:
            while not pending.done.wait(CLIENT_CHECK_SECONDS):
                if self._client_gone():
                    pending.cancel()
                    self.close_connection = True
                    self.log_message("client gone: request cancelled")
                    return
        finally:
            engine.release(pending)
        if pending.error is not None or pending.result is None:
            self._error(500, f"generation failed: {pending.error}", "server_error")
            return
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self._answer(req.stream, pending)

    def _answer(self, stream: bool, pending: Pending) -> None:
        res, model_id = pending.result, self.server.model_id
        body_out = {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion",
            "created": int(pending.created),
            "model": model_id,
            "choices": res["choices"],
            "usage": {"prompt_tokens": res["prompt_tokens"], "completion_tokens": res["completion_tokens"],
                      "total_tokens": res["prompt_tokens"] + res["completion_tokens"]},
        }
        if not stream:
            self._json(200, body_out)
            return
        # stream: the whole answer as one chunk per choice, then [DONE]
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        for ch in res["choices"]:
            chunk = {"id": body_out["id"], "object": "chat.completion.chunk", "created": body_out["created"],
                     "model": model_id, "choices": [{"index": ch["index"], "delta": {
                         "role": "assistant", "content": ch["message"]["content"]},
                         "logprobs": ch.get("logprobs"), "finish_reason": ch["finish_reason"]}]}
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode("utf-8"))
        self.wfile.write(b"data: [DONE]\n\n")
        self.close_connection = True


def make_server(engine: Engine, model_id: str, port: int, *, max_tokens_cap: int = MAX_TOKENS_CAP) -> Server:
    return Server((HOST, port), Handler, engine, model_id, max_tokens_cap=max_tokens_cap)
