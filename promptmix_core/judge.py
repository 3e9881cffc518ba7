"""A second judge for every generated example that needs no LLM, and the choice of which judge labels.

The **embedding judge** (``method="centroid"``) labels a text with the class whose name, description and seeds it is closest
to (all-MiniLM-L6-v2 embeddings, :mod:`promptmix_core.embed`): each class is the unit mean of the
embeddings of its name, its description (when it says more than the name) and its seed examples, and
a text goes to the class of highest cosine similarity. Its confidence is a softmax over those
similarities with a temperature fitted on the seeds themselves (each seed, left out of its class,
scored against every class: the temperature that gives those held-out seeds the highest likelihood),
so a confidence of 0.8 means about what it says on texts like the seeds. ``method="logreg"``, the
default, is the quick student: a logistic regression on the same embeddings (name, description and
each seed, one row each), its probability as the confidence. ``benchmarks/judge_accuracy.py``
measures both against the LLM relabel on the four shared data sets (docs/RESULTS.md, "judge
accuracy"): the student was ahead on three of them (Twitter complaints, TREC6, Banking77) and
behind on SUBJ, so it is the default.

**Which one labels** (:func:`choose_label_source`): with the bundled model (SmolLM2-135M), which
relabels at chance (docs/RESULTS.md), the embedding judge gives the label and the LLM is a second
opinion. With another endpoint, the LLM classifier and the judge each label the seeds, every seed
left out of the prompt or the centroids that label it (leave-one-out), and the LLM labels only if it
is at least as accurate as the judge there. The choice comes with a one-line reason, saved with the
job and as a project setting (:data:`LABEL_SOURCE_META`).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Mapping, Sequence

from .task import ClassSpec, Task, normalize_name

METHODS = ("centroid", "logreg")
DEFAULT_METHOD = "logreg"  # measured best on 3 of the 4 shared data sets (docs/RESULTS.md, judge accuracy)
POLICIES = ("auto", "judge", "llm")
LABEL_SOURCE_META = "label_source"  # project meta: the latest choice, as JSON (LabelSource.to_dict)
SMOOTHING = 0.1
TEMPERATURES = tuple(round(0.005 * 1.25 ** i, 5) for i in range(25))  # 0.005 .. about 1.0

Embed = Callable[[Sequence[str]], Any]


def _embed(embed: Embed | None) -> Embed:
    if embed is not None:
        return embed
    from .embed import embed_texts

    return embed_texts


def class_texts(spec: ClassSpec, *, description: bool = True) -> list[tuple[str, bool]]:
    """What a class is known by: ``(text, is_seed)`` for its name, its description when it says more
    than the name, and each seed."""
    name = spec.name.replace("_", " ")
    out = [(name, False)]
    desc = (spec.description or "").strip()
    if description and desc and normalize_name(desc) != normalize_name(spec.name):
        out.append((desc, False))
    out.extend((str(ex), True) for ex in spec.examples)
    return out


def class_vectors(task: Task, *, description: bool = True, embed: Embed | None = None):
    """Embeddings of every class's texts (:func:`class_texts`): ``(vectors, owner class index, is_seed)``."""
    import numpy as np

    texts, owners, seeds = [], [], []
    for i, c in enumerate(task.classes):
        for t, is_seed in class_texts(c, description=description):
            texts.append(t)
            owners.append(i)
            seeds.append(is_seed)
    vecs = _unit(np.asarray(_embed(embed)(texts), dtype="float32"))
    return vecs, np.array(owners), np.array(seeds, dtype=bool)


def _unit(x):
    import numpy as np

    return x / np.linalg.norm(x, axis=-1, keepdims=True).clip(min=1e-9)


def centroids(vecs, owners, n_classes: int):
    """One unit vector per class: the mean of its texts' embeddings."""
    import numpy as np

    return _unit(np.stack([vecs[owners == i].mean(0) for i in range(n_classes)]))


def softmax(sims, temperature: float):
    import numpy as np

    z = sims / max(temperature, 1e-6)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


