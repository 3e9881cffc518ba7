"""all-MiniLM-L6-v2 (any BERT encoder with a ``tokenizer.json``) in plain numpy: no torch, no transformers.

Importing torch and transformers and loading the model takes 3-5 s on an idle 2-core machine and
20-40 s on a busy one, which a command that only needs a few hundred sentence embeddings (the junk
flags and the judge after ``promptmix generate``) should not pay. This module reads the same
``model.safetensors`` with ``safetensors.numpy``, tokenizes with the same ``tokenizer.json`` through
``tokenizers``, and runs the encoder (embeddings, self-attention, GELU feed-forward, LayerNorm) in
float32 numpy; mean pooling and L2 normalisation as :mod:`promptmix_core.embed`. A test checks the
vectors against the torch model's (``tests/test_judge.py``).
"""

from __future__ import annotations

import json
from pathlib import Path


class NumpyBert:
    """A BERT encoder's forward pass in numpy (inference only)."""

    def __init__(self, path: str):
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        folder = Path(path)
        cfg = json.loads((folder / "config.json").read_text())
        if cfg.get("model_type") != "bert" or cfg.get("hidden_act", "gelu") != "gelu" or \
                cfg.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError("not a plain BERT encoder")
        self.heads = int(cfg["num_attention_heads"])
        self.layers = int(cfg["num_hidden_layers"])
        self.eps = float(cfg.get("layer_norm_eps", 1e-12))
        w = load_file(str(folder / "model.safetensors"))
        self.w = {k[5:] if k.startswith("bert.") else k: v for k, v in w.items()}
        if f"encoder.layer.{self.layers - 1}.output.dense.weight" not in self.w:
            raise ValueError("unexpected weight names")
        # every linear layer as (in, out) for x @ W
        for k in list(self.w):
            if k.endswith(".weight") and self.w[k].ndim == 2 and "embeddings" not in k:
                self.w[k] = self.w[k].T.copy()
        self.tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.pad_id = int(cfg.get("pad_token_id", 0))

    def _ln(self, x, name):
        import numpy as np

        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + self.eps) * self.w[name + ".weight"] + self.w[name + ".bias"]

    def encode(self, texts: list[str], max_length: int):
        """Token ids and attention mask, padded to the longest text (truncated at ``max_length``)."""
        import numpy as np

        self.tok.enable_truncation(max_length)
        self.tok.no_padding()
        encs = self.tok.encode_batch(list(texts))
        n = max(len(e.ids) for e in encs)
        ids = np.full((len(encs), n), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(encs), n), dtype=np.float32)
        for i, e in enumerate(encs):
            ids[i, : len(e.ids)] = e.ids
            mask[i, : len(e.ids)] = 1.0
        return ids, mask

    def hidden(self, ids, mask):
        """Last hidden states ``(batch, tokens, hidden)``."""
        import numpy as np
        from scipy.special import erf

        w = self.w
        b, t = ids.shape
        x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:t][None] \
            + w["embeddings.token_type_embeddings.weight"][0][None, None]
        x = self._ln(x.astype(np.float32), "embeddings.LayerNorm")
        h = x.shape[-1]
        d = h // self.heads
        bias = ((1.0 - mask) * np.finfo(np.float32).min).astype(np.float32)[:, None, None, :]
        for i in range(self.layers):
            p = f"encoder.layer.{i}."

            def lin(v, name):  # as one 2-D matrix product (BLAS)
                out = v.reshape(-1, v.shape[-1]) @ w[p + name + ".weight"] + w[p + name + ".bias"]
                return out.reshape(b, t, -1)

            def split(v):  # (batch, heads, tokens, d), contiguous: numpy's stacked matmul uses BLAS then
                return np.ascontiguousarray(v.reshape(b, t, self.heads, d).transpose(0, 2, 1, 3))

            q, k, v = (split(lin(x, f"attention.self.{n}")) for n in ("query", "key", "value"))
            scores = q @ np.ascontiguousarray(k.transpose(0, 1, 3, 2)) * np.float32(1.0 / np.sqrt(d)) + bias
            scores = scores - scores.max(-1, keepdims=True)
            probs = np.exp(scores)
            probs /= probs.sum(-1, keepdims=True)
            ctx = np.ascontiguousarray((probs @ v).transpose(0, 2, 1, 3)).reshape(b, t, h)
            x = self._ln(lin(ctx, "attention.output.dense") + x, p + "attention.output.LayerNorm")
            inter = lin(x, "intermediate.dense")
            inter = 0.5 * inter * (1.0 + erf(inter * np.float32(1.0 / np.sqrt(2.0))))
            x = self._ln(lin(inter, "output.dense") + x, p + "output.LayerNorm")
        return x.astype(np.float32)

    def embed(self, texts: list[str], max_length: int = 128):
        """Mean-pooled, unit-length sentence embeddings ``(len(texts), hidden)``."""
        import numpy as np

        ids, mask = self.encode(texts, max_length)
        hid = self.hidden(ids, mask)
        pooled = (hid * mask[..., None]).sum(1) / np.clip(mask.sum(1, keepdims=True), 1e-9, None)
        return pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
