"""The quick student: frozen all-MiniLM-L6-v2 sentence embeddings + logistic regression.

Trained in seconds on the CPU (the embedding is the only real work), so a reviewer sees the effect
of their decisions at once; fine-tuning (:mod:`.trainer`) stays the default for the final model.

A saved model folder holds ``embed_lr.safetensors`` (the regression's ``coef`` and ``intercept``,
never a pickle) and ``label_map.json`` with ``"kind": "embed-lr"`` and the embedder's name;
:func:`.model_io.load_classifier` loads either kind, so ``promptmix predict`` and the app's
"Try the model" work with both.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from .config import EmbedLRConfig
from .metrics import compute_metrics
from .runs import reported

KIND = "embed-lr"
WEIGHTS_FILE = "embed_lr.safetensors"
EMBEDDER = "all-MiniLM-L6-v2"


def _embed(texts: Sequence[str], progress: Callable[[int, int], None] | None = None):
    from .. import embed

    if progress is None:
        return embed.embed_texts(list(texts))
    return embed.embed_texts(list(texts), progress=progress)


class EmbedLRClassifier:
    """Same interface as :class:`.model_io.Classifier`: ``predict_proba`` / ``predict`` / ``save``."""

    kind = KIND

    def __init__(self, labels: Sequence[str], coef: Any, intercept: Any, *, meta: dict[str, Any] | None = None):
        import numpy as np

        self.labels = list(labels)
        self.coef = np.asarray(coef, dtype=np.float32)
        self.intercept = np.asarray(intercept, dtype=np.float32)
        if self.coef.shape != (len(self.labels), self.coef.shape[1]) or self.intercept.shape != (len(self.labels),):
            raise ValueError(f"weights of shape {self.coef.shape} / {self.intercept.shape} do not fit "
                             f"{len(self.labels)} labels")
        self.meta = dict(meta or {})
        self.device = "cpu"

    def proba_from_embeddings(self, emb: Any) -> Any:
        import numpy as np

        logits = emb @ self.coef.T + self.intercept
        logits = logits - logits.max(axis=1, keepdims=True)
        e = np.exp(logits)
        return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)

    def predict_proba(self, texts: Sequence[str], *, batch_size: int = 64) -> Any:
        import numpy as np

        texts = ["" if t is None else str(t) for t in texts]
        if not texts:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        return self.proba_from_embeddings(_embed(texts))

    def predict(self, texts: Sequence[str], *, batch_size: int = 64) -> tuple[list[str], Any]:
        probs = self.predict_proba(texts, batch_size=batch_size)
        return [self.labels[int(i)] for i in probs.argmax(axis=1)] if len(probs) else [], probs

    def save(self, out_dir: str | Path, *, extra: dict[str, Any] | None = None) -> Path:
        from safetensors.numpy import save_file

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        save_file({"coef": self.coef, "intercept": self.intercept}, str(out / WEIGHTS_FILE))
        from .model_io import FORMAT_VERSION, LABEL_MAP_FILE

        label_map = {
            "format": FORMAT_VERSION,
            "kind": self.kind,
            "embedder": EMBEDDER,
            "labels": self.labels,
            "label2id": {lab: i for i, lab in enumerate(self.labels)},
            **{k: v for k, v in {**self.meta, **(extra or {})}.items() if k not in ("kind", "labels", "label2id")},
        }
        (out / LABEL_MAP_FILE).write_text(json.dumps(label_map, indent=2, ensure_ascii=False) + "\n", "utf-8")
        return out


def load_embed_lr(folder: str | Path, meta: Mapping[str, Any]) -> EmbedLRClassifier:
    """Load a folder written by :meth:`EmbedLRClassifier.save` (``meta``: its label_map.json)."""
    from safetensors.numpy import load_file

    from .config import ModelLoadError

    path = Path(folder) / WEIGHTS_FILE
    if not path.exists():
        raise ModelLoadError(f"{folder}: label_map.json says {KIND} but {WEIGHTS_FILE} is missing")
    try:
        w = load_file(str(path))
        return EmbedLRClassifier(meta["labels"], w["coef"], w["intercept"], meta=dict(meta))
    except (KeyError, ValueError, OSError) as exc:
        raise ModelLoadError(f"could not load the quick student in {folder}: {exc}") from None


def train_embed_lr(
    config: EmbedLRConfig | Mapping[str, Any] | None,
    texts: Sequence[str],
    labels: Sequence[str],
    *,
    label_names: Sequence[str] | None = None,
    val_texts: Sequence[str] | None = None,
    val_labels: Sequence[str] | None = None,
    test_texts: Sequence[str] | None = None,
    test_labels: Sequence[str] | None = None,
    out_dir: str | Path | None = None,
    callbacks: Sequence[Any] = (),
    store: Any = None,
    run_id: int | None = None,
    job_id: int | None = None,
    should_stop: Callable[[], bool] | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
    encode: Callable[..., Any] | None = None,
    make_classifier: Callable[..., Any] | None = None,
    kind: str = KIND,
    model_name: str = f"{EMBEDDER} + logistic regression",
):
    """Fit the quick student; returns a :class:`.trainer.TrainResult` (one "step").

    ``encode(texts, on_batch)`` and ``make_classifier(names, coef, intercept, meta=...)`` replace the
    frozen embedder and :class:`EmbedLRClassifier` for a student with its own body (SetFit, ``kind``).

    Reports like the fine-tuning trainer, through ``callbacks`` (with ``store``/``run_id`` a
    :class:`.callbacks.StoreCallback` first: the run goes running -> done / cancelled / failed and
    its metrics, ``train_loss`` and ``val_*``, are logged for the charts). ``progress`` gets
    ``{"phase": "embedding", "embedded", "to_embed", ...}`` while the texts are embedded, and
    ``should_stop()`` is checked after every batch of them.
    """
    from .callbacks import StoreCallback

    t_start = time.perf_counter()
    cbs = list(callbacks)
    if store is not None and run_id is not None:
        cbs.insert(0, StoreCallback(store, run_id, job_id))
    with reported(cbs) as rep:
        cfg = config if isinstance(config, EmbedLRConfig) else EmbedLRConfig.from_dict(config)
        texts, labels, names = _check_inputs(texts, labels, label_names, val_labels, test_labels)
        info: dict[str, Any] = {"step": 0, "total_steps": 1, "epoch": 0.0, "epochs": 1, "n_train": len(texts),
                                "n_val": len(val_texts or []), "device": "cpu", "precision": "fp32",
                                "world_size": 1, "model": model_name}
        for cb in cbs:
            cb.on_train_begin(info)
        val_texts, test_texts = list(val_texts or []), list(test_texts or [])

        def on_batch(done: int, total: int) -> None:
            if progress is not None:
                progress({"phase": "embedding", "run_id": run_id, "step": 0, "total_steps": 1,
                          "embedded": done, "to_embed": total})
            if should_stop is not None and should_stop():
                raise _Stopped()

        t0 = time.perf_counter()
        try:
            emb = (encode or _embed)(texts + val_texts + test_texts, on_batch)
        except _Stopped:
            rep.result = _result("cancelled", names, texts, cfg, 0.0, time.perf_counter() - t_start, None, None,
                                 [], None, None, kind=kind)
            return rep.result
        embed_s = time.perf_counter() - t0
        n_tr, n_va = len(texts), len(val_texts)
        x_train, x_val, x_test = emb[:n_tr], emb[n_tr:n_tr + n_va], emb[n_tr + n_va:]
        t1 = time.perf_counter()
        clf = _fit_head(cfg, x_train, labels, names, make_classifier or EmbedLRClassifier)
        fit_s = time.perf_counter() - t1
        train_loss = _score(clf, x_train, labels, names)["loss"]
        val_metrics = _score(clf, x_val, list(val_labels or []), names)
        test_metrics = _score(clf, x_test, list(test_labels or []), names)
        history = _report_fit(cbs, info, train_loss, val_metrics)
        model_dir = None
        if out_dir is not None:
            model_dir = str(clf.save(out_dir, extra={"train_config": {"student": kind, **cfg.__dict__},
                                                     "val_metrics": _brief(val_metrics),
                                                     "test_metrics": _brief(test_metrics)}))
        rep.result = _result("done", names, texts, cfg, embed_s + fit_s, time.perf_counter() - t_start, train_loss,
                             val_metrics, history, model_dir, clf, test_metrics=test_metrics, kind=kind)
        for cb in cbs:
            cb.on_train_end(rep.result)
    return rep.result


def _check_inputs(texts: Sequence[str], labels: Sequence[str], label_names: Sequence[str] | None,
                  val_labels: Sequence[str] | None, test_labels: Sequence[str] | None):
    """Texts, labels and the label set, checked (every problem a ``ValueError``)."""
    texts, labels = [str(t) for t in texts], [str(x) for x in labels]
    if len(texts) != len(labels):
        raise ValueError(f"{len(texts)} texts but {len(labels)} labels")
    if not texts:
        raise ValueError("no training examples")
    names = list(label_names) if label_names is not None else sorted(set(labels))
    if len(names) < 2:
        raise ValueError("training needs at least two classes")
    unknown = sorted(set(labels) - set(names))
    if unknown:
        raise ValueError(f"training labels not in the label set: {', '.join(unknown[:5])}")
    if len(set(labels)) < 2:
        raise ValueError("the quick student needs training examples of at least two classes")
    for what, gold in (("validation", val_labels), ("test", test_labels)):
        bad = sorted(set(map(str, gold or [])) - set(names))
        if bad:
            raise ValueError(f"{what} labels not in the label set: {', '.join(bad[:5])}")
    return texts, labels, names


def _fit_head(cfg: EmbedLRConfig, x_train: Any, labels: Sequence[str], names: Sequence[str], make: Callable[..., Any]):
    """The logistic regression on the embeddings, as a classifier over every class of ``names``
    (a class without training data gets ~zero probability)."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    lr = LogisticRegression(C=float(cfg.C), max_iter=cfg.max_iter, class_weight=cfg.class_weight,
                            random_state=cfg.seed)
    lr.fit(x_train, list(labels))
    coef = np.zeros((len(names), x_train.shape[1]), dtype=np.float32)
    intercept = np.full((len(names),), -1e4, dtype=np.float32)
    fitted = list(lr.classes_)
    if len(fitted) == 2:  # sklearn's binary form: one weight vector for the second class
        coef[names.index(fitted[1])] = lr.coef_[0] / 2
        coef[names.index(fitted[0])] = -lr.coef_[0] / 2
        intercept[names.index(fitted[1])] = lr.intercept_[0] / 2
        intercept[names.index(fitted[0])] = -lr.intercept_[0] / 2
    else:
        for i, lab in enumerate(fitted):
            coef[names.index(lab)] = lr.coef_[i]
            intercept[names.index(lab)] = lr.intercept_[i]
    return make(list(names), coef, intercept, meta={"base_model": EMBEDDER, "C": cfg.C,
                                                   "class_weight": cfg.class_weight})


