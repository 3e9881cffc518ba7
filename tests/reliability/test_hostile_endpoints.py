"""Hostile and odd endpoints, round two: an answer that trickles in one byte a second, Stop while a
call hangs, a Retry-After of a day, usage counts of 10^20, a server that names another model, and a
server that only streams. Every case ends in one clear line, with what was finished kept."""

from __future__ import annotations

import json
import sqlite3
import time

import pytest

from rel_helpers import fast_client, run_cli, wait_for
from promptmix_core import jobs
from promptmix_core.generate import GenerationCancelled, GenerationConfig, generate
from promptmix_core.llm import LLMConfig, LLMConfigError, LLMFatalError, LLMUnavailableError
from promptmix_core.paths import llm_cache_path
from promptmix_core.pipeline import run_generation_job
from promptmix_core.store import JOB_FINAL

MSG = [{"role": "user", "content": "Say OK"}]


# ------------------------------------------------------------------------------ the total deadline
def test_an_answer_trickling_in_is_cut_at_the_total_deadline(make_fake_llm):
    """One byte a second never trips a between-bytes timeout; the deadline covers the whole call."""
    fake = make_fake_llm()
    fake.script.extend(["ok", "trickle", "trickle"])
    c = fast_client(fake, sleeps=[], timeout=1, max_retries=1)
    c.chat(MSG)  # warm: the client library is imported and the endpoint has answered once
    t0 = time.perf_counter()
    with pytest.raises(LLMUnavailableError) as info:
        c.chat(MSG, sample_index=1)
    elapsed = time.perf_counter() - t0
    assert elapsed < 3.5, elapsed  # two attempts of 1 s each, not the 300 s the answer would take
    assert "kept failing after 2 attempts; last error: no complete answer within 1 s" in str(info.value)
    assert (c.stats.calls, c.stats.retries, c.stats.failures) == (3, 1, 1)


@pytest.mark.slow
def test_cli_against_a_trickling_server_ends_with_one_line_and_a_partial_file(make_fake_llm, tmp_path, task):
    fake = make_fake_llm()
    fake.script.append("ok")  # the first call answers: its examples must reach the partial file
    fake.script.extend(["trickle"] * 50)
    task_file = tmp_path / "task.json"
    task_file.write_text(task.to_json(), "utf-8")
    out = tmp_path / "out.jsonl"
    t0 = time.perf_counter()
    r = run_cli("generate", str(task_file), "--out", str(out), "--per-class", "5", "--base-url", fake.base_url,
                "--model", "fake-model", "--timeout", "1", "--retries", "1", "--concurrency", "2",
                "--cache", str(tmp_path / "c.sqlite"), timeout=60)
    assert time.perf_counter() - t0 < 30
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr
    first = r.stderr.strip().splitlines()[0]
    assert first.startswith("error: the LLM endpoint http://127.0.0.1:") and "no complete answer within 1 s" in first
    partial = tmp_path / "out.jsonl.partial.jsonl"
    lines = partial.read_text("utf-8").splitlines()
    # the one complete answer is kept: the 3 lines a call asks for at 5 per class (at most half, rounded up)
    assert len(lines) == 3 and all(json.loads(x)["text"] for x in lines)
    assert not out.exists() and not (tmp_path / "out.jsonl.tmp").exists()


# -------------------------------------------------------------------------------------- Stop
def test_stop_abandons_calls_in_flight_at_once(make_fake_llm, task):
    """``should_stop`` is polled while calls hang: generation returns within a second, keeping what
    was finished, and the abandoned calls are counted as cancelled (not retried, not failed)."""
    fake = make_fake_llm()
    fake.script.append("ok")
    fake.script.extend(["trickle"] * 20)
    c = fast_client(fake, timeout=60, concurrency=4)
    stop_at: list[float] = []

    def should_stop() -> bool:
        if not stop_at and fake.in_flight >= 2:
            stop_at.append(time.perf_counter())
        return bool(stop_at) and time.perf_counter() - stop_at[0] > 0.3

    cfg = GenerationConfig(per_class=5, group_size=2, seed=1)
    with pytest.raises(GenerationCancelled) as info:
        generate(task, cfg, c, should_stop=should_stop)
    took = time.perf_counter() - stop_at[0] - 0.3
    assert took < 1.0, took
    from promptmix_core.generate import examples_per_call

    # the first answer is kept: all the lines one call asks for (at most half of per_class, rounded up)
    assert len(info.value.result.examples) == examples_per_call(cfg) == 3
    assert c.stats.cancelled >= 2 and c.stats.failures == 0 and c.stats.retries == 0
    assert c.stats.calls == 1 + c.stats.cancelled  # every attempt accounted for


