import random
from collections import Counter

import pytest

from promptmix_core.generate import (
    GenerationConfig, GenerationFailed, build_generation_prompt, generate, make_groups, parse_examples,
    sample_alpha,
)
from promptmix_core.llm import LLMClient, LLMConfig
from promptmix_core.store import ProjectStore
from promptmix_core.task import normalize_text


def llm_for(fake, tmp_path, **kw):
    return LLMClient(LLMConfig(base_url=fake.base_url, model="fake-model", backoff_base=0.01, timeout=2, **kw),
                     cache_path=tmp_path / "cache.sqlite")


def test_alpha_distribution_matches_the_paper():
    rng = random.Random(0)
    draws = [sample_alpha(rng) for _ in range(5000)]
    assert min(draws) >= 0.5 and max(draws) <= 1.0
    assert all(abs(a * 20 - round(a * 20)) < 1e-9 for a in draws)  # multiples of 0.05
    mean = sum(draws) / len(draws)
    assert mean == pytest.approx(0.5 + 0.5 * 5 / 7, abs=0.01)  # E[Beta(5,2)] = 5/7


@pytest.mark.parametrize("n, c, sizes", [(6, 4, [6]), (10, 4, [4, 6]), (8, 4, [4, 4]), (3, 4, [3]), (77, 4, [4] * 18 + [5])])
def test_groups_leftovers_join_the_last(n, c, sizes):
    names = [f"c{i}" for i in range(n)]
    groups = make_groups(names, c, seed=1)
    assert [len(g) for g in groups] == sizes
    assert sorted(x for g in groups for x in g) == sorted(names)
    assert make_groups(names, c, seed=1) == groups and make_groups(names, c, seed=2) != groups or n <= 3


def test_prompt_shows_group_and_mixup_instruction(small_task):
    group = ["card_lost", "card_arrival", "pin_blocked"]
    msgs = build_generation_prompt(small_task, group, "card_lost", "pin_blocked", 0.75, 5, True)
    user = msgs[-1]["content"]
    for name in group:
        assert f"Category: {name}" in user
    assert "Category: exchange_rate" not in user
    assert "I lost my card yesterday" in user and "the card PIN is blocked" in user
    assert 'belongs 75% to category "card_lost" and 25% to category "pin_blocked"' in user
    plain = build_generation_prompt(small_task, group, "card_lost", None, None, 5, False)[-1]["content"]
    assert 'that belong to category "card_lost"' in plain and "%" not in plain


def test_parser_copes_with_llm_formatting(small_task):
    content = """Sure! Here are 8 examples:

1. I think my card was stolen, can I also check the euro rate? (75% card_lost, 25% exchange_rate)
2) "My card never arrived and now I can't find it"
Example 3: Lost my card - 80% card_lost
- [60% card_lost] Someone took my wallet
* • Where is my replacement card?
Generate a diverse set of 5 short examples where each example belongs 75% to category "card_lost"
card_lost
4. 12345
5. I lost my card yesterday

I hope these help!"""
    got = parse_examples(content, task=small_task)
    assert got == [
        "I think my card was stolen, can I also check the euro rate?",
        "My card never arrived and now I can't find it",
        "Lost my card",
        "Someone took my wallet",
        "Where is my replacement card?",
        "I lost my card yesterday",
    ]


def test_parser_survives_lines_of_only_markup():
    assert parse_examples("**\n__\n*\n1. **Lost my card**\n\"\n") == ["Lost my card"]


def test_parser_drops_truncated_last_line_and_long_lines():
    assert parse_examples("1. one thing\n2. two thi", truncated=True) == ["one thing"]
    assert parse_examples("x" * 1000) == []
    assert parse_examples("") == []