@dataclass
class Judgement:
    label: str
    confidence: float


class EmbeddingJudge:
    """The closest class by embedding (``centroid``) or a logistic regression on the class texts'
    embeddings (``logreg``); fitted on a task's names, descriptions and seeds, nothing else."""

    def __init__(self, task: Task, *, method: str = DEFAULT_METHOD, embed: Embed | None = None,
                 description: bool = True):
        if method not in METHODS:
            raise ValueError(f"unknown judge method {method!r}; one of {', '.join(METHODS)}")
        if not task.classes:
            raise ValueError("the task has no classes")
        import numpy as np

        self.task, self.method, self.embed = task, method, _embed(embed)
        self.names = list(task.class_names)
        self.vecs, self.owners, self.is_seed = class_vectors(task, description=description, embed=self.embed)
        n = len(self.names)
        self.centroids = centroids(self.vecs, self.owners, n)
        # held-out seeds: each seed against every class, its own class's centroid made without it
        sums = np.stack([self.vecs[self.owners == i].sum(0) for i in range(n)])
        counts = np.array([(self.owners == i).sum() for i in range(n)], dtype="float32")
        rows, truth = [], []
        for j in np.flatnonzero(self.is_seed):
            own = self.owners[j]
            if counts[own] < 2:
                continue
            cents = self.centroids.copy()
            cents[own] = _unit((sums[own] - self.vecs[j]) / (counts[own] - 1))
            rows.append(cents @ self.vecs[j])
            truth.append(own)
        self.loo_sims = np.array(rows, dtype="float32").reshape(len(rows), n)
        self.loo_truth = np.array(truth, dtype=int)
        self.temperature = self._fit_temperature()
        self.model = None
        if method == "logreg":
            from sklearn.linear_model import LogisticRegression

            self.model = LogisticRegression(C=10.0, max_iter=2000)
            if n >= 2:
                self.model.fit(self.vecs, self.owners)

    def _fit_temperature(self) -> float:
        """The softmax temperature that gives the held-out seeds their highest likelihood."""
        import numpy as np

        if len(self.loo_truth) == 0:
            return 0.05
        best, best_nll = 0.05, math.inf
        # smoothed targets (SMOOTHING of the mass spread over every class): a handful of held-out seeds,
        # all right, must not drive the temperature to zero and every confidence to 1
        k = self.loo_sims.shape[1]
        target = np.full(self.loo_sims.shape, SMOOTHING / k)
        target[np.arange(len(self.loo_truth)), self.loo_truth] += 1.0 - SMOOTHING
        for t in TEMPERATURES:
            logp = np.log(softmax(self.loo_sims, t).clip(min=1e-12))
            nll = float(-(target * logp).sum(axis=1).mean())
            if nll < best_nll:
                best, best_nll = t, nll
        return best

    def seed_accuracy(self) -> float | None:
        """Leave-one-out accuracy on the seeds, by the centroid rule for either method (refitting the
        student once per held-out seed would cost more than it tells); None with no seeds."""
        if len(self.loo_truth) == 0:
            return None
        return float((self.loo_sims.argmax(axis=1) == self.loo_truth).mean())

    def probabilities(self, texts: Sequence[str]):
        """``(len(texts), classes)`` probabilities, rows summing to 1."""
        import numpy as np

        texts = [str(t) for t in texts]
        if not texts:
            return np.zeros((0, len(self.names)), dtype="float32")
        x = _unit(np.asarray(self.embed(texts), dtype="float32"))
        if self.method == "logreg" and len(self.names) >= 2:
            proba = np.zeros((len(texts), len(self.names)), dtype="float32")
            proba[:, self.model.classes_] = self.model.predict_proba(x)
            return proba
        return softmax(x @ self.centroids.T, self.temperature)

    def judge(self, texts: Sequence[str]) -> list[Judgement]:
        """The class and confidence for each text; every text gets a class."""
        proba = self.probabilities(texts)
        best = proba.argmax(axis=1) if len(proba) else []
        return [Judgement(self.names[b], round(float(proba[i, b]), 4)) for i, b in enumerate(best)]


