"""2 · Generate: endpoint settings, key handling, validation, starting/stopping/resuming a job, progress."""

from __future__ import annotations

import os

import pytest
from app_helpers import by_key, texts

from promptmix_core import jobs
from promptmix_core.demo import DEMO_NAME
from promptmix_core.specs import GenerationSpec

GEN = "app_pages/2_generate.py"
K = f"gen::{DEMO_NAME}::"


@pytest.fixture
def started(monkeypatch, demo_store):
    calls = []

    def fake_start(store_path, kind, config, *, api_key=None, key_endpoint=None):
        calls.append({"store_path": store_path, "kind": kind, "config": dict(config), "api_key": api_key})
        return demo_store.create_job(kind, config)

    monkeypatch.setattr(jobs, "start_job", fake_start)
    return calls


def test_generate_page_renders_settings_and_the_alpha_chart(make_app, demo_store):
    at = make_app(GEN)
    assert by_key(at.radio, K + "provider").value == "local"
    assert by_key(at.number_input, K + "per_class").value == 10
    assert by_key(at.toggle, K + "mixup").value is True
    assert len(at.get("plotly_chart")) >= 1
    assert "Generated examples" in texts(at)
    # the demo's pre-written examples are listed
    assert any(len(df.value) == 20 for df in at.dataframe)


def test_start_a_job_with_the_compatible_endpoint(make_app, started, demo_store):
    at = make_app(GEN)
    by_key(at.radio, K + "provider").set_value("compatible")
    at.run()
    assert not by_key(at.button, "gen_start").value
    assert by_key(at.button, "gen_start").disabled  # no URL yet
    assert any("base URL" in w.value for w in at.warning)
    by_key(at.text_input, K + "base_url").input("http://127.0.0.1:9/v1")
    by_key(at.text_input, K + "model").input("fake-model")
    by_key(at.text_input, K + "api_key").input("sk-test-secret-123456789")
    by_key(at.number_input, K + "per_class").set_value(3)
    by_key(at.toggle, K + "mixup").set_value(False)
    at.run()
    assert not by_key(at.button, "gen_start").disabled
    by_key(at.button, "gen_start").click()
    at.run()
    assert not at.exception, at.exception
    assert len(started) == 1, [e.value for e in at.error]
    call = started[0]
    assert call["kind"] == "generate" and call["api_key"] == "sk-test-secret-123456789"
    cfg = call["config"]
    spec = GenerationSpec.from_dict(cfg)  # a typed spec, exactly the shape the worker reads
    assert spec.llm.base_url == "http://127.0.0.1:9/v1" and spec.llm.model == "fake-model"
    assert spec.generation.per_class == 3 and spec.generation.mixup is False and spec.relabel is True
    assert {"group_size", "seed", "nearest", "llm"} <= set(cfg) and "concurrency" in cfg["llm"]
    assert "api_key" not in cfg and "api_key" not in cfg["llm"]
    # the settings are remembered, the key never
    settings = demo_store.get_settings()
    assert settings["base_url"] == "http://127.0.0.1:9/v1" and settings["per_class"] == 3
    assert "sk-test-secret" not in repr(settings)
    raw = b"".join(p.read_bytes() for p in demo_store.path.parent.glob(demo_store.path.name + "*"))
    assert b"sk-test-secret" not in raw
    # the new job is running: its progress panel replaces the start button
    assert any("Started job" in s.value for s in at.success)
    assert by_key(at.button, "gen_start").disabled


def test_openai_needs_a_key(make_app, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    at = make_app(GEN)
    by_key(at.radio, K + "provider").set_value("openai")
    at.run()
    assert any("needs an API key" in w.value for w in at.warning)
    assert by_key(at.button, "gen_start").disabled
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env-0000000000")
    at.run()
    assert not by_key(at.button, "gen_start").disabled
    assert "A key was found in environment (OPENAI_API_KEY)" in texts(at)
    assert by_key(at.text_input, K + "api_key").value == ""  # the key itself is never put in the page


def test_bad_url_is_refused(make_app):
    at = make_app(GEN)
    by_key(at.radio, K + "provider").set_value("compatible")
    at.run()
    by_key(at.text_input, K + "base_url").input("ftp://x")
    at.run()
    assert any("must start with http" in w.value for w in at.warning)


def test_progress_of_a_running_job_and_stop(make_app, demo_store):
    job = demo_store.create_job("generate", {"per_class": 4, "group_size": 4, "mixup": True}, status="running")
    demo_store.update_job(job, pid=os.getpid(), progress={
        "phase": "generate", "done": 7, "total": 20, "calls": 3, "cache_hits": 1, "retries": 2, "failures": 0,
        "prompt_tokens": 1200, "completion_tokens": 300, "cost": 0.0123, "kept": 7})
    at = make_app(GEN)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["LLM calls"] == "3" and metrics["Cache hits"] == "1" and metrics["Retries"] == "2"
    assert metrics["Tokens"] == "1,500" and metrics["Cost"] == "$0.0123"
    assert at.get("progress")[0].proto.text.startswith("Generating: 7 / 20")
    assert by_key(at.button, "gen_start").disabled
    by_key(at.button, f"gen_stop_{job}").click()
    at.run()
    assert demo_store.get_job(job).cancel_requested
    assert "Stopping" in texts(at)


def test_failed_job_shows_its_error_and_resumes(make_app, demo_store, monkeypatch):
    job = demo_store.create_job("generate", {"per_class": 4}, status="running")
    demo_store.update_job(job, status="failed", message="the endpoint refused the key (401)",
                          progress={"phase": "generate", "done": 5, "total": 20, "calls": 2})
    resumed = []
    monkeypatch.setattr(jobs, "resume_job", lambda path, job_id, api_key=None, key_endpoint=None: resumed.append(job_id))
    at = make_app(GEN)
    assert any("refused the key" in e.value for e in at.error)
    by_key(at.button, "gen_resume").click()
    at.run()
    assert resumed == [job]
    assert any("Resumed job" in s.value for s in at.success)


def test_engine_error_is_shown(make_app, monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("a generate job (#3) is already running; stop it or wait for it")

    monkeypatch.setattr(jobs, "start_job", boom)
    at = make_app(GEN)
    by_key(at.button, "gen_start").click()
    at.run()
    assert not at.exception
    assert any("already running" in e.value for e in at.error)


def test_incomplete_task_blocks_generation(make_app, demo_store):
    task = demo_store.load_task()
    task.classes[0].examples = []
    demo_store.save_task(task)
    at = make_app(GEN)
    assert "The task is not complete yet" in texts(at)
    assert not [b for b in at.button if b.key == "gen_start"]


def test_real_engine_refusals_come_back_as_errors(make_app, demo_store):
    """The real job engine refuses a second job of a kind and a resume of a running job."""
    import app_pages._ui as ui

    job = demo_store.create_job("generate", {"per_class": 2}, status="running")
    demo_store.update_job(job, pid=os.getpid())
    with pytest.raises(RuntimeError, match="already running"):
        ui.start_job(demo_store, "generate", {"per_class": 2})
    with pytest.raises(RuntimeError, match="still running"):
        ui.resume_job(demo_store, job)
    assert len(demo_store.list_jobs()) == 2  # the demo's job and ours: nothing new was started
