"""The project's own OpenAI-compatible server for the bundled model, with batched generation.

``python -m promptmix_core.llm.serve --model-dir DIR --port PORT`` serves ``POST /v1/chat/completions``,
``GET /v1/models`` and ``GET /health`` on 127.0.0.1 (started by :class:`promptmix_core.llm.local.LocalServer`).

Why not ``transformers serve``: it runs one request at a time (about 21 tokens/s here), and its
``--continuous-batching`` mode keeps the first request's sampling settings for every later one.
This server batches every request in flight into one forward pass per step and samples each row
with **its own settings** (temperature, top_p, max_tokens, stop, n, seed):

* An engine thread owns the model. Requests queue up; when the engine is idle it waits a few
  milliseconds for more to arrive, runs the new prompts, and merges their key/values into the
  running batch (left-padded, masked) **between decoding steps** (continuous batching):
  a request that arrives while others decode joins them at the next step instead of waiting for
  the whole batch; finished rows leave the batch at once.
* A prefix cache keeps the key/values of recent prompts (16384 tokens): a new prompt runs only from
  where it stops sharing tokens with one of them. The pipeline's prompts repeat long prefixes (the
  chat template, the class block of a generation group, the candidate classes of a relabel), so most
  of each prompt is not computed again.
* Each row samples from its own logits with its own temperature (0 = greedy), top_p and random
  generator (``seed``), stops at its own ``max_tokens`` or ``stop`` strings (which, as with OpenAI,
  are not part of the returned text) or at the end-of-turn token. ``n`` > 1 adds n rows.
* Constrained answers: ``response_format`` of type ``json_schema`` whose schema is an object with one
  required string property restricted by ``enum`` (what the relabeler sends), or vLLM's
  ``guided_choice`` list, is answered by **scoring** every allowed value: the exact log-likelihood of
  the assistant answering that value (value tokens + end-of-turn) after the prompt, in one batched
  forward pass over the shared prompt. The most likely value is returned, as
  ``{"label": "..."}`` (or the bare choice for ``guided_choice``), so the answer is always one of
  the allowed values. With ``logprobs: true`` the answer's tokens carry log-probabilities whose sum
  is the log of that value's share of the probability mass among the allowed values (the scoring
  posterior, split along the shared token prefixes of the values), so ``exp(sum)`` is a calibrated
  confidence in [0, 1].
* ``logprobs`` / ``top_logprobs`` for free generation: the model's log-probabilities (temperature 1)
  of the sampled tokens.

Not supported (answered 400, so a client can fall back): other ``response_format`` schemas,
``tools``. ``stream: true`` gets the whole answer as one chunk followed by ``[DONE]``.

Only stdlib, torch and transformers; torch and transformers are imported in :func:`main` only.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import queue
import sys
import threading
import time
import traceback
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Sequence

HOST = "127.0.0.1"
DEFAULT_MAX_TOKENS = 512  # when a request names none (transformers serve: 1024, about 50 s here)
MAX_BATCH_ROWS = 16
GATHER_SECONDS = 0.015  # an idle engine waits this long for more requests before it starts a batch
PREFIX_CACHE_TOKENS = 16384  # prompt tokens whose key/values are kept for reuse (about 46 KB each: 750 MB)
SCORE_BATCH_ROWS = 64  # candidates of constrained requests scored in one forward pass (one row per request)
TOP_CANDIDATES = 256  # a nucleus (top_p) is looked for among this many most likely tokens first
MIN_PREFIX_TOKENS = 16  # a shorter shared prefix is not worth a cache copy


def cpu_has_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 natively (AVX-512 BF16 or AMX; Linux ``/proc/cpuinfo``)."""
    try:
        flags = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def model_dtype(want: str | None = "auto") -> str:
    """The server's weights (``--dtype``, from ``$PROMPTMIX_LOCAL_DTYPE``): ``float32``, ``bfloat16`` or
    ``auto`` (the default), which is bfloat16 where the CPU has native bfloat16 (a 16-row step 69 ms
    against 116 ms, docs/LOCAL_MODEL.md), else float32 (emulated bfloat16 would be slower)."""
    want = (want or "auto").strip().lower()
    if want not in ("auto", "float32", "bfloat16"):
        raise ValueError(f"PROMPTMIX_LOCAL_DTYPE must be auto, float32 or bfloat16 (got {want!r})")
    if want == "auto":
        return "bfloat16" if cpu_has_bf16() else "float32"
    return want


