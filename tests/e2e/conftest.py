"""Browser tests: `streamlit run app.py` on a free port, driven by Debian's headless Chromium.

Screenshots go to ``artifacts/screenshots/`` (gitignored).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "artifacts" / "screenshots"
CHROMIUM = os.environ.get("PROMPTMIX_CHROMIUM", "/usr/bin/chromium")


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).parent
    for item in items:
        if Path(str(item.fspath)).is_relative_to(here):
            item.add_marker(pytest.mark.browser)
            if not os.path.exists(CHROMIUM):
                item.add_marker(pytest.mark.skip(reason=f"{CHROMIUM} not found (run scripts/ensure_browser.py)"))


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    return {
        **browser_type_launch_args,
        "executable_path": CHROMIUM,
        "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    }


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args):
    return {**browser_context_args, "viewport": {"width": 1440, "height": 1000}, "accept_downloads": True}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class StreamlitServer:
    def __init__(self, projects_dir: Path, log: Path):
        self.projects_dir = projects_dir
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "PROMPTMIX_"))}
        env.update({
            "PROMPTMIX_PROJECTS_DIR": str(projects_dir),
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "PYTHONUNBUFFERED": "1",
        })
        self.log = log
        self._log_fh = open(log, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"),
             "--server.headless", "true", "--server.port", str(self.port), "--server.address", "127.0.0.1",
             "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
            cwd=ROOT, env=env, stdout=self._log_fh, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"streamlit exited: {log.read_text(errors='replace')[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2) as r:
                    if r.read() == b"ok":
                        return
            except OSError:
                time.sleep(0.25)
        self.stop()
        raise RuntimeError("streamlit did not become healthy in 60 s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log_fh.close()


@pytest.fixture
def app_server(tmp_path):
    server = StreamlitServer(tmp_path / "projects", tmp_path / "streamlit.log")
    try:
        yield server
    finally:
        server.stop()
        # stop any worker the test left behind (they run in their own sessions)
        _stop_workers(server.projects_dir)


def _stop_workers(folder: Path) -> None:
    from promptmix_core.store import ProjectStore

    for p in folder.glob("*.pmx"):
        try:
            store = ProjectStore(p, create=False)
            for job in store.list_jobs():
                if job.active and job.pid:
                    try:
                        os.kill(job.pid, 15)
                    except OSError:
                        pass
            store.close()
        except Exception:  # noqa: BLE001
            pass


@pytest.fixture(scope="session")
def shots():
    SHOTS.mkdir(parents=True, exist_ok=True)
    return SHOTS


@pytest.fixture(scope="module")
def module_server(tmp_path_factory):
    """One app server for a whole test module (each test uses its own project in its folder)."""
    base = tmp_path_factory.mktemp("app")
    (base / "projects").mkdir()
    server = StreamlitServer(base / "projects", base / "streamlit.log")
    try:
        yield server
    finally:
        server.stop()
        _stop_workers(server.projects_dir)
