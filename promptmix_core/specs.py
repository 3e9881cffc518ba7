"""Typed job specs: what a generation, relabel or training job is asked to do.

One spec per kind of job, built alike by the app (pages 2 and 4), the CLI (``promptmix generate``,
``promptmix train``), the worker (which reads the spec stored with the job) and the experiment
runner. Defaults live here (taken from the step configs they feed: ``GenerationConfig``,
``RelabelConfig``, ``LLMConfig``, ``TrainConfig``), nowhere else.

Every spec has:

- ``validate() -> list[str]``: every problem at once (empty: valid);
- ``check()``: raises :class:`SpecError` listing them all;
- ``to_dict()`` / ``from_dict()``: the stored shape (``jobs.config``); ``from_dict`` refuses unknown
  keys and invalid values, listing all of them;
- ``from_stored()``: reads a job row written by an earlier version (flat keys) and migrates it.

Stored shapes::

    generate  {"per_class", "group_size", "mixup", "seed", "examples_per_call", "temperature", "top_p",
               "max_tokens", "max_calls_per_class", "max_example_chars", "relabel", "nearest",
               "demo", "llm": {"base_url", "model", "concurrency", "timeout", "max_retries",
               "max_retry_after"}}
    relabel   {"source_job", "nearest", "llm": {...}}
    train     {"label_source", "pending", "unparseable", "example_job_id", "include_seeds",
               "val_path", "val_fraction", "out_dir", "name", "method", "student", "test_path",
               "use_test_set", "embed_lr": {EmbedLRConfig}, "train": {TrainConfig}}
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping

from .errors import SpecError
from .generate import GenerationConfig
from .llm.config import LLMConfig
from .relabel import RelabelConfig
from .training.config import TrainConfig
from .training.data import LABEL_SOURCES, PENDING_RULES, UNPARSEABLE_RULES
from .training.embed_lr import EmbedLRConfig
from .training.plan import STUDENT_OPTIONS


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _int_in(p: list[str], name: str, v: Any, lo: int, hi: int | None = None, what: str = "") -> None:
    ok = _is_int(v) and v >= lo and (hi is None or v <= hi)
    if not ok:  # the same wording as the step configs (GenerationConfig, LLMConfig) always used
        rng = f"between {lo:,} and {hi:,}" if hi is not None else f"at least {lo:,}"
        p.append(f"{what or name} must be {rng} (got {v!r})")


def _unknown(cls: type, data: Mapping[str, Any], where: str = "") -> list[str]:
    names = {f.name for f in dataclasses.fields(cls)}
    bad = sorted(k for k in data if k not in names)
    if not bad:
        return []
    return [f"unknown setting(s){where}: {', '.join(map(str, bad))}; known: {', '.join(sorted(names))}"]


def _build(cls: type, data: Mapping[str, Any], extra: Mapping[str, Any], problems: list[str]):
    """``cls(**known keys, **extra)`` and every problem: unknown keys, plus the known values' own."""
    names = {f.name for f in dataclasses.fields(cls)}
    problems = problems + _unknown(cls, data)
    try:
        spec = cls(**{k: v for k, v in data.items() if k in names}, **extra)
    except TypeError as exc:  # pragma: no cover - every field has a default
        raise SpecError(problems + [str(exc)]) from None
    problems += spec.validate()
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
    names = {f.name for f in dataclasses.fields(LLMSpec)}
    problems += _unknown(LLMSpec, llm_data, " of the LLM")
    return LLMSpec(**{k: v for k, v in llm_data.items() if k in names})


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
        p: list[str] = []
        if self.base_url is not None and not (isinstance(self.base_url, str)
                                              and self.base_url.startswith(("http://", "https://"))):
            p.append(f"the endpoint URL must start with http:// or https:// (got {self.base_url!r})")
        if self.model is not None and not isinstance(self.model, str):
            p.append(f"the model must be a name (got {self.model!r})")
        _int_in(p, "concurrency", self.concurrency, 1, 256)
        if not (_is_num(self.timeout) and 0 < self.timeout <= 3600):
            p.append(f"the timeout must be between 0 and 3600 seconds (got {self.timeout!r})")
        _int_in(p, "max_retries", self.max_retries, 0, 20, "retries")
        if not (_is_num(self.max_retry_after) and 0 <= self.max_retry_after <= 86_400):
            p.append("the longest Retry-After wait must be between 0 and 86400 seconds "
                     f"(got {self.max_retry_after!r})")
        return p

    def options(self) -> dict[str, Any]:
        """Keyword arguments for ``llm.resolve_llm_config``."""
        return {"base_url": self.base_url or None, "model": self.model or None, "concurrency": self.concurrency,
                "timeout": self.timeout, "max_retries": self.max_retries, "max_retry_after": self.max_retry_after}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> "LLMSpec":
        data, problems = dict(data or {}), []
        problems += _unknown(cls, data, " of the LLM")
        names = {f.name for f in dataclasses.fields(cls)}
        spec = cls(**{k: v for k, v in data.items() if k in names})
        problems += spec.validate()
        if problems:
            raise SpecError(problems)
        return spec


