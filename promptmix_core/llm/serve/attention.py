"""Grouped-query attention without copying the key/values.

SmolLM2-135M has 9 query heads over 3 key/value heads. transformers' eager attention (the one the server
uses in bfloat16, where it beat sdpa) first ``repeat_kv``-copies every layer's keys and values three
times, at every decoding step, for the whole batch's cache: with 16 rows of ~600 tokens that copy moves
more memory than the weights do (py-spy: 8 % of the engine's time in ``repeat_kv``, 22 % in the
attention). :func:`gqa_eager_attention` computes the same thing on the grouped shapes instead (the query
heads of one key/value head are stacked along the query axis), with the same operations in the same
order: softmax in float32, the mask added, no dropout.

Registered with transformers as ``promptmix_gqa`` (attention, and its mask as eager's additive mask)
by :func:`register`; used by the engine where it loads the weights in bfloat16.
"""

from __future__ import annotations

NAME = "promptmix_gqa"
_registered = False


def gqa_eager_attention(module, query, key, value, attention_mask, scaling: float, dropout: float = 0.0, **kwargs):
    """``query`` [B, H, Q, D], ``key``/``value`` [B, Hkv, T, D], H = G * Hkv (head h reads key/value head
    h // G, as ``repeat_kv`` arranges them); ``attention_mask`` additive, [B, 1, Q, T] (or None).
    Returns ``(output [B, Q, H, D], weights [B, H, Q, T])`` like transformers' eager attention."""
    import torch

    b, h, q, d = query.shape
    hkv, t = key.shape[1], key.shape[2]
    g = h // hkv
    # [B, Hkv, G*Q, D]: the G query heads of each key/value head one after another along the query axis
    qg = query.reshape(b, hkv, g * q, d)
    # the batch cache's keys/values are views of buffers with room to grow (cache.GrowingLayer); the
    # bfloat16 matmul on such a view took 3x as long as copying it first and multiplying the copy
    # (a 16-row decoding step: 105-111 ms against 74.5 ms with the copy, docs/BENCHMARKS.md)
    key, value = key.contiguous(), value.contiguous()
    weights = torch.matmul(qg, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        weights = (weights.view(b, hkv, g, q, t) + attention_mask[:, :, None]).view(b, hkv, g * q, t)
    weights = torch.softmax(weights, dim=-1, dtype=torch.float32).to(query.dtype)
    out = torch.matmul(weights, value)  # [B, Hkv, G*Q, D]
    out = out.view(b, h, q, d).transpose(1, 2).contiguous()
    return out, weights.view(b, h, q, t)


def register() -> str:
    """Register :func:`gqa_eager_attention` (and eager's mask for it) with transformers; returns its name."""
    global _registered
    if not _registered:
        from transformers import AttentionInterface
        from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

        AttentionInterface.register(NAME, gqa_eager_attention)
        AttentionMaskInterface.register(NAME, ALL_MASK_ATTENTION_FUNCTIONS["eager"])
        _registered = True
    return NAME