def test_exact_counts_no_duplicates_and_provenance(fake_llm, tmp_path, small_task):
    llm = llm_for(fake_llm, tmp_path)
    res = generate(small_task, GenerationConfig(per_class=7, seed=3), llm)
    counts = Counter(e.intended_label for e in res.examples)
    assert counts == {c: 7 for c in small_task.class_names}
    norms = [normalize_text(e.text) for e in res.examples]
    assert len(set(norms)) == len(norms)
    seeds = {normalize_text(s) for c in small_task.classes for s in c.examples}
    assert not seeds & set(norms)
    groups = make_groups(small_task.class_names, 4, 3)
    for e in res.examples:
        assert e.label == e.intended_label
        assert e.mixed_with != e.intended_label
        assert any(e.intended_label in g and e.mixed_with in g for g in groups)
        assert 0.5 <= e.alpha <= 1.0 and e.prompt and e.raw_response and e.model == "fake-model"
    # several examples per call: far fewer calls than the reference's ~4 per kept example
    assert res.stats["calls"] == fake_llm.calls and res.calls_per_kept <= 0.5


def test_rerun_same_seed_makes_zero_calls(fake_llm, tmp_path, small_task):
    first = generate(small_task, GenerationConfig(per_class=6, seed=1), llm_for(fake_llm, tmp_path))
    calls = fake_llm.calls
    llm = llm_for(fake_llm, tmp_path)
    again = generate(small_task, GenerationConfig(per_class=6, seed=1), llm)
    assert fake_llm.calls == calls and llm.stats.calls == 0 and llm.stats.cache_hits > 0
    assert [e.text for e in again.examples] == [e.text for e in first.examples]


def test_identical_prompts_in_one_job_draw_fresh_samples(fake_llm, tmp_path, small_task):
    llm = llm_for(fake_llm, tmp_path)
    res = generate(small_task, GenerationConfig(per_class=10, mixup=False, examples_per_call=2), llm)
    assert len(res.examples) == 60
    prompts = Counter(str(r["messages"]) for r in fake_llm.requests)
    assert max(prompts.values()) >= 5  # the same prompt was sent again and again ...
    assert llm.stats.cache_hits == 0  # ... and never answered from the cache inside the job
    assert all(e.mixed_with is None and e.alpha is None for e in res.examples)


def test_malformed_output_is_survived_with_bounded_calls(make_fake_llm, tmp_path, small_task):
    fake = make_fake_llm(responder=lambda body: "Sorry, I can't help with that.\n\n")
    with pytest.raises(GenerationFailed, match="too few usable examples within 9 calls") as err:
        generate(small_task, GenerationConfig(per_class=1, max_calls_per_class=9), llm_for(fake, tmp_path))
    assert fake.calls == 9 * len(small_task.classes)
    assert err.value.result.kept == 0


def test_store_resume_keeps_what_was_made(fake_llm, tmp_path, small_task):
    store = ProjectStore(tmp_path / "p.pmx")
    job = store.create_job("generate", {})
    generate(small_task, GenerationConfig(per_class=3, seed=5), llm_for(fake_llm, tmp_path), store=store, job_id=job)
    assert store.count_examples(job)["total"] == 18
    # ask for more in the same job: the 3 per class already stored count, only the rest is made
    res = generate(small_task, GenerationConfig(per_class=5, seed=5), llm_for(fake_llm, tmp_path), store=store,
                   job_id=job)
    assert len(res.examples) == 30 and store.count_examples(job)["total"] == 30
    texts = [e.text for e in store.list_examples(job_id=job)]
    assert len(set(texts)) == 30


def test_progress_reports_reach_total(fake_llm, tmp_path, small_task):
    seen = []
    generate(small_task, GenerationConfig(per_class=2), llm_for(fake_llm, tmp_path), progress=seen.append)
    assert seen[0]["done"] == 0 and seen[-1]["done"] == seen[-1]["total"] == 12
    assert {"calls", "cache_hits", "retries", "failures", "prompt_tokens"} <= set(seen[-1])


def test_every_kept_example_is_told_as_it_becomes_final(fake_llm, tmp_path, small_task):
    told, progress_at_tell = [], []
    seen = []

    def on_kept(exs):
        told.extend(exs)
        progress_at_tell.append(len(seen))

    res = generate(small_task, GenerationConfig(per_class=4, seed=2), llm_for(fake_llm, tmp_path),
                   progress=seen.append, on_kept=on_kept)
    assert [e.text for e in told] == [e.text for e in res.examples]  # each once, in the result's order
    assert len(progress_at_tell) > 1  # in steps, as answers came, not once at the end