_LLM_KEYS = ("base_url", "model", "concurrency", "timeout", "max_retries", "max_retry_after")
# keys an earlier `promptmix generate --project` stored with its job (every CLI option); dropped on read
_LEGACY_CLI_KEYS = {"task", "out", "k", "task_seed", "project", "job", "cache", "func", "command"}


@dataclass
class GenerationSpec(_Spec):
    """A generation job (step 1, and step 2 on its examples when ``relabel`` is true).

    Fields: ``per_class`` examples kept per class (exactly); ``group_size`` classes per prompt
    group; ``mixup`` (off: plain examples of each class, alpha 1); ``seed`` (groups, Cj and alpha
    draws); ``examples_per_call`` asked for per call (at most half of ``per_class``, rounded up, so every
    class gets at least two calls with their own Cj and alpha); ``temperature``; ``top_p`` (None: 0.9 for the
    bundled model, else the endpoint's default); ``max_tokens`` per answer (the most: a call asks for
    room for its lines, ``generate.call_max_tokens``);
    ``max_calls_per_class`` (``None``: 4 per example + 5); ``max_example_chars`` (longer lines are
    dropped); ``relabel`` then relabel what was generated; ``nearest`` classes shown to the relabeler;
    ``demo`` marks the demo project's pre-written job; ``pairs`` a targeted round: only these
    ``[Ci, Cj]`` pairs ("write Ci mixed with Cj"; empty: every class); ``llm`` the endpoint.
    """

    KIND: ClassVar[str] = "generate"

    per_class: int = GenerationConfig.per_class
    group_size: int = GenerationConfig.group_size
    mixup: bool = GenerationConfig.mixup
    seed: int = GenerationConfig.seed
    examples_per_call: int = GenerationConfig.examples_per_call
    temperature: float = GenerationConfig.temperature
    top_p: float | None = GenerationConfig.top_p
    max_tokens: int = GenerationConfig.max_tokens
    max_calls_per_class: int | None = GenerationConfig.max_calls_per_class
    max_example_chars: int = GenerationConfig.max_example_chars
    relabel: bool = True
    nearest: int = RelabelConfig.nearest
    demo: bool = False
    pairs: list[list[str]] = field(default_factory=list)
    llm: LLMSpec = field(default_factory=LLMSpec)

    def validate(self) -> list[str]:
        p: list[str] = []
        _int_in(p, "per_class", self.per_class, 1, 10_000, "examples per class")
        if not isinstance(self.pairs, (list, tuple)):
            p.append(f"pairs must be a list of [class, other class] pairs (got {self.pairs!r})")
        else:
            for pair in self.pairs:
                if (not isinstance(pair, (list, tuple)) or len(pair) != 2
                        or not all(isinstance(c, str) and c for c in pair)):
                    p.append(f"a class pair must be two class names (got {pair!r})")
                elif pair[0] == pair[1]:
                    p.append(f"a class pair must name two different classes (got {pair!r})")
            if self.pairs and self.mixup is False:
                p.append("class pairs need mixup (they say which class each is mixed with)")
        _int_in(p, "group_size", self.group_size, 2, None, "the group size")
        if not isinstance(self.mixup, bool):
            p.append(f"mixup must be true or false (got {self.mixup!r})")
        _int_in(p, "seed", self.seed, 0, None, "the seed")
        _int_in(p, "examples_per_call", self.examples_per_call, 1, 50, "examples per call")
        if not (_is_num(self.temperature) and 0 <= self.temperature <= 2):
            p.append(f"the temperature must be between 0 and 2 (got {self.temperature!r})")
        if self.top_p is not None and not (_is_num(self.top_p) and 0 < self.top_p <= 1):
            p.append(f"top_p must be above 0 and at most 1 (got {self.top_p!r})")
        _int_in(p, "max_tokens", self.max_tokens, 16, 32_768, "max_tokens")
        if self.max_calls_per_class is not None:
            _int_in(p, "max_calls_per_class", self.max_calls_per_class, 1, None, "the most calls per class")
        _int_in(p, "max_example_chars", self.max_example_chars, 10, 20_000, "max_example_chars")
        if not isinstance(self.relabel, bool):
            p.append(f"relabel must be true or false (got {self.relabel!r})")
        _int_in(p, "nearest", self.nearest, 2, None, "the number of nearest classes shown")
        if not isinstance(self.demo, bool):
            p.append(f"demo must be true or false (got {self.demo!r})")
        p += self.llm.validate() if isinstance(self.llm, LLMSpec) else ["llm must be an LLM spec"]
        return p

    # ----------------------------------------------------------- to the steps
    def generation_config(self) -> GenerationConfig:
        return GenerationConfig(
            per_class=self.per_class, group_size=self.group_size, mixup=self.mixup, seed=self.seed,
            examples_per_call=self.examples_per_call, temperature=self.temperature, top_p=self.top_p,
            max_tokens=self.max_tokens,
            max_calls_per_class=self.max_calls_per_class, max_example_chars=self.max_example_chars,
            pairs=tuple((str(a), str(b)) for a, b in self.pairs),
        )

    def relabel_config(self) -> RelabelConfig:
        return RelabelConfig(nearest=self.nearest, seed=self.seed)  # the seed also draws the candidate order

    # ---------------------------------------------------------------- stored
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> "GenerationSpec":
        data, problems = dict(data or {}), []
        llm = _llm_from(data, problems)
        return _build(cls, data, {"llm": llm}, problems)

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
            if "max_calls" in data:
                data["max_calls_per_class"] = data.pop("max_calls")
            for k in _LEGACY_CLI_KEYS:
                data.pop(k, None)
        return cls.from_dict(data)

    @classmethod
    def from_cli_args(cls, args: Any) -> "GenerationSpec":
        """The spec ``promptmix generate`` runs (its flags map one to one onto the fields)."""
        return cls.from_dict({
            "per_class": args.per_class, "group_size": args.group_size, "mixup": not args.no_mixup,
            "seed": args.seed, "examples_per_call": args.examples_per_call,
            "max_calls_per_class": args.max_calls, "relabel": bool(args.relabel), "nearest": args.nearest,
            "llm": {"base_url": args.base_url, "model": args.model, "concurrency": args.concurrency,
                    "timeout": args.timeout, "max_retries": args.retries,
                    "max_retry_after": getattr(args, "max_retry_after", LLMConfig.max_retry_after)},
        })


