"""Flag, do not hide, generated examples that are probably junk.

Small models write a share of "examples" that are not examples: talk about the examples or the
instructions ("I give you 5 examples, but..."), near-copies of the seeds they were shown, strings of
numbers and symbols ("46.45.28.14.454"), or text about nothing the task knows. Each rule below gives
a short reason; an example keeps every other property and stays in the data until a person rejects
it (``ProjectStore.reject_flagged`` rejects the pending flagged ones in bulk).

Pure functions of the task and the texts. The one model-backed rule (``far from every class``) takes
the texts' and the classes' embeddings from an ``embed`` function (default: the bundled
all-MiniLM-L6-v2, :func:`promptmix_core.embed.embed_texts`), so tests can pass their own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from .task import Task, normalize_text

META = "meta-text"
NEAR_COPY = "near-copy of a seed"
NOISE = "numbers and symbols"
OFF_TOPIC = "far from every class"
REASONS = (META, NEAR_COPY, NOISE, OFF_TOPIC)

# Words about the generation task itself, as opposed to words a user of the classifier would write.
_META_PATTERNS = [
    # "I give you 5 examples", "here are some sentences", "the following examples", "example 3:"
    r"\b(?:here\s+(?:is|are)|below\s+(?:is|are)|following|these|those|above|more|other|another|\d+|five|four|three|two|ten)\s+"
    r"(?:some\s+|a\s+few\s+|several\s+|the\s+|an?\s+)?(?:short\s+|diverse\s+|new\s+|different\s+|more\s+|other\s+)*"
    r"(?:examples?|sentences?|utterances?|samples?|texts?)\b",
    r"\b(?:examples?|sentences?|utterances?|samples?)\s+(?:\d+|of\s+(?:the\s+)?(?:category|class|categories|classes))\b",
    r"\b(?:give|gave|write|wrote|generate|generated|provide|provided|list|choose|chose|create|created)\s+"
    r"(?:you\s+|me\s+|us\s+)?(?:\w+\s+){0,3}(?:examples?|sentences?|utterances?|samples?)\b",
    r"\b(?:belongs?|belonging)\b[^.]{0,40}\d+\s*%",
    r"\d+\s*%\s*(?:to|of)\s+(?:the\s+)?(?:category|class)",
    r"\b(?:categor(?:y|ies|ize|ized|izing)|classif(?:y|ies|ied|ying|ication|ier))\b",
    r"\b(?:the\s+)?(?:task|instructions?|prompt|dataset|data\s+set)\b\s*(?:is|was|asks?|says?|:)",
    r"^\s*(?:sure|certainly|of course|okay|ok)\s*[,!.]",
    r"\bas an ai\b|\blanguage model\b",
    r"^\s*(?:title|category|description|label|example|note|answer|output)\s*:",
]
_META = re.compile("|".join(f"(?:{p})" for p in _META_PATTERNS), re.IGNORECASE)
_LONG_NUMBER_RUN = re.compile(r"(?:\d+[.\-:/,]){3,}\d+")


@dataclass(frozen=True)
class FlagConfig:
    near_copy_ratio: float = 90.0  # rapidfuzz ratio (0-100) to a seed at or above which a text is a near-copy
    min_letter_share: float = 0.5  # letters among the non-space characters
    max_digit_share: float = 0.3
    # "far from every class": the text's best cosine similarity to a class centroid is under this share
    # of the seeds' own (median over seeds, each against its class's centroid computed without it),
    # and under max_similarity. On 400 real test texts per data set (k = 2 seeds) it flags 0 % of
    # Banking77, 0.75 % of TREC6 and 6.5 % of SUBJ, but 19.5 % of Twitter complaints, whose two classes
    # are not topics (docs/LOCAL_MODEL.md).
    off_topic_ratio: float = 0.4
    max_similarity: float = 0.35
    check_off_topic: bool = True


def meta_text_reason(text: str, class_names: Sequence[str] = ()) -> str:
    """``meta-text: ...`` when the text talks about examples, categories or instructions, or spells a
    class identifier (``card_lost``) as no user would; '' otherwise."""
    m = _META.search(text)
    if m:
        return f"{META}: “{m.group(0).strip()}”"
    for name in class_names:
        if ("_" in name or name.isupper()) and len(name) > 3 and re.search(rf"(?<!\w){re.escape(name)}(?!\w)", text):
            return f"{META}: names the class “{name}”"
    return ""


def noise_reason(text: str, config: FlagConfig = FlagConfig()) -> str:
    """``numbers and symbols`` when the text is mostly not words."""
    chars = [c for c in text if not c.isspace()]
    if not chars:
        return NOISE
    letters = sum(c.isalpha() for c in chars) / len(chars)
    digits = sum(c.isdigit() for c in chars) / len(chars)
    words = re.findall(r"[^\W\d_]{2,}", text)
    if letters < config.min_letter_share or digits > config.max_digit_share:
        return f"{NOISE} ({letters:.0%} letters, {digits:.0%} digits)"
    if len(words) < 2:
        return f"{NOISE}: fewer than two words"
    if _LONG_NUMBER_RUN.search(text):
        return f"{NOISE}: “{_LONG_NUMBER_RUN.search(text).group(0)}”"
    return ""


def near_copy_reason(text: str, seeds: Sequence[str], config: FlagConfig = FlagConfig()) -> str:
    """``near-copy of a seed`` when the text is (almost) one of the seeds."""
    from rapidfuzz import fuzz

    norm = normalize_text(text)
    best, best_seed = 0.0, ""
    for seed in seeds:
        score = fuzz.ratio(norm, normalize_text(seed))
        if score > best:
            best, best_seed = score, seed
    if best >= config.near_copy_ratio:
        return f"{NEAR_COPY} ({best:.0f}% like “{best_seed[:60]}”)"
    return ""


def class_centroids(task: Task, embed: Callable[[Sequence[str]], Any]):
    """Per class: the unit mean of the embeddings of its name and seeds; and per seed: its similarity to
    its class's centroid computed without it (how close a real example of the class sits)."""
    import numpy as np

    texts, owners, is_seed = [], [], []
    for i, c in enumerate(task.classes):
        texts.append(c.name.replace("_", " "))
        owners.append(i)
        is_seed.append(False)
        for ex in c.examples:
            texts.append(ex)
            owners.append(i)
            is_seed.append(True)
    vecs = np.asarray(embed(texts), dtype="float32")
    owners_arr = np.array(owners)
    sums = np.stack([vecs[owners_arr == i].sum(0) for i in range(len(task.classes))])
    counts = np.array([(owners_arr == i).sum() for i in range(len(task.classes))], dtype="float32")

    def unit(x):
        return x / np.linalg.norm(x, axis=-1, keepdims=True).clip(min=1e-9)

    centroids = unit(sums / counts[:, None])
    seed_sims = []
    for j, (owner, seed) in enumerate(zip(owners, is_seed)):
        if not seed or counts[owner] < 2:
            continue
        loo = unit((sums[owner] - vecs[j]) / (counts[owner] - 1))
        seed_sims.append(float(unit(vecs[j]) @ loo))
    return centroids, seed_sims


