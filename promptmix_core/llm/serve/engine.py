"""The engine: one thread owns the model and decodes every request in flight in one batch.

Requests queue up; when the engine is idle it waits a few milliseconds for more to arrive, runs the new
prompts (reusing the prefix cache, :mod:`.cache`), and merges their key/values into the running batch
(left-padded, masked) **between decoding steps** (continuous batching): a request that arrives while
others decode joins them at the next step; finished rows leave the batch at once. Each row samples
with its own settings (:mod:`.sampling`); constrained requests are answered by scoring (:mod:`.scoring`).

A request whose client went away is **cancelled** (:meth:`Pending.cancel`, called by the HTTP layer):
its rows leave the batch before the next step and a queued one never starts, so abandoned requests
with huge ``max_tokens`` cannot starve the others.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import queue
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Sequence

from . import attention, sampling
from .cache import PREFIX_CACHE_TOKENS, PrefixCache, batch_cache, plain_cache
from .protocol import CHARS_PER_TOKEN_LIMIT, ChatRequest, RequestError
from .scoring import Scorer
from .weights import model_dtype

MAX_BATCH_ROWS = 16
GATHER_SECONDS = 0.015  # an idle engine waits this long for more requests before it starts a batch
MAX_QUEUED = 256  # requests waiting or running; more are answered 503 with Retry-After


class Pending:
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
        self.cancelled = False

    def finish(self, result: dict[str, Any]) -> None:
        self.result = result
        self.done.set()

    def cancel(self) -> None:
        """The client is gone: the engine drops this request's rows before its next step."""
        self.cancelled = True