def test_stop_through_the_app_ends_a_hung_job_within_2_seconds(make_fake_llm, project, workers):
    """The worker of a job whose every call trickles is stopped by Stop (the cancel flag) within 2 s:
    marked cancelled, its process gone, nothing left running."""
    fake = make_fake_llm()
    fake.script.extend(["trickle"] * 50)
    cfg = {"base_url": fake.base_url, "model": "fake-model", "per_class": 5, "timeout": 120, "max_retries": 2,
           "concurrency": 2}
    job_id = jobs.start_job(project.path, "generate", cfg)
    pid = project.get_job(job_id).pid
    workers.append(pid)
    wait_for(lambda: fake.in_flight >= 1, 60, what="a call in flight")
    time.sleep(0.5)
    t0 = time.perf_counter()
    jobs.cancel_job(project.path, job_id)
    job = wait_for(lambda: (j := project.get_job(job_id)) and j.status in JOB_FINAL and j, 10, 0.05, "the stop")
    took = time.perf_counter() - t0
    assert job.status == "cancelled" and took < 2.0, (job.status, took, job.message)
    assert "stopped" in job.message and "\n" not in job.message
    import os

    wait_for(lambda: os.waitpid(pid, os.WNOHANG)[0] == pid, 5, what="the worker to exit")
    workers.remove(pid)
    assert project.reap_stale_jobs() == []


# ----------------------------------------------------------------------------------- Retry-After
def test_retry_after_cap_is_configurable_and_the_wait_is_shown(make_fake_llm):
    fake = make_fake_llm()
    fake.script.extend(["429-retry:86400", "429-retry:86400", "ok"])
    sleeps: list[float] = []
    c = fast_client(fake, sleeps=sleeps, max_retry_after=120, max_retries=4)
    notices: list[str | None] = []
    c.on_notice = notices.append
    assert c.chat(MSG).text == "OK"
    assert sleeps == [120, 120]
    assert notices == [
        "rate limited: waiting 120 s (the server asked for 86,400 s; the cap is 120 s), retry 1 of 4", None,
        "rate limited: waiting 120 s (the server asked for 86,400 s; the cap is 120 s), retry 2 of 4", None,
    ]


def test_the_wait_reaches_the_job_progress(make_fake_llm, project, fast_backoff):
    """A job's progress carries the notice while it waits (the app shows it), and clears it after."""
    fake = make_fake_llm()
    fake.script.extend(["429-retry:1.2", "ok"])
    job_id = project.create_job("generate", {"base_url": fake.base_url, "model": "fake-model", "per_class": 2,
                                             "group_size": 2, "relabel": False, "max_retry_after": 60})
    seen: list[str] = []
    real_update = project.update_job

    def spy(jid, **kw):
        if kw.get("progress") and kw["progress"].get("notice"):
            seen.append(kw["progress"]["notice"])
        return real_update(jid, **kw)

    project.update_job = spy
    run_generation_job(project, project.get_job(job_id))
    assert seen and seen[0] == "rate limited: waiting 1.2 s, retry 1 of 4"
    assert project.get_job(job_id).progress.get("notice") is None


def test_cli_max_retry_after_flag(make_fake_llm, tmp_path, task):
    fake = make_fake_llm()
    fake.script.append("429-retry:86400")
    task_file = tmp_path / "task.json"
    task_file.write_text(task.to_json(), "utf-8")
    t0 = time.perf_counter()
    r = run_cli("generate", str(task_file), "--out", str(tmp_path / "o.jsonl"), "--per-class", "1",
                "--base-url", fake.base_url, "--model", "fake-model", "--max-retry-after", "0.5",
                "--cache", str(tmp_path / "c.sqlite"), "--no-flags", timeout=60)
    assert r.returncode == 0, r.stderr
    assert "rate limited: waiting 0.5 s (the server asked for 86,400 s; the cap is 0.5 s), retry 1 of 4" in r.stderr
    assert time.perf_counter() - t0 < 30
    bad = run_cli("generate", str(task_file), "--out", str(tmp_path / "o.jsonl"), "--per-class", "1",
                  "--base-url", fake.base_url, "--model", "fake-model", "--max-retry-after", "-1")
    assert bad.returncode == 2 and "between 0 and 86400 seconds" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.parametrize("cap", [-1, 86_401, float("nan")])