def judge_texts(task: Task, texts: Sequence[str], *, method: str = DEFAULT_METHOD,
                embed: Embed | None = None) -> list[Judgement]:
    """:class:`EmbeddingJudge` of ``task`` on ``texts``."""
    return EmbeddingJudge(task, method=method, embed=embed).judge(texts)


# --------------------------------------------------------------------------- which judge labels
@dataclass
class LabelSource:
    """Which judge gives the default label (``judge`` or ``llm``) and why, in one line."""

    source: str
    reason: str
    judge_method: str = DEFAULT_METHOD
    llm_model: str | None = None
    judge_seed_accuracy: float | None = None
    llm_seed_accuracy: float | None = None
    seeds_checked: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any] | None) -> "LabelSource | None":
        if not raw or raw.get("source") not in ("judge", "llm"):
            return None
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in raw.items() if k in known})


def saved_label_source(store: Any) -> LabelSource | None:
    """The project's saved choice (:data:`LABEL_SOURCE_META`, written by the relabel job), or None when
    no relabel has chosen or the setting does not read."""
    try:
        raw = json.loads(store.get_meta(LABEL_SOURCE_META) or "{}")
    except (TypeError, ValueError):
        return None
    return LabelSource.from_dict(raw) if isinstance(raw, Mapping) else None


def is_bundled_model(config: Any) -> bool:
    """The LLM is the bundled SmolLM2-135M (served locally), which relabels at chance."""
    model = str(getattr(config, "model", "") or "").lower()
    return (bool(getattr(config, "local", False)) and getattr(config, "api_key", "") == "local") or "smollm2" in model


def loo_seed_items(task: Task, max_seeds: int = 48) -> list[tuple[Task, str, str]]:
    """``(task without that seed, seed text, its class)`` for up to ``max_seeds`` seeds, spread over the
    classes (one per class in turn), only from classes that keep at least one seed."""
    per_class = [[(c, j) for j in range(len(c.examples))] for c in task.classes if len(c.examples) >= 2]
    picked: list[tuple[ClassSpec, int]] = []
    depth = 0
    while len(picked) < max_seeds and any(depth < len(p) for p in per_class):
        for p in per_class:
            if depth < len(p) and len(picked) < max_seeds:
                picked.append(p[depth])
        depth += 1
    out = []
    for spec, j in picked:
        classes = [ClassSpec(name=c.name, description=c.description,
                             examples=[e for k, e in enumerate(c.examples) if not (c is spec and k == j)])
                   for c in task.classes]
        out.append((Task(name=task.name, classes=classes), spec.examples[j], spec.name))
    return out


async def allm_seed_accuracy(task: Task, llm: Any, relabel_config: Any = None, *, max_seeds: int = 48) -> tuple[float | None, int]:
    """Leave-one-out accuracy of the LLM classifier on the seeds: each seed, taken out of the prompt's
    examples, classified as the relabel does (one call each). ``(accuracy, seeds checked)``."""
    import asyncio

    from .relabel import RelabelConfig, arelabel

    items = loo_seed_items(task, max_seeds)
    if not items:
        return None, 0
    cfg = relabel_config or RelabelConfig()
    cfg = RelabelConfig(**{**asdict(cfg), "include_intended": False})

    async def one(sub: Task, text: str) -> str | None:
        res = await arelabel(sub, [{"text": text}], llm, cfg)
        return res[0].llm_label if res and res[0] is not None else None

    answers = await asyncio.gather(*(one(sub, text) for sub, text, _ in items))
    right = sum(a == truth for a, (_s, _t, truth) in zip(answers, items))
    return right / len(items), len(items)


