"""The bundled model's own server: request parsing (fast) and, against the real model (slow), batched
generation with per-request settings, stop strings, n, and constrained answers by scoring."""

from __future__ import annotations

import asyncio
import json
import math

import pytest

from promptmix_core.llm.serve import RequestError, constrained_choices, parse_request
from promptmix_core.relabel import label_schema

MODEL = "smollm2-135m-instruct"
MSG = [{"role": "user", "content": "hi"}]


def test_parse_request_defaults_and_limits():
    r = parse_request({"model": MODEL, "messages": MSG}, MODEL)
    assert r.temperature == 1.0 and r.top_p == 1.0 and r.n == 1 and r.stop == [] and r.choices is None
    r = parse_request({"model": MODEL, "messages": MSG, "temperature": 0, "max_completion_tokens": 7,
                       "stop": "\n", "n": 3, "seed": 5, "top_logprobs": 2}, MODEL)
    assert (r.temperature, r.max_tokens, r.stop, r.n, r.seed, r.logprobs, r.top_logprobs) == (0.0, 7, ["\n"], 3, 5, True, 2)
    with pytest.raises(RequestError) as e:
        parse_request({"model": "other", "messages": MSG}, MODEL)
    assert e.value.status == 404
    for bad in ({"temperature": 3}, {"max_tokens": 0}, {"n": 0}, {"stop": [1]}, {"messages": []},
                {"top_logprobs": 50}, {"tools": [{"type": "function"}]}):
        with pytest.raises(RequestError):
            parse_request({"model": MODEL, "messages": MSG, **bad}, MODEL)


def test_constrained_forms():
    assert constrained_choices({"response_format": label_schema(["b", "a", "b"])}) == (["b", "a"], "label")
    assert constrained_choices({"guided_choice": ["x", "y"]}) == (["x", "y"], None)
    assert constrained_choices({"response_format": {"type": "text"}}) == (None, None)
    assert constrained_choices({}) == (None, None)
    for rf in ({"type": "json_object"},
               {"type": "json_schema", "json_schema": {"schema": {"type": "object", "properties": {
                   "a": {"type": "string"}, "b": {"type": "string"}}}}},
               {"type": "json_schema", "json_schema": {"schema": {"type": "object", "properties": {
                   "a": {"type": "string"}}}}}):
        with pytest.raises(RequestError):  # 400: a client falls back to free text
            constrained_choices({"response_format": rf})


@pytest.mark.slow
def test_real_server_batches_with_each_requests_settings(tmp_path):
    import openai

    from promptmix_core.llm.local import LocalServer

    prompt = [{"role": "user", "content": "Write three short sentences about the weather in a small town."}]
    with LocalServer(backend="promptmix") as server:
        client = openai.AsyncOpenAI(base_url=server.base_url, api_key="local", timeout=300, max_retries=0)

        async def go():
            alone = await client.chat.completions.create(model=server.model, messages=prompt, max_tokens=24,
                                                         temperature=0)
            batch = await asyncio.gather(
                client.chat.completions.create(model=server.model, messages=prompt, max_tokens=24, temperature=0),
                *(client.chat.completions.create(model=server.model, messages=prompt, max_tokens=12,
                                                 temperature=1.3, seed=s) for s in (1, 2)),
                client.chat.completions.create(model=server.model, messages=prompt, max_tokens=40, temperature=0,
                                               stop=["."]),
                client.chat.completions.create(model=server.model, messages=prompt, max_tokens=8, temperature=1.0,
                                               n=3, seed=7),
                client.chat.completions.create(
                    model=server.model, max_tokens=10, temperature=0, logprobs=True, top_logprobs=2,
                    response_format=label_schema(["sports", "politics", "cooking"]),
                    messages=[{"role": "user", "content": "Which category: sports, politics or cooking?\n"
                                                          "Text: The striker scored twice in the final."}]),
            )
            await client.close()
            return alone, batch

        alone, (greedy, s1, s2, stopped, multi, scored) = asyncio.run(go())
    g = alone.choices[0].message.content
    assert greedy.choices[0].message.content == g  # greedy in a batch of sampled rows: unchanged
    assert s1.usage.completion_tokens <= 12 and s1.choices[0].message.content != s2.choices[0].message.content
    assert stopped.choices[0].finish_reason == "stop" and "." not in stopped.choices[0].message.content
    assert len(multi.choices) == 3 and multi.usage.completion_tokens <= 24
    content = scored.choices[0].message.content
    assert json.loads(content)["label"] in ("sports", "politics", "cooking")
    tokens = scored.choices[0].logprobs.content
    assert "".join(t.token for t in tokens) == content
    conf = math.exp(sum(t.logprob for t in tokens))
    assert 0.0 < conf <= 1.0


