"""Typed job specs: what a generation, relabel or training job is asked to do.

One spec per kind of job, built alike by the app (pages 2 and 4), the CLI (``promptmix generate``,
``promptmix train``), the worker (which reads the spec stored with the job) and the experiment
runner. A spec HOLDS the step configs it feeds (``GenerationSpec.generation`` a
:class:`~promptmix_core.generate.GenerationConfig`, ``RelabelSpec.relabel`` a
:class:`~promptmix_core.relabel.RelabelConfig`, ``TrainingSpec.train`` a
:class:`~promptmix_core.training.config.TrainConfig` and ``TrainingSpec.embed_lr`` an
:class:`~promptmix_core.training.config.EmbedLRConfig`): each setting's default and rule live once,
in its step config; a spec adds only what is the job's own (whether to relabel, flag, the endpoint,
the data to train on) and checks only those.

Every spec has:

- ``validate() -> list[str]``: every problem at once (empty: valid);
- ``check()``: raises :class:`SpecError` listing them all;
- ``to_dict()`` / ``from_dict()``: the stored shape (``jobs.config``); ``from_dict`` refuses unknown
  keys and invalid values, listing all of them;
- ``from_stored()``: reads a job row written by an earlier version (flat keys) and migrates it.

Stored shapes (the held generation and relabel configs are stored flat, as every version stored them)::

    generate  {GenerationConfig's fields ("per_class", "group_size", "mixup", "seed", "examples_per_call",
               "temperature", "top_p", "max_tokens", "max_calls_per_class", "max_example_chars", "pairs"),
               "relabel", "nearest", "flag_junk", "demo", "llm": {"base_url", "model", "concurrency",
               "timeout", "max_retries", "max_retry_after"}}
    relabel   {"source_job", RelabelConfig's fields ("nearest", "seed", ...), "llm": {...}}
    train     {"label_source", "pending", "unparseable", "example_job_id", "include_seeds",
               "val_path", "val_fraction", "out_dir", "name", "method", "student", "test_path",
               "use_test_set", "embed_lr": {EmbedLRConfig}, "train": {TrainConfig}}
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping

from .checks import build, int_in, is_num
from .errors import SpecError
from .generate import GenerationConfig
from .llm.config import LLMConfig, llm_problems
from .relabel import RelabelConfig
from .training.config import EmbedLRConfig, TrainConfig
from .training.data import LABEL_SOURCES, PENDING_RULES, UNPARSEABLE_RULES
from .training.plan import SETFIT_BODY_ROWS, STUDENT_OPTIONS


def _names(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def _unknown(names: set[str], data: Mapping[str, Any], where: str = "") -> list[str]:
    bad = sorted(str(k) for k in data if k not in names)
    if not bad:
        return []
    return [f"unknown setting(s){where}: {', '.join(bad)}; known: {', '.join(sorted(names))}"]


def _held(cls: type, data: dict[str, Any], problems: list[str]):
    """The step config ``cls`` held flat in ``data``: its keys popped, its own rules applied (a
    default config, the problems listed, when they fail)."""
    own = {k: data.pop(k) for k in list(data) if k in _names(cls)}
    return build(cls, own, problems) or cls()


def _nested(cls: type, value: Any, what: str, problems: list[str]):
    """A step config stored as an object (``train``, ``embed_lr``), through its own ``from_dict``."""
    if value is None:
        return cls()
    if not isinstance(value, Mapping):
        problems.append(f"{what} must be an object of {what} settings")
        return cls()
    problems += _unknown(_names(cls), value, f" of {what}")
    return build(cls, {k: v for k, v in value.items() if k in _names(cls)}, problems) or cls()


def _finish(cls: type, own: dict[str, Any], held: dict[str, Any], problems: list[str], flat: type | None = None):
    """``cls(**own, **held)`` and every problem: unknown keys (``flat``: a held config stored flat, whose
    keys are known too), plus the spec's own rules."""
    names = _names(cls) - set(held)
    problems = problems + [p.replace("; known: ", f"; known: {', '.join(sorted(_names(flat)))}, ") if flat else p
                           for p in _unknown(names, own)]
    spec = cls(**{k: v for k, v in own.items() if k in _names(cls)}, **held)
    problems += [p for p in spec.validate() if p not in problems]
    if problems:
        raise SpecError(problems)
    return spec


