"""Drawing k seed examples per class: the one rule used by the app, the CLI and the experiment runner.

For a given ``seed`` the draw is: classes in sorted name order, one ``random.Random(seed)`` shared
across them; each class's texts are de-duplicated and sorted, then ``k`` of them are sampled
(when the class has at least ``k``). So the same labelled data and seed give the same seeds from
every face, whatever the file's row order.

A class with fewer than ``k`` texts: ``keep_short=False`` (CLI, experiments: an explicit ``--k``
must hold) raises :class:`TaskError` naming every such class; ``keep_short=True`` (the app's
import) keeps the class whole.
"""

from __future__ import annotations

import random
from typing import Iterable, Mapping, Sequence

from .errors import TaskError


def group_by_label(rows: Iterable[Mapping[str, str]]) -> dict[str, list[str]]:
    by_label: dict[str, list[str]] = {}
    for r in rows:
        by_label.setdefault(r["label"], []).append(r["text"])
    return by_label


def draw_seeds(
    by_label: Mapping[str, Sequence[str]], k: int | None, seed: int = 0, *, keep_short: bool = False
) -> dict[str, list[str]]:
    """``{label: texts}`` with ``k`` texts per class (see the module docstring), labels sorted.

    ``k=None`` keeps every text (de-duplicated, in the given order)."""
    if k is None:
        return {label: list(dict.fromkeys(by_label[label])) for label in sorted(by_label)}
    if k < 1:
        raise TaskError("k must be at least 1")
    rng = random.Random(seed)
    out: dict[str, list[str]] = {}
    short: list[str] = []
    for label in sorted(by_label):
        texts = sorted(dict.fromkeys(by_label[label]))
        if len(texts) < k:
            if not keep_short:
                short.append(f"class '{label}' has only {len(texts)} examples; --k {k} needs {k}")
            out[label] = texts
            continue
        out[label] = rng.sample(texts, k)
    if short:
        raise TaskError(short)
    return out


__all__ = ["draw_seeds", "group_by_label"]