def _score_alone(engine, prompt_ids: list[int], choices) -> list[float]:
    """The reference: log-likelihood of the assistant answering each choice (its tokens + end-of-turn)
    after the prompt, the prompt run once, then every choice in a batch of its own with a plain mask."""
    import torch
    from transformers import DynamicCache

    seqs = engine.scorer.choice_ids(choices)
    with torch.inference_mode():
        last, layers = engine.prefill(prompt_ids)
        first = torch.log_softmax(last, dim=-1)
        c = len(seqs)
        cache = DynamicCache(ddp_cache_data=[(k.expand(c, -1, -1, -1).contiguous(), v.expand(c, -1, -1, -1).contiguous())
                                             for k, v in layers], config=engine.model.config)
        width = max(len(s) for s in seqs)
        cand = torch.full((c, width), engine.pad_id, dtype=torch.long)
        for b, s in enumerate(seqs):
            cand[b, : len(s)] = torch.tensor(s, dtype=torch.long)
        n_prompt = len(prompt_ids)
        mask = torch.ones((c, n_prompt + width), dtype=torch.long)
        positions = torch.arange(n_prompt, n_prompt + width).unsqueeze(0).expand(c, -1)
        logits, _ = engine.call(cache, input_ids=cand, attention_mask=mask, position_ids=positions)
        logp = torch.log_softmax(logits.float(), dim=-1)
        totals = []
        for b, s in enumerate(seqs):
            total = float(first[s[0]])
            for j in range(1, len(s)):
                total += float(logp[b, j - 1, s[j]])
            totals.append(total)
    return totals


@pytest.mark.slow
def test_engine_scores_several_requests_in_one_batch_as_it_scores_one():
    """Constrained requests answered together (prompts of different lengths, different candidates) get
    the log-likelihoods each gets alone; a nucleus draw is reproducible with its seed."""
    from promptmix_core.llm.local import prepare_model
    from promptmix_core.llm.serve import Engine

    engine = Engine(prepare_model(), threads=2)
    texts = ["The striker scored twice in the final.", "Parliament passed the budget late at night after a long debate.",
             "Whisk the eggs."]
    choices = [["sports", "politics", "cooking"], ["politics", "finance"], ["cooking", "sports", "weather", "music"]]
    pendings = [engine.submit(parse_request(
        {"model": MODEL, "response_format": label_schema(c), "logprobs": True, "temperature": 0,
         "messages": [{"role": "user", "content": f"Which category: {', '.join(c)}?\nText: {t}"}]}, MODEL))
        for t, c in zip(texts, choices)]
    alone = [_score_alone(engine, p.prompt_ids, p.req.choices) for p in pendings]
    engine.scorer.score_batch(engine._take_new())
    for p, want in zip(pendings, alone):
        assert p.done.is_set() and p.error is None
        body = p.result["choices"][0]
        label = json.loads(body["message"]["content"])["label"]
        best = p.req.choices[max(range(len(want)), key=lambda i: want[i])]
        assert label == best
        conf = math.exp(sum(t["logprob"] for t in body["logprobs"]["content"]))
        z = sum(math.exp(x - max(want)) for x in want)
        # the winner's share, as scored alone (bfloat16 weights round differently in other batch shapes)
        assert conf == pytest.approx(1 / z, abs=1e-3 if engine.dtype == "float32" else 0.08)

    def draw(seed):
        pend = engine.submit(parse_request({"model": MODEL, "messages": MSG, "temperature": 1.0, "top_p": 0.5,
                                            "max_tokens": 6, "seed": seed}, MODEL))
        engine._admit(engine._take_new())
        while engine._rows:
            engine._step()
        return pend.result["choices"][0]["message"]["content"]

    import torch

    with torch.inference_mode():
        assert draw(3) == draw(3)