def _llm_from(data: dict[str, Any], problems: list[str]) -> "LLMSpec":
    llm_data = data.pop("llm", None)
    if llm_data is None:
        return LLMSpec()
    if not isinstance(llm_data, Mapping):
        problems.append("llm must be an object")
        return LLMSpec()
    problems += _unknown(_names(LLMSpec), llm_data, " of the LLM")
    return LLMSpec(**{k: v for k, v in llm_data.items() if k in _names(LLMSpec)})


def _bools(spec: Any, *names: str) -> list[str]:
    return [f"{n} must be true or false (got {getattr(spec, n)!r})" for n in names
            if not isinstance(getattr(spec, n), bool)]


class _Spec:
    KIND: ClassVar[str] = ""

    def validate(self) -> list[str]:  # pragma: no cover - overridden
        raise NotImplementedError

    def check(self) -> "_Spec":
        problems = self.validate()
        if problems:
            raise SpecError(problems)
        return self


@dataclass
class LLMSpec(_Spec):
    """Which endpoint a job calls and how hard. ``None`` URL/model: resolved at run time
    (``OPENAI_BASE_URL``/``PROMPTMIX_MODEL``, else OpenAI with a key, else the bundled model).
    The API key is never part of a spec (it travels in the worker's environment only)."""

    base_url: str | None = None
    model: str | None = None
    concurrency: int = LLMConfig.concurrency
    timeout: float = LLMConfig.timeout
    max_retries: int = LLMConfig.max_retries
    max_retry_after: float = LLMConfig.max_retry_after  # the longest a server's Retry-After is waited out

    def validate(self) -> list[str]:
        p = llm_problems(self.base_url, self.concurrency, self.timeout, self.max_retries, self.max_retry_after)
        if self.model is not None and not isinstance(self.model, str):
            p.append(f"the model must be a name (got {self.model!r})")
        return p

    def options(self) -> dict[str, Any]:
        """Keyword arguments for ``llm.resolve_llm_config``."""
        return {"base_url": self.base_url or None, "model": self.model or None, "concurrency": self.concurrency,
                "timeout": self.timeout, "max_retries": self.max_retries, "max_retry_after": self.max_retry_after}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> "LLMSpec":
        data = dict(data or {})
        return _finish(cls, data, {}, _unknown(_names(cls), data, " of the LLM"))


_LLM_KEYS = ("base_url", "model", "concurrency", "timeout", "max_retries", "max_retry_after")
# keys an earlier `promptmix generate --project` stored with its job (every CLI option); dropped on read
_LEGACY_CLI_KEYS = {"task", "out", "k", "task_seed", "project", "job", "cache", "func", "command",
                    "pairs_from", "pairs_top", "argv", "plan_parser"}


