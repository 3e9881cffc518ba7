"""Faulty endpoints: every fault the scripted server can produce, alone and mixed, at the client,
generation, relabel and job level. The server counts what it saw, so every call is accounted for."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest

from rel_helpers import CONTENT, RETRIED, cache_rows, fast_client, run_cli

from promptmix_core.generate import GenerationConfig, GenerationFailed, generate
from promptmix_core.llm import LLMFatalError, LLMUnavailableError
from promptmix_core.paths import llm_cache_path  # the one LLM cache of every entry point
from promptmix_core.pipeline import run_generation_job
from promptmix_core.relabel import RelabelConfig, relabel
from promptmix_core.task import normalize_text

MSG = [{"role": "user", "content": "Say OK"}]


# ------------------------------------------------------------------------------- one fault at a time
def test_429_retry_after_is_honoured_exactly(make_fake_llm):
    fake = make_fake_llm()
    fake.script.extend(["429-retry:2.5", "ok"])
    sleeps: list[float] = []
    c = fast_client(fake, sleeps=sleeps)
    assert c.chat(MSG).text == "OK"
    assert sleeps == [2.5]  # the server's Retry-After, not our back-off
    assert (c.stats.calls, c.stats.retries, c.stats.failures, fake.calls) == (2, 1, 0, 2)


def test_429_retry_after_really_waits(make_fake_llm):
    fake = make_fake_llm()
    fake.script.extend(["429-retry:0.4", "ok"])
    c = fast_client(fake)
    t0 = time.perf_counter()
    assert c.chat(MSG).text == "OK"
    assert time.perf_counter() - t0 >= 0.38


def test_hostile_retry_after_is_capped(make_fake_llm):
    fake = make_fake_llm()
    fake.script.extend(["429-retry:86400", "ok"])
    sleeps: list[float] = []
    c = fast_client(fake, sleeps=sleeps, max_retry_after=30)
    c.chat(MSG)
    assert sleeps == [30]


def test_429_without_retry_after_backs_off_exponentially(make_fake_llm):
    fake = make_fake_llm()
    fake.script.extend(["429", "429", "429", "ok"])
    sleeps: list[float] = []
    c = fast_client(fake, sleeps=sleeps, backoff_base=0.1)
    assert c.chat(MSG).text == "OK"
    assert len(sleeps) == 3
    for i, s in enumerate(sleeps):  # base * 2^i with jitter in [50%, 100%]
        assert 0.05 * 2**i - 1e-9 <= s <= 0.1 * 2**i + 1e-9
    assert c.stats.retries == 3 and fake.calls == 4


@pytest.mark.parametrize("fault", ["500", "502", "503", "drop", "drop-mid", "garbage"])
def test_server_errors_and_broken_responses_are_retried(make_fake_llm, fault):
    fake = make_fake_llm()
    fake.script.extend([fault, fault, "ok"])
    c = fast_client(fake, sleeps=[])
    assert c.chat(MSG).text == "OK"
    assert (c.stats.calls, c.stats.retries, c.stats.failures) == (3, 2, 0)
    assert fake.calls == 3 and fake.outcomes == [fault, fault, "ok"]


def test_slower_than_timeout_is_abandoned_and_retried(make_fake_llm):
    fake = make_fake_llm()
    fake.script.extend(["slow:3", "ok"])
    c = fast_client(fake, sleeps=[], timeout=1)
    t0 = time.perf_counter()
    assert c.chat(MSG).text == "OK"
    assert 0.9 <= time.perf_counter() - t0 < 2.5  # gave up at the 1 s timeout, not after 3 s
    assert c.stats.retries == 1 and fake.calls == 2


def test_a_fault_that_never_ends_gives_up_with_one_message(make_fake_llm):
    fake = make_fake_llm()
    fake.script.extend(["drop-mid"] * 10)
    c = fast_client(fake, sleeps=[], max_retries=3)
    with pytest.raises(LLMUnavailableError) as err:
        c.chat(MSG)
    msg = str(err.value)
    assert "kept failing after 4 attempts" in msg and "connection failed" in msg and "\n" not in msg
    assert (c.stats.calls, c.stats.retries, c.stats.failures, fake.calls) == (4, 3, 1, 4)


def test_bad_content_is_passed_on_not_retried_and_cached_once(make_fake_llm, tmp_path):
    fake = make_fake_llm()
    fake.script.extend(["empty", "truncated", "long"])
    c = fast_client(fake, cache_path=tmp_path / "c.sqlite")
    outs = [c.chat(MSG, sample_index=i) for i in range(3)]
    assert outs[0].text == ""
    assert outs[1].finish_reason == "length"  # the parser drops a cut-off last line
    assert len(outs[2].text) > 100_000
    assert c.stats.retries == 0 and fake.calls == 3


# ---------------------------------------------------------------- bad content through generation
def test_generation_survives_bad_content(make_fake_llm, task):
    fake = make_fake_llm(seed=3)
    fake.script.extend(["empty", "truncated", "long", "garbage", "truncated", "empty"])
    llm = fast_client(fake, concurrency=2)
    cfg = GenerationConfig(per_class=6, group_size=2, seed=1)
    res = generate(task, cfg, llm)
    assert res.kept == 24 and not res.shortfalls
    counts = Counter(e.intended_label for e in res.examples)
    assert set(counts.values()) == {6}
    texts = [e.text for e in res.examples]
    assert len({normalize_text(t) for t in texts}) == len(texts)
    for t in texts:
        assert len(t) <= cfg.max_example_chars and "lorem ipsum" not in t
        # every line the fake writes ends with "(case N)": a cut-off line would not
        assert t.rstrip().endswith(")"), t


def test_relabel_keeps_unmappable_answers_for_review(make_fake_llm, task):
    fake = make_fake_llm()
    llm = fast_client(fake)
    items = [{"text": f"I lost my card number {i}", "intended_label": "card_lost"} for i in range(4)]
    fake.script.extend(["empty", "long", "ok", "ok"])
    out = relabel(task, items, llm, RelabelConfig())
    assert [r.status for r in out].count("unparseable") == 2
    assert all(r.llm_label is None for r in out if r.status == "unparseable")
    assert fake.calls == 4 and llm.stats.retries == 0


# ---------------------------------------------------------------------- a mix of 20% of every fault
def test_job_under_20_percent_faults_is_exact_and_fully_accounted(make_fake_llm, project, fast_backoff):
    fake = make_fake_llm(fault_rate=0.2, seed=11, slow_seconds=4)  # "slow" outlives the 2 s timeout; an
    # answer that is merely late on a loaded machine does not (a 1 s timeout once retried one: 61 calls)
    per_class = 10
    job_id = project.create_job("generate", {
        "base_url": fake.base_url, "model": "fake-model", "per_class": per_class, "group_size": 2,
        "seed": 4, "timeout": 2, "max_retries": 8, "concurrency": 4,
    })
    summary = run_generation_job(project, project.get_job(job_id))
    assert "kept 40/40" in summary

    examples = project.list_examples(job_id=job_id)
    assert len(examples) == 4 * per_class
    assert Counter(e.intended_label for e in examples) == {c: per_class for c in project.load_task().class_names}
    assert len({normalize_text(e.text) for e in examples}) == len(examples)  # no duplicates
    assert all(e.relabel_status in ("agree", "changed", "unparseable") for e in examples)

    outcomes = Counter(fake.outcomes)
    assert sum(outcomes[f] for f in RETRIED) > 0 and sum(outcomes[f] for f in CONTENT) > 0  # faults did happen
    stats = project.get_job(job_id).progress
    # every call the client made reached the server, and nothing else did
    assert stats["calls"] == fake.calls == len(fake.outcomes)
    # each retry answers exactly one transient fault; nothing gave up
    assert stats["retries"] == sum(outcomes[f] for f in RETRIED)
    assert stats["failures"] == 0
    # every call is a retry, a failure or a fresh answer, and each fresh answer was cached once
    fresh = len(cache_rows(llm_cache_path()))
    assert stats["calls"] == stats["retries"] + stats["failures"] + fresh
    assert fresh == sum(outcomes[f] for f in ("ok", *CONTENT))
    assert stats["retries"] <= 8 * fresh  # bounded by max_retries per answered call

    # a second run of the same job makes no calls at all
    before = fake.calls
    run_generation_job(project, project.get_job(job_id))
    assert fake.calls == before and len(project.list_examples(job_id=job_id)) == 40


# ------------------------------------------------------------------------------ endpoint down
def test_endpoint_down_from_the_start_fails_once_with_a_clear_message(make_fake_llm, project, fast_backoff):
    fake = make_fake_llm()
    fake.down = True
    job_id = project.create_job("generate", {"base_url": fake.base_url, "model": "fake-model",
                                              "per_class": 10, "timeout": 1, "max_retries": 2})
    with pytest.raises(GenerationFailed) as err:
        run_generation_job(project, project.get_job(job_id))
    msg = str(err.value)
    assert msg.startswith("the LLM endpoint http://127.0.0.1:") and "kept failing after 3 attempts" in msg
    assert "HTTP 503" in msg and "\n" not in msg
    # the first call probes alone: one call's retries reach the server, the rest never leave
    assert fake.calls == 3
    p = project.get_job(job_id).progress
    assert p["phase"] == "stopped" and p["calls"] == 3 and p["failures"] == 1


def test_endpoint_going_down_mid_job_keeps_what_it_had_and_resumes(make_fake_llm, project, fast_backoff):
    answered = {"n": 0}
    fake = None

    def responder(body):
        answered["n"] += 1
        if answered["n"] == 5:  # the fifth good answer is the last before the outage
            fake.down = True
        return fake.default_answer(body)

    fake = make_fake_llm(responder=responder)
    cfg = {"base_url": fake.base_url, "model": "fake-model", "per_class": 10, "group_size": 2,
           "examples_per_call": 2, "timeout": 1, "max_retries": 2, "concurrency": 2}
    job_id = project.create_job("generate", cfg)
    with pytest.raises(GenerationFailed, match="kept failing after 3 attempts; last error: HTTP 503"):
        run_generation_job(project, project.get_job(job_id))
    kept = project.list_examples(job_id=job_id)
    cached = cache_rows(llm_cache_path())
    assert len(cached) == 5 and 0 < len(kept) <= 10  # the five answers are kept, in the store and the cache
    outage_calls = fake.calls - 5
    assert 3 <= outage_calls <= 2 * 3  # at most `concurrency` calls spent their retries, then it stopped

    fake.down = False  # the endpoint is back: the same job resumes
    before = fake.calls
    summary = run_generation_job(project, project.get_job(job_id))
    assert "kept 40/40" in summary
    final = project.list_examples(job_id=job_id)
    assert {e.id for e in kept} <= {e.id for e in final} and len(final) == 40
    assert len({normalize_text(e.text) for e in final}) == 40
    after = cache_rows(llm_cache_path())
    assert all(after[k] == t for k, t in cached.items())  # no finished call was made again
    assert len(after) - len(cached) == fake.calls - before
    assert project.get_job(job_id).progress["calls"] == fake.calls - before


def test_cli_with_endpoint_down_exits_1_with_one_message(make_fake_llm, tmp_path, task):
    from promptmix_core.task import save_task

    fake = make_fake_llm()
    fake.down = True
    save_task(task, tmp_path / "task.json")
    r = run_cli("generate", str(tmp_path / "task.json"), "--out", str(tmp_path / "out.jsonl"), "--per-class", "3",
                "--base-url", fake.base_url, "--model", "fake-model", "--timeout", "1", "--retries", "1",
                env={"PROMPTMIX_CACHE": str(tmp_path / "cache.sqlite")})
    assert r.returncode == 1
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "kept failing after 2 attempts" in errors[0]
    assert "Traceback" not in r.stderr and fake.calls == 2
    assert "kept 0 examples in" in r.stderr


# ------------------------------------------------------------------- a bad key or model: at once
def test_invalid_key_is_reported_at_once(make_fake_llm, project):
    fake = make_fake_llm(api_key="sk-right-key-0123456789")
    job_id = project.create_job("generate", {"base_url": fake.base_url, "model": "fake-model", "per_class": 10,
                                              "timeout": 1, "max_retries": 4})
    t0 = time.perf_counter()
    with pytest.raises(GenerationFailed) as err:
        run_generation_job(project, project.get_job(job_id), api_key="sk-wrong-key-9876543210")
    assert isinstance(err.value.__cause__, LLMFatalError)
    assert time.perf_counter() - t0 < 5
    assert "refused the API key (HTTP 401)" in str(err.value)
    assert "sk-wrong" not in str(err.value) and "sk-right" not in str(err.value)
    assert fake.calls == 1 and fake.outcomes == ["401"]
    p = project.get_job(job_id).progress
    assert p["calls"] == 1 and p["retries"] == 0 and p["failures"] == 1


def test_missing_key_is_reported_at_once(make_fake_llm, task):
    fake = make_fake_llm(api_key="sk-right-key-0123456789")
    llm = fast_client(fake, concurrency=8)
    with pytest.raises(GenerationFailed, match="refused the API key") as err:
        generate(task, GenerationConfig(per_class=10), llm)
    assert isinstance(err.value.__cause__, LLMFatalError)
    assert fake.calls == 1


def test_unknown_model_is_reported_at_once(make_fake_llm, task):
    fake = make_fake_llm()
    llm = fast_client(fake, model="gpt-nonexistent", concurrency=8)
    with pytest.raises(GenerationFailed, match="does not know the model 'gpt-nonexistent'") as err:
        generate(task, GenerationConfig(per_class=10), llm)
    assert isinstance(err.value.__cause__, LLMFatalError)
    assert fake.calls == 1 and llm.stats.retries == 0


def test_relabel_with_a_bad_key_stops_at_once(make_fake_llm, task):
    fake = make_fake_llm(api_key="sk-right-key-0123456789")
    llm = fast_client(fake, api_key="sk-wrong-key-9876543210", concurrency=8)
    items = [{"text": f"text {i}"} for i in range(30)]
    with pytest.raises(LLMFatalError):
        relabel(task, items, llm)
    assert fake.calls == 1


def test_cli_unknown_model_exits_at_once(make_fake_llm, tmp_path, task):
    from promptmix_core.task import save_task

    fake = make_fake_llm()
    save_task(task, tmp_path / "task.json")
    r = run_cli("generate", str(tmp_path / "task.json"), "--out", str(tmp_path / "o.jsonl"), "--per-class", "5",
                "--base-url", fake.base_url, "--model", "nope", env={"PROMPTMIX_CACHE": str(tmp_path / "c.sqlite")})
    assert r.returncode == 1 and "does not know the model 'nope'" in r.stderr and "Traceback" not in r.stderr
    assert fake.calls == 1


def test_a_new_call_after_an_outage_tries_again(make_fake_llm):
    """Failing fast applies to calls begun before the failure, not to every later call."""
    fake = make_fake_llm()
    fake.down = True
    c = fast_client(fake, sleeps=[], max_retries=1)
    with pytest.raises(LLMUnavailableError):
        c.chat(MSG)
    fake.down = False
    assert c.chat(MSG).text == "OK" and fake.calls == 3


def test_concurrent_calls_after_a_probe_use_the_full_concurrency(make_fake_llm):
    fake = make_fake_llm(latency=0.15)
    c = fast_client(fake, concurrency=4)

    async def many():
        return await asyncio.gather(*(c.achat(MSG, sample_index=i) for i in range(9)))

    t0 = time.perf_counter()
    asyncio.run(many())
    # one probe, then 8 calls four at a time: three rounds of 0.15 s, not nine
    assert fake.max_in_flight == 4 and time.perf_counter() - t0 < 9 * 0.15


def test_worker_with_endpoint_down_records_one_clear_message(make_fake_llm, project, workers):
    from rel_helpers import wait_for
    from promptmix_core import jobs
    from promptmix_core.store import JOB_FINAL

    fake = make_fake_llm()
    fake.down = True
    job_id = jobs.start_job(project.path, "generate", {"base_url": fake.base_url, "model": "fake-model",
                                                        "per_class": 5, "timeout": 1, "max_retries": 1})
    workers.append(project.get_job(job_id).pid)
    job = wait_for(lambda: (j := project.get_job(job_id)) and j.status in JOB_FINAL and j, 120, 0.1, "the job")
    assert job.status == "failed" and "\n" not in job.message
    assert job.message.startswith("the LLM endpoint http://127.0.0.1:") and "kept failing after 2 attempts" in job.message
    assert job.progress["phase"] == "stopped" and fake.calls == 2
    assert project.reap_stale_jobs() == []  # a clean failure, not a crash


@pytest.mark.parametrize("headers, seconds", [
    ({"retry-after": "7"}, 7.0),
    ({"retry-after": "0.25"}, 0.25),
    ({"retry-after-ms": "1500"}, 1.5),
    ({"retry-after-ms": "1500", "retry-after": "9"}, 1.5),
    ({"retry-after": "soon"}, None),
    ({"retry-after": "-3"}, 0.0),
    ({}, None),
])
def test_retry_after_header_forms(headers, seconds):
    from promptmix_core.llm.client import _retry_after_seconds

    assert _retry_after_seconds(headers) == seconds


def test_retry_after_as_an_http_date():
    import email.utils

    from promptmix_core.llm.client import _retry_after_seconds

    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 27 <= _retry_after_seconds({"retry-after": when}) <= 31