def test_model_dtype_follows_the_setting_and_the_cpu(monkeypatch):
    from promptmix_core.llm import local
    from promptmix_core.llm.serve import weights as serve

    monkeypatch.setattr(serve, "cpu_has_bf16", lambda: True)
    assert serve.model_dtype() == serve.model_dtype("auto") == "bfloat16"
    monkeypatch.setattr(serve, "cpu_has_bf16", lambda: False)
    assert serve.model_dtype(None) == "float32"  # emulated bfloat16 would be slower
    assert serve.model_dtype("BFloat16") == "bfloat16"
    with pytest.raises(ValueError, match="auto, float32 or bfloat16"):
        serve.model_dtype("float16")
    monkeypatch.delenv("PROMPTMIX_LOCAL_DTYPE", raising=False)
    assert local._local_dtype() == "auto"
    monkeypatch.setenv("PROMPTMIX_LOCAL_DTYPE", "Float32")
    assert local._local_dtype() == "float32"  # passed to the server as --dtype


@pytest.mark.slow
def test_a_request_done_on_its_first_token_leaves_the_others_decoding():
    """A request that ends on its first token (max_tokens 1) while others decode: the others keep their
    rows and finish (the prune after a prefill used the new rows' indexes on the whole batch, so the
    rows already decoding were dropped and their requests never answered)."""
    import torch

    from promptmix_core.llm.local import prepare_model
    from promptmix_core.llm.serve import Engine

    engine = Engine(prepare_model(), threads=2)
    prompt = [{"role": "user", "content": "Write three short sentences about the weather in a small town."}]
    with torch.inference_mode():
        long = engine.submit(parse_request({"model": MODEL, "messages": prompt, "temperature": 0, "max_tokens": 12}, MODEL))
        engine._admit(engine._take_new())
        for _ in range(3):
            engine._step()
        short = engine.submit(parse_request({"model": MODEL, "messages": MSG, "temperature": 0, "max_tokens": 1}, MODEL))
        engine._admit(engine._take_new())
        assert short.done.is_set() and short.result["completion_tokens"] == 1
        assert [r.pending for r in engine._rows] == [long]  # still decoding
        while engine._rows:
            engine._step()
    assert long.done.is_set() and long.error is None
    assert long.result["choices"][0]["finish_reason"] in ("length", "stop")


@pytest.mark.slow
def test_a_scoring_pass_runs_a_shared_prompt_prefix_once():
    """Relabel requests that arrive together and share their class block (nothing cached yet): the block
    runs once before the pass (``shared_prefixes``), each row runs only its own rest, and the answers
    are those of scoring each request alone."""
    from promptmix_core.llm.local import prepare_model
    from promptmix_core.llm.serve import Engine

    engine = Engine(prepare_model(), threads=2)
    block = "\n".join(f"Category: {c}\nDescription: texts about {c}, its news, its people and its words." for c in
                      ("sports", "politics", "cooking", "weather"))
    texts = ["The striker scored twice.", "Parliament passed the budget.", "Whisk the eggs.", "Rain tomorrow."]
    choices = ["sports", "politics", "cooking", "weather"]

    def submit(t):
        return engine.submit(parse_request(
            {"model": MODEL, "response_format": label_schema(choices), "logprobs": True, "temperature": 0,
             "messages": [{"role": "user", "content": f"{block}\n\nText: {t}\nAnswer with the category."}]}, MODEL))

    pendings = [submit(t) for t in texts]
    full = sum(len(p.prompt_ids) for p in pendings)
    engine.scorer.score_batch(engine._take_new())
    assert engine.stats["shared_prefixes"] == 1
    assert engine.stats["prompt_tokens_run"] < full * 0.6  # the block once, not four times
    _assert_answered_as_alone(engine, pendings, choices)


