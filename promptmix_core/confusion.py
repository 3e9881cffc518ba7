"""Which class pairs does the student confuse? The input of "generate where the model is confused".

PromptMix aims generation at class boundaries chosen at random; aiming at the boundaries the student
actually gets wrong (as in "Clear Up Confusion") spends the LLM budget where it helps. Two sources:

* a labelled set (test or validation): the off-diagonal cells of the confusion matrix, both directions
  of a pair added up (``pairs_from_confusion``);
* no labelled set: the student's low-margin predictions on an unlabelled pool, counting for each text
  whose top two classes are within ``margin`` of each other that pair (``pairs_from_margins``).

A pair ``(a, b)`` means "write examples of ``a`` mixed with ``b``"; both directions are returned as
separate pairs (a mixed with b, and b mixed with a) because the confusion goes both ways unless the
counts say otherwise. Pure functions: no I/O, no model, no store.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from .training.metrics import NONE_LABEL


@dataclass(frozen=True)
class ConfusedPair:
    """Class ``a`` is confused with class ``b``: ``count`` errors (or low-margin texts) between them."""

    a: str
    b: str
    count: float
    a_as_b: float = 0.0  # gold a predicted b
    b_as_a: float = 0.0  # gold b predicted a
    source: str = "confusion"  # "confusion" (labelled set) or "margin" (unlabelled pool)

    def as_dict(self) -> dict[str, Any]:
        return {"a": self.a, "b": self.b, "count": self.count, "a_as_b": self.a_as_b, "b_as_a": self.b_as_a,
                "source": self.source}


def pairs_from_confusion(confusion: Mapping[str, Any], *, top: int = 3, min_count: float = 1) -> list[ConfusedPair]:
    """The ``top`` most confused unordered class pairs of a confusion matrix, most errors first.

    ``confusion`` is ``{"labels": [...], "matrix": [[...]]}`` as written by ``compute_metrics`` (rows
    gold, columns predicted; an extra ``<none>`` column for unparseable predictions is ignored). Ties
    are broken by class order so the result is deterministic."""
    labels = list(confusion.get("labels") or [])
    matrix = confusion.get("matrix") or []
    classes = [lab for lab in labels if lab != NONE_LABEL]
    index = {lab: i for i, lab in enumerate(labels)}
    pairs: list[ConfusedPair] = []
    for i, a in enumerate(classes):
        for b in classes[i + 1:]:
            ia, ib = index[a], index[b]
            a_as_b = float(matrix[ia][ib]) if ia < len(matrix) and ib < len(matrix[ia]) else 0.0
            b_as_a = float(matrix[ib][ia]) if ib < len(matrix) and ia < len(matrix[ib]) else 0.0
            total = a_as_b + b_as_a
            if total >= min_count and total > 0:
                pairs.append(ConfusedPair(a, b, total, a_as_b, b_as_a, "confusion"))
    order = {lab: i for i, lab in enumerate(classes)}
    pairs.sort(key=lambda p: (-p.count, order[p.a], order[p.b]))
    return pairs[: max(0, int(top))]


def pairs_from_margins(
    probs: Sequence[Sequence[float]], labels: Sequence[str], *, margin: float = 0.2, top: int = 3
) -> list[ConfusedPair]:
    """Pairs from an unlabelled pool: for every text whose two most probable classes are within ``margin``
    of each other, count that pair (weighted by how close: ``1 - gap / margin``)."""
    labels = list(labels)
    counts: dict[tuple[int, int], float] = {}
    for row in probs:
        row = [float(v) for v in row]
        if len(row) != len(labels) or len(row) < 2:
            raise ValueError(f"a probability row has {len(row)} values for {len(labels)} classes")
        best = sorted(range(len(row)), key=lambda j: (-row[j], j))[:2]
        gap = row[best[0]] - row[best[1]]
        if gap <= margin:
            key = (min(best), max(best))
            counts[key] = counts.get(key, 0.0) + (1.0 - gap / margin if margin > 0 else 1.0)
    pairs = [ConfusedPair(labels[i], labels[j], round(c, 4), source="margin") for (i, j), c in counts.items()]
    pairs.sort(key=lambda p: (-p.count, labels.index(p.a), labels.index(p.b)))
    return pairs[: max(0, int(top))]


def directed(pairs: Iterable[ConfusedPair]) -> list[tuple[str, str]]:
    """Generation pairs ``(ci, cj)`` (write ``ci`` mixed with ``cj``) for confused pairs: both directions,
    in order, without repeats."""
    out: list[tuple[str, str]] = []
    for p in pairs:
        for pair in ((p.a, p.b), (p.b, p.a)):
            if pair not in out:
                out.append(pair)
    return out


def parse_pairs(spec: str, class_names: Sequence[str]) -> list[tuple[str, str]]:
    """``"a:b,c:d"`` -> ``[("a", "b"), ("c", "d")]``; every name must be a class, a pair two different
    classes. Raises ``ValueError`` listing every problem."""
    names = list(class_names)
    pairs: list[tuple[str, str]] = []
    problems: list[str] = []
    for part in (spec or "").split(","):
        part = part.strip()
        if not part:
            continue
        if part.count(":") != 1:
            problems.append(f"{part!r} is not a pair: write CLASS:OTHER")
            continue
        a, b = (s.strip() for s in part.split(":"))
        bad = [x for x in (a, b) if x not in names]
        if bad:
            problems.extend(f"{x!r} is not a class of the task" for x in bad)
            continue
        if a == b:
            problems.append(f"{part!r} pairs a class with itself")
            continue
        if (a, b) not in pairs:
            pairs.append((a, b))
    if not pairs and not problems:
        problems.append("no class pairs given")
    if problems:
        raise ValueError("; ".join(problems))
    return pairs


def pairs_from_file(path: str | Path, class_names: Sequence[str], *, top: int = 3) -> list[tuple[str, str]]:
    """Directed generation pairs from a JSON file: a run's metrics (``{"confusion": {...}}``, or nested
    under ``test_metrics`` / ``final_metrics`` / ``metrics``), a bare confusion matrix
    (``{"labels", "matrix"}``), or a list of pairs (``[["a", "b"], ...]`` or ``[{"a", "b"}, ...]``)."""
    try:
        data = json.loads(Path(path).read_text("utf-8"))
    except FileNotFoundError:
        raise ValueError(f"file not found: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{Path(path).name} is not a readable JSON file ({exc})") from None
    conf = find_confusion(data)
    if conf is not None:
        found = directed(pairs_from_confusion(conf, top=top))
        if not found:
            raise ValueError(f"{Path(path).name}: the confusion matrix has no errors between classes")
        return _check_names(found, class_names, path)
    if isinstance(data, list):
        out = []
        for item in data:
            if isinstance(item, Mapping) and "a" in item and "b" in item:
                out.append((str(item["a"]), str(item["b"])))
            elif isinstance(item, (list, tuple)) and len(item) == 2:
                out.append((str(item[0]), str(item[1])))
            else:
                raise ValueError(f"{Path(path).name}: {item!r} is not a pair")
        return _check_names(out, class_names, path)
    raise ValueError(f"{Path(path).name} holds neither a confusion matrix nor a list of pairs")


def find_confusion(data: Any) -> Mapping[str, Any] | None:
    """The confusion matrix inside a metrics document, wherever our writers put it."""
    if not isinstance(data, Mapping):
        return None
    if "labels" in data and "matrix" in data:
        return data
    if isinstance(data.get("confusion"), Mapping):
        return data["confusion"]
    for key in ("test_confusion", "val_confusion"):  # a run's final metrics (store: runs.final_metrics)
        if isinstance(data.get(key), Mapping):
            return data[key]
    for key in ("test_metrics", "test", "final_metrics", "metrics", "validation"):
        inner = find_confusion(data.get(key))
        if inner is not None:
            return inner
    return None


def pairs_from_run(final_metrics: Mapping[str, Any], class_names: Sequence[str], *, top: int = 3,
                   what: str = "the run") -> list[tuple[str, str]]:
    """Directed generation pairs from a training run's metrics (its test set's confusion matrix, else its
    validation split's). Raises ``ValueError`` when the run has neither or confuses no pair."""
    conf = find_confusion(final_metrics)
    if conf is None:
        raise ValueError(f"{what} was scored on no labelled set (test set or validation split), so its "
                         "confusions are unknown: give a test set, or use the low-margin pairs")
    pairs = directed(pairs_from_confusion(conf, top=top))
    if not pairs:
        raise ValueError(f"{what} confuses no pair of classes on its labelled set")
    return _check_names(pairs, class_names, what)