@dataclass
class RelabelSpec(_Spec):
    """A relabel job (step 2 on examples already in the project): ``source_job`` whose examples
    (``None``: every job's) not yet relabelled; ``nearest`` classes shown; ``llm`` the endpoint."""

    KIND: ClassVar[str] = "relabel"

    source_job: int | None = None
    nearest: int = RelabelConfig.nearest
    llm: LLMSpec = field(default_factory=LLMSpec)

    def validate(self) -> list[str]:
        p: list[str] = []
        if self.source_job is not None:
            _int_in(p, "source_job", self.source_job, 1, None, "the source job")
        _int_in(p, "nearest", self.nearest, 2, None, "the number of nearest classes shown")
        p += self.llm.validate() if isinstance(self.llm, LLMSpec) else ["llm must be an LLM spec"]
        return p

    def relabel_config(self) -> RelabelConfig:
        return RelabelConfig(nearest=self.nearest)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> "RelabelSpec":
        data, problems = dict(data or {}), []
        llm = _llm_from(data, problems)
        return _build(cls, data, {"llm": llm}, problems)

    @classmethod
    def from_stored(cls, data: Mapping[str, Any] | None) -> "RelabelSpec":
        data = dict(data or {})
        if "llm" not in data:  # the flat shape of earlier versions, often a copy of a generation config
            data["llm"] = {k: v for k in _LLM_KEYS if (v := data.pop(k, None)) is not None}
            data.pop("retries", None)
            gen_only = {f.name for f in dataclasses.fields(GenerationSpec)} - {f.name for f in dataclasses.fields(cls)}
            for k in gen_only | _LEGACY_CLI_KEYS | {"no_mixup", "max_calls"}:
                data.pop(k, None)
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
    all-MiniLM-L6-v2 embeddings + logistic regression, settings in ``embed_lr``).
    ``curation``: the default selection of generated examples (:mod:`promptmix_core.training.curate`;
    reviewed decisions override it). ``control``: also train the same student on the seeds alone and
    compare on the test set (:mod:`promptmix_core.training.control`; cached, so it costs once).
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
    embed_lr: dict[str, Any] = field(default_factory=dict)
    curation: bool = True
    control: bool = True
    train: TrainConfig = field(default_factory=TrainConfig)

    def validate(self) -> list[str]:
        p: list[str] = []
        if self.student not in STUDENT_OPTIONS:
            p.append(f"student must be one of {', '.join(STUDENT_OPTIONS)} (got {self.student!r})")
        for name in ("curation", "control"):
            if not isinstance(getattr(self, name), bool):
                p.append(f"{name} must be true or false (got {getattr(self, name)!r})")
        if not isinstance(self.use_test_set, bool):
            p.append(f"use_test_set must be true or false (got {self.use_test_set!r})")
        if not isinstance(self.embed_lr, Mapping):
            p.append("embed_lr must be an object of quick-student settings")
        else:
            try:
                EmbedLRConfig.from_dict(self.embed_lr)
            except ValueError as exc:
                p.append(str(exc))
        if self.label_source not in LABEL_SOURCES:
            p.append(f"label_source must be one of {', '.join(LABEL_SOURCES)} (got {self.label_source!r})")
        if self.pending not in PENDING_RULES:
            p.append(f"pending must be one of {', '.join(PENDING_RULES)} (got {self.pending!r})")
        if self.unparseable not in UNPARSEABLE_RULES:
            p.append(f"unparseable must be one of {', '.join(UNPARSEABLE_RULES)} (got {self.unparseable!r})")
        if self.example_job_id is not None:
            _int_in(p, "example_job_id", self.example_job_id, 1, None, "example_job_id")
        if not isinstance(self.include_seeds, bool):
            p.append(f"include_seeds must be true or false (got {self.include_seeds!r})")
        if not (_is_num(self.val_fraction) and 0 <= self.val_fraction < 1):
            p.append(f"val_fraction must be at least 0 and below 1 (got {self.val_fraction!r})")
        for name in ("val_path", "out_dir", "name", "method", "test_path"):
            v = getattr(self, name)
            if v is not None and not isinstance(v, str):
                p.append(f"{name} must be text (got {v!r})")
        return p

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "train"}
        out["train"] = self.train.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> "TrainingSpec":
        data, problems = dict(data or {}), []
        train_data = data.pop("train", None)
        train = TrainConfig()
        if train_data is not None and not isinstance(train_data, Mapping):
            problems.append("train must be an object of training settings")
        elif train_data:
            names = {f.name for f in dataclasses.fields(TrainConfig)}
            bad = sorted(k for k in train_data if k not in names)
            if bad:
                problems.append(f"unknown training setting(s): {', '.join(map(str, bad))}; "
                                f"known: {', '.join(sorted(names))}")
            try:
                train = TrainConfig(**{k: v for k, v in train_data.items() if k in names})
            except ValueError as exc:  # TrainConfig lists every problem of its own, "; "-separated
                problems += str(exc).removeprefix("invalid training settings: ").split("; ")
        return _build(cls, data, {"train": train}, problems)

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