def _growing(cache):
    """Make ``cache`` (a transformers ``DynamicCache``) append each step's key/values into buffers with
    spare room instead of concatenating: transformers' ``DynamicLayer`` copies the whole cache at every
    decoding step (``torch.cat``), which on CPU cost more than the model itself (measured: 72 % of a
    16-row step). Returns the same cache."""
    from transformers.cache_utils import DynamicLayer

    global _GrowingLayer
    if _GrowingLayer is None:

        class _Layer(DynamicLayer):
            """``keys``/``values`` are views of the first ``n`` positions of buffers with room to grow;
            anything that assigns ``keys``/``values`` itself (a prune) is adopted as the new buffer."""

            def update(self, key_states, value_states, *args, **kwargs):
                if not self.is_initialized:
                    self.lazy_initialization(key_states, value_states)
                buf = getattr(self, "_kbuf", None)
                n = int(self.keys.shape[-2]) if self.keys.numel() else 0
                adopted = (buf is not None and self.keys.numel()
                           and self.keys.data_ptr() == buf.data_ptr() and self.keys.shape[0] == buf.shape[0])
                t = int(key_states.shape[-2])
                if not adopted or n + t > buf.shape[-2]:
                    room = max(64, (n + t) // 2)  # amortised: a copy every ~n/2 steps
                    shape = list(key_states.shape)
                    shape[-2] = n + t + room
                    kbuf, vbuf = key_states.new_empty(shape), value_states.new_empty(shape)
                    if n:
                        kbuf[:, :, :n].copy_(self.keys)
                        vbuf[:, :, :n].copy_(self.values)
                    self._kbuf, self._vbuf = kbuf, vbuf
                self._kbuf[:, :, n:n + t].copy_(key_states)
                self._vbuf[:, :, n:n + t].copy_(value_states)
                self.keys = self._kbuf[:, :, :n + t]
                self.values = self._vbuf[:, :, :n + t]
                return self.keys, self.values

        _GrowingLayer = _Layer
    for layer in cache.layers:
        if type(layer) is DynamicLayer:
            layer.__class__ = _GrowingLayer
    return cache


_GrowingLayer = None


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class RequestError(ValueError):
    """A request the server refuses (HTTP 400)."""

    def __init__(self, message: str, status: int = 400, code: str = "invalid_request_error", param: str | None = None):
        super().__init__(message)
        self.status, self.code, self.param = status, code, param


# ----------------------------------------------------------------------------- request parsing


@dataclass
class ChatRequest:
    messages: list[dict[str, str]]
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = DEFAULT_MAX_TOKENS
    stop: list[str] = field(default_factory=list)
    n: int = 1
    seed: int | None = None
    logprobs: bool = False
    top_logprobs: int = 0
    choices: list[str] | None = None  # constrained answer: one of these values
    choice_key: str | None = None  # the JSON property that holds the value (None: the bare value)
    stream: bool = False


def constrained_choices(body: dict[str, Any]) -> tuple[list[str] | None, str | None]:
    """``(values, key)`` when the request asks for one of a fixed set of strings, else ``(None, None)``.

    Understood: OpenAI ``response_format`` ``{"type": "json_schema", "json_schema": {"schema": S}}``
    where S is an object with exactly one property, a string ``enum`` (answered as ``{key: value}``),
    and vLLM's ``guided_choice: [...]`` (answered as the bare value). Other schemas raise
    :class:`RequestError` (400) so that a client falls back to free text.
    """
    guided = body.get("guided_choice")
    if guided is not None:
        if not isinstance(guided, list) or not guided or not all(isinstance(c, str) and c for c in guided):
            raise RequestError("guided_choice must be a non-empty list of strings", param="guided_choice")
        return list(dict.fromkeys(guided)), None
    rf = body.get("response_format")
    if rf is None:
        return None, None
    if not isinstance(rf, dict):
        raise RequestError("response_format must be an object", param="response_format")
    kind = rf.get("type", "text")
    if kind == "text":
        return None, None
    if kind != "json_schema":
        raise RequestError(
            f"response_format type {kind!r} is not supported here; use json_schema with one enum property",
            param="response_format",
        )
    schema = (rf.get("json_schema") or {}).get("schema") if isinstance(rf.get("json_schema"), dict) else None
    props = schema.get("properties") if isinstance(schema, dict) else None
    if not isinstance(props, dict) or len(props) != 1:
        raise RequestError(
            "only a json_schema object with exactly one string enum property is supported here",
            param="response_format",
        )
    (key, prop), = props.items()
    values = prop.get("enum") if isinstance(prop, dict) else None
    if not isinstance(values, list) or not values or not all(isinstance(v, str) and v for v in values):
        raise RequestError(
            f"the property {key!r} needs an enum of non-empty strings to be constrained here",
            param="response_format",
        )
    return list(dict.fromkeys(values)), str(key)


def parse_request(body: Any, model_id: str) -> ChatRequest:
    if not isinstance(body, dict):
        raise RequestError("the request body must be a JSON object")
    model = body.get("model")
    if model != model_id:
        raise RequestError(f"The model `{model}` does not exist; this server serves `{model_id}`",
                           status=404, code="model_not_found", param="model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError("messages must be a non-empty list", param="messages")
    clean: list[dict[str, str]] = []
    for m in messages:
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise RequestError("each message needs a role and content", param="messages")
        content = m.get("content")
        if isinstance(content, list):  # [{"type": "text", "text": ...}, ...]
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        if not isinstance(content, str):
            raise RequestError("message content must be text", param="messages")
        clean.append({"role": m["role"], "content": content})
    if body.get("tools"):
        raise RequestError("tools are not supported by this server", param="tools")

    def number(name: str, default: float, lo: float, hi: float) -> float:
        v = body.get(name)
        if v is None:
            return default
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= float(v) <= hi:
            raise RequestError(f"{name} must be a number between {lo:g} and {hi:g}", param=name)
        return float(v)

    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if max_tokens is None:
        max_tokens = DEFAULT_MAX_TOKENS
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise RequestError("max_tokens must be a positive integer", param="max_tokens")
    stop = body.get("stop")
    if stop is None:
        stop = []
    elif isinstance(stop, str):
        stop = [stop]
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop) or len(stop) > 8:
        raise RequestError("stop must be a string or a list of at most 8 strings", param="stop")
    n = body.get("n")
    if n is None:
        n = 1
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 16:
        raise RequestError("n must be between 1 and 16", param="n")
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise RequestError("seed must be an integer", param="seed")
    top_logprobs = body.get("top_logprobs") or 0
    if isinstance(top_logprobs, bool) or not isinstance(top_logprobs, int) or not 0 <= top_logprobs <= 20:
        raise RequestError("top_logprobs must be between 0 and 20", param="top_logprobs")
    choices, key = constrained_choices(body)
    return ChatRequest(
        messages=clean,
        temperature=number("temperature", 1.0, 0.0, 2.0),
        top_p=number("top_p", 1.0, 0.0, 1.0),
        max_tokens=int(max_tokens),
        stop=[s for s in stop if s],
        n=int(n),
        seed=seed,
        logprobs=bool(body.get("logprobs")) or top_logprobs > 0,
        top_logprobs=int(top_logprobs),
        choices=choices,
        choice_key=key,
        stream=bool(body.get("stream")),
    )


# ----------------------------------------------------------------------------- the engine


class _Pending:
    """One HTTP request waiting for the engine."""

    def __init__(self, req: ChatRequest, prompt_ids: list[int]):
        self.req = req
        self.prompt_ids = prompt_ids
        self.done = threading.Event()
        self.result: dict[str, Any] | None = None
        self.error: BaseException | None = None
        self.rows_left = req.n
        self.choices: list[dict[str, Any] | None] = [None] * req.n
        self.completion_tokens = 0
        self.created = time.time()


class _Row:
    """One sequence being generated (a request with n > 1 has n rows)."""

    def __init__(self, pending: _Pending, index: int, generator):
        self.pending = pending
        self.index = index
        self.req = pending.req
        self.generator = generator
        self.out_ids: list[int] = []
        self.logprobs: list[dict[str, Any]] = []
        self.finish: str | None = None
        self.text = ""
        self.next_pos = len(pending.prompt_ids)


class Engine:
    """Owns the model; batches every request in flight (see the module docstring)."""

    def __init__(self, model_dir: str | os.PathLike[str], *, threads: int = 2, max_batch: int = MAX_BATCH_ROWS,
                 gather_seconds: float = GATHER_SECONDS, prefix_cache_tokens: int = PREFIX_CACHE_TOKENS,
                 dtype: str = "auto"):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        torch.set_num_threads(max(1, int(threads)))
        self.torch = torch
        self.model_dir = Path(model_dir)
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.model_dir))
        self.dtype = model_dtype(dtype)
        # bfloat16: matrix products about 2.5x faster on CPUs with AMX/AVX-512-BF16; its attention is
        # faster in the eager implementation there
        self.model = AutoModelForCausalLM.from_pretrained(
            str(self.model_dir), dtype=getattr(torch, self.dtype),
            **({"attn_implementation": "eager"} if self.dtype == "bfloat16" else {}))
        self.model.eval()
        import inspect

        params = inspect.signature(self.model.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"
        self.max_batch = int(max_batch)
        self.gather_seconds = float(gather_seconds)
        self.context = int(getattr(self.model.config, "max_position_embeddings", 2048) or 2048)
        eos: set[int] = set()
        for source in (self.model.generation_config.eos_token_id, self.tokenizer.eos_token_id):
            if isinstance(source, int):
                eos.add(source)
            elif isinstance(source, (list, tuple)):
                eos.update(int(x) for x in source)
        end = self.tokenizer.convert_tokens_to_ids("<|im_end|>")
        if isinstance(end, int) and end >= 0 and end != self.tokenizer.unk_token_id:
            eos.add(end)
            self.end_of_turn = end
        else:
            self.end_of_turn = next(iter(eos))
        self.eos = eos
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.end_of_turn
        self._queue: "queue.Queue[_Pending]" = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="engine", daemon=True)
        # running batch state
        self._rows: list[_Row] = []
        self._cache = None
        self._mask = None  # [B, T] attention mask of the cache
        self.stats = {"requests": 0, "steps": 0, "tokens": 0, "max_rows": 0, "scored": 0,
                      "prompt_tokens_run": 0, "prefix_tokens_reused": 0}
        self._prefixes: "OrderedDict[tuple[int, ...], list]" = OrderedDict()  # prompt ids -> key/values
        self.prefix_cache_tokens = int(prefix_cache_tokens)

    # -- public
    def start(self) -> "Engine":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def prompt_ids(self, messages: Sequence[dict[str, str]]) -> list[int]:
        text = self.tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def submit(self, req: ChatRequest) -> _Pending:
        ids = self.prompt_ids(req.messages)
        budget = self.context - len(ids)
        if budget < 1:
            raise RequestError(f"the prompt has {len(ids)} tokens; this model reads at most {self.context}",
                               code="context_length_exceeded", param="messages")
        req.max_tokens = min(req.max_tokens, budget)
        pending = _Pending(req, ids)
        self._queue.put(pending)
        return pending

    # -- the loop
    def _loop(self) -> None:
        torch = self.torch
        with torch.inference_mode():
            while not self._stop.is_set():
                try:
                    new = self._take_new()
                    scoring = [p for p in new if p.req.choices]
                    generating = [p for p in new if not p.req.choices]
                    for chunk in self._score_chunks(scoring):
                        self._score_batch(chunk)
                    if generating:
                        self._admit(generating)
                    if self._rows:
                        self._step()
                except Exception as exc:  # noqa: BLE001 - fail the rows in flight, keep serving
                    traceback.print_exc()
                    for row in self._rows:
                        self._fail(row.pending, exc)
                    self._rows, self._cache, self._mask = [], None, None

    def _take_new(self) -> list[_Pending]:
        got: list[_Pending] = []
        if not self._rows:  # idle: block for the first request, then gather briefly
            try:
                got.append(self._queue.get(timeout=0.5))
            except queue.Empty:
                return got
            deadline = time.monotonic() + self.gather_seconds
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    got.append(self._queue.get(timeout=left))
                except queue.Empty:
                    break
        while True:  # everything queued now
            try:
                got.append(self._queue.get_nowait())
            except queue.Empty:
                break
        # scoring requests all run now; generation requests join while the batch has room (in order)
        free = self.max_batch - len(self._rows)
        new: list[_Pending] = []
        back: list[_Pending] = []
        rows_new = 0
        for p in got:
            if p.req.choices:
                new.append(p)
            elif back or (rows_new + p.req.n > free and (rows_new or self._rows)):
                back.append(p)
            else:
                new.append(p)
                rows_new += p.req.n
        for p in reversed(back):
            self._requeue_front(p)
        return new

    def _requeue_front(self, p: _Pending) -> None:
        with self._queue.mutex:
            self._queue.queue.appendleft(p)
            self._queue.not_empty.notify()

    def _run_guarded(self, pending: _Pending, fn) -> None:
        try:
            fn(pending)
        except Exception as exc:  # noqa: BLE001
            traceback.print_exc()
            self._fail(pending, exc)

    @staticmethod
    def _fail(pending: _Pending, exc: BaseException) -> None:
        if not pending.done.is_set():
            pending.error = exc
            pending.done.set()

    # -- generation
    def _call(self, cache, **kwargs):
        """The model's forward with a key/value cache (named ``cache`` from transformers 5.2x on,
        ``past_key_values`` before); returns ``(logits, cache)``."""
        out = self.model(**{self._cache_kw: cache}, use_cache=True, **kwargs)
        new_cache = getattr(out, "cache", None)
        if new_cache is None:
            new_cache = getattr(out, "past_key_values", None)
        return out.logits, new_cache

    # -- prompts: prefill with a prefix cache
    def _prefill(self, ids: list[int]):
        """Run the prompt through the model, reusing the key/values of the longest prefix it shares with
        a recent prompt (the chat template, the system prompt and the class block repeat across the
        pipeline's calls). Returns ``(logits of the last position, [(keys, values)] per layer)`` with
        batch size 1."""
        torch = self.torch
        from transformers import DynamicCache

        use, prefix = self._lookup_prefix(ids)
        if prefix is not None:
            cache = DynamicCache(ddp_cache_data=prefix, config=self.model.config)
        else:
            cache = DynamicCache(config=self.model.config)
        inp = torch.tensor([ids[use:]], dtype=torch.long)
        positions = torch.arange(use, len(ids), dtype=torch.long).unsqueeze(0)
        logits, cache = self._call(cache, input_ids=inp, position_ids=positions, logits_to_keep=1)
        self.stats["prompt_tokens_run"] += len(ids) - use
        layers = [(layer.keys, layer.values) for layer in cache.layers]
        self._remember(tuple(ids), layers)
        return logits[0, -1, :].float(), layers

    def _lookup_prefix(self, ids: list[int]):
        """``(use, [(keys, values)] per layer)``: the key/values of the first ``use`` tokens of ``ids``
        from the longest cached prefix (at least one token of ``ids`` is left to run), or ``(0, None)``."""
        best_len, best_key = 0, None
        for key in self._prefixes:
            n = _common_prefix(key, ids)
            if n > best_len:
                best_len, best_key = n, key
        use = min(best_len, len(ids) - 1)  # at least one token runs, for the next-token logits
        if best_key is None or use < MIN_PREFIX_TOKENS:
            return 0, None
        layers = self._prefixes[best_key]
        self._prefixes.move_to_end(best_key)
        self.stats["prefix_tokens_reused"] += use
        return use, [(k[:, :, :use], v[:, :, :use]) for k, v in layers]

    def _remember(self, key: tuple[int, ...], layers) -> None:
        self._prefixes[key] = layers
        self._prefixes.move_to_end(key)
        while sum(len(k) for k in self._prefixes) > self.prefix_cache_tokens and len(self._prefixes) > 1:
            self._prefixes.popitem(last=False)

    def _admit(self, pendings: list[_Pending]) -> None:
        torch = self.torch
        rows: list[_Row] = []
        per_row_layers = []
        logits = []
        for p in pendings:
            self.stats["requests"] += 1
            last, layers = self._prefill(p.prompt_ids)
            for i in range(p.req.n):
                gen = None
                if p.req.seed is not None:
                    gen = torch.Generator().manual_seed(int(p.req.seed) * 1000 + i)
                rows.append(_Row(p, i, gen))
                per_row_layers.append(layers)
                logits.append(last)
        self._merge(rows, per_row_layers)
        self._sample(rows, torch.stack(logits))

    def _merge(self, rows: list[_Row], per_row_layers) -> None:
        """Add rows (each with its own prompt key/values, batch 1) to the running batch: every sequence
        is left-padded to the longest, and the attention mask hides the padding."""
        torch = self.torch
        from transformers import DynamicCache

        lengths = [int(layers[0][0].shape[2]) for layers in per_row_layers]
        t_old = int(self._mask.shape[1]) if self._rows else 0
        width = max([t_old] + lengths)

        def pad(x, t):  # left-pad along the time axis (dim 2) to width
            if t == width:
                return x
            shape = list(x.shape)
            shape[2] = width - t
            return torch.cat([x.new_zeros(shape), x], dim=2)

        data = []
        for li in range(len(per_row_layers[0])):
            ks = [pad(layers[li][0], t) for layers, t in zip(per_row_layers, lengths)]
            vs = [pad(layers[li][1], t) for layers, t in zip(per_row_layers, lengths)]
            if self._rows:
                old = self._cache.layers[li]
                ks.insert(0, pad(old.keys, t_old))
                vs.insert(0, pad(old.values, t_old))
            data.append((torch.cat(ks, dim=0), torch.cat(vs, dim=0)))
        masks = [torch.cat([torch.zeros((1, width - t), dtype=torch.long), torch.ones((1, t), dtype=torch.long)], dim=1)
                 for t in lengths]
        if self._rows:
            old_mask = self._mask
            if t_old < width:
                old_mask = torch.cat([torch.zeros((old_mask.shape[0], width - t_old), dtype=torch.long), old_mask], 1)
            masks.insert(0, old_mask)
        self._cache = _growing(DynamicCache(ddp_cache_data=data, config=self.model.config))
        self._mask = torch.cat(masks, dim=0)
        self._rows = self._rows + rows
        self.stats["max_rows"] = max(self.stats["max_rows"], len(self._rows))

    def _step(self) -> None:
        torch = self.torch
        rows = self._rows
        last = torch.tensor([[r.out_ids[-1]] for r in rows], dtype=torch.long)
        positions = torch.tensor([[r.next_pos] for r in rows], dtype=torch.long)
        self._mask = torch.cat([self._mask, torch.ones((len(rows), 1), dtype=torch.long)], dim=1)
        logits, self._cache = self._call(self._cache, input_ids=last, attention_mask=self._mask,
                                         position_ids=positions, logits_to_keep=1)
        logits = logits[:, -1, :].float()
        self.stats["steps"] += 1
        self._sample(rows, logits)

    def _sample(self, rows: list[_Row], logits) -> None:
        torch = self.torch
        logp_all = None
        if any(r.req.logprobs for r in rows):
            logp_all = torch.log_softmax(logits, dim=-1)
        tokens = self._draw(rows, logits)
        for b, r in enumerate(rows):
            tok = tokens[b]
            r.out_ids.append(tok)
            r.next_pos += 1
            self.stats["tokens"] += 1
            if logp_all is not None and r.req.logprobs:
                r.logprobs.append(self._token_logprob(logp_all[b], tok, r.req.top_logprobs))
            if tok in self.eos:
                r.finish = "stop"
            else:
                self._check_stop(r)
            if r.finish is None and len(r.out_ids) >= r.req.max_tokens:
                r.finish = "length"
        finished = [i for i, r in enumerate(rows) if r.finish is not None]
        if finished:
            for i in finished:
                self._complete_row(rows[i])
            keep = [i for i, r in enumerate(rows) if r.finish is None]
            self._prune(keep)

    def _draw(self, rows: list[_Row], logits) -> list[int]:
        """The next token of every row, all rows at once: argmax for greedy rows; for sampled rows a
        softmax at each row's temperature, each row's nucleus (``top_p``) looked for among the 256 most
        likely tokens first (a full sort only when they hold less than ``top_p``), and an inverse-CDF draw
        with one uniform number from the row's own generator. Per-row sorts and ``torch.multinomial``
        cost 50 ms of a 180 ms 16-row step; this costs a few."""
        torch = self.torch
        out = [0] * len(rows)
        greedy = [b for b, r in enumerate(rows) if r.req.temperature <= 1e-5]
        sampled = [b for b, r in enumerate(rows) if r.req.temperature > 1e-5]
        if greedy:
            picks = torch.argmax(logits.index_select(0, torch.tensor(greedy)), dim=-1).tolist()
            for b, t in zip(greedy, picks):
                out[b] = int(t)
        if not sampled:
            return out
        temps = torch.tensor([rows[b].req.temperature for b in sampled], dtype=logits.dtype).unsqueeze(1)
        probs = torch.softmax(logits.index_select(0, torch.tensor(sampled)) / temps, dim=-1)
        us = torch.cat([torch.rand(1, generator=rows[b].generator, dtype=probs.dtype) for b in sampled])
        k = min(TOP_CANDIDATES, probs.shape[1])
        nucleus = [j for j, b in enumerate(sampled) if rows[b].req.top_p < 1.0]
        top_vals = top_ids = None
        if nucleus:
            top_vals, top_ids = torch.topk(probs, k, dim=-1)  # sorted, most likely first
        full: list[int] = []
        for j, b in enumerate(sampled):
            p = max(rows[b].req.top_p, 1e-6)
            if p >= 1.0:
                full.append(j)
                continue
            vals, ids = top_vals[j], top_ids[j]
            if float(vals.sum()) < p:  # the nucleus reaches past the top k: sort the whole row
                vals, ids = torch.sort(probs[j], descending=True)
            keep = int(((vals.cumsum(0) - vals) < p).sum())
            cdf = vals[:keep].cumsum(0)
            pos = min(int(torch.searchsorted(cdf, us[j:j + 1] * cdf[-1], right=True)), keep - 1)
            out[b] = int(ids[pos])
        if full:
            sel = torch.tensor(full)
            cdf = probs.index_select(0, sel).cumsum(-1)
            pos = torch.searchsorted(cdf, (us.index_select(0, sel) * cdf[:, -1]).unsqueeze(1), right=True)
            for j, t in zip(full, pos.squeeze(1).clamp(max=probs.shape[1] - 1).tolist()):
                out[sampled[j]] = int(t)
        return out

    def _check_stop(self, r: _Row) -> None:
        if not r.req.stop:
            return
        text = self.tokenizer.decode(r.out_ids, skip_special_tokens=True)
        cut = min((text.find(s) for s in r.req.stop if s in text), default=-1)
        if cut >= 0:
            r.finish = "stop"
            r.text = text[:cut]

    def _token_logprob(self, logp, tok: int, top: int) -> dict[str, Any]:
        torch = self.torch
        piece = self.tokenizer.decode([tok])
        entry: dict[str, Any] = {"token": piece, "logprob": float(logp[tok]),
                                 "bytes": list(piece.encode("utf-8")), "top_logprobs": []}
        if top:
            vals, idx = torch.topk(logp, top)
            for v, i in zip(vals.tolist(), idx.tolist()):
                s = self.tokenizer.decode([i])
                entry["top_logprobs"].append({"token": s, "logprob": float(v), "bytes": list(s.encode("utf-8"))})
        return entry

    def _prune(self, keep: list[int]) -> None:
        torch = self.torch
        if not keep:
            self._rows, self._cache, self._mask = [], None, None
            return
        idx = torch.tensor(keep, dtype=torch.long)
        self._rows = [self._rows[i] for i in keep]
        self._mask = self._mask.index_select(0, idx)
        used = self._mask.any(dim=0).nonzero()
        start = int(used[0]) if len(used) else 0
        for layer in self._cache.layers:
            layer.keys = layer.keys.index_select(0, idx)[:, :, start:, :]
            layer.values = layer.values.index_select(0, idx)[:, :, start:, :]
        self._mask = self._mask[:, start:]

    def _complete_row(self, r: _Row) -> None:
        if not r.text:
            ids = [t for t in r.out_ids if t not in self.eos]
            r.text = self.tokenizer.decode(ids, skip_special_tokens=True)
        choice: dict[str, Any] = {"index": r.index, "message": {"role": "assistant", "content": r.text},
                                  "finish_reason": r.finish, "logprobs": None}
        if r.req.logprobs:
            choice["logprobs"] = {"content": r.logprobs}
        p = r.pending
        p.choices[r.index] = choice
        p.completion_tokens += len(r.out_ids)
        p.rows_left -= 1
        if p.rows_left == 0:
            p.result = {"choices": p.choices, "prompt_tokens": len(p.prompt_ids),
                        "completion_tokens": p.completion_tokens}
            p.done.set()

    # -- constrained answers by scoring
    def _choice_ids(self, choices: Sequence[str]) -> list[list[int]]:
        """The tokens of the assistant answering each choice: its text, then end-of-turn."""
        return [list(self.tokenizer(c, add_special_tokens=False)["input_ids"]) + [self.end_of_turn] for c in choices]

    def _score_chunks(self, pendings: list[_Pending]) -> list[list[_Pending]]:
        """Scoring requests in groups of at most ``SCORE_BATCH_ROWS`` candidate rows (one request alone
        when it has more): each group's candidates run in one forward pass."""
        chunks: list[list[_Pending]] = []
        rows = 0
        for p in pendings:
            c = len(p.req.choices or ())
            if chunks and rows + c <= SCORE_BATCH_ROWS:
                chunks[-1].append(p)
                rows += c
            else:
                chunks.append([p])
                rows = c
        return chunks

    def _score_batch(self, pendings: list[_Pending]) -> None:
        with self.torch.inference_mode():
            self._score_batch_run(pendings)

    def _score_batch_run(self, pendings: list[_Pending]) -> None:
        """Answer several constrained requests in **one forward pass**. Row i holds the part of prompt i
        that is not in the prefix cache, followed by every candidate answer (its tokens but the last);
        a custom attention mask lets each candidate see the prompt and its own earlier tokens only, so
        one row scores all candidates without copying the prompt's key/values per candidate. The cached
        prefixes are left-padded to the longest. The log-likelihoods equal those of scoring each request
        alone, the prompt then every candidate in a batch (tests/llm/test_serve.py, up to float rounding);
        each full prompt's key/values go into the prefix cache as a prefill would."""
        torch = self.torch
        from transformers import DynamicCache

        items = []  # (pending, ids, use, prefix layers, seqs, input tokens, positions)
        for p in pendings:
            try:
                ids = p.prompt_ids
                seqs = self._choice_ids(p.req.choices)
                use, prefix = self._lookup_prefix(ids)
                inp = list(ids[use:])
                pos = list(range(use, len(ids)))
                for sq in seqs:
                    inp += sq[:-1]
                    pos += list(range(len(ids), len(ids) + len(sq) - 1))
                items.append((p, ids, use, prefix, seqs, inp, pos))
            except Exception as exc:  # noqa: BLE001 - this request fails, the others go on
                traceback.print_exc()
                self._fail(p, exc)
        if not items:
            return
        try:
            width = max(it[2] for it in items)
            q = max(len(it[5]) for it in items)
            b = len(items)
            cache = DynamicCache(config=self.model.config)
            if width:
                ref = next(it[3] for it in items if it[3] is not None)
                data = []
                for li, (k0, v0) in enumerate(ref):
                    shape = [b, k0.shape[1], width, k0.shape[3]]
                    k, v = k0.new_zeros(shape), v0.new_zeros(shape)
                    for i, it in enumerate(items):
                        if it[2]:
                            k[i, :, width - it[2]:] = it[3][li][0][0]
                            v[i, :, width - it[2]:] = it[3][li][1][0]
                    data.append((k, v))
                cache = DynamicCache(ddp_cache_data=data, config=self.model.config)
            # queries are left-padded, so every row's candidates end at the last position and only the
            # logits of the last ``keep`` positions are computed (not the whole prompt's)
            tokens = torch.full((b, q), self.pad_id, dtype=torch.long)
            positions = torch.zeros((b, q), dtype=torch.long)
            mask = torch.zeros((b, 1, q, width + q), dtype=torch.bool)
            keep = 1
            for i, (p, ids, use, prefix, seqs, inp, pos) in enumerate(items):
                off = q - len(inp)  # leading padding of this row
                tokens[i, off:] = torch.tensor(inp, dtype=torch.long)
                positions[i, off:] = torch.tensor(pos, dtype=torch.long)
                n_suffix = len(ids) - use
                keep = max(keep, len(inp) - n_suffix + 1)
                for j in range(off):  # padding: sees itself only
                    mask[i, 0, j, width + j] = True
                mask[i, 0, off:, width - use: width] = True  # the rest sees the cached prompt
                s0 = width + off
                causal = torch.ones((n_suffix, n_suffix), dtype=torch.bool).tril()
                mask[i, 0, off: off + n_suffix, s0: s0 + n_suffix] = causal
                at = off + n_suffix
                for sq in seqs:
                    m = len(sq) - 1
                    mask[i, 0, at: at + m, s0: s0 + n_suffix] = True
                    mask[i, 0, at: at + m, width + at: width + at + m] = torch.ones((m, m), dtype=torch.bool).tril()
                    at += m
            # an additive float mask: read the same by the sdpa and the eager attention (eager adds it)
            dtype = self.model.dtype
            additive = torch.zeros(mask.shape, dtype=dtype).masked_fill_(~mask, torch.finfo(dtype).min)
            logits, cache = self._call(cache, input_ids=tokens, attention_mask=additive, position_ids=positions,
                                       logits_to_keep=keep)
            self.stats["prompt_tokens_run"] += sum(len(it[1]) - it[2] for it in items)
        except Exception as exc:  # noqa: BLE001 - the whole group fails, the engine keeps serving
            traceback.print_exc()
            for it in items:
                self._fail(it[0], exc)
            return
        for i, (p, ids, use, prefix, seqs, inp, pos) in enumerate(items):
            n_suffix = len(ids) - use
            s0 = width + q - len(inp)  # where this row's prompt suffix starts in the cache

            def own(x, i=i, use=use, s0=s0, n_suffix=n_suffix):  # row i's prompt: cached prefix + the part run here
                return torch.cat([x[i:i + 1, :, width - use: width], x[i:i + 1, :, s0: s0 + n_suffix]], 2)

            self._remember(tuple(ids), [(own(layer.keys), own(layer.values)) for layer in cache.layers])
            rest = len(inp) - n_suffix  # candidate tokens after the prompt suffix
            lp = torch.log_softmax(logits[i, keep - 1 - rest:].float(), dim=-1)  # from the prompt's last token on
            totals = []
            at = 0
            for sq in seqs:
                total = float(lp[0, sq[0]])
                for t in range(1, len(sq)):
                    total += float(lp[at + t, sq[t]])
                at += len(sq) - 1
                totals.append(total)
            self.stats["scored"] += 1
            self._run_guarded(p, lambda pending, t=totals, q_=seqs: self._answer_scored(pending, t, q_))

    def _answer_scored(self, pending: _Pending, totals: list[float], seqs: list[list[int]]) -> None:
        req = pending.req
        self.stats["requests"] += 1
        best = max(range(len(totals)), key=lambda i: totals[i])
        peak = max(totals)
        weights = [math.exp(t - peak) for t in totals]
        z = sum(weights)
        posterior = [w / z for w in weights]
        value = req.choices[best]
        content = json.dumps({req.choice_key: value}, ensure_ascii=False) if req.choice_key else value
        choice: dict[str, Any] = {"index": 0, "message": {"role": "assistant", "content": content},
                                  "finish_reason": "stop", "logprobs": None}
        if req.logprobs:
            choice["logprobs"] = {"content": self._choice_logprobs(req, seqs, posterior, best)}
        pending.result = {
            "choices": [{**choice, "index": i} for i in range(req.n)],
            "prompt_tokens": len(pending.prompt_ids),
            "completion_tokens": len(seqs[best]) * req.n,
        }
        pending.done.set()

    def _choice_logprobs(self, req: ChatRequest, seqs: list[list[int]], posterior: list[float],
                         best: int) -> list[dict[str, Any]]:
        """Tokens of the chosen answer with log-probabilities that split its posterior along the
        token prefixes it shares with the other choices (their sum is log posterior[best]); the JSON
        scaffolding is forced (log-probability 0), except that the closing ``"}`` carries the chance of
        stopping there (non-zero only when a longer choice starts with this one)."""

        def esc(s: str) -> str:
            return json.dumps(s, ensure_ascii=False)[1:-1] if req.choice_key else s

        def entry(tok: str, lp: float, alts: list[tuple[str, float]]) -> dict[str, Any]:
            top = [{"token": t, "logprob": a, "bytes": list(t.encode("utf-8"))} for t, a in alts[: req.top_logprobs]]
            return {"token": tok, "logprob": lp, "bytes": list(tok.encode("utf-8")), "top_logprobs": top}

        out: list[dict[str, Any]] = []
        if req.choice_key:
            head = '{' + json.dumps(req.choice_key, ensure_ascii=False) + ': "'
            out.append(entry(head, 0.0, [(head, 0.0)]))
        path = seqs[best]
        mass_prefix = 1.0
        for j, tok in enumerate(path):
            # probability mass of every choice continuing the prefix with each next token
            nxt: dict[int, float] = {}
            for c, s in enumerate(seqs):
                if s[:j] == path[:j]:
                    nxt[s[j]] = nxt.get(s[j], 0.0) + posterior[c]
            here = nxt[tok]
            lp = math.log(max(here / mass_prefix, 1e-300)) if mass_prefix > 0 else 0.0
            alts = sorted(((self._piece(t), math.log(max(m / mass_prefix, 1e-300))) for t, m in nxt.items()),
                          key=lambda a: -a[1])
            if tok == self.end_of_turn:  # the value ends here
                tail = '"}' if req.choice_key else ""
                if out and tail:
                    out.append(entry(tail, lp, [(tail if a[0] == "" else esc(a[0]), a[1]) for a in alts]))
                elif out:
                    out[-1]["logprob"] += lp
                else:
                    out.append(entry("", lp, []))
            else:
                piece = esc(self._piece(tok))
                out.append(entry(piece, lp, [(esc(a[0]), a[1]) for a in alts]))
            mass_prefix = here
        return out

    def _piece(self, tok: int) -> str:
        return "" if tok == self.end_of_turn else self.tokenizer.decode([tok])


