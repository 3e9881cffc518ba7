"""The bundled local model: conversion, the local server, the shared server, the CLI hook.

Fast tests use stand-ins (a fake conversion, a fake server command). The ``slow`` tests convert the
real GGUF file once per session into a temp folder (about 18 s) and start the real
``transformers serve`` on 127.0.0.1; every server started here is stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import pytest

from promptmix_core.llm import local


def _temp_leftovers(parent: Path) -> list[Path]:
    return [p for p in parent.iterdir() if ".tmp-" in p.name or ".old-" in p.name]


def _fake_convert(calls: list[Path]):
    def convert(gguf: Path, out: Path) -> None:
        calls.append(out)
        (out / "config.json").write_text("{}")
        (out / "model.safetensors").write_bytes(b"weights")
        (out / "tokenizer.json").write_text("{}")

    return convert


# ----------------------------------------------------------------------------- paths and conversion


def test_bundled_gguf_path_exists():
    path = local.bundled_gguf_path()
    assert path.is_file() and path.suffix == ".gguf"


def test_bundled_gguf_path_missing_package(monkeypatch):
    monkeypatch.setattr(local.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(local.LocalModelError, match="make setup"):
        local.bundled_gguf_path()


def test_default_dirs_follow_env(cache_root):
    assert local.cache_root() == cache_root
    assert local.default_model_dir() == cache_root / "models" / "smollm2-135m-instruct"
    assert local.server_dir() == cache_root / "server"


def test_prepare_model_idempotent_and_cleans_stale_temp(cache_root, monkeypatch):
    calls: list[Path] = []
    monkeypatch.setattr(local, "_convert", _fake_convert(calls))
    parent = cache_root / "models"
    parent.mkdir(parents=True)
    stale = parent / ".smollm2-135m-instruct.tmp-999-deadbeef"  # left by a crashed conversion
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"half")
    old = time.time() - 2 * local.STALE_TMP_SECONDS
    os.utime(stale, (old, old))

    folder = local.prepare_model()
    assert folder == local.default_model_dir()
    assert (folder / "model.safetensors").is_file() and (folder / local.MARKER_NAME).is_file()
    assert len(calls) == 1 and calls[0].parent == parent and calls[0] != folder  # written aside
    assert _temp_leftovers(parent) == []

    assert local.prepare_model() == folder
    assert len(calls) == 1  # second call: nothing converted

    assert local.prepare_model(force=True) == folder
    assert len(calls) == 2 and _temp_leftovers(parent) == []


def test_prepare_model_crash_leaves_no_half_folder(tmp_path, monkeypatch):
    def crash(gguf: Path, out: Path) -> None:
        (out / "model.safetensors").write_bytes(b"half written")
        raise RuntimeError("killed mid-conversion")

    monkeypatch.setattr(local, "_convert", crash)
    target = tmp_path / "m"
    with pytest.raises(RuntimeError, match="mid-conversion"):
        local.prepare_model(target)
    assert not target.exists()
    assert _temp_leftovers(tmp_path) == []


def test_prepare_model_redoes_incomplete_or_outdated_folder(tmp_path, monkeypatch):
    calls: list[Path] = []
    monkeypatch.setattr(local, "_convert", _fake_convert(calls))
    target = tmp_path / "m"
    target.mkdir()
    (target / "model.safetensors").write_bytes(b"from an older layout")
    (target / local.MARKER_NAME).write_text(json.dumps({"format": -1}))
    assert local.prepare_model(target) == target
    assert len(calls) == 1
    assert json.loads((target / local.MARKER_NAME).read_text())["format"] == local.FORMAT_VERSION
    assert (target / "model.safetensors").read_bytes() == b"weights"
    assert _temp_leftovers(tmp_path) == []


# ----------------------------------------------------------------------------- server start-up errors


def _fake_model_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "fake-model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    return folder


class _ScriptServer(local.LocalServer):
    """LocalServer running a stand-in script instead of `transformers serve`."""

    script = ""

    def _command(self, port: int) -> list[str]:
        return [sys.executable, "-c", self.script]


def test_server_that_exits_reports_log_tail(tmp_path, cache_root):
    class Crashing(_ScriptServer):
        script = "import sys; print('model exploded: no weights'); sys.exit(3)"

    server = Crashing(_fake_model_dir(tmp_path), startup_timeout=30)
    with pytest.raises(local.LocalServerError, match="(?s)exited with code 3.*model exploded"):
        server.start()
    assert not server.is_running()


def test_server_startup_timeout_kills_process(tmp_path, cache_root):
    class Silent(_ScriptServer):
        script = "print('loading forever', flush=True); import time; time.sleep(60)"

    server = Silent(_fake_model_dir(tmp_path), startup_timeout=1.5)
    t0 = time.monotonic()
    with pytest.raises(local.LocalServerError, match="(?s)did not answer.*loading forever"):
        server.start()
    assert time.monotonic() - t0 < 20
    assert server.process is None or server.process.poll() is not None


def test_server_without_model_folder(tmp_path):
    with pytest.raises(local.LocalServerError, match="prepare-model"):
        local.LocalServer(tmp_path / "nothing").start()


def test_stale_state_file_is_not_reused(cache_root):
    assert local.read_shared_state() is None
    local.server_dir().mkdir(parents=True)
    (local.server_dir() / "shared.json").write_text("not json")
    assert local.read_shared_state() is None
    dead = {"pid": 2**22 + 12345, "port": local.free_port(), "model": "smollm2-135m-instruct"}
    (local.server_dir() / "shared.json").write_text(json.dumps(dead))
    assert local.read_shared_state() == dead
    assert not local._state_usable(dead)


# ----------------------------------------------------------------------------- CLI hook


def test_register_cli_parses(cache_root, capsys):
    parser = argparse.ArgumentParser(prog="promptmix")
    from promptmix_core.cli import local_model

    local_model.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["serve-local", "--port", "8123"])
    assert args.port == 8123 and not args.stop and callable(args.func)
    args = parser.parse_args(["prepare-model", "--force"])
    assert args.force and callable(args.func)
    args = parser.parse_args(["serve-local", "--stop"])
    assert args.func(args) == 0
    assert "no local model server is running" in capsys.readouterr().out


# ----------------------------------------------------------------------------- the real model (slow)


@pytest.fixture(scope="session")
def real_model(tmp_path_factory) -> tuple[Path, float]:
    """The real GGUF converted once per session into a temp folder; returns (folder, seconds)."""
    target = tmp_path_factory.mktemp("local-model") / "smollm2-135m-instruct"
    t0 = time.perf_counter()
    folder = local.prepare_model(target)
    yield folder, time.perf_counter() - t0
    shutil.rmtree(target.parent, ignore_errors=True)  # 0.5 GB: do not leave it in pytest's temp


@pytest.mark.slow
def test_prepare_model_real(real_model):
    folder, first_seconds = real_model
    for name in ("model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json"):
        assert (folder / name).is_file(), name
    assert _temp_leftovers(folder.parent) == []
    config = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in config
    gen = json.loads((folder / "generation_config.json").read_text())
    assert gen["do_sample"] is True  # so the server honours `temperature`
    template = folder / "chat_template.jinja"
    assert (template.is_file() and "<|im_start|>" in template.read_text()) or "chat_template" in json.loads(
        (folder / "tokenizer_config.json").read_text()
    )

    t0 = time.perf_counter()
    assert local.prepare_model(folder) == folder
    assert time.perf_counter() - t0 < 1.0
    assert _temp_leftovers(folder.parent) == []


@pytest.mark.slow
def test_local_server_chat_completion(real_model, cache_root):
    from openai import OpenAI

    folder, _ = real_model
    with local.LocalServer(folder) as server:
        assert server.base_url.startswith("http://127.0.0.1:") and server.base_url.endswith("/v1")
        assert server.model == folder.name
        port, log_path = server.port, server.log_path
        assert log_path is not None and log_path.parent == local.server_dir()
        client = OpenAI(base_url=server.base_url, api_key="local", timeout=120, max_retries=0)
        resp = client.chat.completions.create(
            model=server.model,
            messages=[{"role": "user", "content": "Name one fruit."}],
            max_tokens=20,
            temperature=0,
        )
        client.close()
        text = resp.choices[0].message.content
        assert isinstance(text, str) and text.strip()
        assert resp.usage is not None and 0 < resp.usage.completion_tokens <= 20
        stats = local.measure_tokens_per_second(server.base_url, server.model, n=1, max_tokens=8)
        assert stats["requests"] == 1 and stats["completion_tokens"] > 0 and stats["tokens_per_second"] > 0
    assert not local.port_open(port)
    assert not server.is_running()
    assert not log_path.exists()  # a clean stop removes a private server's log


@pytest.mark.slow
def test_shared_server_is_reused_and_stopped(real_model, cache_root, monkeypatch):
    folder, _ = real_model
    try:
        base_url, model = local.ensure_local_server(folder)
        assert model == folder.name
        state = local.read_shared_state()
        assert state is not None and state["port"] == int(base_url.rsplit(":", 1)[1].split("/")[0])
        assert local.ensure_local_server(folder) == (base_url, model)  # same process: cached

        # another process: nothing cached in memory, found through the state file
        monkeypatch.setattr(local, "_shared", None)
        monkeypatch.setattr(local, "_shared_server", None)
        assert local.ensure_local_server(folder) == (base_url, model)
        assert local.read_shared_state()["pid"] == state["pid"]

        assert local.stop_shared_server() is True
        assert not local.port_open(int(state["port"]))
        assert local.read_shared_state() is None
        assert local.stop_shared_server() is False
    finally:
        local.stop_shared_server()


def test_the_server_threads_spin_briefly_unless_the_user_chose_a_wait_policy(monkeypatch, tmp_path):
    """The server gets a short bounded OpenMP spin (a 16-row step 85 ms against 120 ms when threads sleep
    at once); a wait policy or spin count set by the user is left as it is."""
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    env = local.LocalServer(tmp_path, threads=2)._env()
    assert env["GOMP_SPINCOUNT"] == str(local.SERVER_SPINCOUNT) and "OMP_WAIT_POLICY" not in env
    assert env["OMP_NUM_THREADS"] == "2"
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    env = local.LocalServer(tmp_path, threads=2)._env()
    assert env["OMP_WAIT_POLICY"] == "PASSIVE" and "GOMP_SPINCOUNT" not in env
    monkeypatch.delenv("OMP_WAIT_POLICY")
    monkeypatch.setenv("GOMP_SPINCOUNT", "0")
    assert local.LocalServer(tmp_path, threads=2)._env()["GOMP_SPINCOUNT"] == "0"
