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

**Which rows shape the body** (``body_rows``). ``"all"`` is setfit's own way: every training row
makes contrastive pairs. ``"trusted"`` (the training job's default, docs/RESULTS.md "default
pipeline") makes pairs only from the rows a person labelled (the seeds and reviewed examples);
machine-labelled generated examples train the logistic head only. Contrastive pairs multiply a
wrong label (one mislabelled example is in 2 x 20 pairs), and with a few seeds a single added example
re-draws every pair, which moved SetFit's test accuracy by 6.5 points on the 8-class card check; with
``"trusted"`` the body of a run on seeds plus unreviewed examples is exactly its seeds-only
control's body, so the two differ only by the head and the comparison measures what the generated
examples did. Such a body is cached (``body_cache``: a folder per rows and settings), so the
control costs a head fit.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from .embed_lr import WEIGHTS_FILE, EmbedLRClassifier
from .plan import SETFIT_BODY_ROWS

log = logging.getLogger(__name__)

BODY_DIR = "body"
STUDENT_KIND = "setfit"
#: which training rows make the contrastive pairs: every row, or only those a person labelled
BODY_ROWS = SETFIT_BODY_ROWS
BODY_CACHE_PREFIX = "setfit-body-"
BODY_CACHE_VERSION = 1


@dataclass
class SetFitConfig:
    """SetFit settings; invalid values raise ``ValueError`` listing every problem.

    ``num_iterations``: contrastive pairs drawn per training example (setfit's default 20).
    ``max_steps``: cap on contrastive optimiser steps (0 = no cap) so large training sets stay bounded.
    ``model``: a local sentence-transformers folder; empty means the bundled all-MiniLM-L6-v2.
    ``body_rows``: ``"all"`` or ``"trusted"`` (see the module docstring, :data:`BODY_ROWS`).
    ``head_balanced``: the head weighs each class alike (sklearn's ``class_weight="balanced"``), so
    the generated examples a curation keeps, never the same number per class, do not shift the
    classes' priors (docs/RESULTS.md, "default pipeline": one kept example cost 4.5 points unbalanced).
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
    body_rows: str = "all"
    head_balanced: bool = False

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
        if self.body_rows not in BODY_ROWS:
            problems.append(f"body_rows must be one of {', '.join(BODY_ROWS)} (got {self.body_rows!r})")
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


def plan_steps(n_examples: int, cfg: SetFitConfig) -> tuple[int, int]:
    """(pairs, optimiser steps) of the contrastive phase for ``n_examples`` training texts."""
    pairs = 2 * cfg.num_iterations * n_examples  # setfit draws one positive and one negative per iteration
    steps = math.ceil(pairs / cfg.batch_size) * cfg.epochs
    if cfg.max_steps:
        steps = min(steps, cfg.max_steps)
    return pairs, steps


def fine_tune_body(
    texts: Sequence[str],
    labels: Sequence[str],
    cfg: SetFitConfig,
    *,
    progress: Callable[[dict[str, Any]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Any:
    """SetFit's contrastive phase: the sentence-transformer body fine-tuned on pairs of ``texts``
    (same class: similar; different: dissimilar). Returns the body; raises ``Cancelled`` on stop."""
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments
    from transformers import TrainerCallback

    from ..errors import Cancelled
    from .config import resolve_model_name

    _quiet()
    model = SetFitModel.from_pretrained(resolve_model_name(cfg.model), local_files_only=True)
    model.model_body.max_seq_length = cfg.max_length
    pairs, steps = plan_steps(len(texts), cfg)
    natural = math.ceil(pairs / cfg.batch_size) * cfg.epochs
    # transformers' max_steps is a target, not a cap (it repeats the data): set it only to cut a long run
    cap = steps if steps < natural else -1
    stopped = []

    class _Hook(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001 - transformers' signature
            if progress is not None:
                progress({"phase": "contrastive", "step": state.global_step, "steps": steps, "pairs": pairs})
            if should_stop is not None and should_stop():
                control.should_training_stop = True
                stopped.append(True)
            return control

    args = TrainingArguments(
        batch_size=cfg.batch_size, num_epochs=cfg.epochs, num_iterations=cfg.num_iterations,
        body_learning_rate=cfg.body_learning_rate, max_steps=cap, seed=cfg.seed,
        report_to="none", save_strategy="no", logging_strategy="no", show_progress_bar=False,
    )
    ds = Dataset.from_dict({"text": [str(t) for t in texts], "label": [str(x) for x in labels]})
    trainer = Trainer(model=model, args=args, train_dataset=ds, callbacks=[_Hook()])
    # only setfit's body phase: the head is fitted like the quick student's (no pickle, our settings)
    trainer.train_embeddings(*trainer.dataset_to_parameters(ds), args=args)
    if stopped:
        raise Cancelled("training was stopped")
    return model.model_body


def body_rows(texts: Sequence[str], labels: Sequence[str], cfg: SetFitConfig,
              trusted: Sequence[bool] | None = None) -> tuple[list[str], list[str], str]:
    """The rows the contrastive phase pairs and the rule that picked them: ``"all"`` (every row, in
    order), or ``"trusted"`` (only the rows flagged in ``trusted``, sorted, so the same rows give the
    same body whatever their order). ``"trusted"`` falls back to every row when the trusted rows hold
    fewer than two classes (the rule reads ``"all (fewer than two classes were trusted)"``)."""
    if cfg.body_rows != "trusted" or trusted is None:
        return [str(t) for t in texts], [str(x) for x in labels], "all"
    if len(trusted) != len(texts):
        raise ValueError(f"{len(trusted)} trusted flags for {len(texts)} training rows")
    kept = sorted((str(t), str(x)) for t, x, ok in zip(texts, labels, trusted) if ok)
    if len({x for _, x in kept}) < 2:
        return [str(t) for t in texts], [str(x) for x in labels], "all (fewer than two classes were trusted)"
    return [t for t, _ in kept], [x for _, x in kept], "trusted"


def body_key(texts: Sequence[str], labels: Sequence[str], cfg: SetFitConfig) -> str:
    """A hash of what decides a contrastive body: its rows (in order) and the body's settings."""
    import hashlib
    import json

    settings = {k: v for k, v in cfg.to_dict().items() if k not in ("head_c", "head_balanced", "body_rows")}
    blob = json.dumps({"v": BODY_CACHE_VERSION, "rows": [[str(t), str(x)] for t, x in zip(texts, labels)],
                       "settings": settings}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def cached_body(texts: Sequence[str], labels: Sequence[str], cfg: SetFitConfig, cache_dir: str | Path | None, *,
                progress: Callable[[dict[str, Any]], None] | None = None,
                should_stop: Callable[[], bool] | None = None) -> tuple[Any, bool]:
    """(body, came from the cache): :func:`fine_tune_body` on these rows, kept in
    ``cache_dir/setfit-body-<key>/`` (safetensors) when ``cache_dir`` is given, so the same rows and
    settings train once. A cache folder that does not load is trained again and replaced."""
    import os
    import shutil
    import tempfile

    if cache_dir is None:
        return fine_tune_body(texts, labels, cfg, progress=progress, should_stop=should_stop), False
    folder = Path(cache_dir) / f"{BODY_CACHE_PREFIX}{body_key(texts, labels, cfg)}"
    if (folder / "model.safetensors").exists():
        try:
            from sentence_transformers import SentenceTransformer

            _quiet()
            from .model_io import pick_device

            body = SentenceTransformer(str(folder), device=pick_device("auto"), local_files_only=True)
            body.max_seq_length = cfg.max_length
            if progress is not None:
                _, steps = plan_steps(len(texts), cfg)
                progress({"phase": "contrastive", "step": steps, "steps": steps, "cached": True})
            return body, True
        except (OSError, ValueError) as exc:
            log.warning("the cached SetFit body in %s did not load (%s); training it again", folder, exc)
    body = fine_tune_body(texts, labels, cfg, progress=progress, should_stop=should_stop)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-" + folder.name, dir=folder.parent))
    try:
        body.save(str(tmp), safe_serialization=True)
        if folder.exists():
            shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
    except OSError as exc:  # a full disk or a race with another run: the body is still good for this run
        log.warning("could not keep the SetFit body in %s: %s", folder, exc)
        shutil.rmtree(tmp, ignore_errors=True)
    return body, False


def train_setfit(
    texts: Sequence[str],
    labels: Sequence[str],
    label_names: Sequence[str],
    cfg: SetFitConfig | Mapping[str, Any] | None = None,
    *,
    progress: Callable[[dict[str, Any]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    trusted: Sequence[bool] | None = None,
    body_cache: str | Path | None = None,
    **common: Any,
):
    """SetFit end to end: the contrastive body (:func:`fine_tune_body`, on the rows :func:`body_rows`
    picks: with ``body_rows="trusted"``, those flagged in ``trusted``, the body cached in
    ``body_cache``), then the quick student's logistic head on every row, scoring and reporting on
    that body's embeddings (:func:`.embed_lr.train_embed_lr`: ``val_*``/``test_*`` texts and labels,
    ``out_dir``, ``callbacks``, ``store``/``run_id``). Returns a :class:`.trainer.TrainResult` whose
    ``classifier`` is a :class:`SetFitClassifier`."""
    from .embed_lr import _Stopped, train_embed_lr

    cfg = cfg if isinstance(cfg, SetFitConfig) else SetFitConfig(**dict(cfg or {}))
    names = list(label_names)
    bad = sorted({str(lab) for lab in labels if lab not in names})
    if bad:
        raise ValueError(f"labels not in the task: {', '.join(bad)}")
    if len(set(labels)) < 2:
        raise ValueError("SetFit needs examples of at least two classes")
    b_texts, b_labels, rule = body_rows(texts, labels, cfg, trusted)
    cache = body_cache if rule == "trusted" else None
    body: list[Any] = []
    info: dict[str, Any] = {"rule": rule, "rows": len(b_texts)}

    def encode(all_texts: Sequence[str], on_batch: Callable[[int, int], None]) -> Any:
        import numpy as np

        from ..errors import Cancelled

        try:
            model, info["cached"] = cached_body(b_texts, b_labels, cfg, cache, progress=progress,
                                                should_stop=should_stop)
            body.append(model)
        except Cancelled:
            raise _Stopped() from None
        chunks = []
        for i in range(0, len(all_texts), 64):
            chunks.append(body[0].encode(list(all_texts[i:i + 64]), convert_to_numpy=True, show_progress_bar=False))
            on_batch(min(i + 64, len(all_texts)), len(all_texts))
        return np.concatenate(chunks) if chunks else np.zeros((0, _embedding_dim(body[0])), dtype=np.float32)

    def make(names_: Sequence[str], coef: Any, intercept: Any, *, meta: dict[str, Any]) -> SetFitClassifier:
        return SetFitClassifier(body[0], names_, coef, intercept,
                                meta={**meta, "setfit": cfg.to_dict(), "setfit_body": dict(info)})

    return train_embed_lr({"seed": cfg.seed, "C": cfg.head_c, "class_weight": "balanced" if cfg.head_balanced else None},
                          texts, labels, label_names=names,
                          progress=progress, should_stop=should_stop, encode=encode, make_classifier=make,
                          kind=STUDENT_KIND, model_name="SetFit (all-MiniLM-L6-v2 contrastive + logistic regression)",
                          **common)


def _quiet() -> None:
    for name in ("setfit", "sentence_transformers", "transformers", "datasets"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        import datasets

        datasets.disable_progress_bars()
    except Exception:  # noqa: BLE001 - cosmetic only
        pass


__all__ = ["BODY_ROWS", "SetFitClassifier", "SetFitConfig", "body_key", "body_rows", "cached_body", "load_setfit",
           "plan_steps", "train_setfit"]