def _assert_answered_as_alone(engine, pendings, choices) -> None:
    """Every request's label and confidence are those of scoring it alone, from nothing cached."""
    from promptmix_core.llm.serve.cache import PrefixCache

    engine.prefixes = PrefixCache()
    for p in pendings:
        assert p.done.is_set() and p.error is None
        want = _score_alone(engine, p.prompt_ids, p.req.choices)
        engine.prefixes = PrefixCache()
        body = p.result["choices"][0]
        best, second = sorted(want, reverse=True)[:2]
        label = json.loads(body["message"]["content"])["label"]
        if engine.dtype == "float32" or best - second > 0.5:  # bfloat16 rounds near-ties either way
            assert label == choices[want.index(best)]
        conf = math.exp(sum(t["logprob"] for t in body["logprobs"]["content"]))
        z = sum(math.exp(x - max(want)) for x in want)
        assert conf == pytest.approx(1 / z, abs=1e-3 if engine.dtype == "float32" else 0.08)


@pytest.mark.slow
def test_a_prompt_nobody_shares_runs_alone_instead_of_widening_the_pass():
    """Five relabel requests share a class block, a sixth has a block of its own: without levelling the
    pass would left-pad all six to the sixth's whole prompt. Its rest runs alone first (``levelled``),
    the pass runs about one text per row, and every answer is still that of scoring the request alone."""
    from promptmix_core.llm.local import prepare_model
    from promptmix_core.llm.serve import Engine

    engine = Engine(prepare_model(), threads=2)
    choices = ["sports", "politics", "cooking", "weather"]

    def block(kind):
        return "\n".join(f"Category: {c}\nDescription: {kind} about {c}, its news, its people and its words."
                         for c in choices)

    def submit(b, t):
        return engine.submit(parse_request(
            {"model": MODEL, "response_format": label_schema(choices), "logprobs": True, "temperature": 0,
             "messages": [{"role": "user", "content": f"{b}\n\nText: {t}\nAnswer with the category."}]}, MODEL))

    texts = ["The striker scored twice.", "Parliament passed the budget.", "Whisk the eggs.", "Rain tomorrow.",
             "The keeper saved a penalty."]
    pendings = [submit(block("texts"), t) for t in texts] + [submit(block("long letters and short notes"),
                                                                    "Snow is coming.")]
    widths = []
    original = engine.scorer._inputs

    def spy(items, width):
        out = original(items, width)
        widths.append(out[4])  # the pass's query length
        return out

    engine.scorer._inputs = spy
    engine.scorer.score_batch(engine._take_new())
    assert engine.stats["levelled"] == 1 and engine.stats["shared_prefixes"] >= 1
    assert widths and widths[0] < 60  # each row runs its text and the answers, not a whole prompt
    _assert_answered_as_alone(engine, pendings, choices)


def test_grouped_query_attention_equals_transformers_eager():
    """The server's attention on grouped key/values gives transformers' eager attention's output and
    weights (which first copies the key/values once per query head), with and without a mask."""
    import torch
    from transformers.models.llama.modeling_llama import eager_attention_forward

    from promptmix_core.llm.serve.attention import gqa_eager_attention

    class Module:
        num_key_value_groups = 3
        training = False

    torch.manual_seed(0)
    for dtype in (torch.float32, torch.bfloat16):
        for q in (1, 5):
            query = torch.randn(2, 9, q, 16, dtype=dtype)
            key, value = torch.randn(2, 3, 12, 16, dtype=dtype), torch.randn(2, 3, 12, 16, dtype=dtype)
            mask = torch.zeros(2, 1, q, 12, dtype=dtype)
            mask[0, :, :, :4] = torch.finfo(dtype).min  # row 0: left padding
            for m in (mask, None):
                want, want_w = eager_attention_forward(Module(), query, key, value, m, 0.25)
                got, got_w = gqa_eager_attention(Module(), query, key, value, m, 0.25)
                assert got.shape == want.shape and got_w.shape == want_w.shape
                assert torch.allclose(got.float(), want.float(), atol=1e-5)
                assert torch.allclose(got_w.float(), want_w.float(), atol=1e-5)
