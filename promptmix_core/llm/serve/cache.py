"""Key/values: the running batch's cache (grows in place) and the prefix cache of recent prompts.

transformers' ``DynamicLayer`` appends each decoding step's key/values with ``torch.cat``, copying the
whole cache at every step, which on CPU cost more than the model itself (measured: 72 % of a 16-row
step). :class:`GrowingLayer` is our own layer class (a subclass of ``DynamicLayer``, built through
``Cache(layers=...)``, the constructor transformers documents for custom layers): it writes each step
into buffers with spare room. It relies on ``DynamicLayer``'s ``keys``/``values``/``is_initialized``
attributes, so it is only used with the transformers versions this project tests
(:data:`TESTED_TRANSFORMERS`, pinned the same in pyproject.toml); with any other version
:func:`batch_cache` builds a plain ``DynamicCache`` (correct, slower) and says so once on stderr.

:class:`PrefixCache` keeps the key/values of recent prompts (16384 tokens by default): a new prompt
runs only from where it stops sharing tokens with one of them.
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from typing import Any, Sequence

PREFIX_CACHE_TOKENS = 16384  # prompt tokens whose key/values are kept for reuse (about 46 KB each: 750 MB)
MIN_PREFIX_TOKENS = 16  # a shorter shared prefix is not worth a cache copy
TESTED_TRANSFORMERS = ((5, 25), (6, 0))  # [low, high): the range GrowingLayer is tested with (pyproject.toml)

_layer_class = None  # GrowingLayer, defined on first use (transformers is imported lazily)
_warned = False


def _version_tuple(text: str) -> tuple[int, int]:
    parts = []
    for piece in text.split(".")[:2]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits or 0))
    while len(parts) < 2:
        parts.append(0)
    return parts[0], parts[1]


def growing_supported(version: str | None = None) -> bool:
    """Whether ``transformers`` (``version``, default the installed one) is in the tested range."""
    if version is None:
        import transformers

        version = transformers.__version__
    low, high = TESTED_TRANSFORMERS
    return low <= _version_tuple(version) < high


def growing_layer_class():
    """The :class:`GrowingLayer` class (built on first use, so that transformers is imported lazily)."""
    global _layer_class
    if _layer_class is None:
        from transformers.cache_utils import DynamicLayer

        class GrowingLayer(DynamicLayer):
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

        _layer_class = GrowingLayer
    return _layer_class


def plain_cache(config, data: Sequence[tuple[Any, Any]] | None = None):
    """transformers' ``DynamicCache`` holding ``data`` (``[(keys, values)]`` per layer), or empty."""
    from transformers import DynamicCache

    if data is None:
        return DynamicCache(config=config)
    return DynamicCache(ddp_cache_data=list(data), config=config)


def batch_cache(config, data: Sequence[tuple[Any, Any]]):
    """The running batch's cache: :class:`GrowingLayer` layers holding ``data`` where transformers is in
    the tested range, else a plain ``DynamicCache``."""
    global _warned
    if not growing_supported():
        if not _warned:
            import transformers

            _warned = True
            print(f"transformers {transformers.__version__} is outside the tested range "
                  f"{TESTED_TRANSFORMERS}: the batch cache copies itself at every step (slower)",
                  file=sys.stderr, flush=True)
        return plain_cache(config, data)
    from transformers.cache_utils import Cache

    layer_cls = growing_layer_class()
    layers = []
    for keys, values in data:
        layer = layer_cls()
        layer.update(keys, values)
        layers.append(layer)
    return Cache(layers=layers)


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class PrefixCache:
    """Key/values (``[(keys, values)]`` per layer, batch 1) of recent prompts, least recently used out
    first once they hold more than ``max_tokens`` tokens together."""

    def __init__(self, max_tokens: int = PREFIX_CACHE_TOKENS, min_tokens: int = MIN_PREFIX_TOKENS):
        self.max_tokens = int(max_tokens)
        self.min_tokens = int(min_tokens)
        self._entries: "OrderedDict[tuple[int, ...], list]" = OrderedDict()
        self.reused = 0  # prompt tokens served from here

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, ids: Sequence[int]):
        """``(use, [(keys, values)] per layer)``: the key/values of the first ``use`` tokens of ``ids``
        from the longest cached prefix (at least one token of ``ids`` is left to run), or ``(0, None)``."""
        best_len, best_key = 0, None
        for key in self._entries:
            n = common_prefix(key, ids)
            if n > best_len:
                best_len, best_key = n, key
        use = min(best_len, len(ids) - 1)  # at least one token runs, for the next-token logits
        if best_key is None or use < self.min_tokens:
            return 0, None
        layers = self._entries[best_key]
        self._entries.move_to_end(best_key)
        self.reused += use
        return use, [(k[:, :, :use], v[:, :, :use]) for k, v in layers]

    def cached_len(self, ids: Sequence[int]) -> int:
        """How many leading tokens of ``ids`` the cache holds (no counting, no reordering)."""
        return max((common_prefix(key, ids) for key in self._entries), default=0)

    def remember(self, ids: Sequence[int], layers) -> None:
        key = tuple(ids)
        self._entries[key] = layers
        self._entries.move_to_end(key)
        while sum(len(k) for k in self._entries) > self.max_tokens and len(self._entries) > 1:
            self._entries.popitem(last=False)
