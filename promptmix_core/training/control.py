"""The seeds-only control beside every run, and the paired bootstrap that says what the generated
data did.

Every training run scored on a test set also trains the *same* student with the *same* settings on
the seeds alone and scores it on the same test rows. The control is cached per seed set, student,
settings and label set (a folder ``control-<hash>`` under the project's ``NAME.models/``), so it
costs once; its predictions are cached per test set. :func:`paired_bootstrap` resamples the test
rows (the same rows for both models) to give "generated data: +x.x points (95 % interval a..b)".
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

CONTROL_FILE = "control.json"
BOOTSTRAP_SAMPLES = 2000
CONTROL_VERSION = 1


def control_key(seed_rows: Sequence[Mapping[str, Any]], student: str, settings: Mapping[str, Any],
                labels: Sequence[str]) -> str:
    """A hash of what decides the control model: the seeds (order-free), the student, its settings, the classes."""
    seeds = sorted((str(r["text"]), str(r["label"])) for r in seed_rows)
    blob = json.dumps({"v": CONTROL_VERSION, "seeds": seeds, "student": student, "settings": dict(settings),
                       "labels": list(labels)}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def paired_bootstrap(correct_a: Sequence[bool], correct_b: Sequence[bool], *, samples: int = BOOTSTRAP_SAMPLES,
                     seed: int = 0, level: float = 0.95) -> tuple[float, float, float]:
    """(delta, low, high): accuracy of A minus accuracy of B on the same rows, with the ``level``
    percentile interval of that difference over ``samples`` resamples of the rows (paired: a
    resampled row counts for both models)."""
    if len(correct_a) != len(correct_b):
        raise ValueError(f"{len(correct_a)} rows for one model but {len(correct_b)} for the other")
    n = len(correct_a)
    if n == 0:
        raise ValueError("no test rows to compare on")
    import numpy as np

    diff = np.asarray(correct_a, dtype=np.float64) - np.asarray(correct_b, dtype=np.float64)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(samples, n))
    means = diff[idx].mean(axis=1)
    tail = (1.0 - level) / 2.0
    lo, hi = np.quantile(means, [tail, 1.0 - tail])
    return float(diff.mean()), float(lo), float(hi)


@dataclass
class Comparison:
    """A run against its seeds-only control on the same test rows (fractions, not points)."""

    accuracy: float
    control_accuracy: float
    macro_f1: float | None
    control_macro_f1: float | None
    delta: float
    low: float
    high: float
    n: int

    @property
    def verdict(self) -> str:
        """"better" (the interval above 0), "worse" (below 0) or "unclear" (it spans 0)."""
        return "better" if self.low > 0 else "worse" if self.high < 0 else "unclear"

    def headline(self) -> str:
        """e.g. "generated data: +3.1 points (95 % bootstrap interval +0.4..+5.9)"."""
        return (f"generated data: {self.delta * 100:+.1f} points (95 % bootstrap interval "
                f"{self.low * 100:+.1f}..{self.high * 100:+.1f}, {self.n} test rows)")

    def advice(self) -> str:
        if self.verdict == "worse":
            return ("The generated data made the model worse than the seeds alone: the whole interval is "
                    "below zero. Use the seeds-only model instead (export it, or keep it as a run).")
        if self.verdict == "better":
            return "The generated data helped: the whole interval is above zero."
        return ("No clear difference from the seeds alone: the interval spans zero (more test rows "
                "narrow it).")

    def to_dict(self) -> dict[str, Any]:
        return {"accuracy": self.delta, "ci95": [self.low, self.high], "macro_f1":
                None if self.macro_f1 is None or self.control_macro_f1 is None else self.macro_f1 - self.control_macro_f1,
                "n": self.n, "verdict": self.verdict}


def compare(run_predicted: Sequence[str], control_predicted: Sequence[str], gold: Sequence[str], *,
            run_macro_f1: float | None = None, control_macro_f1: float | None = None) -> Comparison:
    """The run against the control on the same ``gold`` rows (per-row predictions of both)."""
    a = [p == g for p, g in zip(run_predicted, gold)]
    b = [p == g for p, g in zip(control_predicted, gold)]
    if len(a) != len(gold) or len(b) != len(gold):
        raise ValueError("the run and the control must be scored on the same test rows")
    delta, lo, hi = paired_bootstrap(a, b)
    return Comparison(accuracy=sum(a) / len(a), control_accuracy=sum(b) / len(b), macro_f1=run_macro_f1,
                      control_macro_f1=control_macro_f1, delta=delta, low=lo, high=hi, n=len(gold))


def describe(fm: Mapping[str, Any] | None) -> dict[str, Any]:
    """What a run's final metrics say about its control, for the faces: ``{"state", "text", "advice",
    "verdict", "model_dir"}``; state "compared", "is_control" (the run trained on seeds only),
    "no_test_set" or "missing" (a run from before controls)."""
    fm = dict(fm or {})
    ctl = fm.get("control") or {}
    if ctl.get("seeds_only_run"):
        return {"state": "is_control", "text": "This run trained on the seeds alone: it is its own control.",
                "advice": "", "verdict": None, "model_dir": None}
    if ctl.get("delta"):
        d = ctl["delta"]
        lo, hi = d["ci95"]
        cmp_ = Comparison(accuracy=fm.get("test_accuracy") or 0.0, control_accuracy=ctl.get("test", {}).get("accuracy", 0.0),
                          macro_f1=None, control_macro_f1=None, delta=d["accuracy"], low=lo, high=hi, n=d.get("n", 0))
        return {"state": "compared", "text": cmp_.headline(), "advice": cmp_.advice(), "verdict": cmp_.verdict,
                "model_dir": ctl.get("model_dir"), "control_accuracy": ctl.get("test", {}).get("accuracy"),
                "delta": d["accuracy"], "ci95": [lo, hi]}
    if ctl.get("skipped"):
        return {"state": "no_test_set", "text": ctl["skipped"], "advice": "", "verdict": None, "model_dir": None}
    return {"state": "missing", "text": "", "advice": "", "verdict": None, "model_dir": None}


NO_TEST_SET = ("The comparison with the seeds alone needs a test set of real labelled texts: upload one "
               "(1 · Task → Test set, or 4 · Train → Test set) or give `--test FILE` to `promptmix train`.")


def seeds_only_control(
    models_dir: str | Path,
    seed_rows: Sequence[Mapping[str, Any]],
    labels: Sequence[str],
    student: str,
    settings: Mapping[str, Any],
    test_rows: Sequence[Mapping[str, Any]],
    fit: Callable[[list[str], list[str], str], Any],
    *,
    test_fingerprint: str | None = None,
) -> dict[str, Any]:
    """The control's scores on ``test_rows`` (training it once, with ``fit(texts, labels, out_dir)``
    returning a :class:`.trainer.TrainResult` with ``test_metrics`` incl. ``predicted``), cached in
    ``models_dir/control-<key>/``. Returns ``{"key", "model_dir", "student", "n_train", "test":
    {"accuracy", "macro_f1", "n"}, "predicted": [...], "cached": bool, "train_time_s"}``."""
    key = control_key(seed_rows, student, settings, labels)
    folder = Path(models_dir) / f"control-{key}"
    fp = test_fingerprint or _fingerprint(test_rows)
    meta_path = folder / CONTROL_FILE
    meta: dict[str, Any] = {}
    if meta_path.exists():
        try:
            meta = json.loads(meta_path.read_text("utf-8"))
        except (OSError, ValueError):
            meta = {}
    scored = (meta.get("scores") or {}).get(fp)
    if meta.get("key") == key and scored and (folder / "label_map.json").exists():
        return {**_public(meta, folder), "test": scored["test"], "predicted": scored["predicted"], "cached": True}
    texts = [str(r["text"]) for r in seed_rows]
    gold_train = [str(r["label"]) for r in seed_rows]
    if meta.get("key") == key and (folder / "label_map.json").exists():  # the model exists: score it again
        from .model_io import load_classifier

        clf = load_classifier(folder)
        pred, _ = clf.predict([str(r["text"]) for r in test_rows])
        from .metrics import compute_metrics

        m = compute_metrics([str(r["label"]) for r in test_rows], pred, list(labels))
        m["predicted"] = list(pred)
        train_time = meta.get("train_time_s")
    else:
        folder.mkdir(parents=True, exist_ok=True)
        res = fit(texts, gold_train, str(folder))
        if res.status == "cancelled":
            from ..errors import Cancelled

            raise Cancelled("training was stopped during the seeds-only control")
        if res.status != "done" or not res.test_metrics:
            raise RuntimeError("the seeds-only control did not finish")
        m = res.test_metrics
        train_time = round(res.elapsed_s, 2)
        meta = {"key": key, "student": student, "settings": dict(settings), "n_train": len(texts),
                "labels": list(labels), "train_time_s": train_time, "scores": {}}
    entry = {"test": {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"], "n": m["n"]},
             "predicted": list(m["predicted"])}
    meta.setdefault("scores", {})[fp] = entry
    meta_path.write_text(json.dumps(meta, ensure_ascii=False) + "\n", "utf-8")
    return {**_public(meta, folder), **entry, "cached": False}


def _public(meta: Mapping[str, Any], folder: Path) -> dict[str, Any]:
    return {"key": meta.get("key"), "model_dir": str(folder), "student": meta.get("student"),
            "n_train": meta.get("n_train"), "train_time_s": meta.get("train_time_s")}


def _fingerprint(rows: Sequence[Mapping[str, Any]]) -> str:
    blob = json.dumps([[str(r["text"]), str(r["label"])] for r in rows], ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


__all__ = ["NO_TEST_SET", "Comparison", "compare", "control_key", "describe", "paired_bootstrap",
           "seeds_only_control"]


def run_report(fm: Mapping[str, Any], *, run_id: int | None = None, model_dir: str | None = None) -> dict[str, Any]:
    """The JSON of ``promptmix train --report FILE``, from a run's final metrics: the student (and
    why), ``test`` scores, the ``control``'s, the ``delta`` with its 95 % interval, and the examples
    used per source (seeds; generated, by label source; what the label rules and the curation left out)."""
    fm = dict(fm or {})
    data = fm.get("data") or {}
    ctl = fm.get("control") or {}
    test = ({"accuracy": fm["test_accuracy"], "macro_f1": fm.get("test_macro_f1"), "n": fm.get("test_n")}
            if fm.get("test_accuracy") is not None else None)
    dropped = dict(data.get("dropped") or {})
    out: dict[str, Any] = {
        "run_id": run_id,
        "model_dir": model_dir,
        "student": fm.get("student") or "finetune",
        "student_reason": fm.get("student_reason"),
        "test": test,
        "control": ({"test": ctl["test"], "student": ctl.get("student"), "model_dir": ctl.get("model_dir"),
                     "n_train": ctl.get("n_train"), "cached": ctl.get("cached")} if ctl.get("test") else
                    {"test": None, "seeds_only_run": bool(ctl.get("seeds_only_run")), "skipped": ctl.get("skipped")}),
        "delta": ctl.get("delta"),
        "examples": {
            "seeds": data.get("seeds"),
            "generated": {str(data.get("label_source") or "generated"): data.get("generated")},
            "train": data.get("train", fm.get("n_train")),
            "validation": data.get("val"),
            "left_out": {k: v for k, v in dropped.items() if v},
            "curation": data.get("curation"),
        },
        "validation": ({"accuracy": fm.get("val_accuracy"), "macro_f1": fm.get("val_macro_f1"), "n": fm.get("val_n"),
                        "source": data.get("val_source"), "is_measure": bool(fm.get("val_is_measure"))}
                       if fm.get("val_accuracy") is not None else None),
        "train_time_s": fm.get("train_time_s"),
    }
    return out


__all__ += ["run_report"]