def test_a_failing_listener_never_stops_the_generation(fake_llm, tmp_path, small_task):
    def broken(_):
        raise RuntimeError("boom")

    res = generate(small_task, GenerationConfig(per_class=2), llm_for(fake_llm, tmp_path), on_kept=broken)
    assert len(res.examples) == 12


def test_config_validation():
    with pytest.raises(ValueError, match="group size"):
        GenerationConfig(group_size=1)
    with pytest.raises(ValueError, match="per class"):
        GenerationConfig(per_class=0)


def test_calls_ask_for_room_for_n_lines_and_stop_at_the_next_number(fake_llm, make_fake_llm, tmp_path, small_task):
    from promptmix_core.generate import (LOCAL_LINE_ROOM_SEEDS, LOCAL_TOP_P, call_max_tokens, examples_per_call,
                                         tokens_per_example)

    config = GenerationConfig(per_class=6, seed=1)
    generate(small_task, config, llm_for(fake_llm, tmp_path))
    n = examples_per_call(config)
    lengths = [len(s) for c in small_task.classes for s in c.examples]
    per = tokens_per_example(small_task)
    assert 20 <= per <= 100 and per == max(20, min(100, -(-sum(lengths) * 2 // (4 * len(lengths))) + 4))
    for body in fake_llm.requests:
        assert body["max_tokens"] == call_max_tokens(config, n, small_task) == min(400, 16 + per * n)
        assert body["stop"] == [f"\n{n + 1}.", f"\n{n + 1})"]
        assert "top_p" not in body  # an endpoint keeps its own default
    # the bundled model (a local config) samples from the nucleus; an explicit top_p wins everywhere
    before = len(fake_llm.requests)
    smol = make_fake_llm(model="smollm2-135m-instruct")  # stands in for the bundled model's server
    bundled = LLMClient(LLMConfig(base_url=smol.base_url, model="smollm2-135m-instruct", local=True, timeout=2),
                        cache_path=tmp_path / "local.sqlite")
    generate(small_task, GenerationConfig(per_class=2, seed=2), bundled)
    assert smol.requests and {b["top_p"] for b in smol.requests} == {LOCAL_TOP_P}
    # ... and gets room for lines of one seed length, not two: its rambles stop sooner
    local_per = tokens_per_example(small_task, LOCAL_LINE_ROOM_SEEDS)
    assert local_per == max(20, min(100, -(-sum(lengths) // (4 * len(lengths))) + 4)) <= per
    from promptmix_core.demo import demo_task  # longer seeds: 126 tokens for 5 lines instead of 216

    assert call_max_tokens(config, 5, demo_task(), True) < call_max_tokens(config, 5, demo_task())
    for b in smol.requests:
        n_local = examples_per_call(GenerationConfig(per_class=2))
        assert b["max_tokens"] == call_max_tokens(GenerationConfig(per_class=2), n_local, small_task, True) \
            == min(400, 16 + local_per * n_local)
    before = len(fake_llm.requests)  # another model on 127.0.0.1 (Ollama, vLLM) keeps its own default
    other = LLMClient(LLMConfig(base_url=fake_llm.base_url, model="fake-model", local=True, timeout=2),
                      cache_path=tmp_path / "other.sqlite")
    generate(small_task, GenerationConfig(per_class=2, seed=2), other)
    assert not any("top_p" in b for b in fake_llm.requests[before:])
    before = len(fake_llm.requests)
    generate(small_task, GenerationConfig(per_class=2, seed=2, top_p=0.5), llm_for(fake_llm, tmp_path / "x"))
    assert {b["top_p"] for b in fake_llm.requests[before:]} == {0.5}
    with pytest.raises(ValueError):
        GenerationConfig(top_p=0)
