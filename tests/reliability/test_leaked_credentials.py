"""Credentials, round two: a key the server echoes inside its answers, and ``user:password`` in the
endpoint URL. Each path a credential could take is searched byte by byte: the examples (text, raw
response, relabel answer, endpoint), the response cache, job configs, messages and progress, the
project settings, the worker's log, the CLI's output files, stdout and stderr."""

from __future__ import annotations

import itertools
import json
import sqlite3
from pathlib import Path

import pytest

from rel_helpers import run_cli, wait_for
from promptmix_core import jobs
from promptmix_core.llm import LLMClient, LLMConfig, LLMError
from promptmix_core.paths import llm_cache_path
from promptmix_core.pipeline import run_generation_job
from promptmix_core.store import JOB_FINAL, ProjectStore, scrub_secrets
from promptmix_core.task import save_task

KEY = "pmx-live-KEY-7d41c09e5b2a"  # not "sk-" shaped: scrubbed because it is known, not by its pattern
SK = "sk-proj-ECHOEDabcdef0123456789"  # another key shape the pattern catches
PASSWORD = "hunter2-PASSWORD-93c1"


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _assert_absent(blobs: dict, *secrets: str) -> None:
    for s in secrets:
        for where, data in blobs.items():
            raw = data if isinstance(data, bytes) else str(data).encode()
            assert s.encode() not in raw, f"{s!r} found in {where}"
            assert s.encode("utf-16-le") not in raw, f"{s!r} (UTF-16) found in {where}"


_COUNTER = itertools.count()


def _echo(body) -> str:
    """Answers that repeat the key the client sent (as some proxies and debug servers do)."""
    prompt = body["messages"][-1]["content"]
    if "Generate a diverse set" in prompt:
        return "\n".join(f"{i}. Is my card lost, key {KEY} and {SK}? case {next(_COUNTER)}" for i in range(1, 6))
    return f"card_lost (debug: your key is {KEY})"


def test_a_key_echoed_in_answers_is_scrubbed_before_anything_is_stored(make_fake_llm, project, fast_backoff):
    fake = make_fake_llm(api_key=KEY, responder=_echo)
    job_id = project.create_job("generate", {"base_url": fake.base_url, "model": "fake-model", "per_class": 3,
                                             "group_size": 2, "relabel": True})
    run_generation_job(project, project.get_job(job_id), api_key=KEY)
    examples = project.list_examples(job_id=job_id)
    assert len(examples) == 12 and all(e.relabel_status for e in examples)
    assert all("***" in e.raw_response and "***" in e.text for e in examples)
    conn = sqlite3.connect(llm_cache_path())  # the one LLM cache of every entry point
    responses = [r[0] for r in conn.execute("SELECT response FROM llm_cache")]
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    assert responses and all("***" in r for r in responses)
    project.checkpoint()
    project.close()
    blobs = _files(project.path.parent)
    blobs.update(_files(llm_cache_path().parent))
    _assert_absent(blobs, KEY, SK)


@pytest.mark.slow
def test_url_credentials_never_reach_the_store_cache_or_output_of_the_cli(make_fake_llm, tmp_path, task):
    fake = make_fake_llm(basic_auth=("admin", PASSWORD))
    url = fake.base_url.replace("http://", f"http://admin:{PASSWORD}@")
    save_task(task, tmp_path / "task.json")
    r = run_cli("generate", str(tmp_path / "task.json"), "--per-class", "2", "--base-url", url, "--model",
                "fake-model", "--project", str(tmp_path / "p.pmx"), "--out", str(tmp_path / "o.jsonl"), "--relabel",
                "--cache", str(tmp_path / "c.sqlite"))
    assert r.returncode == 0, r.stderr
    store = ProjectStore(tmp_path / "p.pmx", create=False)
    job = store.list_jobs()[0]
    assert job.config["llm"]["base_url"].startswith("http://***@127.0.0.1:")
    assert {e.endpoint for e in store.list_examples()} == {job.config["llm"]["base_url"]}
    store.checkpoint()
    store.close()
    # and the same endpoint down: the error message names the URL without its password
    fake.down = True
    bad = run_cli("generate", str(tmp_path / "task.json"), "--per-class", "2", "--base-url", url, "--model",
                  "fake-model", "--out", str(tmp_path / "bad.jsonl"), "--retries", "0", "--seed", "9",
                  "--cache", str(tmp_path / "c.sqlite"))
    assert bad.returncode == 1 and "http://***@127.0.0.1:" in bad.stderr
    blobs = _files(tmp_path)
    blobs.update({"stdout": r.stdout, "stderr": r.stderr, "bad stdout": bad.stdout, "bad stderr": bad.stderr})
    _assert_absent(blobs, PASSWORD, "admin:")


