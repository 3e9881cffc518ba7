"""Agreement between reviewers, and of each reviewer with the LLM relabel and the student judge.

Everything is computed from the current votes (:meth:`ProjectStore.votes`: each reviewer's latest
decision on each example that is not undone). A vote says a class (Accept: the example's current
label; an override: its class) or "rejected"; reject counts as a category of its own.

Every figure comes with ``n``, the number of examples it rests on:

- ``pairs``: Cohen's kappa for each pair of reviewers, over the examples both decided
  (scikit-learn's ``cohen_kappa_score``; None when it is undefined: one category only, or no overlap);
- ``alpha``: Krippendorff's alpha (nominal, the ``krippendorff`` package) over every example with
  at least two votes;
- ``per_class``: for each class, among the examples with two or more votes where someone said that
  class, the share where the reviewers did not all agree;
- ``reviewers``: each reviewer's number of decisions, pace (decisions per hour over their active
  time: gaps over 10 minutes count as breaks; none under a minute of it), and agreement (share of equal answers) with the LLM
  relabel (``llm_label``) and with the student judge (``judge_label``) where those exist.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from .store.team import effective

BREAK_S = 600.0  # a longer gap between two decisions is a break, not review time


@dataclass
class Agreement:
    votes: int = 0
    examples: int = 0
    multi: int = 0  # examples with two or more votes
    alpha: float | None = None
    alpha_n: int = 0
    pairs: list[dict[str, Any]] = field(default_factory=list)
    per_class: list[dict[str, Any]] = field(default_factory=list)
    reviewers: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"votes": self.votes, "examples": self.examples, "multi": self.multi, "alpha": self.alpha,
                "alpha_n": self.alpha_n, "pairs": self.pairs, "per_class": self.per_class,
                "reviewers": self.reviewers}


def _kappa(a: Sequence[str], b: Sequence[str]) -> float | None:
    if not a or len(set(a) | set(b)) < 2:
        return None
    from sklearn.metrics import cohen_kappa_score

    value = float(cohen_kappa_score(list(a), list(b)))
    return None if value != value else value  # NaN: undefined


def _alpha(units: Sequence[Mapping[str, str]], reviewers: Sequence[str]) -> float | None:
    cats = sorted({v for u in units for v in u.values()})
    if len(units) < 1 or len(cats) < 2:
        return None
    import numpy as np
    import krippendorff

    code = {c: i for i, c in enumerate(cats)}
    data = np.full((len(reviewers), len(units)), np.nan)
    for j, u in enumerate(units):
        for i, r in enumerate(reviewers):
            if r in u:
                data[i, j] = code[u[r]]
    try:
        value = float(krippendorff.alpha(reliability_data=data, level_of_measurement="nominal"))
    except (ValueError, ZeroDivisionError):
        return None
    return None if value != value else value


def _pace(times: Sequence[float]) -> float | None:
    ts = sorted(times)
    if len(ts) < 2:
        return None
    active = sum(min(b - a, BREAK_S) for a, b in zip(ts, ts[1:]))
    return (len(ts) - 1) / (active / 3600.0) if active >= 60 else None  # under a minute: too little to say


def agreement(votes: Sequence[Mapping[str, Any]], examples: Mapping[int, Mapping[str, Any]]) -> Agreement:
    """The figures of the module docstring. ``votes``: ``{example_id, reviewer, action, label, at}``;
    ``examples``: id -> ``{label, llm_label, judge_label}`` (the example's current label, the LLM
    relabel and the judge's suggestion, each may be empty)."""
    said: dict[int, dict[str, str]] = {}
    times: dict[str, list[float]] = {}
    for v in votes:
        ex = int(v["example_id"])
        label = (examples.get(ex) or {}).get("label")
        said.setdefault(ex, {})[str(v["reviewer"])] = effective(str(v["action"]), v.get("label"), label)
        times.setdefault(str(v["reviewer"]), []).append(float(v.get("at") or 0.0))
    reviewers = sorted(times)
    out = Agreement(votes=sum(len(s) for s in said.values()), examples=len(said))
    multi = {ex: s for ex, s in said.items() if len(s) >= 2}
    out.multi = len(multi)
    out.alpha = _alpha(list(multi.values()), reviewers) if multi else None
    out.alpha_n = len(multi)
    for a, b in itertools.combinations(reviewers, 2):
        both = [s for s in said.values() if a in s and b in s]
        ya, yb = [s[a] for s in both], [s[b] for s in both]
        out.pairs.append({"a": a, "b": b, "n": len(both), "kappa": _kappa(ya, yb),
                          "agree": (sum(x == y for x, y in zip(ya, yb)) / len(both)) if both else None})
    classes = sorted({c for s in multi.values() for c in s.values()})
    for c in classes:
        touched = [s for s in multi.values() if c in s.values()]
        split = sum(len(set(s.values())) > 1 for s in touched)
        out.per_class.append({"class": c, "n": len(touched), "disagree": split,
                              "share": split / len(touched) if touched else None})
    for r in reviewers:
        mine = {ex: s[r] for ex, s in said.items() if r in s}
        row: dict[str, Any] = {"reviewer": r, "decisions": len(mine), "per_hour": _pace(times[r])}
        for key, col in (("llm", "llm_label"), ("judge", "judge_label")):
            pairs = [(v, (examples.get(ex) or {}).get(col)) for ex, v in mine.items()]
            pairs = [(v, o) for v, o in pairs if o]
            row[f"{key}_n"] = len(pairs)
            row[f"{key}_agree"] = (sum(v == o for v, o in pairs) / len(pairs)) if pairs else None
        out.reviewers.append(row)
    return out


def project_agreement(store: Any) -> Agreement:
    """:func:`agreement` over a project's current votes."""
    votes = store.votes()
    return agreement(votes, store.vote_context(sorted({int(v["example_id"]) for v in votes})))


__all__ = ["Agreement", "agreement", "project_agreement"]
