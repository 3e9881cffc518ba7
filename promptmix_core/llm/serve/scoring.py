"""Constrained answers by scoring: the exact log-likelihood of each allowed value, in one forward pass.

A request whose ``response_format`` is a one-property string enum (what the relabeler sends) or that
carries vLLM's ``guided_choice`` is answered by scoring every allowed value: the log-likelihood of the
assistant answering that value (value tokens + end-of-turn) after the prompt. The most likely value is
returned, so the answer is always one of the allowed values. With ``logprobs: true`` the answer's tokens
carry log-probabilities whose sum is the log of that value's share of the probability mass among the
allowed values (split along the shared token prefixes of the values), so ``exp(sum)`` is a calibrated
confidence in [0, 1].
"""

from __future__ import annotations

import json
import math
import traceback
from typing import TYPE_CHECKING, Any, Sequence

from .cache import plain_cache
from .protocol import ChatRequest

if TYPE_CHECKING:  # pragma: no cover
    from .engine import Engine, Pending

SCORE_BATCH_ROWS = 64  # candidates of constrained requests scored in one forward pass (one row per request)
LEVEL_SLACK_TOKENS = 32  # a row's rest may be this much longer than the pass's median before it runs alone


class Scorer:
    """Answers constrained requests for an :class:`~.engine.Engine` (its model, tokenizer and prefix cache)."""

    def __init__(self, engine: "Engine"):
        self.engine = engine

    def choice_ids(self, choices: Sequence[str]) -> list[list[int]]:
        """The tokens of the assistant answering each choice: its text, then end-of-turn."""
        tok, end = self.engine.tokenizer, self.engine.end_of_turn
        return [list(tok(c, add_special_tokens=False)["input_ids"]) + [end] for c in choices]

    @staticmethod
    def chunks(pendings: list["Pending"]) -> list[list["Pending"]]:
        """Scoring requests in groups of at most ``SCORE_BATCH_ROWS`` candidate rows (one request alone
        when it has more): each group's candidates run in one forward pass."""
        out: list[list["Pending"]] = []
        rows = 0
        for p in pendings:
            c = len(p.req.choices or ())
            if out and rows + c <= SCORE_BATCH_ROWS:
                out[-1].append(p)
                rows += c
            else:
                out.append([p])
                rows = c
        return out

    def score_batch(self, pendings: list["Pending"]) -> None:
        with self.engine.torch.inference_mode():
            live = [p for p in pendings if not p.cancelled]
            self.share_prefixes(live)
            self.level_rests(live)
            self._score_batch(pendings)

    def level_rests(self, pendings: list["Pending"]) -> int:
        """Run alone, before the pass, the part of a prompt that would make the pass much wider than its
        other rows: the pass left-pads every row to its longest rest (the prompt past the prefix cache),
        so one prompt whose class block nobody else shares (450 tokens) made ten rows of ~70 tokens run
        450 each (a 9.5 s pass instead of 1.4 s, measured). Each rest longer than the median by more than
        :data:`LEVEL_SLACK_TOKENS` is run up to the median's length from its end (batch 1, no padding;
        its key/values go into the prefix cache), so every row of the pass runs about the median. The
        answers are the same: the prompt's key/values are the same wherever they were computed.
        Returns the prompts run."""
        engine = self.engine
        if len(pendings) < 2:
            return 0
        rests = [max(1, len(p.prompt_ids) - engine.prefixes.cached_len(p.prompt_ids)) for p in pendings]
        target = sorted(rests)[(len(rests) - 1) // 2]
        run = 0
        for p, rest in zip(pendings, rests):
            if rest > target + LEVEL_SLACK_TOKENS:
                try:
                    engine.prefill(list(p.prompt_ids[: len(p.prompt_ids) - target]))
                    run += 1
                except Exception:  # noqa: BLE001 - only a saving: the pass runs the rest in full
                    traceback.print_exc()
        engine.stats["levelled"] = engine.stats.get("levelled", 0) + run
        return run

    def share_prefixes(self, pendings: list["Pending"]) -> int:
        """Run once, before the pass, each prompt prefix that several requests of the pass share beyond
        what the prefix cache holds (the relabeler's prompts repeat one of a few class blocks: requests
        arriving together would each run theirs in full). The prefix goes into the cache, so every row
        runs only its own rest. Returns the prefixes run."""
        from .cache import MIN_PREFIX_TOKENS, common_prefix

        engine = self.engine
        prompts = sorted((list(p.prompt_ids) for p in pendings), key=tuple)
        shared: set[tuple[int, ...]] = set()
        for i, ids in enumerate(prompts):  # the longest prefix shared with another prompt is a neighbour's
            best = max(common_prefix(ids, prompts[j]) for j in (i - 1, i + 1) if 0 <= j < len(prompts)) \
                if len(prompts) > 1 else 0
            best = min(best, len(ids) - 1)
            if best >= MIN_PREFIX_TOKENS:
                shared.add(tuple(ids[:best]))
        run = 0
        for prefix in sorted(shared, key=len):
            if len(prefix) - engine.prefixes.cached_len(prefix) >= MIN_PREFIX_TOKENS:
                try:
                    engine.prefill(list(prefix))
                    run += 1
                except Exception:  # noqa: BLE001 - only a saving: the pass runs the prompts in full
                    traceback.print_exc()
        engine.stats["shared_prefixes"] = engine.stats.get("shared_prefixes", 0) + run
        return run

    def _items(self, pendings: list["Pending"]) -> list[tuple]:
        """Per request: (pending, ids, use, prefix layers, seqs, input tokens, positions)."""
        items = []
        for p in pendings:
            try:
                ids = p.prompt_ids
                seqs = self.choice_ids(p.req.choices)
                use, prefix = self.engine.prefixes.lookup(ids)
                inp = list(ids[use:])
                pos = list(range(use, len(ids)))
                for sq in seqs:
                    inp += sq[:-1]
                    pos += list(range(len(ids), len(ids) + len(sq) - 1))
                items.append((p, ids, use, prefix, seqs, inp, pos))
            except Exception as exc:  # noqa: BLE001 - this request fails, the others go on
                traceback.print_exc()
                self.engine.fail(p, exc)
        return items

    def _inputs(self, items: list[tuple], width: int):
        """Left-padded tokens, positions and the boolean attention mask of one scoring pass, and how
        many trailing logits to keep."""
        torch, pad_id = self.engine.torch, self.engine.pad_id
        q = max(len(it[5]) for it in items)
        b = len(items)
        tokens = torch.full((b, q), pad_id, dtype=torch.long)
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
            mask[i, 0, off: off + n_suffix, s0: s0 + n_suffix] = torch.ones((n_suffix, n_suffix), dtype=torch.bool).tril()
            at = off + n_suffix
            for sq in seqs:
                m = len(sq) - 1
                mask[i, 0, at: at + m, s0: s0 + n_suffix] = True
                mask[i, 0, at: at + m, width + at: width + at + m] = torch.ones((m, m), dtype=torch.bool).tril()
                at += m
        return tokens, positions, mask, keep, q

    def _score_batch(self, pendings: list["Pending"]) -> None:
        """Answer several constrained requests in **one forward pass**. Row i holds the part of prompt i
        that is not in the prefix cache, followed by every candidate answer (its tokens but the last);
        a custom attention mask lets each candidate see the prompt and its own earlier tokens only, so
        one row scores all candidates without copying the prompt's key/values per candidate. The cached
        prefixes are left-padded to the longest. The log-likelihoods equal those of scoring each request
        alone, the prompt then every candidate in a batch (tests/llm/test_serve.py, up to float rounding);
        each full prompt's key/values go into the prefix cache as a prefill would."""
        engine = self.engine
        torch = engine.torch
        items = self._items([p for p in pendings if not p.cancelled])
        if not items:
            return
        try:
            width = max(it[2] for it in items)
            b = len(items)
            data = None
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
            cache = plain_cache(engine.model.config, data)
            # queries are left-padded, so every row's candidates end at the last position and only the
            # logits of the last ``keep`` positions are computed (not the whole prompt's)
            tokens, positions, mask, keep, q = self._inputs(items, width)
            # an additive float mask: read the same by the sdpa and the eager attention (eager adds it)
            dtype = engine.model.dtype
            additive = torch.zeros(mask.shape, dtype=dtype).masked_fill_(~mask, torch.finfo(dtype).min)
            logits, cache = engine.call(cache, input_ids=tokens, attention_mask=additive, position_ids=positions,
                                        logits_to_keep=keep)
            engine.stats["prompt_tokens_run"] += sum(len(it[1]) - it[2] for it in items)
        except Exception as exc:  # noqa: BLE001 - the whole group fails, the engine keeps serving
            traceback.print_exc()
            for it in items:
                engine.fail(it[0], exc)
            return
        for i, (p, ids, use, prefix, seqs, inp, pos) in enumerate(items):
            n_suffix = len(ids) - use
            s0 = width + q - len(inp)  # where this row's prompt suffix starts in the cache

            def own(x, i=i, use=use, s0=s0, n_suffix=n_suffix):  # row i's prompt: cached prefix + the part run here
                return torch.cat([x[i:i + 1, :, width - use: width], x[i:i + 1, :, s0: s0 + n_suffix]], 2)

            engine.prefixes.remember(ids, [(own(layer.keys), own(layer.values)) for layer in cache.layers])
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
            engine.stats["scored"] += 1
            engine.run_guarded(p, lambda pending, t=totals, q_=seqs: self.answer(pending, t, q_))

    def answer(self, pending: "Pending", totals: list[float], seqs: list[list[int]]) -> None:
        req = pending.req
        self.engine.stats["requests"] += 1
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
            choice["logprobs"] = {"content": self.choice_logprobs(req, seqs, posterior, best)}
        pending.finish({
            "choices": [{**choice, "index": i} for i in range(req.n)],
            "prompt_tokens": len(pending.prompt_ids),
            "completion_tokens": len(seqs[best]) * req.n,
        })

    def choice_logprobs(self, req: ChatRequest, seqs: list[list[int]], posterior: list[float],
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
            if tok == self.engine.end_of_turn:  # the value ends here
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
        return "" if tok == self.engine.end_of_turn else self.engine.tokenizer.decode([tok])
