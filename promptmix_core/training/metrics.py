"""Classification metrics in plain Python (no scikit-learn import needed).

Macro-F1 averages over the classes that occur in the gold labels or the predictions (classes
absent from both have no defined F1 and are left out, as in scikit-learn when ``labels`` is not
given). A prediction of ``None`` (e.g. an unparseable LLM answer) counts as wrong for every class.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Sequence

NONE_LABEL = "<none>"


def compute_metrics(
    y_true: Sequence[str], y_pred: Sequence[str | None], labels: Sequence[str] | None = None
) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class precision/recall/F1/support and the confusion matrix.

    ``confusion[i][j]`` counts gold class ``labels[i]`` predicted as ``labels[j]``; predictions
    outside ``labels`` (including ``None``) go to an extra last column named ``<none>`` when present.
    """
    if len(y_true) != len(y_pred):
        raise ValueError(f"{len(y_true)} gold labels but {len(y_pred)} predictions")
    y_pred = [NONE_LABEL if p is None else str(p) for p in y_pred]
    y_true = [str(t) for t in y_true]
    if labels is None:
        labels = sorted(set(y_true) | {p for p in y_pred if p != NONE_LABEL})
    labels = list(labels)
    index = {lab: i for i, lab in enumerate(labels)}
    extra = any(p not in index for p in y_pred)
    cols = labels + ([NONE_LABEL] if extra else [])
    conf = [[0] * len(cols) for _ in labels]
    n = len(y_true)
    correct = 0
    for t, p in zip(y_true, y_pred):
        if t not in index:
            raise ValueError(f"gold label {t!r} is not one of the classes")
        j = index.get(p, len(labels))
        conf[index[t]][j] += 1
        correct += t == p
    per_class: dict[str, dict[str, float]] = {}
    f1s = []
    for i, lab in enumerate(labels):
        tp = conf[i][i]
        support = sum(conf[i])
        predicted = sum(conf[r][i] for r in range(len(labels)))
        prec = tp / predicted if predicted else 0.0
        rec = tp / support if support else 0.0
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        per_class[lab] = {"precision": prec, "recall": rec, "f1": f1, "support": support}
        if support or predicted:
            f1s.append(f1)
    return {
        "accuracy": correct / n if n else 0.0,
        "macro_f1": sum(f1s) / len(f1s) if f1s else 0.0,
        "n": n,
        "per_class": per_class,
        "confusion": {"labels": cols, "matrix": conf},
    }


def mean_std(values: Iterable[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0.0 for a single value)."""
    vals = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not vals:
        return float("nan"), float("nan")
    m = sum(vals) / len(vals)
    if len(vals) < 2:
        return m, 0.0
    var = sum((v - m) ** 2 for v in vals) / (len(vals) - 1)
    return m, math.sqrt(var)


def aggregate(runs: Sequence[Mapping[str, Any]], keys: Sequence[str] = ("accuracy", "macro_f1")) -> dict[str, Any]:
    """Mean and std over runs (one metrics dict per seed) for each of ``keys``."""
    out: dict[str, Any] = {"runs": len(runs)}
    for k in keys:
        m, s = mean_std(r.get(k) for r in runs if k in r)
        out[f"{k}_mean"] = m
        out[f"{k}_std"] = s
    return out


def format_confusion(metrics: Mapping[str, Any]) -> str:
    """The confusion matrix as a Markdown table (rows gold, columns predicted)."""
    conf = metrics["confusion"]
    cols = conf["labels"]
    head = "| gold \\ predicted | " + " | ".join(cols) + " |"
    sep = "|---" * (len(cols) + 1) + "|"
    lines = [head, sep]
    for lab, row in zip(cols, conf["matrix"]):
        lines.append(f"| {lab} | " + " | ".join(str(v) for v in row) + " |")
    return "\n".join(lines)


__all__ = ["NONE_LABEL", "aggregate", "compute_metrics", "format_confusion", "mean_std"]