async def achoose_label_source(task: Task, llm: Any = None, *, policy: str = "auto", relabel_config: Any = None,
                               judge: EmbeddingJudge | None = None, max_seeds: int = 48) -> LabelSource:
    """Pick the judge that gives the default label (see the module's doc) and say why."""
    if policy not in POLICIES:
        raise ValueError(f"unknown label source policy {policy!r}; one of {', '.join(POLICIES)}")
    model = getattr(getattr(llm, "config", None), "model", None)
    method = judge.method if judge is not None else DEFAULT_METHOD
    if policy == "judge":
        return LabelSource("judge", "asked for: the embedding judge labels (--label-source judge)", method, model)
    if policy == "llm":
        return LabelSource("llm", "asked for: the LLM relabel labels (--label-source llm)", method, model)
    if llm is None:
        return LabelSource("judge", "no LLM relabel: the embedding judge labels", method, model)
    if is_bundled_model(llm.config):
        return LabelSource("judge", f"the LLM is the bundled {model}, which relabels at chance "
                                    "(docs/RESULTS.md); the embedding judge labels", method, model)
    judge = judge or EmbeddingJudge(task, method=method)
    j_acc = judge.seed_accuracy()
    l_acc, n = await allm_seed_accuracy(task, llm, relabel_config, max_seeds=max_seeds)
    if l_acc is None or j_acc is None:
        return LabelSource("llm", f"{model} at the endpoint labels (too few seeds, under 2 a class, to compare "
                                  "it with the embedding judge)", method, model, j_acc, l_acc, n)
    if l_acc >= j_acc:
        return LabelSource("llm", f"{model} labels: on {n} held-out seeds it got {l_acc:.0%}, the embedding judge "
                                  f"{j_acc:.0%}", method, model, j_acc, l_acc, n)
    return LabelSource("judge", f"the embedding judge labels: on {n} held-out seeds it got {j_acc:.0%}, "
                                f"{model} {l_acc:.0%}", method, model, j_acc, l_acc, n)


def choose_label_source(task: Task, llm: Any = None, **kw: Any) -> LabelSource:
    """Synchronous :func:`achoose_label_source`."""
    import asyncio

    if llm is None:
        return asyncio.run(achoose_label_source(task, None, **kw))
    return llm.run_sync(achoose_label_source(task, llm, **kw))


def chosen_label(source: str, judge_label: str | None, llm_label: str | None, fallback: str | None) -> tuple[str | None, str]:
    """``(label, where it came from)`` for a row: the chosen judge's label, else the other's, else the
    fallback (the class it was written for)."""
    first, second = (judge_label, "judge"), (llm_label, "llm")
    if source == "llm":
        first, second = second, first
    for label, name in (first, second):
        if label:
            return label, name
    return fallback, "intended"


def label_rows(rows: Sequence[dict[str, Any]], judgements: Sequence[Judgement | None], choice: LabelSource) -> None:
    """Write ``judge_label``, ``judge_confidence``, ``label_source`` and ``label`` (the chosen one) into
    JSONL rows that already hold ``llm_label`` (None when the relabel named no class)."""
    for row, j in zip(rows, judgements):
        row["judge_label"] = j.label if j else None
        row["judge_confidence"] = j.confidence if j else None
        label, src = chosen_label(choice.source, row["judge_label"], row.get("llm_label"),
                                  row.get("intended_label") or row.get("label"))
        row["label"] = label
        row["label_source"] = src


def agreement_summary(rows: Sequence[Mapping[str, Any]]) -> str:
    """``judge and LLM agree on 61 of 120`` (rows with both)."""
    both = [r for r in rows if r.get("judge_label") and r.get("llm_label")]
    same = sum(r["judge_label"] == r["llm_label"] for r in both)
    return f"judge and LLM agree on {same} of {len(both)}"


__all__ = ["DEFAULT_METHOD", "EmbeddingJudge", "Judgement", "LABEL_SOURCE_META", "LabelSource", "METHODS",
           "POLICIES", "achoose_label_source", "agreement_summary", "allm_seed_accuracy", "choose_label_source",
           "chosen_label", "class_texts", "class_vectors", "centroids", "is_bundled_model", "judge_texts", "saved_label_source",
           "label_rows", "loo_seed_items"]
