"""`streamlit run app.py` on a free port of 127.0.0.1, shared by the browser tests (tests/e2e) and the
browser benchmarks (benchmarks/review_latency.py, benchmarks/live_chart_overhead.py).

The app gets a clean environment: no ``OPENAI_*``/``PROMPTMIX_*`` variable of the caller leaks in,
projects live in ``projects_dir``, and nothing is fetched from the Hugging Face hub.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class StreamlitServer:
    """The app of checkout ``root`` served on 127.0.0.1; ``stop()`` (or leaving a ``with``) ends it.

    ``start_timeout`` bounds the wait for ``/_stcore/health``; a server that exits first raises with the
    end of its log. ``on_start(pid)`` runs once the process exists (the live-chart benchmark raises its
    CPU share there). ``extra_args`` go to ``streamlit run`` (``--secrets.files F``), ``env`` adds variables."""

    def __init__(self, projects_dir: Path, log: Path, root: Path = ROOT, start_timeout: float = 60,
                 on_start=None, extra_args: tuple[str, ...] = (), env: dict[str, str] | None = None,
                 port: int | None = None):
        self.projects_dir = Path(projects_dir)
        self.root = Path(root)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        extra_env = env
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "PROMPTMIX_"))}
        env.update({
            "PROMPTMIX_PROJECTS_DIR": str(self.projects_dir),
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": str(self.root),
        })
        env.update(extra_env or {})
        self.log = Path(log)
        self._log_fh = open(self.log, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(self.root / "app.py"),
             "--server.headless", "true", "--server.port", str(self.port), "--server.address", "127.0.0.1",
             "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none", *extra_args],
            cwd=self.root, env=env, stdout=self._log_fh, stderr=subprocess.STDOUT, start_new_session=True,
        )
        if on_start is not None:
            on_start(self.proc.pid)
        try:
            self._wait_healthy(start_timeout)
        except BaseException:
            self.stop()
            raise

    def _wait_healthy(self, timeout: float) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"streamlit exited: {self.log.read_text(errors='replace')[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2) as r:
                    if r.read() == b"ok":
                        return
            except OSError:
                time.sleep(0.25)
        raise RuntimeError(f"streamlit did not become healthy in {timeout:.0f} s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if not self._log_fh.closed:
            self._log_fh.close()

    def __enter__(self) -> StreamlitServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
