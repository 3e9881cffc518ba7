"""The background "train" job: read the task and examples from the store, train, record the run.

Job config (``store.Job.config``): a :class:`~promptmix_core.specs.TrainingSpec` (its fields below, every one optional):

========================  =====================================================================
``label_source``          ``"a2"`` (LLM relabel, default), ``"a1"`` (intended label) or ``"reviewed"``
``pending``               for ``reviewed``: what pending examples get: ``"drop"`` (default), ``"a2"``, ``"a1"``
``unparseable``           for ``a2``: unparseable / not relabelled examples: ``"drop"`` (default) or ``"a1"``
``example_job_id``        use only the examples of this generation job (default: all examples)
``include_seeds``         train on the seeds too (default true)
``val_path``              a labelled CSV/JSONL file (``text,label``) to validate on
``val_fraction``          otherwise: the share of generated examples held out per class (default 0: none;
                          agreement with generated labels is not a measure, so the faces hide it)
``train``                 :class:`TrainConfig` fields (model, epochs, batch_size, learning_rate...)
``out_dir``               where the model is saved (default: ``<project>.models/run-<run id>`` beside the project file)
``name``                  the run's name
``student``               ``"auto"`` (default: :func:`.plan.choose_student`, SetFit at few-shot sizes), ``"finetune"``,
                          ``"embed-lr"`` (quick: MiniLM embeddings + logistic regression) or ``"setfit"``
``curation``              the default selection of generated examples (:mod:`.curate`; default true)
``control``               the seeds-only control beside the run (:func:`run_control`; default true)
``embed_lr``              the quick student's settings (``C``, ``class_weight``...)
``setfit_body``           which rows make SetFit's contrastive pairs: ``"trusted"`` (default: seeds and reviewed
                          examples; the rest train the head) or ``"all"`` (:data:`.setfit_student.BODY_ROWS`)
``test_path``             a labelled CSV/JSONL to score the run on (instead of the project's test set)
``use_test_set``          score on the project's test set when it has one (default true)
========================  =====================================================================

Test set. Every run is scored on real labelled data when there is some: ``test_path``, else the
project's test set (``store.set_test_set``). Generated examples that repeat a test row are left
out of training (``dropped["in_test_set"]``), and test rows that repeat a seed are left out of
scoring, so the scores never come from training data. The run records exactly which rows (and
labels) it trained, validated and was tested on (``store.get_run_examples``).

Validation set. With no ``val_path``, a stratified ``val_fraction`` of the *generated* examples
(after the label-source rules) is held out; the seeds always stay in training, since with k=2 per
class there are too few to spare. Accuracy on held-out generated data measures agreement with the
generated labels, so it is optimistic compared with real test data; give ``val_path`` when real
labelled data exist. With no generated examples there is no validation set (train loss only).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from ..errors import Cancelled
from ..paths import run_model_dir
from .curate import CurationConfig
from .data import build_training_data, stratified_split

def _read_labelled(path: str | Path) -> list[dict[str, str]]:
    from ..labelled import read_labelled_file

    return read_labelled_file(path)


def _test_rows(store: Any, spec: Any, task: Any) -> tuple[list[dict[str, str]], dict[str, Any] | None]:
    """The rows a run is scored on, and where they come from (None: no test set)."""
    from ..testset import read_test_set_file, rows_fingerprint

    if spec.test_path:
        chk = read_test_set_file(spec.test_path, task)
        if not chk.rows:
            raise ValueError(f"{Path(spec.test_path).name} has no usable test rows: "
                             + "; ".join(chk.listed_problems(5)))
        rows = chk.rows
        info = {"kind": "file", "name": Path(spec.test_path).name, "refused": len(chk.problems)}
    elif spec.use_test_set:
        classes = set(task.class_names)
        rows = [{"text": r["text"], "label": r["label"]} for r in store.list_test_examples() if r["label"] in classes]
        if not rows:
            return [], None
        meta = store.test_set_info() or {}
        info = {"kind": "project", "name": meta.get("name") or "the project's test set"}
    else:
        return [], None
    return rows, {**info, "n": len(rows), "fingerprint": rows_fingerprint(rows)}


def prepare_job_data(store: Any, cfg: Any, *, embed_judge: bool = True) -> dict[str, Any]:
    """Training, validation and test rows for a job's :class:`~promptmix_core.specs.TrainingSpec`
    (or its stored dict; see the module docstring). ``embed_judge=False`` (the Train page's preview)
    skips the embedding judge for examples without a ``judge_label``: no model is loaded, and the
    run itself may then leave out a few more."""
    from ..specs import TrainingSpec
    from ..task import normalize_text

    spec = cfg if isinstance(cfg, TrainingSpec) else TrainingSpec.from_stored(cfg)
    task = store.load_task()
    if task is None:
        raise ValueError("the project has no task yet; define the classes and seeds first")
    test_rows, test_info = _test_rows(store, spec, task)
    examples = store.list_examples(job_id=spec.example_job_id)
    ts = build_training_data(
        task,
        examples,
        label_source=spec.label_source,
        pending=spec.pending,
        unparseable=spec.unparseable,
        include_seeds=spec.include_seeds,
        exclude_texts=[r["text"] for r in test_rows],
        curation=CurationConfig(enabled=bool(spec.curation)),
        chosen_by=chosen_label_source(store),
        embed_judge=embed_judge,
    )
    if not ts.rows:
        raise ValueError("no training examples: every example was dropped by the label rules")
    if test_rows:  # a test row that repeats a seed (the task was edited after the upload) is training data
        seeds = {normalize_text(r["text"]) for r in ts.rows if r["source"] == "seed"}
        kept = [r for r in test_rows if normalize_text(r["text"]) not in seeds]
        if len(kept) < len(test_rows):
            test_info = {**test_info, "left_out_seed_repeats": len(test_rows) - len(kept), "n": len(kept)}
        test_rows = kept
        if not test_rows:
            test_info = None
    train_rows, val_rows = ts.rows, []
    val_source = "none"
    if spec.val_path:
        val_rows = [{**r, "source": "file"} for r in _read_labelled(spec.val_path) if r["label"] in set(ts.labels)]
        if not val_rows:
            raise ValueError(f"{spec.val_path} has no rows whose label is one of the task's classes")
        val_source = "file"
    else:
        frac = float(spec.val_fraction)
        seeds = [r for r in ts.rows if r["source"] == "seed"]
        generated = [r for r in ts.rows if r["source"] != "seed"]
        if generated and frac > 0:
            gen_train, val_rows = stratified_split(generated, frac, seed=int(spec.train.seed))
            train_rows = seeds + gen_train
            val_source = "generated_holdout" if val_rows else "none"
    present = {r["label"] for r in train_rows}
    missing = [lab for lab in ts.labels if lab not in present]
    return {
        "task": task,
        "labels": ts.labels,
        "train_rows": train_rows,
        "val_rows": val_rows,
        "val_source": val_source,
        "test_rows": [{**r, "source": "test_set"} for r in test_rows],
        "test_set": test_info,
        "summary": {**ts.summary(), "train": len(train_rows), "val": len(val_rows), "val_source": val_source,
                    "val_is_measure": val_source == "file", "label_source": spec.label_source,
                    "curation": bool(spec.curation), "test": len(test_rows), "test_set": test_info,
                    "classes_without_training_data": missing},
    }


def run_training_job(store: Any, job: Any, ctx: Any = None) -> str:
    """The worker's step for kind "train" (``promptmix_core.worker``): trains, returns a one-line
    message for the job; raises :class:`~promptmix_core.errors.Cancelled` when the job was
    cancelled, and re-raises errors (the run is already marked failed), so the job's lifecycle
    records the job's status."""
    out = train_job(store, job, ctx)
    if out["status"] == "cancelled":
        raise Cancelled(f"training was stopped (run #{out['run_id']})")
    return f"run #{out['run_id']} done: " + run_summary(out["metrics"]) + f"; model in {out['model_dir']}"


def run_summary(m: Mapping[str, Any]) -> str:
    """One line: the student, its scores and what the generated data did against the control."""
    from .control import describe
    from .plan import STUDENT_WORDS

    msg = STUDENT_WORDS.get(m.get("student")) or f"{m.get('steps')} steps"
    if m.get("test_accuracy") is not None:
        msg += f", test accuracy {m['test_accuracy']:.3f}, macro-F1 {m['test_macro_f1']:.3f} (n={m.get('test_n')})"
    elif m.get("val_accuracy") is not None:
        msg += f", validation accuracy {m['val_accuracy']:.3f}, macro-F1 {m['val_macro_f1']:.3f}"
    ctl = describe(m)
    if ctl["state"] == "compared":
        msg += f"; {ctl['text']}"
    return msg


def train_job(store: Any, job: Any, ctx: Any = None) -> dict[str, Any]:
    """Run a "train" job's step. Returns ``{"run_id", "status", "model_dir", "metrics", "data"}``.

    The job's config is a :class:`~promptmix_core.specs.TrainingSpec` (unknown or invalid settings
    are refused, every problem listed). The run goes queued -> running -> done / cancelled / failed
    through :class:`.runs.RunLifecycle` (a crash anywhere, recording its rows included, never leaves
    it "queued" or "running"). Steps: prepare the data (:func:`prepare_job_data`), pick the student
    (:func:`.plan.choose_student`), train it (:func:`.students.fit`), then the seeds-only control
    (:func:`run_control`), and only then mark the run done. Progress and the cancel check come
    from ``ctx`` (by default one on the job's cancel flag). Errors are re-raised after the run is
    marked failed.
    """
    from ..lifecycle import JobLifecycle
    from ..specs import TrainingSpec
    from .runs import RunLifecycle

    raw = dict(job.config or {})
    if ctx is None:  # called directly (not by a lifecycle): the job's own context
        ctx = JobLifecycle(store, job.id).context()
    life = RunLifecycle.create(store, raw, name=str(raw.get("name") or f"job {job.id}"),
                               method=str(raw.get("method") or raw.get("label_source") or "a2"), job_id=job.id)
    run_id = life.run_id
    with life.guard():
        ctx.progress({"phase": "preparing", "run_id": run_id}, force=True)
        spec = TrainingSpec.from_stored(raw)  # every problem of the settings at once
        data = prepare_job_data(store, spec)
        if ctx.should_stop():
            life.cancel("stopped before training")
            return {"run_id": run_id, "status": "cancelled", "model_dir": None, "metrics": {}, "data": data["summary"]}
        for split in ("train", "val", "test"):  # exactly which rows (and labels) this run uses
            store.record_run_examples(run_id, split, data[f"{split}_rows"])
        result, choice, settings = _fit_run(store, spec, data, run_id, ctx)
        if result.status != "done":  # cancelled: the trainer's callback recorded it
            return {"run_id": run_id, "status": result.status, "model_dir": None, "metrics": result.final_metrics(),
                    "data": data["summary"]}
        metrics = result.final_metrics()
        metrics.update(data=data["summary"], student=choice.student, student_reason=choice.reason,
                       student_auto=choice.auto, val_is_measure=data["summary"]["val_is_measure"])
        if data["test_set"]:
            metrics["test_set"] = data["test_set"]
        if spec.control:
            ctx.progress({"phase": "control", "run_id": run_id}, force=True)
            metrics["control"] = run_control(store.path, data, choice.student, settings, result, ctx=ctx)
        life.finish(metrics, model_dir=result.model_dir)
    ctx.progress({"phase": result.status, "run_id": run_id, "step": result.steps,
                  "total_steps": result.total_steps}, force=True)
    return {"run_id": run_id, "status": result.status, "model_dir": result.model_dir, "metrics": metrics,
            "data": data["summary"]}


def _fit_run(store: Any, spec: Any, data: Mapping[str, Any], run_id: int, ctx: Any):
    """The run's student (picked), its settings and its training (reported to the run through a
    :class:`StoreCallback` that leaves finishing to the job)."""
    from .callbacks import StoreCallback
    from .plan import choose_student
    from ..paths import models_dir
    from .students import fit, is_trusted, student_settings

    choice = choose_student(spec.student, len(data["train_rows"]), len(data["labels"]),
                            gpu=str(spec.train.device).startswith("cuda"))
    settings = student_settings(choice.student, spec.train.to_dict(), spec.embed_lr, setfit_body=spec.setfit_body)
    progress = lambda p: ctx.progress(p, force=True)  # noqa: E731
    rows = data["train_rows"]
    result = fit(
        choice.student, settings, [r["text"] for r in rows], [r["label"] for r in rows],
        label_names=data["labels"], progress=progress,
        trusted=[is_trusted(r) for r in rows], body_cache=models_dir(store.path),
        val_texts=[r["text"] for r in data["val_rows"]] or None,
        val_labels=[r["label"] for r in data["val_rows"]] or None,
        test_texts=[r["text"] for r in data["test_rows"]] or None,
        test_labels=[r["label"] for r in data["test_rows"]] or None,
        out_dir=spec.out_dir or str(run_model_dir(store.path, run_id)),
        callbacks=[StoreCallback(store, run_id, progress=progress, progress_every_s=1.0, finish=False)],
        should_stop=ctx.should_stop,
    )
    return result, choice, settings


def chosen_label_source(store: Any) -> str | None:
    """Which judge gave the project's generated examples their labels (``"judge"`` or ``"llm"``, the
    relabel's saved choice, :func:`promptmix_core.judge.saved_label_source`); None when no relabel chose."""
    from ..judge import saved_label_source

    choice = saved_label_source(store)
    return choice.source if choice is not None else None


def run_control(project_path: Any, data: Mapping[str, Any], student: str, settings: Mapping[str, Any], result: Any,
                *, ctx: Any = None, models_dir: Any = None) -> dict[str, Any]:
    """The seeds-only control of a finished run (:mod:`.control`): the same student and settings
    on the run's seeds alone, scored on the same test rows, and the paired bootstrap of the
    difference. What goes into the run's ``final_metrics["control"]``."""
    from ..paths import models_dir as project_models_dir
    from .control import NO_TEST_SET, compare, seeds_only_control
    from .students import fit

    seeds = [r for r in data["train_rows"] if r.get("source") == "seed"]
    generated = [r for r in data["train_rows"] if r.get("source") != "seed"]
    if not generated:
        return {"seeds_only_run": True}
    test_rows = data["test_rows"]
    if not test_rows or not result.test_metrics:
        return {"skipped": NO_TEST_SET}
    if len({r["label"] for r in seeds}) < 2:
        return {"skipped": "The seeds-only control needs seeds of at least two classes."}
    folder = models_dir if models_dir is not None else project_models_dir(project_path)
    stop = getattr(ctx, "should_stop", None)

    def fit_control(texts: list[str], labels: list[str], out_dir: str):
        return fit(student, settings, texts, labels, label_names=data["labels"], out_dir=out_dir,
                   trusted=[True] * len(texts), body_cache=folder,
                   test_texts=[r["text"] for r in test_rows], test_labels=[r["label"] for r in test_rows],
                   should_stop=stop)

    ctl = seeds_only_control(folder, seeds, data["labels"], student, settings, test_rows, fit_control,
                             test_fingerprint=(data.get("test_set") or {}).get("fingerprint"))
    gold = [r["label"] for r in test_rows]
    cmp_ = compare(result.test_metrics["predicted"], ctl["predicted"], gold,
                   run_macro_f1=result.test_metrics["macro_f1"], control_macro_f1=ctl["test"]["macro_f1"])
    return {"student": student, "model_dir": ctl["model_dir"], "n_train": ctl["n_train"], "cached": ctl["cached"],
            "train_time_s": ctl["train_time_s"], "test": ctl["test"], "delta": cmp_.to_dict()}


def __getattr__(name: str) -> Any:
    if name == "JOB_KEYS":  # the keys a training job's config may hold: TrainingSpec's fields, no copy
        import dataclasses

        from ..specs import TrainingSpec

        return {f.name for f in dataclasses.fields(TrainingSpec)}
    raise AttributeError(name)


__all__ = ["JOB_KEYS", "chosen_label_source", "prepare_job_data", "run_control", "run_summary", "run_training_job", "train_job"]
