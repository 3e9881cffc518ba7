"""Step 2 of PromptMix: an LLM classifier relabels every generated example.

The prompt shows the descriptions and seed examples of the classes nearest to the example (by
all-MiniLM-L6-v2 embeddings of class name plus seeds; all classes when there are at most
``nearest``), **in an order rotated per example** (seeded; small models favour whichever class
comes first, so each class must come first equally often), and asks for the class name only, at
temperature 0.

The call asks for a constrained answer: OpenAI structured outputs (``response_format`` with a JSON
schema whose ``label`` is an ``enum`` of the candidates; vLLM, llama.cpp, Ollama and the bundled
model's server accept the same) and ``logprobs``, from which the confidence of the answer is read
(the probability of the label's tokens, in [0, 1]). An endpoint that refuses either gets the call
again without it, and is remembered (``llm.client``); then the free-text answer maps to a class by
exact, normalised, then fuzzy match, and an answer that maps to no class is ``unparseable`` and kept
for human review, never forced into a class.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from .checks import int_in, raise_problems
from .errors import Cancelled
from .example import example_view
from .llm.client import CallSkipped, LLMClient, LLMError
from .task import Task, normalize_name


@dataclass
class RelabelConfig:
    nearest: int = 5
    max_tokens: int = 24
    include_intended: bool = True
    fuzzy_threshold: float = 85.0
    constrained: bool = True  # ask for a JSON answer whose label is an enum of the candidates
    logprobs: bool = True  # ask for token logprobs: the answer's confidence
    shuffle: bool = True  # candidate order rotated per example (seeded): no position bias
    seed: int = 0

    def __post_init__(self) -> None:
        raise_problems(self.problems())

    def problems(self) -> list[str]:
        """Every rule of the relabel settings (the one place they live)."""
        p: list[str] = []
        int_in(p, self.nearest, 2, None, "the number of nearest classes shown")
        int_in(p, self.seed, 0, None, "the relabel seed")
        int_in(p, self.max_tokens, 1, None, "the relabel answer's max_tokens")
        if not (isinstance(self.fuzzy_threshold, (int, float)) and 0 <= self.fuzzy_threshold <= 100):
            p.append(f"fuzzy_threshold must be between 0 and 100 (got {self.fuzzy_threshold!r})")
        for name in ("include_intended", "constrained", "logprobs", "shuffle"):
            if not isinstance(getattr(self, name), bool):
                p.append(f"{name} must be true or false (got {getattr(self, name)!r})")
        return p


@dataclass
class RelabelResult:
    llm_label: str | None
    status: str  # agree | changed | unparseable
    raw: str
    prompt: str
    confidence: float | None = None  # probability of the answer's label tokens, in [0, 1]; None: unknown
    candidates: list[str] = field(default_factory=list)  # the classes shown, in the order shown
    constrained: bool = False  # the endpoint answered with the structured form


def class_embeddings(task: Task):
    """One unit vector per class: the mean of the embeddings of its name and its seeds (the shortlist's
    ranking; :mod:`promptmix_core.judge` adds the descriptions)."""
    from .judge import centroids, class_vectors

    vecs, owners, _seeds = class_vectors(task, description=False)
    return centroids(vecs, owners, len(task.classes))


def nearest_classes(task: Task, texts: Sequence[str], nearest: int) -> list[list[str]]:
    """For each text, the ``nearest`` closest class names (all classes when there are that few)."""
    names = task.class_names
    if len(names) <= nearest:
        return [list(names) for _ in texts]
    import numpy as np

    from .embed import embed_texts

    sims = embed_texts(texts) @ class_embeddings(task).T
    order = np.argsort(-sims, axis=1)[:, :nearest]
    return [[names[j] for j in row] for row in order]


def build_classifier_prompt(task: Task, candidates: Sequence[str], text: str) -> list[dict[str, str]]:
    lines = ["Classify the text into one of the following categories.", ""]
    for name in candidates:
        spec = task.get(name)
        lines.append(f"Category: {spec.name}")
        if spec.description:
            lines.append(f"Description: {spec.description}")
        if spec.examples:
            lines.append("Examples:")
            lines.extend(f"- {ex}" for ex in spec.examples)
        lines.append("")
    lines.append(f"Text: {text}")
    lines.append("")
    lines.append("Answer with the category name only, exactly as written above: " + ", ".join(candidates) + ".")
    return [
        {"role": "system", "content": "You are a careful text classifier. Answer with a category name only."},
        {"role": "user", "content": "\n".join(lines)},
    ]


LABEL_KEY = "label"


def label_schema(candidates: Sequence[str]) -> dict[str, Any]:
    """OpenAI ``response_format`` for a constrained relabel: ``{"label": <one of the candidates>}``."""
    return {
        "type": "json_schema",
        "json_schema": {
            "name": "relabel",
            "strict": True,
            "schema": {
                "type": "object",
                "properties": {LABEL_KEY: {"type": "string", "enum": list(candidates)}},
                "required": [LABEL_KEY],
                "additionalProperties": False,
            },
        },
    }


def candidate_order(candidates: Sequence[str], text: str, seed: int,
                    class_order: Sequence[str] | None = None) -> list[str]:
    """The candidates in the task's class order, rotated by an offset drawn from the seed and the text
    (same example, same order). Over many examples every candidate is listed first equally often, so
    a model's preference for the first-listed class no longer favours one class; and examples with
    the same candidates share one of only a few prompt prefixes (a server with a prefix cache runs
    just the rest)."""
    order = list(candidates)
    if class_order is not None:
        rank = {name: i for i, name in enumerate(class_order)}
        order.sort(key=lambda c: rank.get(c, len(rank)))
    if len(order) < 2:
        return order
    digest = hashlib.sha256(f"relabel-order|{seed}|{text}".encode("utf-8")).digest()
    k = int.from_bytes(digest[:8], "big") % len(order)
    return order[k:] + order[:k]


_JSON_VALUE = re.compile(r'"%s"\s*:\s*"((?:[^"\\]|\\.)*)"' % LABEL_KEY)


def parse_label(answer: str | None, candidates: Sequence[str], class_names: Sequence[str],
                fuzzy_threshold: float = 85.0) -> tuple[str | None, tuple[int, int] | None]:
    """The class an answer names and the character span of the label in it (for its confidence).

    A JSON answer ``{"label": "..."}`` (structured output) is read first; its value must be a
    candidate or map to a class. Anything else goes through :func:`map_answer`."""
    if not answer:
        return None, None
    text = answer.strip()
    if text.startswith("{"):
        m = _JSON_VALUE.search(answer)
        value = None
        if m:
            try:
                value = json.loads('"' + m.group(1) + '"')
            except ValueError:
                value = None
        if value is not None:
            # the span runs to the closing quote: that token tells where the value ends
            span = (m.start(1), m.end(1) + 1)
            if value in candidates:
                return value, span
            mapped = map_answer(value, class_names, fuzzy_threshold)
            return mapped, (span if mapped else None)
    label = map_answer(answer, class_names, fuzzy_threshold)
    if label is None:
        return None, None
    return label, _find_span(answer, label)


def _find_span(answer: str, label: str) -> tuple[int, int] | None:
    """Where the label (or its words) first appears in a free-text answer."""
    low = answer.lower()
    for form in (label, label.replace("_", " "), label.replace("_", " ").replace("-", " ")):
        i = low.find(form.lower())
        if i >= 0:
            return i, i + len(form)
    return None


def answer_confidence(answer: str, span: tuple[int, int] | None,
                      logprobs: Sequence[dict[str, Any]] | None) -> float | None:
    """exp(sum of the logprobs of the answer tokens overlapping ``span``), in [0, 1]; None when the
    endpoint sent no logprobs or the tokens do not spell the answer."""
    if not logprobs or span is None:
        return None
    tokens = [str(t.get("token", "")) for t in logprobs]
    if "".join(tokens) != answer:
        # some endpoints spell a few tokens differently (byte pieces): align on a stripped form
        if "".join(tokens).strip() != answer.strip():
            return None
        offset = len("".join(tokens)) - len("".join(tokens).lstrip()) - (len(answer) - len(answer.lstrip()))
        span = (span[0] + offset, span[1] + offset)
    total, pos, hit = 0.0, 0, False
    for tok, item in zip(tokens, logprobs):
        start, end = pos, pos + len(tok)
        pos = end
        if end > span[0] and start < span[1]:
            try:
                lp = float(item.get("logprob"))
            except (TypeError, ValueError):
                return None
            if math.isnan(lp):
                return None
            total += min(0.0, lp)
            hit = True
    if not hit:
        return None
    return max(0.0, min(1.0, math.exp(total)))


_ANSWER_PREFIX = re.compile(
    r"^\s*(?:the\s+)?(?:answer|category|class|label|output)\s*(?:is)?\s*[:\-=]?\s*", re.IGNORECASE
)


def map_answer(answer: str | None, class_names: Sequence[str], fuzzy_threshold: float = 85.0) -> str | None:
    """Exact, then normalised, then containment, then fuzzy match; None when nothing fits."""
    if not answer or not answer.strip():
        return None
    names = list(class_names)
    first = next((ln for ln in answer.strip().splitlines() if ln.strip()), "")
    candidates = [first.strip(), _ANSWER_PREFIX.sub("", first).strip()]
    for cand in candidates:
        cand = cand.strip(" \t\"'`*.,;:!()[]{}<>")
        if cand in names:
            return cand
    norm_map: dict[str, str] = {}
    for n in names:
        norm_map.setdefault(normalize_name(n), n)
    for cand in candidates:
        key = normalize_name(cand.strip(" \t\"'`*.,;:!()[]{}<>"))
        if key in norm_map:
            return norm_map[key]
    # a class name inside a sentence ("The category is card_lost."): the longest single match wins
    whole = normalize_name(answer)
    hits = [n for k, n in norm_map.items() if k and re.search(rf"(?<!\w){re.escape(k)}(?!\w)", whole)]
    if hits:
        hits.sort(key=lambda n: -len(normalize_name(n)))
        longest = hits[0]
        if all(normalize_name(h) in normalize_name(longest) for h in hits):
            return longest
        return None  # several different classes named: ambiguous
    from rapidfuzz import fuzz, process

    key = normalize_name(_ANSWER_PREFIX.sub("", first))
    if not key:
        return None
    match = process.extractOne(key, list(norm_map), scorer=fuzz.ratio)
    if match and match[1] >= fuzzy_threshold:
        return norm_map[match[0]]
    return None


async def arelabel(
    task: Task,
    items: Sequence[Any],
    llm: LLMClient,
    config: RelabelConfig | None = None,
    *,
    progress: Callable[[dict[str, Any]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_result: Callable[[int, RelabelResult], None] | None = None,
) -> list[RelabelResult | None]:
    """Relabel ``items`` (objects or dicts with ``text`` and optionally ``intended_label``).

    ``on_result(index, result)`` is called as each answer arrives (the job saves it at once).
    On an endpoint failure the finished results are kept and the error is raised afterwards.
    """
    config = config or RelabelConfig()
    views = [example_view(it) for it in items]
    texts = [str(v.text) for v in views]
    intended = [v.intended_label for v in views]
    cands = nearest_classes(task, texts, config.nearest) if texts else []
    if config.include_intended:
        for i, lab in enumerate(intended):
            if lab and lab in task.class_names and lab not in cands[i]:
                cands[i] = cands[i][:-1] + [lab]
    results: list[RelabelResult | None] = [None] * len(items)
    errors: list[BaseException] = []
    done = 0

    def report(*_: Any) -> None:
        if progress is not None:
            try:
                progress({"phase": "relabel", "done": done, "total": len(items), **llm.stats.as_dict(),
                          "notice": llm.notice})
            except Exception as exc:  # noqa: BLE001 - progress goes to the store: a full disk stops the job
                if not errors:
                    errors.append(exc)

    async def one(i: int) -> None:
        nonlocal done
        if errors or (should_stop is not None and should_stop()):
            return
        shown = candidate_order(cands[i], texts[i], config.seed, task.class_names) if config.shuffle else list(cands[i])
        messages = build_classifier_prompt(task, shown, texts[i])
        try:
            comp = await llm.achat(messages, temperature=0.0, max_tokens=config.max_tokens, sample_index=0,
                                   abort=lambda: bool(errors) or (should_stop is not None and should_stop()),
                                   response_format=label_schema(shown) if config.constrained else None,
                                   logprobs=config.logprobs, top_logprobs=5 if config.logprobs else None,
                                   stop=should_stop)
        except CallSkipped:
            return
        except LLMError as exc:
            errors.append(exc)
            return
        label, span = parse_label(comp.text, shown, task.class_names, config.fuzzy_threshold)
        if label is None:
            status = "unparseable"
        elif intended[i] is None or label == intended[i]:
            status = "agree"
        else:
            status = "changed"
        confidence = answer_confidence(comp.text, span, comp.logprobs) if label is not None else None
        res = RelabelResult(llm_label=label, status=status, raw=comp.text, prompt=messages[-1]["content"],
                            confidence=confidence, candidates=shown,
                            constrained="response_format" in getattr(comp, "features", ()))
        if on_result is not None:
            try:
                on_result(i, res)
            except Exception as exc:  # noqa: BLE001 - the store could not save it (a full disk): stop
                errors.append(exc)
                return
        results[i] = res
        done += 1
        report()

    report()
    previous_notice = llm.on_notice
    llm.on_notice = report
    try:
        # Tasks are created in order; the client's semaphore bounds how many calls are in flight.
        await asyncio.gather(*(one(i) for i in range(len(items))))
    finally:
        llm.on_notice = previous_notice
    if errors:
        raise errors[0]
    if should_stop is not None and should_stop() and any(r is None for r in results):
        raise Cancelled("relabeling was stopped; what was finished is kept")
    return results


def relabel(task: Task, items: Sequence[Any], llm: LLMClient, config: RelabelConfig | None = None, **kw: Any):
    """Synchronous entry point; see :func:`arelabel`."""
    return llm.run_sync(arelabel(task, items, llm, config, **kw))


def classify_texts(
    task: Task, texts: Sequence[str], llm: LLMClient, config: RelabelConfig | None = None, **kw: Any
) -> list[str | None]:
    """The relabel classifier applied to plain texts (the paper's LLM-direct baseline)."""
    results = relabel(task, [{"text": t} for t in texts], llm, config, **kw)
    return [r.llm_label if r else None for r in results]


def relabel_summary(results: Sequence[RelabelResult | None]) -> dict[str, Any]:
    """Shares changed and unparseable; how the relabels spread over the classes (``label_shares``) and
    how often the class listed first was picked (``share_first_listed``: about 1/candidates without
    position bias); mean confidence where known."""
    done = [r for r in results if r is not None]
    n = len(done)
    changed = sum(1 for r in done if r.status == "changed")
    unparseable = sum(1 for r in done if r.status == "unparseable")
    labelled = [r for r in done if r.llm_label]
    shares: dict[str, float] = {}
    for r in labelled:
        shares[r.llm_label] = shares.get(r.llm_label, 0.0) + 1.0 / len(labelled)
    first = [r for r in labelled if r.candidates]
    confs = [r.confidence for r in done if r.confidence is not None]
    return {
        "relabelled": n,
        "changed": changed,
        "unparseable": unparseable,
        "share_changed": changed / n if n else 0.0,
        "share_unparseable": unparseable / n if n else 0.0,
        "label_shares": dict(sorted(shares.items(), key=lambda kv: -kv[1])),
        "share_first_listed": (sum(r.llm_label == r.candidates[0] for r in first) / len(first)) if first else None,
        "mean_candidates": (sum(len(r.candidates) for r in first) / len(first)) if first else None,
        "mean_confidence": (sum(confs) / len(confs)) if confs else None,
        "constrained": sum(1 for r in done if r.constrained),
    }