# ----------------------------------------------------------------------------- HTTP


def make_server(engine: Engine, model_id: str, port: int) -> ThreadingHTTPServer:
    started = int(time.time())

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "promptmix-local/1"

        def log_message(self, fmt: str, *args: Any) -> None:  # one line per request in the server log
            sys.stderr.write("%s - %s\n" % (self.address_string(), fmt % args))

        def _json(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _error(self, status: int, message: str, code: str = "invalid_request_error", param: str | None = None):
            self._json(status, {"error": {"message": message, "type": code, "code": code, "param": param}})

        def do_GET(self) -> None:  # noqa: N802
            path = self.path.split("?", 1)[0].rstrip("/")
            if path == "/health":
                self._json(200, {"status": "ok"})
            elif path in ("/v1/models", "/models"):
                self._json(200, {"object": "list", "data": [
                    {"id": model_id, "object": "model", "created": started, "owned_by": "promptmix"}]})
            elif path in ("/v1/stats", "/stats"):
                self._json(200, dict(engine.stats))
            else:
                self._error(404, f"no route {self.path}", "not_found")

        def do_POST(self) -> None:  # noqa: N802
            path = self.path.split("?", 1)[0].rstrip("/")
            if path not in ("/v1/chat/completions", "/chat/completions"):
                self._error(404, f"no route {self.path}", "not_found")
                return
            try:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
            except (ValueError, json.JSONDecodeError):
                self._error(400, "the request body is not valid JSON")
                return
            try:
                req = parse_request(body, model_id)
                pending = engine.submit(req)
            except RequestError as exc:
                self._error(exc.status, str(exc), exc.code, exc.param)
                return
            pending.done.wait()
            if pending.error is not None or pending.result is None:
                self._error(500, f"generation failed: {pending.error}", "server_error")
                return
            res = pending.result
            body_out = {
                "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
                "object": "chat.completion",
                "created": int(pending.created),
                "model": model_id,
                "choices": res["choices"],
                "usage": {"prompt_tokens": res["prompt_tokens"], "completion_tokens": res["completion_tokens"],
                          "total_tokens": res["prompt_tokens"] + res["completion_tokens"]},
            }
            if not req.stream:
                self._json(200, body_out)
                return
            # stream: the whole answer as one chunk per choice, then [DONE]
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Connection", "close")
            self.end_headers()
            for ch in res["choices"]:
                chunk = {"id": body_out["id"], "object": "chat.completion.chunk", "created": body_out["created"],
                         "model": model_id, "choices": [{"index": ch["index"], "delta": {
                             "role": "assistant", "content": ch["message"]["content"]},
                             "logprobs": ch.get("logprobs"), "finish_reason": ch["finish_reason"]}]}
                self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode("utf-8"))
            self.wfile.write(b"data: [DONE]\n\n")
            self.close_connection = True

    server = ThreadingHTTPServer((HOST, port), Handler)
    server.daemon_threads = True
    return server


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m promptmix_core.llm.serve", description=__doc__.split("\n")[0])
    ap.add_argument("--model-dir", required=True, help="converted model folder (promptmix prepare-model)")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--model-id", default=None, help="model name requests must use (default: the folder name)")
    ap.add_argument("--dtype", default="auto", choices=("auto", "float32", "bfloat16"),
                    help="weights: auto (bfloat16 where the CPU has it natively, else float32)")
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "2") or 2))
    ap.add_argument("--max-batch", type=int, default=MAX_BATCH_ROWS, help="most sequences decoded at once")
    args = ap.parse_args(argv)
    folder = Path(args.model_dir)
    model_id = args.model_id or folder.name
    t0 = time.perf_counter()
    engine = Engine(folder, threads=args.threads, max_batch=args.max_batch, dtype=args.dtype).start()
    server = make_server(engine, model_id, args.port)  # listen only once the model is loaded
    print(f"serving {model_id} on http://{HOST}:{args.port}/v1 (loaded in {time.perf_counter() - t0:.1f} s, "
          f"{args.threads} threads, batches of up to {args.max_batch})", file=sys.stderr, flush=True)
    import signal

    def on_term(signum, frame):
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_term)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        engine.stop()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
