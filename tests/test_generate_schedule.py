"""The generation scheduler: deterministic whatever the timing, eager, varied, and storing each LLM
answer once. Runs against the scripted server (real HTTP on 127.0.0.1) with faults and jitter."""

from __future__ import annotations

import hashlib
import random
import re
import sqlite3
import time
from collections import Counter, defaultdict

import pytest

from promptmix_core.generate import (
    GenerationCancelled, GenerationConfig, examples_per_call, generate, make_groups, plan_request,
)
from promptmix_core.llm import LLMClient, LLMConfig
from promptmix_core.store import ProjectStore
from promptmix_core.task import normalize_text

_GEN = re.compile(r"Generate a diverse set of (\d+) short examples")
_CI = re.compile(r'belongs \d+% to category "([^"]+)"|that belong to category "([^"]+)"')
SHARED = [f"Is this about my card or my account, question {i}" for i in range(3)]


def deterministic_answer(body) -> str:
    """An answer that depends only on the prompt (like a cached answer would): some lines repeat
    within the class, some are shared by every class, the rest are new."""
    prompt = body["messages"][-1]["content"]
    n = int(_GEN.search(prompt).group(1))
    m = _CI.search(prompt)
    ci = m.group(1) or m.group(2)
    lines = []
    for i in range(n):
        h = int(hashlib.sha256(f"{prompt}|{i}".encode()).hexdigest(), 16)
        if h % 5 == 0:
            text = SHARED[h % len(SHARED)]  # several classes write it
        elif h % 5 == 1:
            text = f"{ci.replace('_', ' ')} borderline case {h % 3}"  # repeats inside the class
        else:
            text = f"{ci.replace('_', ' ')} borderline case {h % 10**6}"
        lines.append(f"{i + 1}. {text}")
    return "Here are the examples:\n" + "\n".join(lines)


def jittery(rng: random.Random):
    def respond(body):
        time.sleep(rng.uniform(0.0, 0.03))  # answers arrive in a different order every run
        return deterministic_answer(body)

    return respond


def client(fake, cache, concurrency=8, **kw):
    cfg = LLMConfig(base_url=fake.base_url, model="fake-model", backoff_base=0.005, backoff_max=0.05, timeout=5,
                    concurrency=concurrency, max_retries=10, **kw)
    return LLMClient(cfg, cache_path=cache)


def rows(examples, slot=False):
    """What an example is; the slot names the call (endpoint included), so it differs between servers."""
    return [(e.text, e.intended_label, e.mixed_with, e.alpha, e.request) + ((e.slot,) if slot else ())
            for e in examples]


def stored(store, job):
    return [(e.text, e.intended_label, e.mixed_with, e.alpha, e.request_index) for e in store.list_examples(job_id=job)]


def stored_slots(path):
    con = sqlite3.connect(path)
    try:
        return con.execute("SELECT text, slot FROM examples ORDER BY id").fetchall()
    finally:
        con.close()


# -------------------------------------------------------------------------------- determinism
def test_same_seed_same_examples_whatever_the_timing_and_faults(make_fake_llm, tmp_path, small_task):
    """Four runs, each with its own empty cache, 20 % of calls answered 429 or 500, random latency and
    concurrency 8: the same examples in the same order each time, in memory and in the store. A
    re-run on the first run's cache makes zero calls and gives them again."""
    config = GenerationConfig(per_class=8, seed=3)
    results, saved, fakes = [], [], []
    for run in range(4):
        fake = make_fake_llm(fault_rate=0.2, faults=("429", "500"), seed=run + 1,
                             responder=jittery(random.Random(run)))
        store = ProjectStore(tmp_path / f"p{run}.pmx")
        job = store.create_job("generate", {})
        res = generate(small_task, config, client(fake, tmp_path / f"cache{run}.sqlite"), store=store, job_id=job)
        assert Counter(fake.outcomes)["ok"] < fake.calls  # faults did happen
        fakes.append(fake)
        results.append(rows(res.examples))
        saved.append(stored(store, job))
    assert all(r == results[0] for r in results[1:])
    assert all(s == saved[0] for s in saved[1:])
    assert [(t, c) for t, c, *_ in saved[0]] == [(t, c) for t, c, *_ in results[0]]

    # the cross-class and within-class de-duplication and the top-ups were exercised
    texts = [r[0] for r in results[0]]
    assert len({normalize_text(t) for t in texts}) == len(texts) == 48
    assert 1 <= sum(t in SHARED for t in texts) <= len(SHARED)
    assert max(res.stats["requests_per_class"].values()) > 2  # more than the planned two calls somewhere

    calls = fakes[0].calls
    llm = client(fakes[0], tmp_path / "cache0.sqlite")  # the first run's endpoint and cache
    again = generate(small_task, config, llm)
    assert fakes[0].calls == calls and llm.stats.calls == 0 and llm.stats.cache_hits > 0
    assert rows(again.examples) == results[0]
    assert [e.slot for e in again.examples] == [s for *_, s in stored_slots(tmp_path / "p0.pmx")]


