"""Shared helpers for the reliability and security tests (faults, crashes, bad input, secrets).

Every server binds to 127.0.0.1 and stops by itself; every worker process a test starts is killed
and reaped by the test. Timeouts and back-off are kept small so the whole folder runs in about a
minute on two cores.
"""

from __future__ import annotations

import os
import signal
import socketserver
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from promptmix_core.llm import LLMClient, LLMConfig
from promptmix_core.store import ProjectStore
from promptmix_core.task import ClassSpec, Task

ROOT = Path(__file__).resolve().parents[2]

# What the fake server's fault actions mean for the client: retried, or a (bad) answer passed on.
RETRIED = ("429", "429-retry", "500", "502", "503", "slow", "drop", "drop-mid", "garbage")
CONTENT = ("empty", "truncated", "long")


@pytest.fixture(autouse=True)
def _deep_listen_queue(monkeypatch):
    """The fake server's default listen queue (5) drops connection attempts when a client opens
    eight at once; SYN retransmission then takes a second, longer than the 1 s test timeouts.
    Real endpoints queue far more, so the tests give the fake a real-world queue."""
    monkeypatch.setattr(socketserver.TCPServer, "request_queue_size", 128)


def tiny_task() -> Task:
    """Four classes: at most ``RelabelConfig.nearest`` (5), so relabeling needs no embedding model."""
    return Task(
        name="tiny",
        classes=[
            ClassSpec("card_lost", "the customer lost their card", ["I lost my card", "My card was stolen"]),
            ClassSpec("refund_request", "the customer wants money back", ["I want a refund", "Give my money back"]),
            ClassSpec("pin_blocked", "the PIN is blocked", ["My PIN is blocked", "Wrong PIN three times"]),
            ClassSpec("exchange_rate", "questions about exchange rates", ["What rate do you use?", "Is the euro rate good?"]),
        ],
    )


@pytest.fixture
def task() -> Task:
    return tiny_task()


def fast_config(fake, **kw: Any) -> LLMConfig:
    kw.setdefault("timeout", 3)  # 1 s retried answers that were only late on a loaded machine (flaky counts)
    kw.setdefault("backoff_base", 0.01)
    return LLMConfig(base_url=fake.base_url, model=kw.pop("model", "fake-model"), **kw)


def fast_client(fake, *, sleeps: list[float] | None = None, cache_path=None, **kw: Any) -> LLMClient:
    kwargs: dict[str, Any] = {"cache_path": cache_path}
    if sleeps is not None:
        async def fake_sleep(seconds: float) -> None:
            sleeps.append(seconds)

        kwargs["sleep"] = fake_sleep
    return LLMClient(fast_config(fake, **kw), **kwargs)


@pytest.fixture
def fast_backoff(monkeypatch):
    """Jobs build their client from the job config; keep their back-off small too."""
    from promptmix_core import pipeline

    real = pipeline.resolve_llm_config

    def resolve(*a: Any, **kw: Any):
        kw.setdefault("backoff_base", 0.01)
        return real(*a, **kw)

    monkeypatch.setattr(pipeline, "resolve_llm_config", resolve)


@pytest.fixture
def project(tmp_path, task) -> ProjectStore:
    store = ProjectStore(tmp_path / "proj.pmx")
    store.save_task(task)
    return store


def cache_rows(path: Path) -> dict[str, float]:
    import sqlite3

    conn = sqlite3.connect(path, timeout=30)
    try:
        return dict(conn.execute("SELECT key, created_at FROM llm_cache"))
    finally:
        conn.close()


def wait_for(cond: Callable[[], Any], timeout: float, every: float = 0.05, what: str = "condition") -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = cond()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def kill_and_reap(pid: int | None) -> None:
    """SIGKILL a process this test started and reap it (no zombie left behind)."""
    if not pid:
        return
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


@pytest.fixture
def workers():
    """Pids of worker processes a test started; killed and reaped at the end whatever happens."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        kill_and_reap(pid)


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "promptmix_core.cli", *args],
        capture_output=True, text=True, timeout=timeout, env=full_env, cwd=str(ROOT),
    )