@pytest.mark.slow
def test_url_credentials_never_reach_a_workers_store_or_log(make_fake_llm, project, workers):
    fake = make_fake_llm(basic_auth=("admin", PASSWORD))  # the worker must still be able to log in
    url = fake.base_url.replace("http://", f"http://admin:{PASSWORD}@")
    job_id = jobs.start_job(project.path, "generate", {"base_url": url, "model": "fake-model", "per_class": 2,
                                                       "group_size": 2, "timeout": 5})
    workers.append(project.get_job(job_id).pid)
    job = wait_for(lambda: (j := project.get_job(job_id)) and j.status in JOB_FINAL and j, 120, 0.1, "the job")
    assert job.status == "done", job.message
    assert "***@" in job.config["llm"]["base_url"] and PASSWORD not in json.dumps(job.config)
    fake.down = True  # a failing job: its message and log name the endpoint without the password
    failing = jobs.start_job(project.path, "generate", {"base_url": url, "model": "fake-model", "per_class": 2,
                                                        "seed": 3, "timeout": 1, "max_retries": 0})
    workers.append(project.get_job(failing).pid)
    job = wait_for(lambda: (j := project.get_job(failing)) and j.status in JOB_FINAL and j, 120, 0.1, "the job")
    assert job.status == "failed" and "http://***@127.0.0.1:" in job.message
    project.save_settings({"base_url": url, "model": "fake-model"})
    assert project.get_settings()["base_url"].startswith("http://***@")
    project.checkpoint()
    project.close()
    blobs = _files(project.path.parent)  # the project file, -wal, -shm and PROJECT.pmx.logs/
    blobs.update(_files(llm_cache_path().parent))  # and the LLM cache the workers wrote
    assert any(".logs" in p for p in blobs)
    _assert_absent(blobs, PASSWORD, "admin:")


def test_client_messages_and_config_never_show_url_credentials(make_fake_llm):
    fake = make_fake_llm()
    fake.down = True
    url = fake.base_url.replace("http://", f"http://admin:{PASSWORD}@") + "?api_key=QUERYKEY123"
    c = LLMClient(LLMConfig(base_url=url, model="fake-model", timeout=1, max_retries=0))
    assert PASSWORD not in repr(c.config) and PASSWORD not in json.dumps(c.config.public_dict())
    with pytest.raises(LLMError) as info:  # a query string in the URL even breaks the route: still scrubbed
        c.chat([{"role": "user", "content": "hi"}])
    assert PASSWORD not in str(info.value) and "QUERYKEY123" not in str(info.value)
    assert "http://***@127.0.0.1:" in str(info.value)


@pytest.mark.parametrize("text, clean", [
    ("http://user:pw@host:8000/v1", "http://***@host:8000/v1"),
    ("https://a.example/v1?api_key=abc123&x=1", "https://a.example/v1?api_key=***&x=1"),
    ("see HTTPS://U:P@Example.com/v1 now", "see HTTPS://***@Example.com/v1 now"),
    ("http://host:8000/v1", "http://host:8000/v1"),
    ("email me at a@b.com", "email me at a@b.com"),
])
def test_scrub_url_forms(text, clean):
    assert scrub_secrets(text) == clean


def _b64(text: str) -> str:
    import base64

    return base64.b64encode(text.encode()).decode()


@pytest.mark.slow
def test_credentials_echoed_in_transformed_forms_are_scrubbed(make_fake_llm, project, fast_backoff):
    """Issue 23 item 13: a server echoed the key upper-cased, base64-encoded, and the Basic token of the
    ``user:password@`` URL it was called with; each was stored. Now none is, in any byte."""
    basic = _b64(f"admin:{PASSWORD}")
    counter = itertools.count()

    def echo(body) -> str:
        prompt = body["messages"][-1]["content"]
        forms = f"{KEY.upper()} {KEY.lower()} {_b64(KEY)} {_b64('token=' + KEY)} Basic {basic} raw {basic}"
        if "Generate a diverse set" in prompt:
            return "\n".join(f"{i}. Is my card lost? debug {forms} case {next(counter)}" for i in range(1, 6))
        return f"card_lost ({forms})"

    fake = make_fake_llm(basic_auth=("admin", PASSWORD), responder=echo)
    url = fake.base_url.replace("http://", f"http://admin:{PASSWORD}@")
    from promptmix_core.lifecycle import JobLifecycle
    from promptmix_core.pipeline import run_generation
    from promptmix_core.specs import GenerationSpec

    spec = GenerationSpec.from_stored({"per_class": 3, "group_size": 2, "relabel": True,
                                       "llm": {"base_url": url, "model": "fake-model"}})
    job_id = project.create_job("generate", spec.to_dict())  # stored scrubbed: the client has the real URL
    llm = LLMClient(LLMConfig(base_url=url, model="fake-model", api_key=KEY, timeout=5, backoff_base=0.01),
                    cache_path=llm_cache_path())
    run_generation(project, job_id, spec, JobLifecycle(project, job_id).context(), llm)
    examples = project.list_examples(job_id=job_id)
    assert len(examples) == 12 and all("***" in e.text for e in examples)
    project.checkpoint()
    project.close()
    blobs = _files(project.path.parent)
    blobs.update(_files(llm_cache_path().parent))
    _assert_absent(blobs, KEY, KEY.upper(), KEY.lower(), _b64(KEY), basic, _b64("token=" + KEY)[4:-4], PASSWORD)


@pytest.mark.parametrize("form", ["upper", "lower", "b64", "b64-offset", "b64url", "basic"])
def test_scrub_transformed_forms_of_a_known_key(form):
    import base64

    basic = _b64(f"admin:{PASSWORD}")
    text = {"upper": KEY.upper(), "lower": KEY.lower(), "b64": _b64(KEY), "b64-offset": _b64("xy" + KEY + "z"),
            "b64url": base64.urlsafe_b64encode(("a" + KEY).encode()).decode(), "basic": f"got {basic} back"}[form]
    out = scrub_secrets(f"answer: {text} end", [KEY, PASSWORD, f"admin:{PASSWORD}"])
    assert "***" in out and out.startswith("answer: ") and out.endswith(" end")
    for leaked in (KEY, KEY.upper(), KEY.lower(), _b64(KEY), basic, PASSWORD):
        assert leaked not in out
    assert scrub_secrets("plain words about a lost card", [KEY]) == "plain words about a lost card"