def test_retry_after_cap_range(cap):
    with pytest.raises(LLMConfigError, match="Retry-After wait must be between 0 and 86400"):
        LLMConfig(base_url="http://127.0.0.1:1/v1", model="m", max_retry_after=cap)


# ----------------------------------------------------------------------------------- odd answers
def test_usage_of_10_to_the_20_is_estimated_not_stored(make_fake_llm, project, fast_backoff):
    fake = make_fake_llm()
    fake.script.extend(["huge-usage"] * 200)
    job_id = project.create_job("generate", {"base_url": fake.base_url, "model": "fake-model", "per_class": 3,
                                             "group_size": 2, "relabel": True})
    summary = run_generation_job(project, project.get_job(job_id))
    assert "kept 12/12" in summary
    progress = project.get_job(job_id).progress
    assert 0 < progress["prompt_tokens"] < 10**7 and progress["completion_tokens"] < 10**7
    conn = sqlite3.connect(llm_cache_path())  # the one LLM cache of every entry point
    assert conn.execute("SELECT MAX(prompt_tokens), MAX(completion_tokens) FROM llm_cache").fetchone()[0] < 10**6
    conn.close()
    assert project.integrity_ok()


def test_the_model_the_server_names_is_stored(make_fake_llm, project, fast_backoff):
    fake = make_fake_llm(answer_model="fake-model-2024-06-01")
    job_id = project.create_job("generate", {"base_url": fake.base_url, "model": "fake-model", "per_class": 2,
                                             "group_size": 2, "relabel": False})
    run_generation_job(project, project.get_job(job_id))
    assert {e.model for e in project.list_examples(job_id=job_id)} == {"fake-model-2024-06-01"}
    conn = sqlite3.connect(llm_cache_path())
    assert {r[0] for r in conn.execute("SELECT model FROM llm_cache")} == {"fake-model-2024-06-01"}
    conn.close()
    # replayed from the cache, the answering model is still the one recorded
    calls = fake.calls
    c = fast_client(fake, cache_path=llm_cache_path())
    sent = fake.requests[0]
    comp = c.chat(sent["messages"], temperature=sent["temperature"], max_tokens=sent["max_tokens"],
                  stop_sequences=sent.get("stop"))
    assert comp.cached and comp.model == "fake-model-2024-06-01" and fake.calls == calls


def test_a_streaming_only_server_gets_a_hint_at_once(make_fake_llm, task, tmp_path):
    fake = make_fake_llm()
    fake.script.extend(["stream"] * 10)
    c = fast_client(fake, sleeps=[])
    with pytest.raises(LLMFatalError) as info:
        c.chat(MSG)
    assert str(info.value).startswith("the endpoint seems to answer only with streaming")
    assert fake.calls == 1  # not retried: no retry can fix it
    task_file = tmp_path / "task.json"
    task_file.write_text(task.to_json(), "utf-8")
    r = run_cli("generate", str(task_file), "--out", str(tmp_path / "o.jsonl"), "--per-class", "2",
                "--base-url", fake.base_url, "--model", "fake-model", "--cache", str(tmp_path / "c.sqlite"))
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.startswith("error: the endpoint seems to answer only with streaming")


def test_the_generate_page_shows_the_wait(tmp_path, monkeypatch, task):
    pytest.importorskip("streamlit")
    import os

    from streamlit.testing.v1 import AppTest

    from rel_helpers import ROOT
    from promptmix_core import projects

    folder = tmp_path / "projects"
    monkeypatch.setenv(projects.ENV_DIR, str(folder))
    monkeypatch.chdir(tmp_path)
    store = projects.create_project("waiting", folder, task=task)
    job = store.claim_job("generate", {"per_class": 2}, status="running", pid=os.getpid())
    notice = "rate limited: waiting 120 s (the server asked for 86,400 s; the cap is 120 s), retry 2 of 4"
    store.update_job(job, progress={"phase": "generate", "done": 1, "total": 8, "notice": notice})
    try:
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=90)
        at.query_params["project"] = "waiting"
        at.run()
        at.switch_page("app_pages/2_generate.py")
        at.run()
        assert not at.exception, at.exception
        shown = [str(w.value).replace("\\", "") for w in at.warning]
        assert any(notice in w for w in shown), shown
    finally:
        store.update_job(job, status="cancelled", message="test over")