def off_topic_threshold(seed_sims: Sequence[float], config: FlagConfig = FlagConfig()) -> tuple[float, float]:
    """``(threshold, seeds' median)``: a text whose best similarity to a class centroid is under the
    threshold is "far from every class" (a share of the seeds' median own-class similarity, never above
    ``max_similarity``)."""
    if not seed_sims:
        return config.max_similarity, float("nan")
    ordered = sorted(seed_sims)
    median = ordered[len(ordered) // 2]
    return min(config.max_similarity, config.off_topic_ratio * median), median


def flag_texts(
    task: Task,
    texts: Sequence[str],
    *,
    config: FlagConfig = FlagConfig(),
    embed: Callable[[Sequence[str]], Any] | None = None,
) -> list[str]:
    """One reason per text ('' when it looks fine); the first rule that fires wins, in the order
    noise, meta-text, near-copy, far from every class."""
    texts = [str(t) for t in texts]
    seeds = [ex for c in task.classes for ex in c.examples]
    names = task.class_names
    reasons = []
    for text in texts:
        reason = noise_reason(text, config) or meta_text_reason(text, names) or near_copy_reason(text, seeds, config)
        reasons.append(reason)
    if config.check_off_topic and texts and any(not r for r in reasons):
        import numpy as np

        if embed is None:
            from .embed import embed_texts as embed
        centroids, seed_sims = class_centroids(task, embed)
        threshold, median = off_topic_threshold(seed_sims, config)
        todo = [i for i, r in enumerate(reasons) if not r]
        vecs = np.asarray(embed([texts[i] for i in todo]), dtype="float32")
        vecs = vecs / np.linalg.norm(vecs, axis=1, keepdims=True).clip(min=1e-9)
        best = (vecs @ centroids.T).max(axis=1)
        for i, sim in zip(todo, best.tolist()):
            if sim < threshold:
                reasons[i] = f"{OFF_TOPIC} (similarity {sim:.2f}; the seeds' {median:.2f})"
    return reasons


def flag_summary(reasons: Sequence[str]) -> dict[str, Any]:
    """How many texts were flagged, in all and per rule."""
    per = {r: 0 for r in REASONS}
    for reason in reasons:
        for r in REASONS:
            if reason.startswith(r):
                per[r] += 1
                break
    n = len(reasons)
    flagged = sum(1 for r in reasons if r)
    return {"texts": n, "flagged": flagged, "share_flagged": flagged / n if n else 0.0, "by_reason": per}


def flag_project_examples(store, task: Task, *, job_id: int | None = None, config: FlagConfig = FlagConfig(),
                          embed: Callable[[Sequence[str]], Any] | None = None) -> dict[str, Any]:
    """Flag the examples of ``job_id`` (all when None) in a project store and save the reasons
    (``examples.flag``; '' clears an old flag). Returns :func:`flag_summary` of them."""
    examples = store.list_examples(job_id=job_id)
    reasons = flag_texts(task, [e.text for e in examples], config=config, embed=embed)
    store.set_flags({e.id: r for e, r in zip(examples, reasons)})
    return flag_summary(reasons)
