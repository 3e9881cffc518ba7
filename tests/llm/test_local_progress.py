"""A cold start of the shared local server tells its progress ("converting ...", "loading the local
model, 2 s...") through ``ensure_local_server(progress=...)``; the job pipeline shows it as the job's
message. Stand-ins: a fake conversion and a tiny stdlib server in place of the model's."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from promptmix_core.llm import local

SLOW_SERVER = r"""
import json, sys, time
from http.server import BaseHTTPRequestHandler, HTTPServer
time.sleep(2.5)  # "loading the model"
class H(BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_GET(self):
        body = {"status": "ok"} if self.path.startswith("/health") else {"data": [{"id": sys.argv[2]}]}
        data = json.dumps(body).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(data))); self.end_headers()
        self.wfile.write(data)
HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


class _SlowServer(local.LocalServer):
    def _command(self, port: int) -> list[str]:
        return [sys.executable, "-c", SLOW_SERVER, str(port), self.model]


def test_cold_start_reports_conversion_and_loading(cache_root, monkeypatch):
    def slow_convert(gguf: Path, out: Path) -> None:
        time.sleep(1.5)
        (out / "config.json").write_text("{}")
        (out / "model.safetensors").write_bytes(b"weights")

    monkeypatch.setattr(local, "_convert", slow_convert)
    monkeypatch.setattr(local, "LocalServer", _SlowServer)
    messages: list[str] = []
    try:
        base_url, model = local.ensure_local_server(progress=messages.append)
        assert base_url.startswith("http://127.0.0.1:") and model == local.MODEL_DIR_NAME
        assert any(m.startswith("converting the bundled model (first time only") for m in messages), messages
        loading = [m for m in messages if m.startswith("loading the local model, ")]
        assert loading and loading[-1].endswith(" s...") and any(m != "loading the local model, 0 s..." for m in loading)
        assert messages.index(next(m for m in messages if m.startswith("converting"))) < messages.index(loading[0])
        # warm: nothing to report
        more: list[str] = []
        assert local.ensure_local_server(progress=more.append) == (base_url, model)
        assert more == []
    finally:
        assert local.stop_shared_server() is True


def test_job_message_shows_model_loading(tmp_path, small_task):
    from promptmix_core.lifecycle import JobLifecycle
    from promptmix_core.pipeline import model_loading_reporter
    from promptmix_core.store import ProjectStore

    store = ProjectStore(tmp_path / "p.pmx")
    life = JobLifecycle.create(store, "generate", {"per_class": 1})
    model_loading_reporter(life.context())("loading the local model, 3 s...")
    j = store.get_job(life.job_id)
    assert j.message == "loading the local model, 3 s..." and j.progress["phase"] == "loading-model"
    assert j.progress["message"] == "loading the local model, 3 s..."
