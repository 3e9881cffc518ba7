"""AppTest fixtures: the app in a temporary projects folder, plus helpers to reach widgets by key."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from app_session import open_app
from promptmix_core import projects
from promptmix_core.demo import DEMO_NAME

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "app.py")


@pytest.fixture
def projects_dir(tmp_path, monkeypatch):
    folder = tmp_path / "projects"
    monkeypatch.setenv(projects.ENV_DIR, str(folder))
    monkeypatch.chdir(tmp_path)
    return folder


@pytest.fixture(autouse=True)
def _fresh_caches():
    import streamlit as st

    st.cache_data.clear()
    yield
    st.cache_data.clear()


@pytest.fixture
def make_app(projects_dir):
    """``make_app(page=None, project=None)``: a fresh session, already run once."""

    def make(page: str | None = None, project: str | None = None) -> AppTest:
        return open_app(page, project)

    return make


@pytest.fixture
def demo_store(projects_dir):
    projects.ensure_demo(projects_dir)
    store = projects.open_project(DEMO_NAME, projects_dir)
    yield store
    store.close()