def test_the_old_shared_dedup_race_cannot_happen(make_fake_llm, tmp_path, small_task):
    """Every class writes the same three texts: which class keeps each one is fixed (the first in
    class order that still needs it), not whichever answer came back first."""
    def same_for_all(body):  # the three shared texts first, then lines of the class's own
        time.sleep(random.uniform(0.0, 0.03))
        own = deterministic_answer(body).splitlines()[1:]
        return "\n".join([f"{i + 1}. {t}" for i, t in enumerate(SHARED)] + own[len(SHARED):])

    keepers = []
    for run in range(3):
        fake = make_fake_llm(responder=same_for_all)
        res = generate(small_task, GenerationConfig(per_class=8, seed=0),
                       client(fake, tmp_path / f"c{run}.sqlite", concurrency=6))
        keepers.append({e.text: e.intended_label for e in res.examples if e.text in SHARED})
    assert keepers[0] == keepers[1] == keepers[2]
    assert set(keepers[0]) == set(SHARED)
    assert set(keepers[0].values()) == {small_task.class_names[0]}  # the first class keeps all three


def test_truncated_answer_replays_the_same(make_fake_llm, tmp_path, small_task):
    """An answer cut off at max_tokens loses its last line; replayed from the cache it must lose it
    too (the cache keeps why the answer ended), or a re-run would keep a different example set."""
    fake = make_fake_llm()
    fake.script.extend(["truncated"] * 4)
    cfg = GenerationConfig(per_class=4, seed=1)
    first = generate(small_task, cfg, client(fake, tmp_path / "c.sqlite", concurrency=2))
    assert all(t.rstrip().endswith(")") for t, *_ in rows(first.examples))  # no cut-off line was kept
    calls = fake.calls
    llm = client(fake, tmp_path / "c.sqlite")
    again = generate(small_task, cfg, llm)
    assert fake.calls == calls and llm.stats.calls == 0
    assert rows(again.examples) == rows(first.examples)


def test_stopped_and_resumed_job_equals_one_uninterrupted_run(make_fake_llm, tmp_path, small_task):
    config = GenerationConfig(per_class=8, seed=5)
    fake = make_fake_llm(responder=jittery(random.Random(1)))
    whole = ProjectStore(tmp_path / "whole.pmx")
    job = whole.create_job("generate", {})
    generate(small_task, config, client(fake, tmp_path / "whole.sqlite"), store=whole, job_id=job)

    fake2 = make_fake_llm(responder=jittery(random.Random(2)))
    cut = ProjectStore(tmp_path / "cut.pmx")
    job2 = cut.create_job("generate", {})
    with pytest.raises(GenerationCancelled):
        generate(small_task, config, client(fake2, tmp_path / "cut.sqlite", concurrency=2), store=cut, job_id=job2,
                 should_stop=lambda: fake2.calls >= 7)
    part = stored(cut, job2)
    assert 0 < len(part) < 48
    assert part == stored(whole, job)[: len(part)]  # what was saved is final: a prefix of the whole
    generate(small_task, config, client(fake2, tmp_path / "cut.sqlite"), store=cut, job_id=job2)
    assert stored(cut, job2) == stored(whole, job)
    assert fake2.calls == fake.calls  # stopped and resumed, it made exactly the calls of one whole run


