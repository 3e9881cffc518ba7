"""The PromptMix paper's protocol (Sahu et al., EMNLP 2023) over methods and seeds.

For each run r (seed = ``base_seed + r``): draw ``k`` seeds per class from ``train.csv`` (the rest of
``train.csv`` is never shown to anything), then for each method build training data, fine-tune the
classifier (same :class:`TrainConfig` for all), and score it on the same held-out ``test.csv``
(optionally a fixed random subset of ``test_limit`` rows, the same for every run and method).

Methods (all on the same seeds):

=============  ===========================================================================
``baseline``   the k seeds only
``eda``        seeds + EDA augmentations (:mod:`promptmix_core.eda`), about ``per_class`` new
               examples per class (``ceil(per_class / k)`` per seed), alpha 0.1
``a1``         seeds + ``per_class`` generated examples per class with mixup, intended labels
``a2``         the same generated examples with the LLM's relabels (unparseable ones dropped)
``no-mixup``   seeds + ``per_class`` examples per class generated without mixup, relabelled (A2)
``llm-direct`` no fine-tuning: the relabel classifier prompt applied to each test text
=============  ===========================================================================

Generation and relabeling are shared by ``a1``/``a2`` and cached twice: every LLM response in
the one LLM cache of every entry point (``$PROMPTMIX_CACHE``, see :mod:`promptmix_core.paths`) and the examples with their relabels in ``OUT/cache/``; finished
(method, run) results in ``OUT/raw/`` are reused when their settings match, so a re-run costs no
LLM calls and no training. Outputs: ``results.md``, ``results.csv`` (methods x metrics, mean and
sample std over runs), ``results.json`` and ``raw/<method>/run<r>.json`` (per-class metrics,
confusion matrix, training summary).
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from .checks import is_int, raise_problems
from .generate import GenerationConfig
from .relabel import RelabelConfig
from .training.config import TrainConfig

METHODS = ("baseline", "eda", "a1", "a2", "no-mixup", "llm-direct", "a2-targeted", "setfit", "setfit+a2", "default")
METHOD_TITLES = {
    "baseline": "Seeds only (baseline)",
    "eda": "EDA (Wei & Zou 2019)",
    "a1": "PromptMix A1 (generated, intended labels)",
    "a2": "PromptMix A2 (generated + LLM relabel)",
    "no-mixup": "PromptMix without mixup (A2)",
    "llm-direct": "LLM-direct (relabel classifier on test)",
    "a2-targeted": "PromptMix A2 + one round aimed at the A2 student's confused pairs",
    "setfit": "SetFit (Tunstall et al. 2022) on the seeds",
    "setfit+a2": "SetFit on seeds + A2 examples",
    "default": "Default pipeline (offline): curated A2 examples + the student picked for the data",
}
LLM_METHODS = {"a1", "a2", "no-mixup", "llm-direct", "a2-targeted", "setfit+a2", "default"}
#: methods whose student is SetFit rather than the fine-tuned classifier
SETFIT_METHODS = {"setfit", "setfit+a2"}
RESULT_VERSION = 1


log = logging.getLogger(__name__)


def _log_default(msg: str) -> None:
    log.info("%s", msg)


def _key(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode("utf-8")).hexdigest()[:16]


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n", "utf-8")
    tmp.replace(path)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text("utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def parse_methods(methods: str | Sequence[str]) -> list[str]:
    if isinstance(methods, str):
        methods = [m.strip() for m in methods.split(",") if m.strip()]
    out = []
    for m in methods:
        m = m.strip().lower().replace("_", "-")
        if m in ("nomixup", "no-mix", "w/o-mixup"):
            m = "no-mixup"
        if m not in METHODS:
            raise ValueError(f"unknown method {m!r}; choose from {', '.join(METHODS)}")
        if m not in out:
            out.append(m)
    if not out:
        raise ValueError("no methods given")
    return out


def load_dataset(data_dir: str | Path, classes: int | Sequence[str] | None = None) -> dict[str, Any]:
    """train/test rows and descriptions of a data folder (train.csv, test.csv, classes.json).

    ``classes``: keep only these class names, or the first N classes of classes.json (or of the
    sorted labels when there is no classes.json).
    """
    from .labelled import read_labelled_file
    from .task import TaskError, read_descriptions

    d = Path(data_dir)
    for name in ("train.csv", "test.csv"):
        if not (d / name).exists():
            raise TaskError(f"{d} has no {name}; an experiment folder needs train.csv and test.csv (text,label)")
    train = read_labelled_file(d / "train.csv")
    test = read_labelled_file(d / "test.csv")
    descs = read_descriptions(d / "classes.json") if (d / "classes.json").exists() else {}
    order = list(descs) or sorted({r["label"] for r in train})
    if classes is not None:
        if isinstance(classes, int):
            if classes < 2:
                raise ValueError("an experiment needs at least 2 classes")
            keep = order[:classes]
        else:
            keep = list(classes)
            missing = [c for c in keep if c not in set(order)]
            if missing:
                raise ValueError(f"classes not in {d.name}: {', '.join(missing)}")
        ks = set(keep)
        train = [r for r in train if r["label"] in ks]
        test = [r for r in test if r["label"] in ks]
        descs = {k: v for k, v in descs.items() if k in ks}
    return {"name": d.name, "train": train, "test": test, "descriptions": descs}


def _test_subset(test: list[dict[str, str]], limit: int | None) -> list[dict[str, str]]:
    rows = sorted(test, key=lambda r: (r["label"], r["text"]))
    if limit is None or limit >= len(rows):
        return rows
    return random.Random("promptmix-test-subset").sample(rows, limit)


class _LLMHolder:
    """Creates the LLM client on first use (so LLM-free methods never start a model)."""

    def __init__(self, llm: Any, llm_config: Any, base_url: str | None, model: str | None, cache_path: Path):
        self._llm = llm
        self._config = llm_config
        self.base_url, self.model, self.cache_path = base_url, model, cache_path

    def get(self):
        if self._llm is None:
            from .llm import LLMClient, resolve_llm_config

            cfg = self._config or resolve_llm_config(base_url=self.base_url, model=self.model)
            self._llm = LLMClient(cfg, cache_path=self.cache_path)
        return self._llm

    @property
    def started(self) -> bool:
        return self._llm is not None

    def identity(self) -> dict[str, Any]:
        """What cached results are keyed on: the model, and the endpoint unless it is the bundled
        local server (whose port changes from one start to the next)."""
        cfg = self._llm.config if self._llm is not None else self._config
        if cfg is None:
            cfg = self.get().config
        return {"base_url": "local" if getattr(cfg, "local", False) else cfg.base_url, "model": cfg.model}


def generation_spec(*, per_class: int, group_size: int, mixup: bool, seed: int, nearest: int,
                    options: Mapping[str, Any] | None = None):
    """The :class:`~promptmix_core.specs.GenerationSpec` of one experiment run (the same spec the
    app and the CLI build); ``options`` are further spec fields (``max_calls_per_class``...)."""
    from .specs import GenerationSpec

    return GenerationSpec.from_dict({"per_class": per_class, "group_size": group_size, "mixup": mixup,
                                     "seed": seed, "nearest": nearest, **dict(options or {})})


def _generated(task, run_seed: int, mixup: bool, relabel_needed: bool, *, per_class: int, group_size: int,
               nearest: int, llm: _LLMHolder, cache_dir: Path, log: Callable[[str], None],
               gen_kwargs: Mapping[str, Any], pairs: Sequence[Sequence[str]] = ()) -> dict[str, Any]:
    """Generated examples (+ relabels) for one run, from the cache when the settings match.

    ``pairs`` aims generation at those (Ci, Cj) pairs only (a targeted round)."""
    pairs = [list(p) for p in pairs]
    key_obj = {"task": task.to_dict(), "per_class": per_class, "group_size": group_size, "mixup": mixup,
               "seed": run_seed, "nearest": nearest, "gen": dict(gen_kwargs), "llm": llm.identity()}
    if run_seed:  # relabels drawn in the run's candidate order (seed 0: as before)
        key_obj["relabel_seed"] = run_seed
    kind = "mixup" if mixup else "nomixup"
    if pairs:
        key_obj["pairs"] = pairs
        kind = "targeted-" + _key(pairs)[:8]
    path = cache_dir / f"seed{run_seed}_{kind}.json"
    cached = _read_json(path)
    if cached and cached.get("key") == _key(key_obj) and (cached.get("relabelled") or not relabel_needed):
        if _flag_rows(task, cached.get("examples") or []):  # written before rows were flagged
            _write_json(path, cached)
        return cached
    from .generate import GenerationFailed, generate

    client = llm.get()
    if cached and cached.get("key") == _key(key_obj) and not cached.get("relabelled") and relabel_needed:
        rows = cached["examples"]
        info = cached
    else:
        log(f"  generating {per_class}/class ({'mixup' if mixup else 'no mixup'}) with {client.config.model}")
        t0 = time.perf_counter()
        shortfalls: dict[str, int] = {}
        error = None
        before = client.stats.as_dict()
        try:
            options = {**dict(gen_kwargs), **({"pairs": pairs} if pairs else {})}
            spec = generation_spec(per_class=per_class, group_size=group_size, mixup=mixup, seed=run_seed,
                                   nearest=nearest, options=options)
            res = generate(task, spec.generation, client)
        except GenerationFailed as exc:  # too few usable answers: keep what was made, say so
            res = exc.result
            shortfalls = dict(res.shortfalls)
            error = str(exc)
            log(f"  warning: {exc}")
        rows = [e.to_row() for e in res.examples]
        info = {"generation_s": time.perf_counter() - t0, "shortfalls": shortfalls, "generation_error": error,
                "generation_llm": _stats_delta(before, client.stats.as_dict())}
    out = {"key": _key(key_obj), "llm": llm.identity(), "examples": rows, "pairs": pairs,
           "relabelled": False, "generation_s": info.get("generation_s"), "shortfalls": info.get("shortfalls", {}),
           "generation_error": info.get("generation_error"), "generation_llm": info.get("generation_llm")}
    if relabel_needed and rows:
        _relabel_rows(task, rows, out, client, RelabelConfig(nearest=nearest, seed=run_seed), log)
    elif relabel_needed:
        out["relabelled"] = True
    _flag_rows(task, rows)
    _write_json(path, out)
    return out


def _relabel_rows(task, rows: list[dict[str, Any]], out: dict[str, Any], client: Any, config: RelabelConfig,
                  log: Callable[[str], None]) -> None:
    """Relabel a run's generated rows in place (``config.seed``: the run's candidate order) and record
    what it cost in ``out``."""
    from .relabel import relabel, relabel_summary

    log(f"  relabelling {len(rows)} examples")
    t0 = time.perf_counter()
    before = client.stats.as_dict()
    rel = relabel(task, rows, client, config)
    out["relabel_llm"] = _stats_delta(before, client.stats.as_dict())
    for row, r in zip(rows, rel):
        row["llm_label"] = r.llm_label if r else None
        row["relabel_status"] = r.status if r else None
    out["relabel_s"] = time.perf_counter() - t0
    out["relabel_summary"] = relabel_summary(rel)
    out["relabelled"] = True


def _flag_rows(task, rows: list[dict[str, Any]]) -> bool:
    """Give each generated row its junk flag (``flag``: the reason, or None), as a generation job does.
    False when every row had one already (nothing changed)."""
    if all("flag" in r for r in rows):
        return False
    from .flags import flag_texts

    for row, reason in zip(rows, flag_texts(task, [r["text"] for r in rows])):
        row["flag"] = reason or None
    return True


def _stats_delta(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, int]:
    """LLM use between two ``UsageStats.as_dict()`` snapshots (calls, cache hits, tokens)."""
    return {k: int(after.get(k) or 0) - int(before.get(k) or 0)
            for k in ("calls", "cache_hits", "prompt_tokens", "completion_tokens", "tokens")}


@dataclass
class ExperimentConfig:
    """One experiment: the data folder, the protocol (``k`` seeds per class, ``methods``, ``runs`` from
    ``base_seed``), the generation and relabel settings (defaults: :class:`GenerationConfig`,
    :class:`RelabelConfig`; further generation fields in ``generation_options``), EDA, the classifier
    (``train``: a :class:`TrainConfig`, or a dict of its fields) and the endpoint (``base_url``/``model``;
    ``None``: :func:`resolve_llm_config`'s choice). Invalid settings raise :class:`SpecError` listing all."""

    data_dir: str | Path = ""
    out_dir: str | Path = "results"
    k: int = 2
    methods: Sequence[str] | str = METHODS
    runs: int = 3
    per_class: int = GenerationConfig.per_class
    test_limit: int | None = None
    classes: int | Sequence[str] | None = None
    group_size: int = GenerationConfig.group_size
    nearest: int = RelabelConfig.nearest
    eda_alpha: float = 0.1
    eda_num_aug: int | None = None  # None: ceil(per_class / k) per seed
    base_seed: int = 0
    generation_options: Mapping[str, Any] = field(default_factory=dict)
    val_per_class: int = 10  # a2-targeted: validation rows per class drawn from train.csv
    reuse: bool = True
    train: TrainConfig | Mapping[str, Any] = field(default_factory=TrainConfig)
    base_url: str | None = None
    model: str | None = None
    command: str | None = None

    def __post_init__(self) -> None:
        self.methods = tuple(parse_methods(self.methods))
        if not isinstance(self.train, TrainConfig):
            self.train = TrainConfig.from_dict(self.train or {})
        self.generation_options = dict(self.generation_options or {})
        p: list[str] = []
        for name in ("k", "runs", "per_class", "val_per_class"):
            if not is_int(getattr(self, name)) or getattr(self, name) < 1:
                p.append(f"{name} must be a positive integer")
        if self.test_limit is not None and not (is_int(self.test_limit) and self.test_limit >= 1):
            p.append("test_limit must be a positive integer")
        raise_problems(p)
        # every problem of the generation settings now, not after an hour of training
        generation_spec(per_class=self.per_class, group_size=self.group_size, mixup=True, seed=self.base_seed,
                        nearest=self.nearest, options=self.generation_options)

    @property
    def num_aug(self) -> int:
        return self.eda_num_aug if self.eda_num_aug is not None else max(1, math.ceil(self.per_class / self.k))


#: methods whose scores depend on the relabeler's candidate order (seeded by the run's seed)
RELABEL_METHODS = {"a2", "no-mixup", "llm-direct", "a2-targeted", "setfit+a2", "default"}


def run_experiment(config: ExperimentConfig, *, llm: Any = None, llm_config: Any = None,
                   log: Callable[[str], None] = _log_default,
                   progress: Callable[[int, int, str], None] | None = None) -> dict[str, Any]:
    """Run the experiment and write results; returns the summary (also in ``results.json``).

    ``llm_config`` (an ``LLMConfig``) or ``llm`` (an ``LLMClient``) or the config's ``base_url``/``model``
    choose the LLM; by default :func:`resolve_llm_config` (environment, else the bundled local
    model), started only when a method needs it. ``progress(done, total, label)`` after each cell.
    """
    return _Experiment(config, llm, llm_config, log, progress).run()


class _Experiment:
    """The state of one :func:`run_experiment`: the data, the LLM, the cells finished so far."""

    def __init__(self, config: ExperimentConfig, llm: Any, llm_config: Any, log: Callable[[str], None],
                 progress: Callable[[int, int, str], None] | None):
        from .paths import llm_cache_path

        self.config, self.log, self.progress = config, log, progress
        self.methods = list(config.methods)
        self.out = Path(config.out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.data = load_dataset(config.data_dir, config.classes)
        self.test = _test_subset(self.data["test"], config.test_limit)
        if not self.test:
            raise ValueError("the test set is empty")
        self.holder = _LLMHolder(llm, llm_config, config.base_url, config.model, llm_cache_path())
        self.settings = self._settings()
        self.per_run: dict[str, list[dict[str, Any]]] = {m: [] for m in self.methods}
        self.gen_stats: list[dict[str, Any]] = []
        self.t_all = time.perf_counter()
        self.total_cells, self.done_cells = config.runs * len(self.methods), 0

    def _settings(self) -> dict[str, Any]:
        c, data = self.config, self.data
        return {
            "data": data["name"], "k": c.k, "runs": c.runs, "per_class": c.per_class, "test_n": len(self.test),
            "test_total": len(data["test"]), "classes": len({r["label"] for r in data["train"]}),
            "group_size": c.group_size, "nearest": c.nearest, "eda_alpha": c.eda_alpha, "eda_num_aug": c.num_aug,
            "base_seed": c.base_seed, "train": c.train.to_dict(), "generation_options": dict(c.generation_options),
            "val_per_class": c.val_per_class,
        }

    def run(self) -> dict[str, Any]:
        for r in range(self.config.runs):
            self._one_run(r)
        summary = self.write_tables()
        self.log(f"wrote {self.out / 'results.md'}")
        return summary

    def write_tables(self) -> dict[str, Any]:
        """results.json/.csv/.md from the cells finished so far (written after every cell)."""
        summary = _summarise(self.settings, self.methods, self.per_run, self.gen_stats, self.holder, self.t_all,
                             self.config.command)
        _write_json(self.out / "results.json", summary)
        _write_csv(self.out / "results.csv", summary["methods"])
        (self.out / "results.md").write_text(format_markdown(summary), "utf-8")
        return summary

    def _one_run(self, r: int) -> None:
        """Run ``r``: draw its seeds, then every method's cell; record what generation cost."""
        from .task import task_from_rows

        c = self.config
        seed = c.base_seed + r
        task = task_from_rows(self.data["train"], name=self.data["name"], descriptions=self.data["descriptions"],
                              k=c.k, seed=seed)
        self.log(f"run {r + 1}/{c.runs} (seed {seed}): {len(task.class_names)} classes x {c.k} seeds")
        gens: dict[str, dict[str, Any]] = {}

        def gen(mixup: bool, need_relabel: bool, pairs: Sequence[Sequence[str]] = (), n: int = c.per_class,
                name: str | None = None) -> dict[str, Any]:
            name = name or ("mixup" if mixup else "nomixup")
            if name not in gens or (need_relabel and not gens[name].get("relabelled")):
                gens[name] = _generated(task, seed, mixup, need_relabel, per_class=n, group_size=c.group_size,
                                        nearest=c.nearest, llm=self.holder, cache_dir=self.out / "cache",
                                        log=self.log, gen_kwargs=c.generation_options, pairs=pairs)
            return gens[name]

        run = _Run(task=task, seed=seed, labels=task.class_names, gen=gen, methods=self.methods,
                   eda_alpha=c.eda_alpha, num_aug=c.num_aug, tcfg=c.train, log=self.log,
                   val=_validation_split(self.data["train"], task, seed, c.val_per_class), per_class=c.per_class,
                   cache_dir=self.out / "cache" / "setfit-bodies",
                   label_source=self._label_source(task) if "default" in self.methods else None)
        for method in self.methods:
            self._cell(run, method, r)
        run.a2_classifier = None
        for name, g in gens.items():
            self.gen_stats.append({"run": r, "kind": name, "kept": len(g["examples"]),
                                   "shortfalls": g.get("shortfalls"), "generation_s": g.get("generation_s"),
                                   "relabel": g.get("relabel_summary"), "pairs": g.get("pairs") or None,
                                   "generation_llm": g.get("generation_llm"), "relabel_llm": g.get("relabel_llm"),
                                   "flagged": sum(1 for e in g["examples"] if e.get("flag"))})

    def _label_source(self, task: Any) -> str:
        """Which judge labels the default's examples, as ``generate --relabel`` picks it: the embedding
        judge for the bundled model (no LLM call), else the one more accurate on the held-out seeds."""
        from types import SimpleNamespace

        from .judge import choose_label_source, is_bundled_model

        if is_bundled_model(SimpleNamespace(model=self.holder.identity()["model"])):  # no server started
            return "judge"
        return choose_label_source(task, self.holder.get()).source

    def _method_key(self, run: "_Run", method: str) -> dict[str, Any]:
        # runs=3 reuses runs=1's run 0; the validation split matters to the targeted round only
        key_settings = {k2: v for k2, v in self.settings.items()
                        if k2 != "runs" and (k2 != "val_per_class" or method == "a2-targeted")}
        key = {"v": RESULT_VERSION, "method": method, "task": run.task.to_dict(), "settings": key_settings,
               "test": _key(self.test)}
        if method in LLM_METHODS:
            key["llm"] = self.holder.identity()
        if method in RELABEL_METHODS and run.seed:  # the relabeler's candidate order follows the run's seed
            key["relabel_seed"] = run.seed
        if method == "default":  # the default's own rules: a change of them is a new result
            from .training.curate import CurationConfig
            from .training.plan import FEW_SHOT_PER_CLASS, SETFIT_MAX_STEPS

            from .training.students import student_settings

            key["default"] = {"curation": CurationConfig().to_dict(), "few_shot": FEW_SHOT_PER_CLASS,
                              "setfit_max_steps": SETFIT_MAX_STEPS, "setfit": student_settings("setfit", {}),
                              "control": 1,  # the cell holds its own seeds-only control
                              "label_source": run.label_source}
        return key

    def _cell(self, run: "_Run", method: str, r: int) -> None:
        """One (method, run) cell: reused from raw/ when its settings match, else trained and scored."""
        method_key = self._method_key(run, method)
        raw_path = self.out / "raw" / method / f"run{r}.json"
        prev = _read_json(raw_path) if self.config.reuse else None
        if prev and prev.get("key") == _key(method_key):
            self.log(f"  {method}: reused {raw_path.relative_to(self.out)}")
            self.per_run[method].append(prev)
            self._cell_done(method, r)
            return
        t0 = time.perf_counter()
        record: dict[str, Any] = {"method": method, "run": r, "seed": run.seed}
        if method == "llm-direct":
            metrics = self._llm_direct(run, record)
        else:
            metrics = self._trained(run, method, record)
        record.update(key=_key(method_key), accuracy=metrics["accuracy"], macro_f1=metrics["macro_f1"],
                      metrics=metrics, seconds=round(time.perf_counter() - t0, 2), seeds=run.task.seed_rows())
        _write_json(raw_path, record)
        self.per_run[method].append(record)
        self.log(f"  {method}: accuracy {metrics['accuracy']:.4f}, macro-F1 {metrics['macro_f1']:.4f} "
                 f"({record.get('n_train', 0)} training examples, {record['seconds']:.0f} s)")
        self._cell_done(method, r)
        self.write_tables()

    def _cell_done(self, method: str, r: int) -> None:
        self.done_cells += 1
        if self.progress is not None:
            self.progress(self.done_cells, self.total_cells, f"{method} run {r + 1}")

    def _llm_direct(self, run: "_Run", record: dict[str, Any]) -> dict[str, Any]:
        """No fine-tuning: the relabel classifier on each test text (cached per run)."""
        from .relabel import classify_texts
        from .training.metrics import compute_metrics

        nearest = self.config.nearest
        cache = self.out / "cache" / f"seed{run.seed}_llm_direct.json"
        cached = _read_json(cache)
        key = {"task": run.task.to_dict(), "test": _key(self.test), "nearest": nearest, "llm": self.holder.identity()}
        if run.seed:
            key["relabel_seed"] = run.seed
        ck = _key(key)
        if cached and cached.get("key") == ck:
            preds = cached["predictions"]
        else:
            texts = [r["text"] for r in self.test]
            self.log(f"  llm-direct: classifying {len(texts)} test texts")
            preds = classify_texts(run.task, texts, self.holder.get(), RelabelConfig(nearest=nearest, seed=run.seed))
            _write_json(cache, {"key": ck, "predictions": preds})
        record.update(n_train=0, unparseable=sum(p is None for p in preds))
        return compute_metrics([r["label"] for r in self.test], preds, run.labels)

    def _trained(self, run: "_Run", method: str, record: dict[str, Any]) -> dict[str, Any]:
        """The method's training data, its student fitted on them, scored on the test rows."""
        from .training.metrics import compute_metrics

        ts, extra = _METHOD_DATA[method](run)
        record.update(extra)
        clf, fit = _fit(run, ts, student=_method_student(method, ts, run), default=method == "default")
        if method == "a2" and "a2-targeted" in self.methods:
            run.a2_classifier = clf  # the targeted round reads its confusions on the validation split
        preds, _ = clf.predict([r["text"] for r in self.test])
        record.update(n_train=len(ts), data=ts.summary(), **fit)
        metrics = compute_metrics([r["label"] for r in self.test], preds, run.labels)
        if method == "default":
            record["control"] = self._default_control(run, ts, fit.get("student") or "finetune", preds, metrics)
        return metrics

    def _default_control(self, run: "_Run", ts: Any, student: str, preds: Sequence[str],
                         metrics: Mapping[str, Any]) -> dict[str, Any]:
        """The default run's own seeds-only control, as ``promptmix train`` makes it: the same student
        and settings on the seeds alone (for SetFit the same cached body, so only the head differs),
        scored on the same test rows, with the paired bootstrap of the difference."""
        from .training.control import compare
        from .training.data import TrainingSet
        from .training.metrics import compute_metrics

        seeds = TrainingSet([r for r in ts.rows if r.get("source") == "seed"], list(ts.labels))
        if len(seeds) == len(ts):  # nothing generated was kept: the run is its own control
            return {"accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"], "delta": 0.0,
                    "ci95": [0.0, 0.0], "same_as_run": True}
        clf, _ = _fit(run, seeds, student=student, default=True)
        ctl_preds, _ = clf.predict([r["text"] for r in self.test])
        gold = [r["label"] for r in self.test]
        ctl = compute_metrics(gold, ctl_preds, run.labels)
        cmp_ = compare(list(preds), list(ctl_preds), gold, run_macro_f1=metrics["macro_f1"],
                       control_macro_f1=ctl["macro_f1"]).to_dict()
        return {"accuracy": ctl["accuracy"], "macro_f1": ctl["macro_f1"], "delta": cmp_["accuracy"],
                "ci95": cmp_["ci95"], "same_as_run": False}


def _summarise(settings: Mapping[str, Any], methods: Sequence[str], per_run: Mapping[str, list[dict[str, Any]]],
               gen_stats: list[dict[str, Any]], holder: "_LLMHolder", t_all: float, command: str | None) -> dict[str, Any]:
    from .training.metrics import aggregate, mean_std

    summary_rows = []
    for m in methods:
        if not per_run[m]:
            continue
        agg = aggregate(per_run[m])
        n_mean, _ = mean_std(x.get("n_train", 0) for x in per_run[m])
        per_class_f1 = {}
        for lab in per_run[m][0]["metrics"]["per_class"]:
            per_class_f1[lab] = mean_std(x["metrics"]["per_class"][lab]["f1"] for x in per_run[m])[0]
        summary_rows.append({"method": m, "title": METHOD_TITLES[m], **agg, "n_train_mean": n_mean,
                             "per_class_f1": per_class_f1})
    llm_stats = holder.get().stats.as_dict() if holder.started else None
    return {"settings": settings, "llm": holder.identity() if any(m in LLM_METHODS for m in methods) else None,
            "methods": summary_rows, "generation": gen_stats, "llm_stats_this_invocation": llm_stats,
            "seconds": round(time.perf_counter() - t_all, 1), "command": command,
            "default_control": [{**x["control"], "run": x["run"], "run_accuracy": x["accuracy"]}
                                for x in per_run.get("default") or [] if x.get("control")],
            "complete": all(len(per_run[m]) == settings["runs"] for m in methods)}


# ------------------------------------------------------------------ methods: what each one trains on
@dataclass
class _Run:
    """One run (one seed draw) of the experiment, as the method builders see it."""

    task: Any
    seed: int
    labels: list[str]
    gen: Callable[..., dict[str, Any]]
    methods: Sequence[str]
    eda_alpha: float
    num_aug: int
    tcfg: Any
    log: Callable[[str], None]
    val: list[dict[str, str]]
    per_class: int
    a2_classifier: Any = None
    cache_dir: Path | None = None  # where the default's SetFit bodies are kept (OUT/cache/setfit-bodies)
    label_source: str | None = None  # which judge labels the default's examples (judge.choose_label_source)


def _gen_info(g: Mapping[str, Any], *keys: str) -> dict[str, Any]:
    return {"generation": {k: g.get(k) for k in ("shortfalls", "generation_error", *keys)}}


def _data_baseline(run: _Run):
    from .training.data import build_training_data

    return build_training_data(run.task, [], label_source="a1"), {}


def _data_eda(run: _Run):
    from .eda import augment_rows
    from .training.data import build_training_data

    aug = augment_rows(run.task.seed_rows(), num_aug=run.num_aug, alpha=run.eda_alpha, seed=run.seed)
    return build_training_data(run.task, [{"text": a["text"], "intended_label": a["label"]} for a in aug],
                               label_source="a1"), {}


def _data_a1(run: _Run):
    from .training.data import build_training_data

    g = run.gen(True, bool({"a2", "a2-targeted", "setfit+a2"} & set(run.methods)))
    return build_training_data(run.task, g["examples"], label_source="a1"), _gen_info(g)


def _data_a2(run: _Run):
    from .training.data import build_training_data

    g = run.gen(True, True)
    return build_training_data(run.task, g["examples"], label_source="a2"), _gen_info(g, "relabel_summary")


def _data_no_mixup(run: _Run):
    from .training.data import build_training_data

    g = run.gen(False, True)
    return build_training_data(run.task, g["examples"], label_source="a2"), _gen_info(g, "relabel_summary")


def _data_default(run: _Run):
    """What ``generate --relabel`` then ``train`` with every default trains on: the seeds plus the A2
    examples the default curation keeps (:mod:`.training.curate`)."""
    from .training.curate import CurationConfig
    from .training.data import build_training_data

    g = run.gen(True, True)
    ts = build_training_data(run.task, g["examples"], label_source="a2", curation=CurationConfig(),
                             chosen_by=run.label_source)
    return ts, {**_gen_info(g, "relabel_summary"), "curated_out": {k: v for k, v in ts.dropped.items()
                                                                   if k.startswith("curated_")}}


def _method_student(method: str, ts: Any, run: _Run) -> str:
    """The student a method trains: SetFit for the SetFit methods, the picked one for the default
    (:func:`.training.plan.choose_student`), else fine-tuning."""
    if method == "default":
        from .training.plan import choose_student

        return choose_student("auto", len(ts), len(run.labels)).student
    return "setfit" if method in SETFIT_METHODS else "finetune"


def _data_a2_targeted(run: _Run):
    """A2, then one more round aimed at the pairs the A2 student confuses on a validation split drawn
    from the training pool (never the test set): Ci mixed with Cj at alpha drawn as usual, relabelled."""
    from .confusion import directed, pairs_from_confusion, pairs_from_margins
    from .training.data import build_training_data
    from .training.metrics import compute_metrics

    ts_a2, info = _data_a2(run)
    clf = run.a2_classifier
    if clf is None:  # a2 was not among the methods of this invocation (or was reused from raw/)
        clf, _ = _fit(run, ts_a2, student="finetune")
    if run.val:
        preds, _ = clf.predict([v["text"] for v in run.val])
        conf = compute_metrics([v["label"] for v in run.val], preds, run.labels)["confusion"]
        confused = pairs_from_confusion(conf, top=TARGETED_PAIRS)
    else:
        confused = []
    if not confused:  # a perfect validation score: fall back to the student's close calls on its own data
        g0 = run.gen(True, True)
        _, probs = clf.predict([e["text"] for e in g0["examples"]]) if g0["examples"] else ([], [])
        confused = pairs_from_margins(probs, run.labels, top=TARGETED_PAIRS) if len(probs) else []
    pairs = directed(confused)
    extra = {**info, "targeted": {"pairs": [list(p) for p in pairs],
                                  "confused": [c.as_dict() for c in confused], "val_n": len(run.val)}}
    if not pairs:
        run.log("  a2-targeted: the A2 student confuses no pair; nothing more to generate")
        return ts_a2, extra
    n = max(1, math.ceil(run.per_class / 2))
    g2 = run.gen(True, True, pairs=pairs, n=n, name="targeted")
    extra["targeted"].update(kept=len(g2["examples"]), relabel_summary=g2.get("relabel_summary"))
    a2_rows = run.gen(True, True)["examples"]
    return build_training_data(run.task, list(a2_rows) + list(g2["examples"]), label_source="a2"), extra


_METHOD_DATA: dict[str, Callable[[_Run], Any]] = {
    "baseline": _data_baseline,
    "eda": _data_eda,
    "a1": _data_a1,
    "a2": _data_a2,
    "no-mixup": _data_no_mixup,
    "a2-targeted": _data_a2_targeted,
    "setfit": _data_baseline,
    "setfit+a2": _data_a2,
    "default": _data_default,
}
TARGETED_PAIRS = 3  # confused pairs aimed at by a2-targeted (both directions of each)


def _fit(run: _Run, ts: Any, *, student: str, default: bool = False) -> tuple[Any, dict[str, Any]]:
    """Train the method's student on ``ts``: (classifier with ``predict``, what to record); ``default``:
    with the training job's default settings for that student (:func:`.training.students.student_settings`)."""
    if student == "embed-lr":
        from .training.embed_lr import train_embed_lr

        res = train_embed_lr({"seed": run.seed}, ts.texts, ts.targets, label_names=run.labels)
        return res.classifier, {"student": "embed-lr", "train_time_s": round(res.train_time_s, 2)}
    if student == "setfit":
        from .training.setfit_student import SetFitConfig, plan_steps, train_setfit

        if default:
            from .training.students import is_trusted, student_settings

            cfg = SetFitConfig(**student_settings("setfit", {"seed": run.seed}))
            trusted, body_cache = [is_trusted(r) for r in ts.rows], run.cache_dir
        else:
            cfg = SetFitConfig(seed=run.seed)
            trusted, body_cache = None, None
        res = train_setfit(ts.texts, ts.targets, run.labels, cfg, trusted=trusted, body_cache=body_cache)
        body = (res.classifier.meta or {}).get("setfit_body") or {}
        return res.classifier, {"student": "setfit", "steps": plan_steps(body.get("rows") or len(ts), cfg)[1],
                                "train_time_s": round(res.train_time_s, 2), "setfit": cfg.to_dict(),
                                "setfit_body": body}
    from .training.config import TrainConfig
    from .training.trainer import train

    res = train(TrainConfig.from_dict({**run.tcfg.to_dict(), "seed": run.seed}), ts.texts, ts.targets,
                label_names=run.labels, keep_model=True)
    return res.classifier, {"student": "finetune", "steps": res.steps, "epochs": res.epochs,
                            "train_time_s": round(res.train_time_s, 2), "device": res.device,
                            "learning_rate": res.config["learning_rate"]}


def _validation_split(train_rows: Sequence[Mapping[str, str]], task: Any, seed: int,
                      per_class: int) -> list[dict[str, str]]:
    """Up to ``per_class`` rows per class from the training pool, never a seed (a2-targeted's confusions)."""
    from .task import normalize_text

    seeds = {normalize_text(t) for c in task.classes for t in c.examples}
    by: dict[str, list[dict[str, str]]] = {}
    for row in sorted(train_rows, key=lambda r: (r["label"], r["text"])):
        if normalize_text(row["text"]) not in seeds:
            by.setdefault(row["label"], []).append({"text": row["text"], "label": row["label"]})
    rng = random.Random(f"promptmix-validation|{seed}")
    out: list[dict[str, str]] = []
    for lab in task.class_names:
        rows = by.get(lab, [])
        out.extend(rng.sample(rows, min(per_class, len(rows))))
    return out


def _write_csv(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    cols = ["method", "runs", "accuracy_mean", "accuracy_std", "macro_f1_mean", "macro_f1_std", "n_train_mean"]
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(cols)
        for r in rows:
            w.writerow([r["method"], r["runs"]] + [f"{r[c]:.6f}" for c in cols[2:]])


def _pct(m: float, s: float) -> str:
    return f"{100 * m:.1f} ± {100 * s:.1f}"


def format_markdown(summary: Mapping[str, Any]) -> str:
    s = summary["settings"]
    t = s["train"]
    lines = [
        f"# PromptMix experiment: {s['data']}",
        "",
        f"- {s['classes']} classes, k = {s['k']} seeds per class drawn from train.csv; {s['runs']} run(s), "
        f"seeds {s['base_seed']}..{s['base_seed'] + s['runs'] - 1}",
        f"- test: {s['test_n']} of {s['test_total']} rows of test.csv (the same rows for every run and method)",
        f"- generated: {s['per_class']} per class, group size {s['group_size']}; relabel shows {s['nearest']} nearest classes",
        f"- EDA: {s['eda_num_aug']} augmentations per seed, alpha {s['eda_alpha']}; synonyms from MiniLM input-embedding neighbours",
        f"- classifier: {t['model'] or 'all-MiniLM-L6-v2 (bundled)'}, {t['epochs']} epochs (min {t['min_steps']} steps), "
        f"batch {t['batch_size']}, lr {t['learning_rate'] or 'auto (4e-5; 6e-5 for 50+ classes)'}, max_length {t['max_length']}",
    ]
    if summary.get("llm"):
        lines.append(f"- LLM: `{summary['llm'].get('model')}` at {summary['llm'].get('base_url')}")
    if summary.get("command"):
        lines.append(f"- command: `{summary['command']}`")
    lines += ["", "| method | accuracy % | macro-F1 % | training examples | runs |", "|---|---|---|---|---|"]
    for r in summary["methods"]:
        lines.append(f"| {r['title']} | {_pct(r['accuracy_mean'], r['accuracy_std'])} | "
                     f"{_pct(r['macro_f1_mean'], r['macro_f1_std'])} | {r['n_train_mean']:.0f} | {r['runs']} |")
    lines += ["", "Mean ± sample standard deviation over runs.", ""]
    gens = summary.get("generation") or []
    if gens:
        lines += ["## Generation", "",
                  "| run | kind | kept | shortfalls | relabel changed | unparseable | flagged | generation calls / kept "
                  "| tokens / kept |", "|---|---|---|---|---|---|---|---|---|"]
        for g in gens:
            rel = g.get("relabel") or {}
            short = sum((g.get("shortfalls") or {}).values())
            kept = max(1, g["kept"])
            use = [g.get("generation_llm") or {}, g.get("relabel_llm") or {}]
            lines.append(f"| {g['run']} | {g['kind']} | {g['kept']} | {short} | "
                         f"{rel.get('share_changed', 0):.0%} | {rel.get('share_unparseable', 0):.0%} | "
                         f"{(g.get('flagged') or 0) / kept:.0%} | {use[0].get('calls', 0) / kept:.2f} | "
                         f"{sum(u.get('tokens', 0) for u in use) / kept:.0f} |")
        lines.append("")
    if summary.get("llm_stats_this_invocation"):
        st = summary["llm_stats_this_invocation"]
        lines += [f"LLM use in this invocation: {st['calls']} calls, {st['cache_hits']} cache hits, "
                  f"{st['tokens']:,} tokens.", ""]
    ctl_rows = [x for x in (summary.get("default_control") or []) if x]
    if ctl_rows:
        lines += ["## The default pipeline against its own seeds-only control", "",
                  "The control `promptmix train` puts beside every run: the same student and settings on the seeds "
                  "alone (for SetFit the same body, so only the head differs), on the same test rows.", "",
                  "| run | control accuracy % | default accuracy % | generated data, points (95 % bootstrap) |",
                  "|---|---|---|---|"]
        for x in ctl_rows:
            same = " (nothing generated kept: the run is its control)" if x.get("same_as_run") else ""
            lines.append(f"| {x['run']} | {100 * x['accuracy']:.1f} | {100 * x['run_accuracy']:.1f} | "
                         f"{100 * x['delta']:+.1f} ({100 * x['ci95'][0]:+.1f}..{100 * x['ci95'][1]:+.1f}){same} |")
        lines.append("")
    lines += ["## Per-class F1 (mean over runs, %)", ""]
    labs = list(summary["methods"][0]["per_class_f1"]) if summary["methods"] else []
    lines.append("| class | " + " | ".join(r["method"] for r in summary["methods"]) + " |")
    lines.append("|---" * (len(summary["methods"]) + 1) + "|")
    for lab in labs:
        lines.append(f"| {lab} | " + " | ".join(f"{100 * r['per_class_f1'][lab]:.1f}" for r in summary["methods"]) + " |")
    lines += ["", f"Total time: {summary['seconds']:.0f} s. Raw per-run results (confusion matrices, per-class "
              "precision/recall) are in raw/.", ""]
    return "\n".join(lines)


__all__ = ["METHODS", "ExperimentConfig", "format_markdown", "load_dataset", "parse_methods", "run_experiment"]
