"""A training run's scores in one shape, whichever evaluation it recorded (the Results page and the
report read them through here)."""

from __future__ import annotations

from typing import Any


def run_scores(final_metrics: dict[str, Any] | None) -> dict[str, Any]:
    """Scores of a run in one shape, whichever evaluation it recorded.

    Accepts flat keys (``accuracy``, ``macro_f1``, ``per_class``, ``confusion_matrix`` + ``labels``)
    and the trainer's prefixed ones (``test_*`` preferred, then ``val_*``; confusion as
    ``{"labels", "matrix"}``). Returns accuracy, macro_f1, per_class, labels (rows), columns, matrix,
    n and where the scores come from (``eval``: ``"test set"``, ``"evaluation set"``,
    ``"held-out generated examples"`` or None).
    """
    fm = dict(final_metrics or {})
    for prefix, where in (("test_", "test set"), ("", "evaluation set"), ("val_", "held-out generated examples")):
        acc = fm.get(f"{prefix}accuracy")
        if acc is None:
            continue
        per_class = fm.get(f"{prefix}per_class") or {}
        conf = fm.get(f"{prefix}confusion") or {}
        matrix = fm.get(f"{prefix}confusion_matrix") or (conf.get("matrix") if isinstance(conf, dict) else None)
        cols = fm.get(f"{prefix}labels") or fm.get("labels") or (conf.get("labels") if isinstance(conf, dict) else None)
        cols = list(cols or per_class.keys())
        rows = cols[: len(matrix)] if matrix else list(per_class.keys())
        return {
            "accuracy": float(acc),
            "macro_f1": float(fm[f"{prefix}macro_f1"]) if fm.get(f"{prefix}macro_f1") is not None else None,
            "per_class": per_class,
            "labels": rows,
            "columns": cols,
            "matrix": matrix,
            "n": fm.get(f"{prefix}n"),
            "eval": where,
        }
    return {"accuracy": None, "macro_f1": None, "per_class": {}, "labels": [], "columns": [], "matrix": None,
            "n": None, "eval": None}


__all__ = ["run_scores"]
