"""The one LLM path against a real HTTP server on 127.0.0.1 (tests/fake_llm.py)."""

import asyncio
import time

import pytest

from promptmix_core.llm import (
    LLMClient, LLMConfig, LLMConfigError, LLMFatalError, LLMUnavailableError, resolve_llm_config,
)

MSG = [{"role": "user", "content": "Say hello"}]


def client(fake, tmp_path=None, sleeps=None, **kw):
    cfg = LLMConfig(base_url=fake.base_url, model=kw.pop("model", "fake-model"), timeout=kw.pop("timeout", 2),
                    backoff_base=0.01, **kw)

    async def fake_sleep(s):
        if sleeps is not None:
            sleeps.append(s)

    return LLMClient(cfg, cache_path=(tmp_path / "c.sqlite") if tmp_path else None,
                     sleep=fake_sleep if sleeps is not None else asyncio.sleep)


def test_happy_path_counts_tokens(fake_llm):
    c = client(fake_llm)
    out = c.chat(MSG)
    assert out.text == "OK" and not out.cached
    s = c.stats.as_dict()
    assert s["calls"] == 1 and s["prompt_tokens"] > 0 and s["completion_tokens"] > 0 and s["retries"] == 0


def test_429_with_retry_after_is_honoured(fake_llm):
    sleeps = []
    fake_llm.script.extend(["429-retry:3", "ok"])
    c = client(fake_llm, sleeps=sleeps)
    assert c.chat(MSG).text == "OK"
    assert sleeps == [3.0]
    assert c.stats.retries == 1 and c.stats.calls == 2 and fake_llm.calls == 2


def test_429_without_retry_after_backs_off(fake_llm):
    sleeps = []
    fake_llm.script.extend(["429", "429", "ok"])
    c = client(fake_llm, sleeps=sleeps)
    assert c.chat(MSG).text == "OK"
    assert len(sleeps) == 2 and sleeps[1] > 0


def test_real_retry_after_wait(fake_llm):
    fake_llm.script.extend(["429-retry:0.6", "ok"])
    c = client(fake_llm)
    t0 = time.perf_counter()
    c.chat(MSG)
    assert time.perf_counter() - t0 >= 0.55


@pytest.mark.parametrize("fault", ["500", "502", "503", "drop", "drop-mid", "garbage"])
def test_transient_faults_are_retried(fake_llm, fault):
    fake_llm.script.extend([fault, "ok"])
    c = client(fake_llm, sleeps=[])
    assert c.chat(MSG).text == "OK"
    assert c.stats.retries == 1 and fake_llm.calls == 2


def test_slow_response_times_out_then_retries(fake_llm):
    fake_llm.script.extend(["slow:3", "ok"])
    c = client(fake_llm, sleeps=[], timeout=0.5)
    t0 = time.perf_counter()
    assert c.chat(MSG).text == "OK"
    assert time.perf_counter() - t0 < 3
    assert c.stats.retries == 1


def test_endpoint_down_gives_one_clear_error(fake_llm):
    fake_llm.down = True
    c = client(fake_llm, sleeps=[], max_retries=3)
    with pytest.raises(LLMUnavailableError, match="kept failing after 4 attempts; last error: HTTP 503"):
        c.chat(MSG)
    assert fake_llm.calls == 4 and c.stats.failures == 1 and c.stats.retries == 3


def test_connection_refused_is_clear(tmp_path):
    cfg = LLMConfig(base_url="http://127.0.0.1:9/v1", model="m", max_retries=1, backoff_base=0.01, timeout=1)
    with pytest.raises(LLMUnavailableError, match="connection failed"):
        LLMClient(cfg).chat(MSG)


def test_bad_key_fails_at_once_without_leaking_it(make_fake_llm):
    fake = make_fake_llm(api_key="sk-right-key-123456")
    c = client(fake, api_key="sk-wrong-key-987654")
    with pytest.raises(LLMFatalError) as err:
        c.chat(MSG)
    assert "refused the API key" in str(err.value) and "sk-wrong" not in str(err.value)
    assert fake.calls == 1


def test_unknown_model_fails_at_once(fake_llm):
    c = client(fake_llm, model="no-such-model")
    with pytest.raises(LLMFatalError, match="does not know the model 'no-such-model'"):
        c.chat(MSG)
    assert fake_llm.calls == 1


def test_empty_and_long_content_come_back_as_text(fake_llm):
    fake_llm.script.extend(["empty", "long"])
    c = client(fake_llm)
    assert c.chat(MSG, sample_index=0).text == ""
    assert len(c.chat(MSG, sample_index=1).text) > 100_000


def test_cache_hits_and_sample_index(fake_llm, tmp_path):
    c = client(fake_llm, tmp_path)
    c.chat(MSG, sample_index=0)
    c.chat(MSG, sample_index=0)
    c.chat(MSG, sample_index=1)  # the same prompt, another sample: a fresh call
    assert fake_llm.calls == 2 and c.stats.cache_hits == 1
    c2 = client(fake_llm, tmp_path)
    c2.chat(MSG, sample_index=0)
    c2.chat(MSG, sample_index=1)
    assert fake_llm.calls == 2 and c2.stats.calls == 0 and c2.stats.cache_hits == 2


def test_concurrency_is_bounded(make_fake_llm):
    fake = make_fake_llm(latency=0.2)
    c = client(fake, concurrency=3)

    async def many():
        await asyncio.gather(*(c.achat(MSG, sample_index=i) for i in range(12)))

    t0 = time.perf_counter()
    asyncio.run(many())
    assert fake.max_in_flight == 3
    assert time.perf_counter() - t0 >= 0.8  # 12 calls, 3 at a time, 0.2 s each


def test_config_validation_and_resolution(monkeypatch, fake_llm):
    with pytest.raises(LLMConfigError, match="http"):
        LLMConfig(base_url="ftp://x", model="m")
    with pytest.raises(LLMConfigError, match="concurrency"):
        LLMConfig(base_url="http://x", model="m", concurrency=0)
    monkeypatch.setenv("OPENAI_BASE_URL", fake_llm.base_url)
    cfg = resolve_llm_config()  # the model is asked of the server
    assert cfg.model == "fake-model" and cfg.base_url == fake_llm.base_url
    monkeypatch.delenv("OPENAI_BASE_URL")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-abc")
    cfg = resolve_llm_config()
    assert cfg.base_url == "https://api.openai.com/v1" and cfg.model == "gpt-4o-mini" and cfg.has_price
    assert "sk-abc" not in repr(cfg) and "api_key" not in cfg.public_dict()


def test_cost_where_price_known():
    cfg = LLMConfig(base_url="https://api.openai.com/v1", model="gpt-4o-mini", api_key="k")
    c = LLMClient(cfg)
    c.stats.add(prompt_tokens=1_000_000, completion_tokens=1_000_000)
    assert c.stats.cost == pytest.approx(0.75)
    assert LLMClient(LLMConfig(base_url="http://h:1/v1", model="x", api_key="k")).stats.cost is None
