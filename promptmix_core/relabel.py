"""Step 2 of PromptMix: an LLM classifier relabels every generated example.

The prompt shows the descriptions and seed examples of the classes nearest to the example (by
all-MiniLM-L6-v2 embeddings of class name plus seeds; all classes when there are at most
``nearest``) and asks for the class name only, at temperature 0. The answer maps to a class by exact,
normalised, then fuzzy match; an answer that maps to no class is ``unparseable`` and kept for
human review, never forced into a class.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Any, Callable, Sequence

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

    def __post_init__(self) -> None:
        if int(self.nearest) < 2:
            raise ValueError("the number of nearest classes shown must be at least 2")


@dataclass
class RelabelResult:
    llm_label: str | None
    status: str  # agree | changed | unparseable
    raw: str
    prompt: str


def class_embeddings(task: Task):
    """One unit vector per class: the mean of the embeddings of its name and its seeds."""
    import numpy as np

    from .embed import embed_texts

    texts, owners = [], []
    for i, c in enumerate(task.classes):
        for t in [c.name.replace("_", " ")] + list(c.examples):
            texts.append(t)
            owners.append(i)
    vecs = embed_texts(texts)
    owners_arr = np.array(owners)
    out = np.stack([vecs[owners_arr == i].mean(0) for i in range(len(task.classes))])
    return out / np.linalg.norm(out, axis=1, keepdims=True).clip(min=1e-9)


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

    def report() -> None:
        if progress is not None:
            progress({"phase": "relabel", "done": done, "total": len(items), **llm.stats.as_dict()})

    async def one(i: int) -> None:
        nonlocal done
        if errors or (should_stop is not None and should_stop()):
            return
        messages = build_classifier_prompt(task, cands[i], texts[i])
        try:
            comp = await llm.achat(messages, temperature=0.0, max_tokens=config.max_tokens, sample_index=0,
                                   abort=lambda: bool(errors) or (should_stop is not None and should_stop()))
        except CallSkipped:
            return
        except LLMError as exc:
            errors.append(exc)
            return
        label = map_answer(comp.text, task.class_names, config.fuzzy_threshold)
        if label is None:
            status = "unparseable"
        elif intended[i] is None or label == intended[i]:
            status = "agree"
        else:
            status = "changed"
        res = RelabelResult(llm_label=label, status=status, raw=comp.text, prompt=messages[-1]["content"])
        results[i] = res
        done += 1
        if on_result is not None:
            on_result(i, res)
        report()

    report()
    # Tasks are created in order; the client's semaphore bounds how many calls are in flight.
    await asyncio.gather(*(one(i) for i in range(len(items))))
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
    n = sum(r is not None for r in results)
    changed = sum(1 for r in results if r and r.status == "changed")
    unparseable = sum(1 for r in results if r and r.status == "unparseable")
    return {
        "relabelled": n,
        "changed": changed,
        "unparseable": unparseable,
        "share_changed": changed / n if n else 0.0,
        "share_unparseable": unparseable / n if n else 0.0,
    }
