import pytest

from promptmix_core.generate import GenerationConfig, generate
from promptmix_core.llm import LLMClient, LLMConfig
from promptmix_core.relabel import (
    RelabelConfig, build_classifier_prompt, classify_texts, map_answer, nearest_classes, relabel,
    relabel_summary,
)

NAMES = ["card_lost", "card_arrival", "exchange_rate", "Top Up Failed"]


@pytest.mark.parametrize(
    "answer, expected",
    [
        ("card_lost", "card_lost"),
        ("  Card_Lost. ", "card_lost"),
        ("Category: exchange rate", "exchange_rate"),
        ("The answer is card arrival", "card_arrival"),
        ("top_up_failed", "Top Up Failed"),
        ("card_lsot", "card_lost"),  # fuzzy
        ("card_lost\nbecause the card is gone", "card_lost"),
        ("I'm not sure, maybe card_lost or card_arrival", None),  # two classes: ambiguous
        ("pizza", None),
        ("", None),
        (None, None),
    ],
)
def test_answer_mapping(answer, expected):
    assert map_answer(answer, NAMES) == expected


def test_prompt_lists_candidates_and_text(small_task):
    msgs = build_classifier_prompt(small_task, ["card_lost", "pin_blocked"], "My PIN is locked")
    user = msgs[-1]["content"]
    assert "Category: card_lost" in user and "Category: exchange_rate" not in user
    assert "Text: My PIN is locked" in user and user.strip().endswith("card_lost, pin_blocked.")


def test_nearest_classes_by_embedding(small_task):
    got = nearest_classes(small_task, ["I typed the wrong PIN and now it is locked",
                                       "what is the dollar exchange rate"], nearest=2)
    assert got[0][0] == "pin_blocked"
    assert got[1][0] == "exchange_rate"
    assert nearest_classes(small_task, ["x"], nearest=6) == [small_task.class_names]


def test_relabel_statuses_and_temperature_zero(fake_llm, tmp_path, small_task):
    llm = LLMClient(LLMConfig(base_url=fake_llm.base_url, model="fake-model"), cache_path=tmp_path / "c.sqlite")
    res = generate(small_task, GenerationConfig(per_class=6, seed=2), llm)
    before = fake_llm.calls
    out = relabel(small_task, res.examples, llm, RelabelConfig(nearest=3))
    assert fake_llm.calls - before == len(res.examples)
    assert all(r["temperature"] == 0.0 for r in fake_llm.requests[before:])
    statuses = {r.status for r in out}
    assert statuses <= {"agree", "changed"} and "agree" in statuses
    for ex, r in zip(res.examples, out):
        assert (r.status == "agree") == (r.llm_label == ex.intended_label)
    # the intended class is always among the candidates shown
    prompts = {}
    for req in fake_llm.requests[before:]:  # requests arrive in any order: match them by text
        user = req["messages"][-1]["content"]
        prompts[user.split("\nText: ", 1)[1].split("\n", 1)[0]] = user
    for ex in res.examples:
        assert f"Category: {ex.intended_label}" in prompts[ex.text]
    s = relabel_summary(out)
    assert s["relabelled"] == len(out) and 0 <= s["share_changed"] <= 1


def test_unparseable_answers_are_kept_not_forced(make_fake_llm, tmp_path, small_task):
    fake = make_fake_llm(classify=lambda text, cats: "I cannot decide." if "PIN" in text else cats[0])
    llm = LLMClient(LLMConfig(base_url=fake.base_url, model="fake-model"))
    items = [{"text": "My PIN is stuck", "intended_label": "pin_blocked"},
             {"text": "hello", "intended_label": "card_lost"}]
    out = relabel(small_task, items, llm)
    assert out[0].status == "unparseable" and out[0].llm_label is None and out[0].raw == "I cannot decide."
    assert out[1].llm_label is not None


def test_classify_texts_for_llm_direct(fake_llm, small_task):
    llm = LLMClient(LLMConfig(base_url=fake_llm.base_url, model="fake-model"))
    labels = classify_texts(small_task, ["exchange rate please", "card lost!"], llm)
    assert labels == ["exchange_rate", "card_lost"]


def test_constrained_relabel_with_confidence(make_fake_llm, small_task):
    from promptmix_core.llm.client import forget_refusals

    forget_refusals()
    fake = make_fake_llm(structured="accept", logprobs="accept", answer_confidence=0.65)
    llm = LLMClient(LLMConfig(base_url=fake.base_url, model="fake-model"))
    items = [{"text": f"my card lost again, case {i}", "intended_label": "card_lost"} for i in range(12)]
    out = relabel(small_task, items, llm, RelabelConfig(nearest=3))
    for req in fake.requests:
        enum = req["response_format"]["json_schema"]["schema"]["properties"]["label"]["enum"]
        user = req["messages"][-1]["content"]
        assert [ln[len("Category: "):] for ln in user.splitlines() if ln.startswith("Category: ")] == enum
        assert req["logprobs"] is True
    for r in out:
        assert r.constrained and r.llm_label == "card_lost" and r.status == "agree"
        assert r.confidence == pytest.approx(0.65) and r.raw.startswith("{")
        assert r.candidates[0] in r.candidates and len(r.candidates) == 3
    s = relabel_summary(out)
    assert s["label_shares"] == {"card_lost": 1.0} and s["constrained"] == 12
    assert s["mean_confidence"] == pytest.approx(0.65)
    assert 0 < s["share_first_listed"] < 1  # the order rotates: card_lost is not always listed first


def test_candidate_order_rotates_evenly():
    from promptmix_core.relabel import candidate_order

    names = ["a", "b", "c", "d"]
    firsts = [candidate_order(["c", "a", "d", "b"], f"text {i}", 0, names)[0] for i in range(400)]
    assert {n: firsts.count(n) for n in names} == pytest.approx({n: 100 for n in names}, abs=30)
    order = candidate_order(["c", "a", "d", "b"], "x", 0, names)
    assert order == candidate_order(["d", "b", "c", "a"], "x", 0, names)  # same text and seed: same order
    k = order.index("a")
    assert order[k:] + order[:k] == names  # a rotation of the task's class order


def test_relabel_falls_back_to_free_text_when_refused(make_fake_llm, small_task):
    from promptmix_core.llm.client import forget_refusals

    forget_refusals()
    fake = make_fake_llm(structured="refuse", logprobs="refuse")
    llm = LLMClient(LLMConfig(base_url=fake.base_url, model="fake-model", concurrency=4))
    items = [{"text": f"exchange rate please {i}", "intended_label": "exchange_rate"} for i in range(6)]
    out = relabel(small_task, items, llm)
    assert all(r.llm_label == "exchange_rate" and not r.constrained and r.confidence is None for r in out)
    assert fake.outcomes.count("400-response_format") == 1 and fake.outcomes.count("400-logprobs") == 1
    assert llm.stats.refusals == 2 and llm.stats.failures == 0
