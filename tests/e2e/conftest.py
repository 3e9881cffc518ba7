"""Browser tests: `streamlit run app.py` on a free port, driven by Debian's headless Chromium.

Screenshots go to ``artifacts/screenshots/`` (gitignored).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from playwright.sync_api import expect

from streamlit_server import StreamlitServer

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "artifacts" / "screenshots"
CHROMIUM = os.environ.get("PROMPTMIX_CHROMIUM", "/usr/bin/chromium")

# A page rerun on a busy 2-core CI machine can take longer than Playwright's default 5 s; an assertion
# that holds returns as soon as it does, so the longer wait only costs time when something is wrong.
expect.set_options(timeout=15_000)


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