class Row:
    """One sequence being generated (a request with n > 1 has n rows)."""

    def __init__(self, pending: Pending, index: int, generator):
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
                 dtype: str = "auto", max_queued: int = MAX_QUEUED):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        torch.set_num_threads(max(1, int(threads)))
        self.torch = torch
        self.model_dir = Path(model_dir)
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.model_dir))
        self.dtype = model_dtype(dtype)
        # bfloat16: matrix products about 2.5x faster on CPUs with AMX/AVX-512-BF16; its attention is
        # faster in the eager implementation there, here without copying the key/values per query head
        # (attention.py)
        self.model = AutoModelForCausalLM.from_pretrained(
            str(self.model_dir), dtype=getattr(torch, self.dtype),
            **({"attn_implementation": attention.register()} if self.dtype == "bfloat16" else {}))
        self.model.eval()
        params = inspect.signature(self.model.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"
        self.max_batch = int(max_batch)
        self.max_queued = int(max_queued)
        self.gather_seconds = float(gather_seconds)
        self.context = int(getattr(self.model.config, "max_position_embeddings", 2048) or 2048)
        self._tokens(self.model.generation_config.eos_token_id)
        self._queue: "queue.Queue[Pending]" = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="engine", daemon=True)
        self._open = 0  # requests submitted and not done (queued or running)
        self._open_lock = threading.Lock()
        # running batch state
        self._rows: list[Row] = []
        self._cache = None
        self._mask = None  # [B, T] attention mask of the cache
        self.stats = {"requests": 0, "steps": 0, "tokens": 0, "max_rows": 0, "scored": 0, "cancelled": 0,
                      "prompt_tokens_run": 0, "prefix_tokens_reused": 0, "rows": 0, "open": 0}
        self.prefixes = PrefixCache(prefix_cache_tokens)
        self.scorer = Scorer(self)

    def _tokens(self, model_eos) -> None:
        eos: set[int] = set()
        for source in (model_eos, self.tokenizer.eos_token_id):
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

    # -- public
    @property
    def max_prompt_chars(self) -> int:
        """A prompt longer than this cannot fit the context: refused before it is tokenized."""
        return self.context * CHARS_PER_TOKEN_LIMIT

    def start(self) -> "Engine":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def prompt_ids(self, messages: Sequence[dict[str, str]]) -> list[int]:
        text = self.tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def submit(self, req: ChatRequest) -> Pending:
        """Queue a request; :class:`RequestError` 503 (with ``retry_after``) when ``max_queued`` are open,
        400 when the prompt leaves no room in the context. ``max_tokens`` is clamped to that room."""
        with self._open_lock:
            if self._open >= self.max_queued:
                raise RequestError(f"the local model server is busy ({self._open} requests open); retry shortly",
                                   status=503, code="server_busy", retry_after=1)
            self._open += 1
        try:
            ids = self.prompt_ids(req.messages)
            budget = self.context - len(ids)
            if budget < 1:
                raise RequestError(f"the prompt has {len(ids)} tokens; this model reads at most {self.context}",
                                   code="context_length_exceeded", param="messages")
        except BaseException:
            self._closed()
            raise
        req.max_tokens = min(req.max_tokens, budget)
        pending = Pending(req, ids)
        self._queue.put(pending)
        return pending

    def _closed(self) -> None:
        with self._open_lock:
            self._open -= 1

    def release(self, pending: Pending) -> None:
        """The HTTP layer is done with ``pending`` (answered, or its client gone)."""
        if not getattr(pending, "_released", False):
            pending._released = True
            self._closed()

    @property
    def open_requests(self) -> int:
        return self._open

    # -- the loop
    def _loop(self) -> None:
        with self.torch.inference_mode():
            while not self._stop.is_set():
                try:
                    self._drop_cancelled()
                    new = self._take_new()
                    scoring = [p for p in new if p.req.choices]
                    generating = [p for p in new if not p.req.choices]
                    with self._timed("score_s"):
                        for chunk in self.scorer.chunks(scoring):
                            self.scorer.score_batch(chunk)
                    if generating:
                        with self._timed("admit_s"):
                            self._admit(generating)
                    self._drop_cancelled()
                    if self._rows:
                        with self._timed("step_s"):
                            self._step()
                    self.stats["rows"], self.stats["open"] = len(self._rows), self._open
                except Exception as exc:  # noqa: BLE001 - fail the rows in flight, keep serving
                    traceback.print_exc()
                    for row in self._rows:
                        self.fail(row.pending, exc)
                    self._rows, self._cache, self._mask = [], None, None

    @contextlib.contextmanager
    def _timed(self, name: str):
        """Adds the seconds of the block to ``stats[name]`` (``score_s``, ``admit_s``: prefill + merge,
        ``step_s``, ``merge_s``, ``prune_s``): with the wall time of a run they tell compute from waiting."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.stats[name] = round(self.stats.get(name, 0.0) + time.perf_counter() - t0, 3)

    def _take_new(self) -> list[Pending]:
        got: list[Pending] = []
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
        for p in got:
            if p.cancelled:
                self._count_cancelled(p)
        got = [p for p in got if not p.cancelled]
        # scoring requests all run now; generation requests join while the batch has room (in order)
        free = self.max_batch - len(self._rows)
        new: list[Pending] = []
        back: list[Pending] = []
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

    def _requeue_front(self, p: Pending) -> None:
        with self._queue.mutex:
            self._queue.queue.appendleft(p)
            self._queue.not_empty.notify()

    def _count_cancelled(self, p: Pending) -> None:
        self.stats["cancelled"] += 1
        self.fail(p, RuntimeError("cancelled: the client went away"))

    def _drop_cancelled(self) -> None:
        """Rows of requests whose client went away leave the batch now."""
        if not any(r.pending.cancelled for r in self._rows):
            return
        gone = {id(r.pending): r.pending for r in self._rows if r.pending.cancelled}
        for p in gone.values():
            self._count_cancelled(p)
        self._prune([i for i, r in enumerate(self._rows) if not r.pending.cancelled])

    def run_guarded(self, pending: Pending, fn: Callable[[Pending], None]) -> None:
        try:
            fn(pending)
        except Exception as exc:  # noqa: BLE001
            traceback.print_exc()
            self.fail(pending, exc)

    @staticmethod
    def fail(pending: Pending, exc: BaseException) -> None:
        if not pending.done.is_set():
            pending.error = exc
            pending.done.set()

    # -- the model
    def call(self, cache, **kwargs):
        """The model's forward with a key/value cache (named ``cache`` from transformers 5.2x on,
        ``past_key_values`` before); returns ``(logits, cache)``."""
        out = self.model(**{self._cache_kw: cache}, use_cache=True, **kwargs)
        new_cache = getattr(out, "cache", None)
        if new_cache is None:
            new_cache = getattr(out, "past_key_values", None)
        return out.logits, new_cache

    def prefill(self, ids: list[int]):
        """Run the prompt through the model, reusing the key/values of the longest prefix it shares with
        a recent prompt (the chat template, the system prompt and the class block repeat across the
        pipeline's calls). Returns ``(logits of the last position, [(keys, values)] per layer)`` with
        batch size 1."""
        torch = self.torch
        use, prefix = self.prefixes.lookup(ids)
        cache = plain_cache(self.model.config, prefix)
        inp = torch.tensor([ids[use:]], dtype=torch.long)
        positions = torch.arange(use, len(ids), dtype=torch.long).unsqueeze(0)
        logits, cache = self.call(cache, input_ids=inp, position_ids=positions, logits_to_keep=1)
        self.stats["prompt_tokens_run"] += len(ids) - use
        self.stats["prefix_tokens_reused"] = self.prefixes.reused
        layers = [(layer.keys, layer.values) for layer in cache.layers]
        self.prefixes.remember(ids, layers)
        return logits[0, -1, :].float(), layers

    # -- generation
    def _admit(self, pendings: list[Pending]) -> None:
        torch = self.torch
        rows: list[Row] = []
        per_row_layers = []
        logits = []
        for p in pendings:
            self.stats["requests"] += 1
            last, layers = self.prefill(p.prompt_ids)
            for i in range(p.req.n):
                gen = None
                if p.req.seed is not None:
                    gen = torch.Generator().manual_seed(int(p.req.seed) * 1000 + i)
                rows.append(Row(p, i, gen))
                per_row_layers.append(layers)
                logits.append(last)
        with self._timed("merge_s"):
            self._merge(rows, per_row_layers)
        self._sample(rows, torch.stack(logits))

    def _merge(self, rows: list[Row], per_row_layers) -> None:
        """Add rows (each with its own prompt key/values, batch 1) to the running batch: every sequence
        is left-padded to the longest, and the attention mask hides the padding."""
        torch = self.torch
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
        self._cache = batch_cache(self.model.config, data)
        self._mask = torch.cat(masks, dim=0)
        self._rows = self._rows + rows
        self.stats["max_rows"] = max(self.stats["max_rows"], len(self._rows))

    def _step(self) -> None:
        torch = self.torch
        rows = self._rows
        last = torch.tensor([[r.out_ids[-1]] for r in rows], dtype=torch.long)
        positions = torch.tensor([[r.next_pos] for r in rows], dtype=torch.long)
        self._mask = torch.cat([self._mask, torch.ones((len(rows), 1), dtype=torch.long)], dim=1)
        logits, self._cache = self.call(self._cache, input_ids=last, attention_mask=self._mask,
                                        position_ids=positions, logits_to_keep=1)
        self.stats["steps"] += 1
        self._sample(rows, logits[:, -1, :].float())

    def _sample(self, rows: list[Row], logits) -> None:
        torch = self.torch
        logp_all = torch.log_softmax(logits, dim=-1) if any(r.req.logprobs for r in rows) else None
        tokens = sampling.draw(torch, rows, logits)
        for b, r in enumerate(rows):
            tok = tokens[b]
            r.out_ids.append(tok)
            r.next_pos += 1
            self.stats["tokens"] += 1
            if logp_all is not None and r.req.logprobs:
                r.logprobs.append(sampling.token_logprob(torch, self.tokenizer, logp_all[b], tok, r.req.top_logprobs))
            if tok in self.eos:
                r.finish = "stop"
            else:
                cut = sampling.stop_cut(self.tokenizer, r.out_ids, r.req.stop)
                if cut is not None:
                    r.finish, r.text = "stop", cut
            if r.finish is None and len(r.out_ids) >= r.req.max_tokens:
                r.finish = "length"
        finished = [r for r in rows if r.finish is not None]
        if finished:
            # the rows leave the batch (and the stats) before their answers go out, so a client that
            # reads /v1/stats after its answer never sees its own rows still in the batch. Indexes into
            # the whole batch: ``rows`` is only the newly admitted ones after a prefill
            self._prune([i for i, r in enumerate(self._rows) if r.finish is None])
            self.stats["rows"] = len(self._rows)
            for r in finished:
                self._complete_row(r)

    def _prune(self, keep: list[int]) -> None:
        torch = self.torch
        if not keep:
            self._rows, self._cache, self._mask = [], None, None
            return
        if len(keep) == len(self._rows):
            return
        with self._timed("prune_s"):
            idx = torch.tensor(keep, dtype=torch.long)
            self._rows = [self._rows[i] for i in keep]
            self._mask = self._mask.index_select(0, idx)
            used = self._mask.any(dim=0).nonzero()
            start = int(used[0]) if len(used) else 0
            for layer in self._cache.layers:
                layer.keys = layer.keys.index_select(0, idx)[:, :, start:, :]
                layer.values = layer.values.index_select(0, idx)[:, :, start:, :]
            self._mask = self._mask[:, start:]

    def _complete_row(self, r: Row) -> None:
        if not r.text:
            r.text = self.tokenizer.decode([t for t in r.out_ids if t not in self.eos], skip_special_tokens=True)
        choice: dict[str, Any] = {"index": r.index, "message": {"role": "assistant", "content": r.text},
                                  "finish_reason": r.finish, "logprobs": None}
        if r.req.logprobs:
            choice["logprobs"] = {"content": r.logprobs}
        p = r.pending
        p.choices[r.index] = choice
        p.completion_tokens += len(r.out_ids)
        p.rows_left -= 1
        if p.rows_left == 0:
            p.finish({"choices": p.choices, "prompt_tokens": len(p.prompt_ids), "completion_tokens": p.completion_tokens})
