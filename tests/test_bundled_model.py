"""The real bundled model (SmolLM2-135M-Instruct) end to end: generate and relabel a few examples.

The model is tiny and its output is poor; the pipeline must survive it: exact counts, or a clear
message, never a crash, and every answer either mapped to a class or marked unparseable."""

import pytest

from promptmix_core.generate import GenerationConfig, GenerationFailed, generate
from promptmix_core.llm import LLMClient, LLMConfig
from promptmix_core.llm.local import LocalServer
from promptmix_core.relabel import relabel

pytestmark = pytest.mark.slow


def test_real_model_generates_and_relabels(tmp_path, small_task):
    small_task.classes = small_task.classes[:2]
    with LocalServer() as server:
        cfg = LLMConfig(base_url=server.base_url, model=server.model, api_key="local", local=True,
                        concurrency=2, timeout=300)
        llm = LLMClient(cfg, cache_path=tmp_path / "cache.sqlite")
        try:
            result = generate(small_task, GenerationConfig(per_class=2, seed=0, max_tokens=160), llm)
            examples = result.examples
            assert len(examples) == 4
            assert sorted(e.intended_label for e in examples) == ["card_arrival"] * 2 + ["card_lost"] * 2
        except GenerationFailed as exc:  # allowed only as a clear, bounded failure
            assert "too few usable examples" in str(exc)
            assert llm.stats.calls <= 2 * GenerationConfig(per_class=2).call_budget
            examples = exc.result.examples
        assert all(e.text.strip() and e.model == server.model for e in examples)
        assert llm.stats.completion_tokens > 0 and llm.stats.failures == 0
        results = relabel(small_task, examples, llm)
        for r in results:
            assert r.status in ("agree", "changed", "unparseable")
            assert (r.llm_label is None) == (r.status == "unparseable")
            assert r.llm_label is None or r.llm_label in small_task.class_names


def test_real_model_relabels_always_name_a_candidate(tmp_path, small_task):
    """Constrained relabels on the bundled model's server: every answer is one of the candidates shown,
    with a confidence in [0, 1]; the candidate order is shuffled per example."""
    from promptmix_core.relabel import RelabelConfig, relabel_summary

    texts = ["I lost my card on the bus", "When will my card arrive?", "What is the euro rate today?",
             "My top-up did not work", "I want my money back", "My PIN is blocked", "hello there",
             "The weather is nice today", "Card gone, PIN blocked, refund please", "1234 5678"]
    items = [{"text": t, "intended_label": small_task.class_names[i % 6]} for i, t in enumerate(texts)]
    with LocalServer() as server:
        cfg = LLMConfig(base_url=server.base_url, model=server.model, api_key="local", local=True,
                        concurrency=8, timeout=300)
        llm = LLMClient(cfg, cache_path=tmp_path / "cache.sqlite")
        results = relabel(small_task, items, llm, RelabelConfig(nearest=4))
    assert len(results) == 10
    for r in results:
        assert r.status in ("agree", "changed") and r.llm_label in r.candidates, r
        assert r.constrained and r.confidence is not None and 0.0 <= r.confidence <= 1.0
        assert len(r.candidates) == 4
    assert len({tuple(r.candidates) for r in results}) > 1  # candidate order varies per example
    s = relabel_summary(results)
    assert s["unparseable"] == 0 and abs(sum(s["label_shares"].values()) - 1.0) < 1e-9
    assert llm.stats.failures == 0 and llm.stats.refusals == 0