def _score(clf: Any, x: Any, gold: Sequence[str], names: Sequence[str]) -> dict[str, Any] | None:
    """Metrics (with the loss and each row's prediction) of ``clf`` on embedded rows; None without rows."""
    import numpy as np

    if not gold:
        return None
    p = clf.proba_from_embeddings(x)
    pred = [names[int(i)] for i in p.argmax(axis=1)]
    m = compute_metrics([str(g) for g in gold], pred, names)
    gi = [names.index(str(g)) for g in gold]
    m["loss"] = float(-np.mean(np.log(np.clip(p[np.arange(len(gi)), gi], 1e-12, None))))
    m["predicted"] = pred
    return m


def _brief(m: Mapping[str, Any] | None) -> dict[str, Any] | None:
    return {k: m[k] for k in ("accuracy", "macro_f1", "n")} if m else None


def _report_fit(cbs: Sequence[Any], info: dict[str, Any], train_loss: float,
                val_metrics: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """The one "step" of the fit, to the callbacks and the history."""
    info.update(step=1, epoch=1.0)
    history: list[dict[str, Any]] = [{"step": 1, "epoch": 1.0, "train_loss": train_loss}]
    for cb in cbs:
        cb.on_log(1, 1.0, {"train_loss": train_loss}, info)
    if val_metrics:
        history.append({"step": 1, "epoch": 1.0, "val_accuracy": val_metrics["accuracy"],
                        "val_macro_f1": val_metrics["macro_f1"], "val_loss": val_metrics["loss"]})
        for cb in cbs:
            cb.on_evaluate(1, 1.0, val_metrics, info)
    return history


class _Stopped(Exception):
    pass


def _result(status, names, texts, cfg, train_s, elapsed, train_loss, val_metrics, history, model_dir, clf,
            *, test_metrics=None, kind: str = KIND):
    from .trainer import TrainResult

    return TrainResult(
        status=status, steps=1 if status == "done" else 0, total_steps=1, epochs=1,
        epoch=1.0 if status == "done" else 0.0, train_loss=train_loss, val_metrics=val_metrics,
        history=history, train_time_s=train_s, elapsed_s=elapsed,
        train_samples_per_s=(len(texts) / train_s) if train_s > 0 else 0.0,
        device="cpu", precision="fp32", world_size=1, rank=0, labels=list(names), n_train=len(texts),
        config={"student": kind, **cfg.__dict__}, model_dir=model_dir, classifier=clf, test_metrics=test_metrics,
    )


__all__ = ["EMBEDDER", "KIND", "EmbedLRClassifier", "EmbedLRConfig", "load_embed_lr", "train_embed_lr"]