# ---------------------------------------------------------------------------------- eagerness
def test_one_slow_call_does_not_hold_back_the_rest(make_fake_llm, tmp_path, small_task):
    """The next request starts when a slot frees, for whichever class needs it: while one call takes
    1.5 s, every other request of the job is sent and answered."""
    fake = make_fake_llm(latency=0.02, slow_seconds=1.5)
    fake.script.extend(["ok", "slow"])  # the second request is slow
    seen = []
    original = fake._act

    def act(handler, action, body):
        start = time.monotonic()
        original(handler, action, body)
        seen.append((action, start, time.monotonic()))

    fake._act = act
    res = generate(small_task, GenerationConfig(per_class=10, seed=0), client(fake, None, concurrency=4))
    assert res.kept == 60 and fake.max_in_flight == 4
    slow = next(s for s in seen if s[0] == "slow")
    others = [s for s in seen if s[0] != "slow"]
    assert len(others) == fake.calls - 1 >= 11
    assert all(end <= slow[2] for _, _, end in others)  # all done before the slow one came back


# ------------------------------------------------------------------------------------ variety
@pytest.mark.parametrize("per_class", [3, 4, 5])
def test_each_class_mixes_with_several_partners_and_alphas(fake_llm, tmp_path, small_task, per_class):
    """Issue 11: every call draws its own partner and alpha, and a class's examples come from at least
    two calls; each example records the call (request) it came from."""
    small_task.classes = small_task.classes[:3]  # one group of three: two partners per class
    store = ProjectStore(tmp_path / "p.pmx")
    job = store.create_job("generate", {})
    res = generate(small_task, GenerationConfig(per_class=per_class, seed=2), LLMClient(
        LLMConfig(base_url=fake_llm.base_url, model="fake-model"), cache_path=tmp_path / "c.sqlite"),
        store=store, job_id=job)
    assert res.kept == 3 * per_class
    by_class = defaultdict(list)
    for e in store.list_examples(job_id=job):
        by_class[e.intended_label].append(e)
    for label, exs in by_class.items():
        assert len({e.request_index for e in exs}) >= 2, label
        assert len({e.response_id for e in exs}) >= 2, label
        assert len({e.mixed_with for e in exs}) >= 2, label
        assert len({e.alpha for e in exs}) >= 2, label
        assert all(e.mixed_with != label and 0.5 <= e.alpha <= 1.0 for e in exs)
    # two calls per class with a model that answers in full: ceil(N / 2) examples asked for per call
    assert res.stats["calls"] == 2 * 3 and examples_per_call(GenerationConfig(per_class=per_class)) == -(-per_class // 2)


def test_planned_partners_cycle_and_paired_alphas_differ(small_task):
    groups = make_groups(small_task.class_names, 4, seed=0)
    config = GenerationConfig(per_class=40, seed=0)
    alphas = []
    for ci in small_task.class_names:
        group = next(g for g in groups if ci in g)
        others = [c for c in group if c != ci]
        specs = [plan_request(small_task, groups, config, ci, r) for r in range(12)]
        assert specs == [plan_request(small_task, groups, config, ci, r) for r in range(12)]  # pure
        for start in range(0, 12 - len(others) + 1, len(others)):
            assert sorted(s.cj for s in specs[start : start + len(others)]) == sorted(others)
        assert all(specs[i].alpha != specs[i + 1].alpha for i in range(0, 12, 2))
        alphas += [plan_request(small_task, groups, config, ci, r).alpha for r in range(200)]
    mean = sum(alphas) / len(alphas)
    assert mean == pytest.approx(0.5 + 0.5 * 5 / 7, abs=0.015)  # still the paper's 0.5 + 0.5 Beta(5, 2)


# ----------------------------------------------------------------------------- responses stored once
def test_each_answer_is_stored_once_and_shared_by_its_examples(fake_llm, tmp_path, small_task):
    store = ProjectStore(tmp_path / "p.pmx")
    job = store.create_job("generate", {})
    generate(small_task, GenerationConfig(per_class=6, seed=4), LLMClient(
        LLMConfig(base_url=fake_llm.base_url, model="fake-model"), cache_path=tmp_path / "c.sqlite"),
        store=store, job_id=job)
    examples = store.list_examples(job_id=job)
    responses = {r["id"]: r for r in store.list_responses(job)}
    assert len(examples) == 36 and {e.response_id for e in examples} == set(responses)
    assert len(responses) < len(examples)  # several examples per answer
    for e in examples:
        resp = responses[e.response_id]
        assert e.prompt == resp["prompt"] and e.raw_response == resp["raw_response"] and e.raw_response
        assert e.text in e.raw_response and f'"{e.intended_label}"' in e.prompt
        assert e.request_index == resp["request_index"] and resp["class_name"] == e.intended_label
        assert (resp["mixed_with"], resp["alpha"]) == (e.mixed_with, e.alpha)
    same = defaultdict(list)
    for e in examples:
        same[e.response_id].append(e)
    for group in same.values():  # read once per answer: one string shared by its examples
        assert all(x.raw_response is group[0].raw_response for x in group)
    con = sqlite3.connect(store.path)
    inline = con.execute("SELECT SUM(LENGTH(prompt) + LENGTH(raw_response)) FROM examples").fetchone()[0]
    once = con.execute("SELECT SUM(LENGTH(prompt) + LENGTH(raw_response)) FROM responses").fetchone()[0]
    con.close()
    assert inline == 0 and once > 0
    assert store.get_example(examples[0].id).raw_response == examples[0].raw_response
    assert store.delete_examples(job) == 36 and store.list_responses(job) == []


def test_a_long_answer_is_stored_once_not_per_example(make_fake_llm, tmp_path, small_task):
    filler = "x" * 20_000

    def long_answer(body):  # five good lines and a very long tail the parser drops
        return deterministic_answer(body) + "\n" + filler

    fake = make_fake_llm(responder=long_answer)
    store = ProjectStore(tmp_path / "p.pmx")
    job = store.create_job("generate", {})
    generate(small_task, GenerationConfig(per_class=10, seed=0), client(fake, tmp_path / "c.sqlite"),
             store=store, job_id=job)
    n_examples = store.count_examples(job)["total"]
    con = sqlite3.connect(store.path)
    stored_chars = con.execute("SELECT SUM(LENGTH(raw_response)) FROM responses").fetchone()[0]
    n_responses = con.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
    con.close()
    assert n_examples == 60 and n_responses < n_examples
    assert stored_chars < (n_responses + 1) * (len(filler) + 2000)  # about one copy per answer, not per example


def test_files_with_inline_prompts_still_open_and_show_them(tmp_path):
    """A project written before the responses table: examples carry prompt and raw response inline,
    and there is no response_id column. It opens, gains the table and column, and shows them."""
    path = tmp_path / "old.pmx"
    s = ProjectStore(path)
    job = s.create_job("generate", {})
    s.close()
    con = sqlite3.connect(path)
    con.execute("DROP TABLE responses")
    con.execute("ALTER TABLE examples DROP COLUMN response_id")
    con.execute(
        "INSERT INTO examples(job_id, slot, text, norm_text, label, intended_label, mixed_with, alpha, prompt, "
        "raw_response, created_at) VALUES (?, 'card_lost|3|1', 'Lost it again', 'lost it again', 'card_lost', "
        "'card_lost', 'pin_blocked', 0.8, 'the old prompt', '1. x\n2. Lost it again', 1.0)",
        (job,),
    )
    con.commit()
    con.close()
    reopened = ProjectStore(path)
    (ex,) = reopened.list_examples(job_id=job)
    assert (ex.prompt, ex.raw_response) == ("the old prompt", "1. x\n2. Lost it again")
    assert ex.response_id is None and ex.request_index == 3
    assert reopened.get_example(ex.id).prompt == "the old prompt"
    assert reopened.list_responses(job) == []
    reopened.close()
