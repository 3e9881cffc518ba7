"""SetFit (Tunstall et al. 2022) as a student: contrastive fine-tuning of a sentence transformer on pairs
drawn from the labelled examples, then a logistic-regression head on its embeddings. No LLM.

It is the baseline users compare PromptMix against for "a few examples -> a cheap classifier", so it
runs on the same bundled all-MiniLM-L6-v2 and the same k seeds (``setfit``), or on seeds plus the
relabelled examples (``setfit+a2``). Uses the ``setfit`` package (pinned in pyproject, imported lazily).

Saved models hold no pickle: the head is saved as the quick embed-lr student saves its head
(safetensors, ``label_map.json`` with kind ``setfit``), the fine-tuned body by sentence-transformers as
safetensors in ``body/``; ``promptmix predict`` and the app load it like any other model.

Fair settings (documented in docs/RESULTS.md): setfit's defaults (20 pair iterations per example, one
epoch, batch 16, body learning rate 2e-5, cosine-similarity loss) with ``max_steps`` capping the
contrastive phase for larger training sets so a run stays comparable in wall time with fine-tuning.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from .embed_lr import WEIGHTS_FILE, EmbedLRClassifier

log = logging.getLogger(__name__)

BODY_DIR = "body"
STUDENT_KIND = "setfit"


@dataclass
class SetFitConfig:
    """SetFit settings; invalid values raise ``ValueError`` listing every problem.

    ``num_iterations``: contrastive pairs drawn per training example (setfit's default 20).
    ``max_steps``: cap on contrastive optimiser steps (0 = no cap) so large training sets stay bounded.
    ``model``: a local sentence-transformers folder; empty means the bundled all-MiniLM-L6-v2.
    """

    model: str = ""
    num_iterations: int = 20
    epochs: int = 1
    batch_size: int = 16
    body_learning_rate: float = 2e-5
    max_steps: int = 300
    seed: int = 0
    head_c: float = 1.0
    max_length: int = 64

    def __post_init__(self) -> None:
        problems = []
        if not 1 <= int(self.num_iterations) <= 200:
            problems.append("num_iterations must be between 1 and 200")
        if not 1 <= int(self.epochs) <= 50:
            problems.append("epochs must be between 1 and 50")
        if not 2 <= int(self.batch_size) <= 1024:
            problems.append("batch_size must be between 2 and 1024")
        if not 0 < float(self.body_learning_rate) < 1:
            problems.append("body_learning_rate must be between 0 and 1")
        if int(self.max_steps) < 0:
            problems.append("max_steps must be 0 (no cap) or more")
        if float(self.head_c) <= 0:
            problems.append("head_c must be positive")
        if problems:
            raise ValueError("; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class SetFitClassifier(EmbedLRClassifier):
    """The fine-tuned sentence-transformer body plus the linear softmax head (the quick student's head
    and file format, with the body beside it): ``predict(texts) -> (labels, probs)``."""

    kind = STUDENT_KIND

    def __init__(self, body: Any, labels: Sequence[str], coef: Any, intercept: Any, *,
                 meta: dict[str, Any] | None = None):
        super().__init__(labels, coef, intercept, meta=meta)
        self.body = body
        if self.coef.shape[1] != _embedding_dim(body):
            raise ValueError(f"head of width {self.coef.shape[1]} does not fit a body of {_embedding_dim(body)}")
        self.device = str(getattr(body, "device", "cpu"))

    def predict_proba(self, texts: Sequence[str], *, batch_size: int = 64) -> Any:
        import numpy as np

        texts = ["" if t is None else str(t) for t in texts]
        if not texts:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        emb = self.body.encode(texts, batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False)
        return self.proba_from_embeddings(emb)

    def save(self, out_dir: str | Path, *, extra: dict[str, Any] | None = None) -> Path:
        """Head and labels as the quick student writes them, the body as safetensors in ``body/``."""
        out = super().save(out_dir, extra={"body": BODY_DIR, **(extra or {})})
        self.body.save(str(out / BODY_DIR), safe_serialization=True)
        return out


def _embedding_dim(body: Any) -> int:
    get = getattr(body, "get_embedding_dimension", None) or body.get_sentence_embedding_dimension
    return int(get())


def load_setfit(folder: str | Path, meta: Mapping[str, Any], *, device: str = "auto") -> SetFitClassifier:
    """Load a folder written by :meth:`SetFitClassifier.save` (``meta``: its label_map.json)."""
    from safetensors.numpy import load_file
    from sentence_transformers import SentenceTransformer

    from .config import ModelLoadError
    from .model_io import check_safetensors_folder, pick_device

    folder = Path(folder).expanduser()
    try:
        check_safetensors_folder(folder / BODY_DIR)
        w = load_file(str(folder / WEIGHTS_FILE))
        body = SentenceTransformer(str(folder / BODY_DIR), device=pick_device(device), local_files_only=True)
        return SetFitClassifier(body, meta["labels"], w["coef"], w["intercept"], meta=dict(meta))
    except ModelLoadError:
        raise
    except (KeyError, ValueError, OSError) as exc:
        raise ModelLoadError(f"could not load the SetFit model in {folder}: {exc}") from None


@dataclass
class SetFitResult:
    classifier: SetFitClassifier
    seconds: float
    steps: int
    pairs: int
    config: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {"student": STUDENT_KIND, "seconds": round(self.seconds, 2), "steps": self.steps,
                "pairs": self.pairs, "config": self.config}


def plan_steps(n_examples: int, cfg: SetFitConfig) -> tuple[int, int]:
    """(pairs, optimiser steps) of the contrastive phase for ``n_examples`` training texts."""
    pairs = 2 * cfg.num_iterations * n_examples  # setfit draws one positive and one negative per iteration
    steps = math.ceil(pairs / cfg.batch_size) * cfg.epochs
    if cfg.max_steps:
        steps = min(steps, cfg.max_steps)
    return pairs, steps


def train_setfit(
    texts: Sequence[str],
    labels: Sequence[str],
    label_names: Sequence[str],
    cfg: SetFitConfig | None = None,
    *,
    out_dir: str | Path | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> SetFitResult:
    """Contrastive fine-tuning of the body on pairs of ``texts``, then a logistic-regression head.

    ``progress`` gets ``{"phase", "step", "steps"}``; ``should_stop`` is polled every step and stops the
    run with :class:`~promptmix_core.errors.Cancelled` semantics (raises ``Cancelled``)."""
    cfg = cfg or SetFitConfig()
    names = list(label_names)
    bad = sorted({lab for lab in labels if lab not in names})
    if bad:
        raise ValueError(f"labels not in the task: {', '.join(bad)}")
    if len(set(labels)) < 2:
        raise ValueError("SetFit needs examples of at least two classes")
    t0 = time.perf_counter()
    import numpy as np
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments
    from transformers import TrainerCallback

    from .config import resolve_model_name

    _quiet()
    try:
        from ..errors import Cancelled
    except ImportError:  # before the error hierarchy existed
        from ..generate import Cancelled

    model = SetFitModel.from_pretrained(resolve_model_name(cfg.model), labels=names, local_files_only=True)
    model.model_body.max_seq_length = cfg.max_length
    pairs, steps = plan_steps(len(texts), cfg)
    natural = math.ceil(pairs / cfg.batch_size) * cfg.epochs
    # transformers' max_steps is a target, not a cap (it repeats the data): set it only to cut a long run
    cap = steps if steps < natural else -1

    class _Hook(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001 - transformers' signature
            if progress is not None:
                progress({"phase": "contrastive", "step": state.global_step, "steps": steps})
            if should_stop is not None and should_stop():
                control.should_training_stop = True
                self.stopped = True
            return control

    hook = _Hook()
    hook.stopped = False
    args = TrainingArguments(
        batch_size=cfg.batch_size, num_epochs=cfg.epochs, num_iterations=cfg.num_iterations,
        body_learning_rate=cfg.body_learning_rate, max_steps=cap, seed=cfg.seed,
        report_to="none", save_strategy="no", logging_strategy="no", show_progress_bar=False,
    )
    ds = Dataset.from_dict({"text": [str(t) for t in texts], "label": list(labels)})
    trainer = Trainer(model=model, args=args, train_dataset=ds, callbacks=[hook])
    # setfit trains the body, then fits the head on the new embeddings; we fit the head ourselves so
    # its settings are ours and it is saved without pickle.
    trainer.train_embeddings(*trainer.dataset_to_parameters(ds), args=args)
    if hook.stopped:
        raise Cancelled("training was stopped")
    if progress is not None:
        progress({"phase": "head", "step": steps, "steps": steps})
    from sklearn.linear_model import LogisticRegression

    emb = model.model_body.encode(list(map(str, texts)), convert_to_numpy=True, show_progress_bar=False)
    head = LogisticRegression(C=cfg.head_c, max_iter=2000, random_state=cfg.seed)
    y = np.array([names.index(lab) for lab in labels])
    head.fit(emb, y)
    coef = np.zeros((len(names), emb.shape[1]), dtype=np.float32)
    intercept = np.full(len(names), -1e4, dtype=np.float32)  # a class with no examples is never predicted
    if len(head.classes_) == 2:  # binary LR keeps one row: class 1 vs class 0
        c0, c1 = head.classes_
        coef[c1], intercept[c1] = head.coef_[0], head.intercept_[0]
        coef[c0], intercept[c0] = 0.0, 0.0
    else:
        for row, cls in enumerate(head.classes_):
            coef[cls], intercept[cls] = head.coef_[row], head.intercept_[row]
    clf = SetFitClassifier(model.model_body, names, coef, intercept, meta={"setfit": cfg.to_dict()})
    if out_dir is not None:
        clf.save(out_dir)
    return SetFitResult(clf, time.perf_counter() - t0, steps, pairs, cfg.to_dict())


def _quiet() -> None:
    for name in ("setfit", "sentence_transformers", "transformers", "datasets"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        import datasets

        datasets.disable_progress_bars()
    except Exception:  # noqa: BLE001 - cosmetic only
        pass


__all__ = ["SetFitClassifier", "SetFitConfig", "SetFitResult", "load_setfit", "plan_steps", "train_setfit"]
