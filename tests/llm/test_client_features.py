"""Optional request features through the one client path: structured output (``response_format``)
and ``logprobs``, against the scripted server that accepts, refuses (400) or ignores each."""

from __future__ import annotations

import asyncio
import math

import pytest

from promptmix_core.llm import LLMClient, LLMConfig
from promptmix_core.llm.client import LLMFatalError, endpoint_refuses, forget_refusals
from promptmix_core.relabel import label_schema

MSG = [{"role": "user", "content": "Classify.\nCategory: alpha\nCategory: beta\n\nText: all about beta\n"}]
SCHEMA = label_schema(["alpha", "beta"])


@pytest.fixture(autouse=True)
def _no_refusals():
    forget_refusals()
    yield
    forget_refusals()


def client(fake, tmp_path=None, concurrency=4) -> LLMClient:
    cfg = LLMConfig(base_url=fake.base_url, model="fake-model", concurrency=concurrency, max_retries=1)
    return LLMClient(cfg, cache_path=(tmp_path / "c.sqlite") if tmp_path else None)


def test_accepting_endpoint_gets_response_format_and_logprobs(make_fake_llm):
    fake = make_fake_llm(structured="accept", logprobs="accept", answer_confidence=0.6)
    c = client(fake)
    out = c.chat(MSG, temperature=0.0, max_tokens=20, response_format=SCHEMA, logprobs=True, top_logprobs=3)
    sent = fake.requests[-1]
    assert sent["response_format"] == SCHEMA and sent["logprobs"] is True and sent["top_logprobs"] == 3
    assert out.text == '{"label": "beta"}'
    assert out.features == {"response_format", "logprobs"}
    assert out.logprobs and "".join(t["token"] for t in out.logprobs) == out.text
    inside = [t["logprob"] for t in out.logprobs if t["logprob"] < 0]
    assert math.isclose(math.exp(sum(inside)), 0.6, rel_tol=1e-6)
    assert all(isinstance(t["top_logprobs"], list) for t in out.logprobs)
    assert c.stats.refusals == 0 and c.stats.failures == 0


def test_refused_response_format_falls_back_after_one_refusal(make_fake_llm):
    fake = make_fake_llm(structured="refuse", logprobs="accept")
    c = client(fake, concurrency=4)

    async def many():
        return await asyncio.gather(*(c.achat([{"role": "user", "content": MSG[0]["content"] + f"({i})"}], temperature=0.0,
                                              max_tokens=20, response_format=SCHEMA, logprobs=True)
                                      for i in range(8)))

    outs = c.run_sync(many())
    assert fake.outcomes.count("400-response_format") == 1  # one refusal, never again
    assert [("response_format" in r) for r in fake.requests].count(True) == 1
    assert all(o.text == "beta" and o.features == {"logprobs"} and o.logprobs for o in outs)
    assert endpoint_refuses(fake.base_url, "fake-model", "response_format")
    assert not endpoint_refuses(fake.base_url, "fake-model", "logprobs")
    assert c.stats.refusals == 1 and c.stats.failures == 0
    # a later client (another job) of the same endpoint does not ask again
    before = len(fake.requests)
    client(fake).chat(MSG, temperature=0.0, max_tokens=20, response_format=SCHEMA)
    assert "response_format" not in fake.requests[before]


def test_refused_logprobs_falls_back(make_fake_llm):
    fake = make_fake_llm(structured="accept", logprobs="refuse")
    c = client(fake)
    out = c.chat(MSG, temperature=0.0, max_tokens=20, response_format=SCHEMA, logprobs=True, top_logprobs=5)
    assert out.text == '{"label": "beta"}' and out.logprobs is None and out.features == {"response_format"}
    out2 = c.chat([{"role": "user", "content": MSG[0]["content"] + "again"}], temperature=0.0, max_tokens=20,
                  response_format=SCHEMA, logprobs=True, top_logprobs=5)
    assert out2.features == {"response_format"}
    assert fake.outcomes.count("400-logprobs") == 1
    assert "logprobs" not in fake.requests[-1] and "top_logprobs" not in fake.requests[-1]


def test_ignoring_endpoint_gives_free_text_without_logprobs(fake_llm):
    c = client(fake_llm)
    out = c.chat(MSG, temperature=0.0, max_tokens=20, response_format=SCHEMA, logprobs=True)
    assert fake_llm.requests[-1]["response_format"] == SCHEMA  # sent: the endpoint drops it silently
    assert out.text == "beta" and out.logprobs is None


def test_a_400_about_something_else_is_not_taken_for_a_refusal(make_fake_llm):
    fake = make_fake_llm(structured="accept", logprobs="accept")
    fake.script.extend(["400", "400", "400"])  # with both features, with one, with none: not about them
    c = client(fake)
    with pytest.raises(LLMFatalError, match="context length"):
        c.chat(MSG, temperature=0.0, max_tokens=20, response_format=SCHEMA, logprobs=True)
    assert not endpoint_refuses(fake.base_url, "fake-model", "response_format")
    assert not endpoint_refuses(fake.base_url, "fake-model", "logprobs")
    assert c.stats.failures == 1 and c.stats.refusals == 0
    out = c.chat(MSG, temperature=0.0, max_tokens=20, response_format=SCHEMA, logprobs=True)
    assert out.features == {"response_format", "logprobs"}


def test_cached_answer_keeps_its_logprobs(make_fake_llm, tmp_path):
    fake = make_fake_llm(structured="accept", logprobs="accept", answer_confidence=0.7)
    first = client(fake, tmp_path).chat(MSG, temperature=0.0, max_tokens=20, response_format=SCHEMA, logprobs=True)
    again = client(fake, tmp_path).chat(MSG, temperature=0.0, max_tokens=20, response_format=SCHEMA, logprobs=True)
    assert again.cached and again.logprobs == first.logprobs and again.text == first.text
    assert len(fake.requests) == 1


def test_refused_stop_sequences_fall_back_after_one_refusal(make_fake_llm):
    fake = make_fake_llm(stop="refuse")
    c = client(fake)
    out = c.chat(MSG, temperature=0.0, max_tokens=20, stop_sequences=["\n3.", "\n3)"])
    assert out.text == "beta" and fake.outcomes.count("400-stop") == 1
    assert fake.requests[0]["stop"] == ["\n3.", "\n3)"] and "stop" not in fake.requests[1]
    c.chat([{"role": "user", "content": MSG[0]["content"] + "again"}], temperature=0.0, max_tokens=20,
           stop_sequences=["\n3."])
    assert "stop" not in fake.requests[-1] and fake.outcomes.count("400-stop") == 1
    assert c.stats.refusals == 1 and c.stats.failures == 0
