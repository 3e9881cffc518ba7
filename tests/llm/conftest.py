"""Fixtures of the LLM-layer tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from promptmix_core.llm import local


@pytest.fixture
def cache_root(tmp_path, monkeypatch) -> Path:
    """Point every default path of the bundled model (model folder, server state, logs) into a temp
    folder, with no shared server remembered from another test."""
    root = tmp_path / "pmx-cache"
    monkeypatch.setenv("PROMPTMIX_CACHE_DIR", str(root))
    monkeypatch.setattr(local, "_shared", None)
    monkeypatch.setattr(local, "_shared_server", None)
    return root
