"""The default selection of generated examples before training: curation that does not make the
model worse than the seeds alone.

Measured here (docs/RESULTS.md): with the bundled LLM the relabels are at chance, and training on
every generated example scores far below the seeds alone. So by default a generated example that no
one has reviewed is trained on only when

- it carries no junk flag (``flag``: meta-text, numbers and symbols, near-copy of a seed, off-topic);
- every judge that has an opinion gives it the same class as its training label: the class it was
  written for (A1), the LLM relabel (``llm_label``, when it was relabelled), and the student judge
  (``judge_label``; when an example has none, the closest class by embedding of the class's name and
  seeds, computed here);
- its confidences (``llm_confidence``, ``judge_confidence``) are at least the configured minimums;
- its label did not come from the embedding judge alone: when the relabel found the LLM weak and the
  judge gave the labels (``label_source="judge"``: the bundled model, or an endpoint less accurate
  than the judge on the held-out seeds, :func:`promptmix_core.judge.choose_label_source`), an
  unreviewed example is left out (``judge_labelled=False``, the default). The judge is the seeds' own
  nearest class, so its label adds nothing the seeds did not say, while the generated texts still
  move the student: measured on the four shared data sets with the bundled model, 3 runs each
  (docs/RESULTS.md, "default pipeline"), the curated examples moved SetFit against its own seeds-only
  control by -20.0 to +6.5 points, -0.8 on average. Review such examples to train on them.

Reviewed decisions always override the selection: accepted and overridden examples are kept,
rejected ones are left out. One module, used by the training data builder
(:func:`.data.build_training_data`, ``curation=``), the training job and the experiment.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Mapping, Sequence

#: why a generated example was left out by the selection (counted in ``TrainingSet.dropped``)
REASONS = {
    "curated_flagged": "junk flag",
    "curated_disagree": "judges disagree",
    "curated_low_confidence": "low confidence",
    "curated_judge_labelled": "labelled by the embedding judge only (the LLM is weak): review to use",
}


@dataclass(frozen=True)
class CurationConfig:
    """The default selection's rules (see the module docstring). ``enabled=False`` keeps every
    example the label rules keep (the paper's A1/A2 data, unfiltered)."""

    enabled: bool = True
    drop_flagged: bool = True
    judges_agree: bool = True
    written_for: bool = True
    min_llm_confidence: float = 0.0
    min_judge_confidence: float = 0.0
    judge_labelled: bool = False

    def __post_init__(self) -> None:
        problems = []
        for name in ("min_llm_confidence", "min_judge_confidence"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0 <= v <= 1:
                problems.append(f"{name} must be a number from 0 to 1 (got {v!r})")
        for name in ("enabled", "drop_flagged", "judges_agree", "written_for", "judge_labelled"):
            if not isinstance(getattr(self, name), bool):
                problems.append(f"{name} must be true or false")
        if problems:
            raise ValueError("invalid curation settings: " + "; ".join(problems))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | bool | None) -> "CurationConfig":
        if isinstance(data, bool):
            return cls(enabled=data)
        data = dict(data or {})
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown curation setting(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


OFF = CurationConfig(enabled=False)


def _get(ex: Any, name: str) -> Any:
    """A field of any example form, or None (columns that newer stores add are read defensively)."""
    if isinstance(ex, Mapping):
        return ex.get(name)
    return getattr(ex, name, None)


@dataclass
class Selection:
    """Which examples the selection keeps (``keep[i]``), and why the others were left out."""

    keep: list[bool]
    reasons: list[str]
    judged: int = 0  # examples given a student-judge label here (they had none)
    counts: Counter = field(default_factory=Counter)


_JUDGED: dict[str, dict[str, tuple[str, float]]] = {}


def embedding_judge(classes: Sequence[tuple[str, Sequence[str]]]) -> Callable[[Sequence[str]], tuple[list[str], list[float]]]:
    """The student judge used when an example has no ``judge_label``: the closest class by cosine
    similarity of all-MiniLM-L6-v2 embeddings to the mean of each class's name and seeds. Returns
    ``judge(texts) -> (labels, confidences)`` (confidence: softmax over the similarities x 20)."""

    key = repr([(str(n), [str(t) for t in s]) for n, s in classes])

    def judge(texts: Sequence[str]) -> tuple[list[str], list[float]]:
        texts = [str(t) for t in texts]
        cache = _JUDGED.setdefault(key, {})
        if len(_JUDGED) > 8:  # a few tasks at most (the page reruns; the experiment moves on)
            for old in list(_JUDGED)[:-8]:
                _JUDGED.pop(old, None)
        new = [t for t in dict.fromkeys(texts) if t not in cache]
        if new:
            for t, lab, c in zip(new, *_judge_now(new)):
                cache[t] = (lab, c)
        return [cache[t][0] for t in texts], [cache[t][1] for t in texts]

    def _judge_now(texts: Sequence[str]) -> tuple[list[str], list[float]]:
        import numpy as np

        from ..embed import embed_texts

        owners, class_texts = [], []
        for i, (name, seeds) in enumerate(classes):
            for t in [name.replace("_", " ")] + list(seeds):
                class_texts.append(t)
                owners.append(i)
        vecs = embed_texts(class_texts + list(texts))
        cv, tv = vecs[: len(class_texts)], vecs[len(class_texts):]
        own = np.array(owners)
        cent = np.stack([cv[own == i].mean(0) for i in range(len(classes))])
        cent = cent / np.linalg.norm(cent, axis=1, keepdims=True).clip(min=1e-9)
        tv = tv / np.linalg.norm(tv, axis=1, keepdims=True).clip(min=1e-9)
        sims = tv @ cent.T
        z = np.exp(20 * (sims - sims.max(axis=1, keepdims=True)))
        p = z / z.sum(axis=1, keepdims=True)
        best = sims.argmax(axis=1)
        return [classes[int(j)][0] for j in best], [float(p[i, j]) for i, j in enumerate(best)]

    return judge


def select(examples: Sequence[Any], labels: Sequence[str | None], config: CurationConfig = CurationConfig(), *,
           judge: Callable[[Sequence[str]], tuple[list[str], list[float]]] | None = None,
           label_source: str | None = None) -> Selection:
    """The selection for ``examples`` given the training label each would get (``labels[i]``, None:
    already left out by the label rules). ``judge`` labels the examples that have no ``judge_label``
    (by default none are judged here: pass :func:`embedding_judge`). ``label_source``: which judge
    gave the labels (``"judge"`` or ``"llm"``, the project's choice; an example's own
    ``label_source`` field wins; None: not known, the judge-labelled rule does not apply)."""
    n = len(examples)
    keep = [lab is not None for lab in labels]
    reasons = [""] * n
    if not config.enabled:
        return Selection(keep, reasons)
    reviewed = [str(_get(ex, "review_status") or "pending") for ex in examples]
    judge_labels = [_get(ex, "judge_label") for ex in examples]
    judge_conf = [_get(ex, "judge_confidence") for ex in examples]
    todo = [i for i in range(n) if keep[i] and reviewed[i] == "pending" and judge_labels[i] is None
            and not (config.drop_flagged and _get(examples[i], "flag"))]
    if config.judges_agree and judge is not None and todo:
        got, conf = judge([str(_get(examples[i], "text") or "") for i in todo])
        for i, lab, c in zip(todo, got, conf):
            judge_labels[i], judge_conf[i] = lab, c
    counts: Counter = Counter()
    for i, ex in enumerate(examples):
        if reviewed[i] == "rejected" and keep[i]:  # reviewed decisions override the selection
            keep[i], reasons[i] = False, "rejected"
            counts["rejected"] += 1
            continue
        if not keep[i] or reviewed[i] != "pending":
            continue
        lab = labels[i]
        why = ""
        if config.drop_flagged and _get(ex, "flag"):
            why = "curated_flagged"
        elif config.judges_agree:
            opinions = [judge_labels[i]]
            if _get(ex, "relabel_status") in ("agree", "changed"):
                opinions.append(_get(ex, "llm_label"))
            if config.written_for:
                opinions.append(_get(ex, "intended_label"))
            if any(o is not None and str(o) != lab for o in opinions):
                why = "curated_disagree"
        if not why:
            llm_c, j_c = _get(ex, "llm_confidence"), judge_conf[i]
            if (llm_c is not None and float(llm_c) < config.min_llm_confidence) or (
                    j_c is not None and float(j_c) < config.min_judge_confidence):
                why = "curated_low_confidence"
        if not why and not config.judge_labelled and (_get(ex, "label_source") or label_source) == "judge":
            why = "curated_judge_labelled"
        if why:
            keep[i] = False
            reasons[i] = why
            counts[why] += 1
    return Selection(keep, reasons, judged=len(todo) if judge is not None else 0, counts=counts)


__all__ = ["OFF", "REASONS", "CurationConfig", "Selection", "embedding_judge", "select"]