@dataclass
class GenerationSpec(_Spec):
    """A generation job (step 1, and step 2 on its examples when ``relabel`` is true).

    ``generation``: the step's settings (:class:`GenerationConfig`: examples per class, group size,
    mixup, seed, examples per call, sampling, call budget, targeted ``pairs``; defaults and rules
    there). The job's own: ``relabel`` then relabel what was generated, showing the ``nearest``
    classes (default and rule: :class:`RelabelConfig`; the candidate order follows the generation
    seed); ``flag_junk`` flag probable junk among the examples; ``demo`` marks the demo project's
    pre-written job; ``llm`` the endpoint.
    """

    KIND: ClassVar[str] = "generate"

    generation: GenerationConfig = field(default_factory=GenerationConfig)
    relabel: bool = True
    nearest: int = RelabelConfig.nearest
    flag_junk: bool = True
    demo: bool = False
    llm: LLMSpec = field(default_factory=LLMSpec)

    def validate(self) -> list[str]:
        p = self.generation.problems() if isinstance(self.generation, GenerationConfig) else [
            "generation must be generation settings"]
        p += _bools(self, "relabel", "flag_junk", "demo")
        build(RelabelConfig, {"nearest": self.nearest}, p)  # RelabelConfig's rule, worded there
        p += self.llm.validate() if isinstance(self.llm, LLMSpec) else ["llm must be an LLM spec"]
        return p

    def relabel_config(self) -> RelabelConfig:
        return RelabelConfig(nearest=self.nearest, seed=self.generation.seed)  # the seed also draws the candidate order

    # ---------------------------------------------------------------- stored
    def to_dict(self) -> dict[str, Any]:
        gen = dataclasses.asdict(self.generation)
        gen["pairs"] = [list(p) for p in self.generation.pairs]
        return {**gen, "relabel": self.relabel, "nearest": self.nearest, "flag_junk": self.flag_junk,
                "demo": self.demo, "llm": self.llm.to_dict()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> "GenerationSpec":
        data, problems = dict(data or {}), []
        llm = _llm_from(data, problems)
        generation = _held(GenerationConfig, data, problems)
        return _finish(cls, data, {"llm": llm, "generation": generation}, problems, GenerationConfig)

    @classmethod
    def from_stored(cls, data: Mapping[str, Any] | None) -> "GenerationSpec":
        """A stored job config, including the flat shape of earlier versions (migrated on read)."""
        data = dict(data or {})
        if "llm" not in data:
            data["llm"] = {k: data.pop(k) for k in _LLM_KEYS if k in data}
            if "retries" in data:
                data["llm"]["max_retries"] = data.pop("retries")
            data["llm"] = {k: v for k, v in data["llm"].items() if v is not None}
            if "no_mixup" in data:
                data["mixup"] = not data.pop("no_mixup")
            if "no_flags" in data:
                data["flag_junk"] = not data.pop("no_flags")
            if "max_calls" in data:
                data["max_calls_per_class"] = data.pop("max_calls")
            for k in _LEGACY_CLI_KEYS:
                data.pop(k, None)
        return cls.from_dict(data)

    @classmethod
    def from_page_settings(cls, settings: Mapping[str, Any]) -> "GenerationSpec":
        """The Generate page's last settings (the flat keys it saves in the project); the defaults
        when they cannot be read."""
        keys = ("per_class", "group_size", "mixup", "seed", "relabel", "nearest")
        data: dict[str, Any] = {k: settings[k] for k in keys if k in settings}
        if "concurrency" in settings:
            data["llm"] = {"concurrency": settings["concurrency"]}
        try:
            return cls.from_dict(data)
        except SpecError:
            return cls()

    @classmethod
    def from_cli_args(cls, args: Any) -> "GenerationSpec":
        """The spec ``promptmix generate`` runs (its flags map one to one onto the fields)."""
        return cls.from_dict({
            "per_class": args.per_class, "group_size": args.group_size, "mixup": not args.no_mixup,
            "seed": args.seed, "examples_per_call": args.examples_per_call,
            "max_calls_per_class": args.max_calls, "relabel": bool(args.relabel), "nearest": args.nearest,
            "flag_junk": not getattr(args, "no_flags", False),
            "llm": {"base_url": args.base_url, "model": args.model, "concurrency": args.concurrency,
                    "timeout": args.timeout, "max_retries": args.retries,
                    "max_retry_after": getattr(args, "max_retry_after", LLMConfig.max_retry_after)},
        })


@dataclass
class RelabelSpec(_Spec):
    """A relabel job (step 2 on examples already in the project): ``source_job`` whose examples
    (``None``: every job's) not yet relabelled; ``relabel`` the step's settings
    (:class:`RelabelConfig`: nearest classes shown, the candidate order's seed...); ``llm`` the endpoint."""

    KIND: ClassVar[str] = "relabel"

    source_job: int | None = None
    relabel: RelabelConfig = field(default_factory=RelabelConfig)
    llm: LLMSpec = field(default_factory=LLMSpec)

    def validate(self) -> list[str]:
        p: list[str] = []
        if self.source_job is not None:
            int_in(p, self.source_job, 1, None, "the source job")
        p += self.relabel.problems() if isinstance(self.relabel, RelabelConfig) else [
            "relabel must be relabel settings"]
        p += self.llm.validate() if isinstance(self.llm, LLMSpec) else ["llm must be an LLM spec"]
        return p

    def relabel_config(self) -> RelabelConfig:
        return self.relabel

    def to_dict(self) -> dict[str, Any]:
        return {"source_job": self.source_job, **dataclasses.asdict(self.relabel), "llm": self.llm.to_dict()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> "RelabelSpec":
        data, problems = dict(data or {}), []
        llm = _llm_from(data, problems)
        relabel = _held(RelabelConfig, data, problems)
        return _finish(cls, data, {"llm": llm, "relabel": relabel}, problems, RelabelConfig)

    @classmethod
    def from_stored(cls, data: Mapping[str, Any] | None) -> "RelabelSpec":
        data = dict(data or {})
        if "llm" not in data:  # the flat shape of earlier versions, often a copy of a generation config
            data["llm"] = {k: v for k in _LLM_KEYS if (v := data.pop(k, None)) is not None}
            data.pop("retries", None)
            keep = {"source_job", "llm", "nearest"}  # the seed of a copied generation config was not the relabel's
            for k in list(data):
                if k not in keep:
                    data.pop(k)
        return cls.from_dict(data)


@dataclass
class TrainingSpec(_Spec):
    """A training job. ``label_source``: ``a2`` (LLM relabel), ``a1`` (intended label) or ``reviewed``;
    ``pending``: for ``reviewed``, what pending examples get (``drop``, ``a2``, ``a1``);
    ``unparseable``: for ``a2``, unparseable or not relabelled examples (``drop`` or ``a1``);
    ``example_job_id``: only this generation job's examples (``None``: all); ``include_seeds``;
    ``val_path``: a labelled CSV/JSONL to validate on, else ``val_fraction`` of the generated examples
    held out per class; ``out_dir`` (``None``: ``<project>.models/run-<id>``); ``name`` and ``method``
    of the run; ``train``: the fine-tuning settings (:class:`TrainConfig`; its learning rate ``None``
    follows TrainConfig's rule: 4e-5, 6e-5 for 50+ classes).

    ``student``: ``auto`` (the default: the student the measurements pick for the data,
    :func:`promptmix_core.training.plan.choose_student`: SetFit at few-shot sizes, fine-tuning above),
    ``finetune`` (fine-tune ``train.model``), ``setfit`` or ``embed-lr`` (the quick student: frozen
    all-MiniLM-L6-v2 embeddings + logistic regression, settings in ``embed_lr``, an
    :class:`EmbedLRConfig`).
    ``curation``: the default selection of generated examples (:mod:`promptmix_core.training.curate`;
    reviewed decisions override it). ``control``: also train the same student on the seeds alone and
    compare on the test set (:mod:`promptmix_core.training.control`; cached, so it costs once).
    ``setfit_body``: which rows make SetFit's contrastive pairs, ``trusted`` (the default: the seeds
    and reviewed examples, so a run and its control share one body) or ``all``
    (:data:`promptmix_core.training.setfit_student.BODY_ROWS`).
    Scoring: with ``test_path`` (a labelled CSV/JSONL, every row checked against the task) the run
    is scored on that file; otherwise, with ``use_test_set``, on the project's test set when it has
    one. Generated examples that repeat a test row are never trained on."""

    KIND: ClassVar[str] = "train"

    label_source: str = "a2"
    pending: str = "drop"
    unparseable: str = "drop"
    example_job_id: int | None = None
    include_seeds: bool = True
    val_path: str | None = None
    val_fraction: float = 0.0  # generated hold-out: agreement with generated labels, not a measure
    out_dir: str | None = None
    name: str | None = None
    method: str | None = None
    student: str = "auto"
    test_path: str | None = None
    use_test_set: bool = True
    embed_lr: EmbedLRConfig = field(default_factory=EmbedLRConfig)
    curation: bool = True
    control: bool = True
    setfit_body: str = "trusted"
    train: TrainConfig = field(default_factory=TrainConfig)

    def validate(self) -> list[str]:
        p: list[str] = []
        if self.student not in STUDENT_OPTIONS:
            p.append(f"student must be one of {', '.join(STUDENT_OPTIONS)} (got {self.student!r})")
        p += _bools(self, "use_test_set", "curation", "control")
        if self.setfit_body not in SETFIT_BODY_ROWS:
            p.append(f"setfit_body must be one of {', '.join(SETFIT_BODY_ROWS)} (got {self.setfit_body!r})")
        p += self.embed_lr.problems() if isinstance(self.embed_lr, EmbedLRConfig) else [
            "embed_lr must be quick-student settings"]
        p += self.train.problems() if isinstance(self.train, TrainConfig) else ["train must be training settings"]
        if self.label_source not in LABEL_SOURCES:
            p.append(f"label_source must be one of {', '.join(LABEL_SOURCES)} (got {self.label_source!r})")
        if self.pending not in PENDING_RULES:
            p.append(f"pending must be one of {', '.join(PENDING_RULES)} (got {self.pending!r})")
        if self.unparseable not in UNPARSEABLE_RULES:
            p.append(f"unparseable must be one of {', '.join(UNPARSEABLE_RULES)} (got {self.unparseable!r})")
        if self.example_job_id is not None:
            int_in(p, self.example_job_id, 1, None, "example_job_id")
        p += _bools(self, "include_seeds")
        if not (is_num(self.val_fraction) and 0 <= self.val_fraction < 1):
            p.append(f"val_fraction must be at least 0 and below 1 (got {self.val_fraction!r})")
        for name in ("val_path", "out_dir", "name", "method", "test_path"):
            v = getattr(self, name)
            if v is not None and not isinstance(v, str):
                p.append(f"{name} must be text (got {v!r})")
        return p

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("train", "embed_lr")}
        return {**out, "embed_lr": self.embed_lr.to_dict(), "train": self.train.to_dict()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> "TrainingSpec":
        data, problems = dict(data or {}), []
        train = _nested(TrainConfig, data.pop("train", None), "train", problems)
        embed_lr = _nested(EmbedLRConfig, data.pop("embed_lr", None), "embed_lr", problems)
        return _finish(cls, data, {"train": train, "embed_lr": embed_lr}, problems)

    @classmethod
    def from_stored(cls, data: Mapping[str, Any] | None) -> "TrainingSpec":
        # the stored shape has not changed since the first version
        return cls.from_dict(data)

    # ----------------------------------------------------------- the Train page's remembered form
    @classmethod
    def from_page_settings(cls, settings: Mapping[str, Any]) -> "TrainingSpec":
        """The Train page's last settings: ``settings["training"]`` (a spec), else the flat ``train_*``
        keys earlier versions saved (migrated). A learning rate of "4e-5" there was the page's
        hard-coded default, saved without the user choosing it: it becomes ``None`` (TrainConfig's rule)."""
        stored = settings.get("training")
        if isinstance(stored, Mapping):
            try:
                return cls.from_dict(stored)
            except SpecError:
                pass
        spec = cls()
        t = spec.train
        lr_text = str(settings.get("train_lr", "") or "").strip()
        lr = None
        if lr_text and lr_text != "4e-5":
            try:
                lr = float(lr_text)
            except ValueError:
                lr = None
        try:
            train = dataclasses.replace(
                t, model=(settings.get("train_model") or None) if settings.get("train_model_choice") == "other" else None,
                epochs=int(settings.get("train_epochs", t.epochs)), learning_rate=lr,
                batch_size=int(settings.get("train_batch", t.batch_size)),
                min_steps=int(settings.get("train_min_steps", t.min_steps)),
                seed=int(settings.get("train_seed", t.seed)),
                max_length=int(settings.get("train_max_length", t.max_length)),
                max_steps=int(settings.get("train_max_steps") or 0) or None,
            )
        except (TypeError, ValueError):
            train = t
        source = settings.get("train_label_source", spec.label_source)
        return dataclasses.replace(
            spec, train=train, label_source=source if source in LABEL_SOURCES else spec.label_source,
            val_fraction=float(settings.get("train_val", spec.val_fraction)),
        )


SPECS: dict[str, type] = {"generate": GenerationSpec, "relabel": RelabelSpec, "train": TrainingSpec}


def spec_for_job(kind: str, config: Mapping[str, Any] | None):
    """The typed spec of a stored job (old shapes migrated on read)."""
    if kind not in SPECS:
        raise SpecError(f"unknown job kind {kind!r}; use one of {', '.join(SPECS)}")
    return SPECS[kind].from_stored(config)


__all__ = ["GenerationSpec", "LLMSpec", "RelabelSpec", "SPECS", "TrainingSpec", "spec_for_job"]
