"""The local server's lifetime (issue 23 items 9 and 12): ``promptmix serve-local`` stops and unregisters
its model server on SIGTERM; killed outright, its server exits by itself; the shared background server
exits once the process that started it is gone and no request came for the idle time. Real processes,
the real bundled model (slow), plus the fast exit rule."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from promptmix_core.llm import local
from promptmix_core.llm.serve.lifetime import should_exit, unregister

ROOT = Path(__file__).resolve().parents[2]
CLI = "import sys; from promptmix_core.cli import main; sys.exit(main(sys.argv[1:]))"


def test_exit_rule():
    me = os.getpid()
    assert should_exit(5.0) is None  # no timeout, no launcher watched: never
    assert "idle timeout" in should_exit(61.0, idle_timeout=60)
    assert should_exit(1e6, parent_pid=os.getppid()) is None  # the launcher is alive: stay
    gone = 2**22 + 4321  # no such process
    assert should_exit(0.0, parent_pid=gone) is not None  # gone, orphan_idle 0: at once
    assert should_exit(30.0, parent_pid=gone, orphan_idle=60) is None
    assert "is gone" in should_exit(61.0, parent_pid=gone, orphan_idle=60)
    assert me  # (the test process itself is never the watched one here)


def test_unregister_removes_only_its_own_state(tmp_path):
    state = tmp_path / "shared.json"
    state.write_text(json.dumps({"pid": 123, "port": 1, "model": "m"}))
    unregister(state, pid=456)
    assert state.exists()  # another server's registration stays
    unregister(state, pid=123)
    assert not state.exists()


def _alive(pid: int) -> bool:
    return local._pid_alive(pid)


def _wait(pred, seconds: float) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.2)
    return pred()


@pytest.fixture
def env(tmp_path):
    folder = local.prepare_model()  # the user's converted model (converted once), before the cache moves
    cache = tmp_path / "cache"
    e = dict(os.environ, PROMPTMIX_CACHE_DIR=str(cache), PYTHONPATH=str(ROOT))
    return e, folder, cache / "server" / "shared.json"


def _registered_pid(state: Path, not_pid: int) -> int | None:
    try:
        pid = int(json.loads(state.read_text())["pid"])
    except (OSError, ValueError, KeyError):
        return None
    return pid if pid != not_pid else None


def _kill(pid: int | None) -> None:
    if pid and _alive(pid):
        os.kill(pid, signal.SIGKILL)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_serve_local_leaves_no_server_behind(env, sig):
    """SIGTERM: serve-local stops its model server and unregisters it. SIGKILL (nothing can be cleaned
    up by serve-local): the model server sees its launcher gone, exits and unregisters by itself."""
    e, folder, state = env
    proc = subprocess.Popen([sys.executable, "-c", CLI, "serve-local", "--cache-dir", str(folder)], env=e,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=str(ROOT))
    child = None
    try:
        assert _wait(lambda: _registered_pid(state, proc.pid) is not None or proc.poll() is not None, 600)
        child = _registered_pid(state, proc.pid)
        assert child is not None and _alive(child), proc.stdout.read().decode() if proc.poll() is not None else ""
        os.kill(proc.pid, sig)
        proc.wait(60)
        assert _wait(lambda: not _alive(child), 30), "the model server outlived serve-local"
        assert _wait(lambda: not state.exists(), 10), "the stopped server is still registered"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        _kill(child)


@pytest.mark.slow
def test_shared_server_exits_once_its_launcher_is_gone_and_idle(env):
    e, folder, state = env
    e = dict(e, PROMPTMIX_LOCAL_IDLE_MINUTES="0.05")  # 3 s
    code = ("import sys; from promptmix_core.llm.local import ensure_local_server; "
            "print(ensure_local_server(sys.argv[1])[0])")
    out = subprocess.run([sys.executable, "-c", code, str(folder)], env=e, capture_output=True, text=True,
                         timeout=600, cwd=str(ROOT))
    assert out.returncode == 0, out.stderr[-2000:]
    server = _registered_pid(state, -1)
    try:
        assert server is not None  # left running for later processes ...
        assert _wait(lambda: not _alive(server), 60), "the shared server kept running with no launcher and no request"
        assert _wait(lambda: not state.exists(), 10)  # ... and gone, unregistered, once idle without its launcher
    finally:
        _kill(server)
