"""A targeted round ("generate where the model is confused"): only the named class pairs are asked for,
and every example records the pair it was written for."""

from __future__ import annotations

import json
import re

import pytest

from promptmix_core.generate import GenerationConfig, generate
from promptmix_core.llm import LLMClient, LLMConfig
from promptmix_core.errors import SpecError
from promptmix_core.specs import GenerationSpec

PAIRS = (("card_lost", "card_arrival"), ("card_arrival", "card_lost"), ("exchange_rate", "top_up_failed"))


def _asked(body) -> tuple[str, str, set[str]]:
    user = body["messages"][-1]["content"]
    m = re.search(r'to category "([^"]+)" and \d+% to category "([^"]+)"', user)
    shown = set(re.findall(r"^Category: (.+)$", user, re.M))
    return m.group(1), m.group(2), shown


def test_targeted_round_asks_only_for_the_named_pairs(small_task, fake_llm, tmp_path):
    llm = LLMClient(LLMConfig(base_url=fake_llm.base_url, model="fake-model", backoff_base=0.01, timeout=5),
                    cache_path=tmp_path / "cache.sqlite")
    res = generate(small_task, GenerationConfig(per_class=4, seed=3, pairs=PAIRS), llm)
    assert fake_llm.calls > 0
    for body in fake_llm.requests:
        ci, cj, shown = _asked(body)
        assert (ci, cj) in PAIRS
        assert shown == {ci} | {b for a, b in PAIRS if a == ci}  # the prompt shows Ci and its partners only
    # exactly per_class for each Ci named, none for the others; each records its pair and its call
    assert sorted({e.intended_label for e in res.examples}) == ["card_arrival", "card_lost", "exchange_rate"]
    assert all(sum(e.intended_label == c for e in res.examples) == 4 for c in ("card_lost", "card_arrival"))
    for e in res.examples:
        assert (e.intended_label, e.mixed_with) in PAIRS and e.alpha is not None and e.request is not None
    assert res.requested == 12


def test_pairs_are_validated_everywhere(small_task, fake_llm, tmp_path):
    with pytest.raises(ValueError, match="two different classes"):
        GenerationConfig(pairs=(("card_lost", "card_lost"),))
    with pytest.raises(ValueError, match="need mixup"):
        GenerationConfig(mixup=False, pairs=PAIRS)
    with pytest.raises(SpecError) as info:
        GenerationSpec.from_dict({"pairs": [["a"], ["b", "b"]]})
    problems = info.value.problems
    assert any("two class names" in p for p in problems) and any("two different" in p for p in problems)
    llm = LLMClient(LLMConfig(base_url=fake_llm.base_url, model="fake-model"), cache_path=tmp_path / "c.sqlite")
    with pytest.raises(ValueError, match="ghost"):
        generate(small_task, GenerationConfig(per_class=2, pairs=(("card_lost", "ghost"),)), llm)
    assert fake_llm.calls == 0
    spec = GenerationSpec.from_dict({"per_class": 3, "pairs": [["card_lost", "card_arrival"]]})
    assert spec.generation.pairs == (("card_lost", "card_arrival"),)
    assert GenerationSpec.from_dict(spec.to_dict()) == spec


def test_cli_generate_pairs_and_pairs_from(tmp_path, small_task, fake_llm):
    from promptmix_core.cli import main
    from promptmix_core.task import save_task
    from promptmix_core.training.metrics import compute_metrics

    task_file = tmp_path / "task.json"
    save_task(small_task, task_file)
    out = tmp_path / "t.jsonl"
    common = ["--per-class", "2", "--base-url", fake_llm.base_url, "--model", "fake-model",
              "--cache", str(tmp_path / "cache.sqlite"), "--no-flags"]
    assert main(["generate", str(task_file), "--out", str(out), "--pairs", "card_lost:pin_blocked", *common]) == 0
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(rows) == 2 and {(r["intended_label"], r["mixed_with"]) for r in rows} == {("card_lost", "pin_blocked")}

    labels = small_task.class_names
    gold = ["refund_request", "refund_request", "top_up_failed", "card_lost"]
    pred = ["top_up_failed", "top_up_failed", "refund_request", "card_lost"]
    (tmp_path / "run.json").write_text(json.dumps({"test_confusion": compute_metrics(gold, pred, labels)["confusion"]}))
    out2 = tmp_path / "t2.jsonl"
    assert main(["generate", str(task_file), "--out", str(out2), "--pairs-from", str(tmp_path / "run.json"),
                 "--pairs-top", "1", *common]) == 0
    rows = [json.loads(x) for x in out2.read_text().splitlines()]
    assert {(r["intended_label"], r["mixed_with"]) for r in rows} == {
        ("top_up_failed", "refund_request"), ("refund_request", "top_up_failed")}
    assert main(["generate", str(task_file), "--out", str(out2), "--pairs", "card_lost:nope", *common]) == 2
