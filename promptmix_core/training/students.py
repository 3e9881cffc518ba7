"""Every student behind one call: fine-tuning, SetFit and the quick embed-lr student.

:func:`fit` trains the named student with its settings and returns a :class:`.trainer.TrainResult`
(the same for every student), so the training job, its seeds-only control, the CLI and the
experiment train a student the same way. :func:`student_settings` gives the settings that decide a
student's model (what the control's cache is keyed on).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

from .plan import STUDENTS


def student_settings(student: str, train: Mapping[str, Any], embed_lr: Any = None) -> dict[str, Any]:
    """The settings of ``student`` from a training spec's ``train`` (TrainConfig fields) and ``embed_lr``."""
    from .config import EmbedLRConfig, TrainConfig

    train = dict(train or {})
    if student == "finetune":
        return TrainConfig.from_dict(train).to_dict()
    if student == "setfit":
        from .setfit_student import SetFitConfig

        from .plan import SETFIT_MAX_STEPS

        return SetFitConfig(seed=int(train.get("seed", 0) or 0), max_steps=SETFIT_MAX_STEPS).to_dict()
    if student == "embed-lr":
        cfg = embed_lr if isinstance(embed_lr, EmbedLRConfig) else EmbedLRConfig.from_dict(embed_lr)
        return cfg.to_dict()
    raise ValueError(f"unknown student {student!r}; use one of {', '.join(STUDENTS)}")


def fit(student: str, settings: Mapping[str, Any], texts: Sequence[str], labels: Sequence[str], *,
        label_names: Sequence[str], progress: Callable[[dict[str, Any]], None] | None = None,
        keep_model: bool = False, **common: Any):
    """Train ``student`` on ``texts``/``labels``. ``common``: ``val_texts``/``val_labels``,
    ``test_texts``/``test_labels``, ``out_dir``, ``callbacks``, ``should_stop``, ``store``/``run_id``."""
    if student == "finetune":
        from .trainer import train

        return train(dict(settings), texts, labels, label_names=label_names, keep_model=keep_model, **common)
    if student == "setfit":
        from .setfit_student import SetFitConfig, train_setfit

        return train_setfit(texts, labels, label_names, SetFitConfig(**dict(settings)), progress=progress, **common)
    if student == "embed-lr":
        from .embed_lr import train_embed_lr

        return train_embed_lr(dict(settings), texts, labels, label_names=label_names, progress=progress, **common)
    raise ValueError(f"unknown student {student!r}; use one of {', '.join(STUDENTS)}")


__all__ = ["fit", "student_settings"]
