"""Training data: seeds plus generated examples, with the label source chosen by the caller.

Label sources (the PromptMix paper's A1/A2, plus human review):

- ``"a1"``: the intended label the generator was asked for.
- ``"a2"``: the LLM relabel (step 2). Examples whose relabel is unparseable, or that were never
  relabelled, follow ``unparseable`` (``"drop"``, the default, or ``"a1"`` to fall back to the
  intended label).
- ``"reviewed"``: human review: accepted -> the example's current label, overridden -> the
  reviewer's label, rejected -> dropped, pending -> ``pending`` (``"drop"`` by default, or ``"a2"``
  / ``"a1"`` to label pending ones by that rule). The review status is the *final* decision: with
  several reviews per example it stays pending until the reviewers agree or an owner adjudicates
  (:mod:`promptmix_core.store.team`), so a single reviewer's vote is never trained on.

Examples may be plain dicts, the store's ``Example`` rows or generated examples: one shape, read through
:func:`promptmix_core.example.example_view`.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from ..example import example_view
from ..task import Task, normalize_text

LABEL_SOURCES = ("a1", "a2", "reviewed")
PENDING_RULES = ("drop", "a1", "a2")
UNPARSEABLE_RULES = ("drop", "a1")


@dataclass
class TrainingSet:
    """Rows ``{"text", "label", "source"}`` plus counts of what was dropped and why."""

    rows: list[dict[str, str]]
    labels: list[str]  # the label set (task order)
    dropped: dict[str, int] = field(default_factory=dict)

    @property
    def texts(self) -> list[str]:
        return [r["text"] for r in self.rows]

    @property
    def targets(self) -> list[str]:
        return [r["label"] for r in self.rows]

    def __len__(self) -> int:
        return len(self.rows)

    def counts(self) -> dict[str, int]:
        c = Counter(r["label"] for r in self.rows)
        return {lab: c.get(lab, 0) for lab in self.labels}

    def summary(self) -> dict[str, Any]:
        src = Counter(r.get("source", "") for r in self.rows)
        return {
            "total": len(self.rows),
            "seeds": src.get("seed", 0),
            "generated": src.get("generated", 0),
            "per_class": self.counts(),
            "dropped": dict(self.dropped),
        }


def _a2_label(ex: Any, unparseable: str) -> tuple[str | None, str]:
    ex = example_view(ex)
    status = ex.relabel_status
    llm = ex.llm_label
    if status in ("agree", "changed") and llm:
        return str(llm), ""
    if unparseable == "a1":
        return ex.intended_label, ""
    return None, "unparseable" if status == "unparseable" else "not_relabelled"


def example_label(
    ex: Any, label_source: str = "a2", *, pending: str = "drop", unparseable: str = "drop"
) -> tuple[str | None, str]:
    """(label, "") for a usable example, or (None, reason) for one that is dropped."""
    ex = example_view(ex)
    if label_source == "a1":
        lab = ex.intended_label or ex.label
        return (str(lab), "") if lab else (None, "no_label")
    if label_source == "a2":
        return _a2_label(ex, unparseable)
    if label_source == "reviewed":
        status = ex.review_status or "pending"
        if status == "rejected":
            return None, "rejected"
        if status == "overridden":
            lab = ex.review_label
            return (str(lab), "") if lab else (None, "no_label")
        if status == "accepted":
            lab = getattr(ex, "review_label", None) or ex.label  # the label accepted, whatever came after
            if not lab:  # plain dicts may lack the merged 'label'; use the relabel, then the intent
                lab = ex.llm_label or ex.intended_label
            return (str(lab), "") if lab else (None, "no_label")
        # pending
        if pending == "a1":
            return example_label(ex, "a1")
        if pending == "a2":
            return _a2_label(ex, unparseable)
        return None, "pending"
    raise ValueError(f"unknown label source {label_source!r}; use one of {', '.join(LABEL_SOURCES)}")


def _reviewed_as(ex: Any, label: str) -> bool:
    """Whether a person accepted or set ``label`` for this example."""
    if (example_view(ex).review_status or "pending") not in ("accepted", "overridden"):
        return False
    return example_label(ex, "reviewed")[0] == label


def _seed_rows(seeds: Task | Iterable[Mapping[str, Any]] | None) -> list[dict[str, str]]:
    if seeds is None:
        return []
    if isinstance(seeds, Task):
        return seeds.seed_rows()
    return [{"text": str(example_view(r).text), "label": str(example_view(r).label)} for r in seeds]


def build_training_data(
    seeds: Task | Iterable[Mapping[str, Any]] | None,
    examples: Iterable[Any] = (),
    *,
    label_source: str = "a2",
    pending: str = "drop",
    unparseable: str = "drop",
    labels: Sequence[str] | None = None,
    include_seeds: bool = True,
    dedupe: bool = True,
    exclude_texts: Iterable[str] = (),
    curation: Any = None,
    chosen_by: str | None = None,
    judge: Any = None,
    embed_judge: bool = True,
) -> TrainingSet:
    """Seeds plus generated examples labelled by ``label_source`` (see the module docstring).

    ``labels`` is the label set; by default the task's classes (or every label seen). Examples whose
    label is outside it are dropped (``unknown_label``); duplicate texts (normalised) are dropped
    after their first occurrence, seeds first (``duplicate``). Generated examples whose text is one
    of ``exclude_texts`` (the test set) are dropped (``in_test_set``): nothing is trained on test data.

    ``curation`` (a :class:`.curate.CurationConfig`; None: off) applies the default selection of
    generated examples (:mod:`.curate`): junk flags, judges that disagree, low confidence; reviewed
    decisions override it. ``judge`` labels examples without a ``judge_label`` (default: the
    embedding judge on the seeds, when curation is on; ``embed_judge=False`` computes none, for a
    quick preview that needs no model). ``chosen_by``: which judge gave the examples' labels (the
    project's :data:`promptmix_core.judge.LABEL_SOURCE_META` choice, ``"judge"`` or ``"llm"``), for
    the curation's judge-labelled rule. Left-out examples count as ``curated_*``.

    Rows are ``{"text", "label", "source"}``; generated ones also carry ``example_id`` (the store's
    example id, when the examples have one), so a run can record exactly what it trained on.
    """
    if label_source not in LABEL_SOURCES:
        raise ValueError(f"unknown label source {label_source!r}; use one of {', '.join(LABEL_SOURCES)}")
    if pending not in PENDING_RULES:
        raise ValueError(f"pending must be one of {', '.join(PENDING_RULES)} (got {pending!r})")
    if unparseable not in UNPARSEABLE_RULES:
        raise ValueError(f"unparseable must be one of {', '.join(UNPARSEABLE_RULES)} (got {unparseable!r})")
    seed_rows = _seed_rows(seeds)
    examples = list(examples)
    if labels is None:
        if isinstance(seeds, Task):
            labels = seeds.class_names
        else:
            seen: dict[str, None] = {}
            for r in seed_rows:
                seen.setdefault(r["label"], None)
            for ex in examples:
                lab, _ = example_label(ex, label_source, pending=pending, unparseable=unparseable)
                if lab:
                    seen.setdefault(lab, None)
            labels = list(seen)
    label_set = set(labels)
    rows: list[dict[str, Any]] = []
    dropped: Counter[str] = Counter()
    seen_text: set[str] = set()
    excluded = {normalize_text(t) for t in exclude_texts}

    def add(text: Any, label: str | None, source: str, reason: str = "", example_id: Any = None,
            reviewed: bool = False) -> None:
        if label is None:
            dropped[reason or "no_label"] += 1
            return
        text = "" if text is None else str(text).strip()
        if not text:
            dropped["empty_text"] += 1
            return
        if label not in label_set:
            dropped["unknown_label"] += 1
            return
        key = normalize_text(text)
        if source != "seed" and key in excluded:
            dropped["in_test_set"] += 1
            return
        if dedupe and key in seen_text:
            dropped["duplicate"] += 1
            return
        seen_text.add(key)
        row: dict[str, Any] = {"text": text, "label": label, "source": source}
        if isinstance(example_id, int) and not isinstance(example_id, bool):
            row["example_id"] = example_id
        if reviewed:  # the label is a person's decision (SetFit's "trusted" body rows)
            row["reviewed"] = True
        rows.append(row)

    if include_seeds:
        for r in seed_rows:
            add(r["text"], r["label"], "seed")
    decided = [example_label(ex, label_source, pending=pending, unparseable=unparseable) for ex in examples]
    if curation is not None and getattr(curation, "enabled", False) and examples:
        from .curate import embedding_judge, select

        if judge is None and seed_rows and embed_judge:
            by: dict[str, list[str]] = {lab: [] for lab in labels}
            for r in seed_rows:
                by.setdefault(r["label"], []).append(r["text"])
            judge = embedding_judge([(lab, by.get(lab, [])) for lab in labels])
        sel = select(examples, [lab for lab, _ in decided], curation, judge=judge, label_source=chosen_by)
        decided = [(lab, why) if keep or why else (None, sel.reasons[i] or "curated")
                   for i, ((lab, why), keep) in enumerate(zip(decided, sel.keep))]
    for ex, (lab, reason) in zip(examples, decided):
        eid = ex.get("id") if isinstance(ex, Mapping) else getattr(ex, "id", None)
        add(example_view(ex).text, lab, "generated", reason, eid, reviewed=lab is not None and _reviewed_as(ex, lab))
    return TrainingSet(rows=rows, labels=list(labels), dropped=dict(dropped))


def stratified_split(
    rows: Sequence[Mapping[str, Any]], fraction: float, *, seed: int = 0, min_per_class: int = 1
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Split rows into (train, held_out), holding out ``fraction`` of each class (seeded).

    A class keeps at least ``min_per_class`` rows in training; classes too small to spare one row
    contribute nothing to the held-out part.
    """
    if not 0 <= fraction < 1:
        raise ValueError(f"the held-out fraction must be at least 0 and below 1 (got {fraction})")
    rng = random.Random(seed)
    by_label: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        by_label.setdefault(str(r["label"]), []).append(i)
    held: set[int] = set()
    for lab in sorted(by_label):
        idx = by_label[lab]
        n = int(round(len(idx) * fraction))
        n = min(n, len(idx) - min_per_class)
        if n > 0:
            held.update(rng.sample(idx, n))
    train = [dict(r) for i, r in enumerate(rows) if i not in held]
    out = [dict(r) for i, r in enumerate(rows) if i in held]
    return train, out


__all__ = [
    "LABEL_SOURCES",
    "TrainingSet",
    "build_training_data",
    "example_label",
    "stratified_split",
]
