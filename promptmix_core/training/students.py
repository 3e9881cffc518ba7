"""Every student behind one call: fine-tuning, SetFit and the quick embed-lr student.

:func:`fit` trains the named student with its settings and returns a :class:`.trainer.TrainResult`
(the same for every student), so the training job, its seeds-only control, the CLI and the
experiment train a student the same way. :func:`student_settings` gives the settings that decide a
student's model (what the control's cache is keyed on).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

from .plan import STUDENTS


#: the training job's default for which rows shape a SetFit body (:data:`.setfit_student.BODY_ROWS`)
DEFAULT_SETFIT_BODY = "trusted"


def student_settings(student: str, train: Mapping[str, Any], embed_lr: Any = None, *,
                     setfit_body: str = DEFAULT_SETFIT_BODY) -> dict[str, Any]:
    """The settings of ``student`` from a training spec's ``train`` (TrainConfig fields), ``embed_lr``
    and ``setfit_body`` (SetFit's ``body_rows``)."""
    from .config import EmbedLRConfig, TrainConfig

    train = dict(train or {})
    if student == "finetune":
        return TrainConfig.from_dict(train).to_dict()
    if student == "setfit":
        from .setfit_student import SetFitConfig

        from .plan import SETFIT_MAX_STEPS

        return SetFitConfig(seed=int(train.get("seed", 0) or 0), max_steps=SETFIT_MAX_STEPS,
                            body_rows=setfit_body, head_balanced=True).to_dict()
    if student == "embed-lr":
        cfg = embed_lr if isinstance(embed_lr, EmbedLRConfig) else EmbedLRConfig.from_dict(embed_lr)
        return cfg.to_dict()
    raise ValueError(f"unknown student {student!r}; use one of {', '.join(STUDENTS)}")


def is_trusted(row: Mapping[str, Any]) -> bool:
    """Whether a training row's label comes from a person: a seed, a row of a labelled file, or a
    reviewed example (not a machine label: the LLM's, the judge's or the class it was written for)."""
    return row.get("source") in ("seed", "labelled") or bool(row.get("reviewed"))


def fit(student: str, settings: Mapping[str, Any], texts: Sequence[str], labels: Sequence[str], *,
        label_names: Sequence[str], progress: Callable[[dict[str, Any]], None] | None = None,
        keep_model: bool = False, trusted: Sequence[bool] | None = None, body_cache: Any = None, **common: Any):
    """Train ``student`` on ``texts``/``labels``. ``common``: ``val_texts``/``val_labels``,
    ``test_texts``/``test_labels``, ``out_dir``, ``callbacks``, ``should_stop``, ``store``/``run_id``.
    SetFit only: ``trusted`` (per row: labelled by a person) and ``body_cache`` (a folder), for its
    ``body_rows="trusted"`` rule (:func:`.setfit_student.train_setfit`)."""
    if student == "finetune":
        from .trainer import train

        return train(dict(settings), texts, labels, label_names=label_names, keep_model=keep_model, **common)
    if student == "setfit":
        from .setfit_student import SetFitConfig, train_setfit

        return train_setfit(texts, labels, label_names, SetFitConfig(**dict(settings)), progress=progress,
                            trusted=trusted, body_cache=body_cache, **common)
    if student == "embed-lr":
        from .embed_lr import train_embed_lr

        return train_embed_lr(dict(settings), texts, labels, label_names=label_names, progress=progress, **common)
    raise ValueError(f"unknown student {student!r}; use one of {', '.join(STUDENTS)}")


__all__ = ["DEFAULT_SETFIT_BODY", "fit", "is_trusted", "student_settings"]