def resolve_pairs(class_names: Sequence[str], *, pairs: str | None = None, source: str | None = None,
                  store: Any = None, top: int = 3) -> list[tuple[str, str]]:
    """The generation pairs a command asks for: ``pairs`` ("a:b,c:d"), or ``source``: a run id of the
    project in ``store``, or a JSON file (run metrics, a confusion matrix or a list of pairs)."""
    if pairs and source:
        raise ValueError("give class pairs or where to read them from, not both")
    if pairs:
        return parse_pairs(pairs, class_names)
    if source is None:
        return []
    text = str(source).strip()
    if text.isdigit() and not Path(text).exists():
        if store is None:
            raise ValueError(f"a run id ({text}) needs the project it belongs to (--project)")
        run = store.get_run(int(text))
        if run is None:
            raise ValueError(f"the project has no training run #{text}")
        return pairs_from_run(run.final_metrics or {}, class_names, top=top, what=f"run #{text}")
    return pairs_from_file(text, class_names, top=top)


def suggest_pairs(final_metrics: Mapping[str, Any], labels: Sequence[str], *, pool_probs: Any = None,
                  top: int = 3) -> tuple[list[ConfusedPair], str]:
    """The pairs a finished run confuses most, and where that was read: its labelled set's confusion
    matrix (``"test set"`` / ``"validation split"``), else its low-margin predictions on an unlabelled
    pool (``pool_probs``, rows in ``labels`` order: ``"generated pool"``); ``([], "")`` when neither."""
    for key, where in (("test_confusion", "test set"), ("val_confusion", "validation split")):
        conf = final_metrics.get(key) if isinstance(final_metrics, Mapping) else None
        if isinstance(conf, Mapping):
            return pairs_from_confusion(conf, top=top), where
    if pool_probs is not None and len(pool_probs):
        return pairs_from_margins(pool_probs, labels, top=top), "generated pool"
    return [], ""


def _check_names(pairs: list[tuple[str, str]], class_names: Sequence[str], path: Any) -> list[tuple[str, str]]:
    bad = sorted({x for p in pairs for x in p if x not in class_names})
    if bad:
        raise ValueError(f"{Path(str(path)).name} names classes the task does not have: {', '.join(bad)}")
    return pairs


__all__ = ["ConfusedPair", "directed", "find_confusion", "pairs_from_confusion", "pairs_from_file",
           "pairs_from_margins", "pairs_from_run", "parse_pairs", "resolve_pairs", "suggest_pairs"]
