"""Deleting one project forgets only that project's shared store (issue 18: ``forget_store(path)``
ignored ``path`` and dropped every open project's store)."""

from __future__ import annotations

import streamlit as st

from promptmix_core.store import ProjectStore


def test_forget_store_drops_only_that_project(tmp_path):
    import app_pages._ui as ui

    st.cache_resource.clear()
    a, b = tmp_path / "a.pmx", tmp_path / "b.pmx"
    ProjectStore(a).close()
    ProjectStore(b).close()
    store_a = ui._shared_store(str(a), a.stat().st_ino)
    store_b = ui._shared_store(str(b), b.stat().st_ino)
    assert ui._shared_store(str(a), a.stat().st_ino) is store_a  # shared while open

    ui.forget_store(a)
    assert ui._shared_store(str(b), b.stat().st_ino) is store_b  # the other project's store stays
    assert ui._shared_store(str(a), a.stat().st_ino) is not store_a  # this one is opened afresh
    st.cache_resource.clear()
