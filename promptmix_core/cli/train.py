"""``promptmix train`` and ``promptmix predict``: step 3 and using its model.

Every fine-tuning flag's default is :class:`~promptmix_core.training.config.TrainConfig`'s, every data
flag's default and choices :class:`~promptmix_core.specs.TrainingSpec`'s (nothing repeated here)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from ._common import EXIT_FAIL, EXIT_OK, EXIT_USAGE, default_of


def add_train_args(p: argparse.ArgumentParser) -> None:
    """The fine-tuning flags (``train`` and ``experiment``), defaults from :class:`TrainConfig`."""
    from ..training.config import DEVICES, LR_FEW_CLASSES, LR_MANY_CLASSES, MANY_CLASSES, TrainConfig as T

    g = p.add_argument_group("fine-tuning settings")
    g.add_argument("--base-model", dest="base_model", help="local folder or hub name (default: bundled all-MiniLM-L6-v2)")
    g.add_argument("--epochs", type=int, default=T.epochs, help=f"(default {T.epochs})")
    g.add_argument("--batch-size", type=int, default=T.batch_size, help=f"(default {T.batch_size})")
    g.add_argument("--lr", type=float, help=f"learning rate (default {LR_FEW_CLASSES:g}; {LR_MANY_CLASSES:g} for "
                                            f"{MANY_CLASSES}+ classes)")
    g.add_argument("--max-length", type=int, default=T.max_length, help=f"tokens (default {T.max_length})")
    g.add_argument("--min-steps", type=int, default=T.min_steps,
                   help=f"at least this many optimiser steps (0: off; default {T.min_steps})")
    g.add_argument("--max-steps", type=int)
    g.add_argument("--eval-every", type=int, help="validate every N steps (default: per epoch)")
    g.add_argument("--train-seed", type=int, default=T.seed, dest="train_seed", help=f"(default {T.seed})")
    g.add_argument("--device", default=T.device, help=f"{', '.join(DEVICES)} or cuda:N (default {T.device})")
    g.add_argument("--threads", type=int, help="CPU threads for torch")


def train_config_from_args(args: argparse.Namespace):
    from ..training.config import TrainConfig

    return TrainConfig(
        model=args.base_model, epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.lr,
        max_length=args.max_length, min_steps=args.min_steps, max_steps=args.max_steps,
        eval_every=args.eval_every, seed=args.train_seed, device=args.device, num_threads=args.threads,
    )


def _read_rows(path: str) -> list[dict[str, Any]]:
    """Labelled or generated rows (the one reader: :func:`promptmix_core.labelled.read_labelled_file`)."""
    from ..labelled import read_labelled_file

    return read_labelled_file(path, keep_fields=True)


def _print_scores(m: dict[str, Any], prefix: str, what: str) -> None:
    if m.get(f"{prefix}accuracy") is None:
        return
    print(f"{what} (n={m.get(f'{prefix}n')}): accuracy {m[f'{prefix}accuracy']:.4f}, "
          f"macro-F1 {m[f'{prefix}macro_f1']:.4f}")
    per_class = m.get(f"{prefix}per_class") or {}
    for name, v in per_class.items():
        print(f"  {name}: precision {v['precision']:.3f} recall {v['recall']:.3f} F1 {v['f1']:.3f} "
              f"(support {v['support']})")
    conf = m.get(f"{prefix}confusion")
    if conf and conf.get("matrix"):
        from ..training.metrics import format_confusion

        print(format_confusion({"confusion": conf}))


def cmd_train(args: argparse.Namespace) -> int:
    from ..training.config import ModelLoadError

    try:
        cfg = train_config_from_args(args)
        if args.project:
            return _train_project(args, cfg)
        if not args.data:
            raise ValueError("give --data FILE (labelled or generated examples) or --project FILE")
        if args.nproc and args.nproc > 1:
            return _train_ddp(args, cfg)
        return _train_file(args, cfg)
    except ModelLoadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE


def _file_data(args: argparse.Namespace) -> dict[str, Any]:
    """Training rows (and test rows) from ``--data`` (labelled or generated), ``--task``, ``--test``."""
    from ..task import ClassSpec, Task, load_task
    from ..training.curate import CurationConfig
    from ..training.data import build_training_data

    rows = _read_rows(args.data)
    generated = any("intended_label" in r for r in rows)
    task = load_task(args.task) if args.task else None
    labels = task.class_names if task else sorted({str(r.get("intended_label") or r["label"]) for r in rows})
    test_rows: list[dict[str, str]] = []
    if args.test:  # checked row by row against the classes; never trained on
        from ..testset import read_test_set_file

        check_task = task or Task("data", [ClassSpec(lab) for lab in labels])
        chk = read_test_set_file(args.test, check_task)
        for problem in chk.listed_problems(10):
            print(f"test set: {problem}", file=sys.stderr)
        if not chk.rows:
            raise ValueError(f"{Path(args.test).name} has no usable test rows")
        test_rows = chk.rows
    exclude = [r["text"] for r in test_rows]
    if generated:
        ts = build_training_data(task, rows, label_source=args.label_source, pending=args.pending,
                                 exclude_texts=exclude, curation=CurationConfig(enabled=not args.no_curation))
    else:
        ts = build_training_data(task, [], labels=None if task else labels)
        extra = build_training_data(None, [{"text": r["text"], "intended_label": r["label"]} for r in rows],
                                    label_source="a1", labels=ts.labels or None, exclude_texts=exclude)
        ts.rows += [{**r, "reviewed": True} for r in extra.rows]  # a labelled file: people's labels
        ts.labels = ts.labels or extra.labels
        ts.dropped.update({k: ts.dropped.get(k, 0) + v for k, v in extra.dropped.items()})
        if task is None:  # labelled rows only: no seeds to compare with
            for r in ts.rows:
                r["source"] = "labelled"
    val = [{"text": r["text"], "label": r["label"], "source": "file"} for r in (_read_rows(args.val) if args.val else [])]
    summary = {**ts.summary(), "train": len(ts.rows), "val": len(val), "val_source": "file" if val else "none",
               "val_is_measure": bool(val), "label_source": args.label_source if generated else "labelled",
               "curation": bool(generated and not args.no_curation), "test": len(test_rows)}
    return {"labels": ts.labels, "train_rows": ts.rows, "val_rows": val,
            "test_rows": [{**r, "source": "test_set"} for r in test_rows], "test_set": None, "summary": summary}


def _train_file(args: argparse.Namespace, cfg) -> int:
    """``train --data FILE``: pick the student, train it, then the seeds-only control when there is a test set."""
    from ..paths import cache_root
    from ..training.callbacks import PrintCallback
    from ..training.jobs import run_control, run_summary
    from ..training.plan import choose_student
    from ..training.students import fit, is_trusted, student_settings

    data = _file_data(args)
    print(f"training data: {json.dumps({k: data['summary'][k] for k in ('total', 'seeds', 'generated', 'per_class', 'dropped')})}")
    choice = choose_student(args.student, len(data["train_rows"]), len(data["labels"]),
                            gpu=str(cfg.device).startswith("cuda"))
    print(f"student: {choice.title} ({'picked: ' if choice.auto else ''}{choice.reason})")
    settings = student_settings(choice.student, cfg.to_dict(), setfit_body=args.setfit_body)
    rows, val, test = data["train_rows"], data["val_rows"], data["test_rows"]
    res = fit(choice.student, settings, [r["text"] for r in rows], [r["label"] for r in rows],
              label_names=data["labels"], out_dir=args.out,
              trusted=[is_trusted(r) for r in rows], body_cache=cache_root() / "controls",
              callbacks=[PrintCallback()] if choice.student == "finetune" else [],
              val_texts=[r["text"] for r in val] or None, val_labels=[r["label"] for r in val] or None,
              test_texts=[r["text"] for r in test] or None, test_labels=[r["label"] for r in test] or None)
    m = res.final_metrics()
    m.update(data=data["summary"], student=choice.student, student_reason=choice.reason, student_auto=choice.auto,
             val_is_measure=data["summary"]["val_is_measure"])
    if not args.no_control:
        m["control"] = run_control(None, data, choice.student, settings, res, models_dir=cache_root() / "controls")
    print(f"done: {run_summary(m)}; model in {res.model_dir}")
    _print_scores(m, "val_", "validation")
    _print_scores(m, "test_", "test")
    _print_control(m)
    _write_report(args, m, None, res.model_dir)
    return EXIT_OK


def _train_ddp(args: argparse.Namespace, cfg) -> int:
    if args.student not in ("finetune", "auto"):
        raise ValueError(f"--nproc is for fine-tuning; the {args.student} student runs in one process")
    if args.test:
        raise ValueError("--test is not supported with --nproc; score the saved model with `promptmix predict` instead")
    from ..training.ddp_entry import launch

    data = _file_data(args)
    with tempfile.TemporaryDirectory() as tmp:
        res = launch({"train": cfg.to_dict(), "labels": data["labels"], "train_data": data["train_rows"],
                      "val_data": [{"text": r["text"], "label": r["label"]} for r in data["val_rows"]] or None,
                      "out_dir": args.out}, tmp, nproc=args.nproc)
    print(f"done: {res['steps']} steps on {res['world_size']} processes; model in {res['model_dir']}")
    return EXIT_OK


def _print_data(summary: dict[str, Any]) -> None:
    """What the run trained on and what the label rules and the curation left out, in words."""
    from ..training.curate import REASONS

    dropped = {k: v for k, v in (summary.get("dropped") or {}).items() if v}
    line = f"training data: {summary.get('seeds', 0)} seeds + {summary.get('generated', 0)} generated examples"
    if dropped:
        line += "; left out: " + ", ".join(f"{v} {REASONS.get(k, k.replace('_', ' '))}" for k, v in dropped.items())
    print(line)


def _print_control(m: dict[str, Any]) -> None:
    """The run against its seeds-only control, in words (or why there is no comparison)."""
    from ..training.control import describe

    d = describe(m)
    if d["state"] == "compared":
        print(f"seeds-only control: accuracy {d['control_accuracy']:.4f}; {d['text']}")
        print(d["advice"])
        if d["verdict"] == "worse" and d.get("model_dir"):
            print(f"the seeds-only model is in {d['model_dir']} (promptmix predict {d['model_dir']} ...)")
    elif d["text"]:
        print(d["text"])


def _write_report(args: argparse.Namespace, m: dict[str, Any], run_id: int | None, model_dir: str | None) -> None:
    if not getattr(args, "report", None):
        return
    from ..training.control import run_report

    out = Path(args.report)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(run_report(m, run_id=run_id, model_dir=model_dir), indent=2, ensure_ascii=False) + "\n",
                   "utf-8")
    print(f"wrote the report to {out}")


def _train_project(args: argparse.Namespace, cfg) -> int:
    from ..errors import Cancelled
    from ..lifecycle import JobLifecycle
    from ..specs import TrainingSpec
    from ..store import open_project
    from ..training.jobs import train_job

    store = open_project(args.project)
    spec = TrainingSpec.from_dict({  # the same spec the app's Train page builds
        "label_source": args.label_source, "pending": args.pending, "train": cfg.to_dict(),
        "val_path": str(Path(args.val).resolve()) if args.val else None,
        "out_dir": str(Path(args.out).resolve()) if args.out else None,
        "student": args.student, "test_path": str(Path(args.test).resolve()) if args.test else None,
        "use_test_set": not args.no_test_set, "curation": not args.no_curation, "control": not args.no_control,
        "setfit_body": args.setfit_body,
    })
    # one training job per project (CLI or app); this process is its worker, found by its pid
    life = JobLifecycle.claim(store, "train", spec.to_dict(), status="running", pid=os.getpid(), origin="cli")
    try:
        with life.running("training from the command line") as ctx:
            out = train_job(store, store.get_job(life.job_id), ctx)
            if out["status"] == "cancelled":
                raise Cancelled(f"run #{out['run_id']} cancelled")
            life.finish(f"run #{out['run_id']} {out['status']}")
    except Cancelled as exc:
        print(str(exc) or "training was stopped")
        return EXIT_FAIL
    m = out["metrics"]
    from ..training.plan import STUDENT_WORDS, STUDENTS

    what = STUDENT_WORDS.get(m.get("student")) or f"{m.get('steps')} steps"
    print(f"student: {STUDENTS.get(m.get('student'), m.get('student'))} "
          f"({'picked: ' if m.get('student_auto') else ''}{m.get('student_reason') or 'chosen'})")
    print(f"run #{out['run_id']} {out['status']}: {what}; model in {out['model_dir']}")
    _print_data(out["data"])
    if m.get("val_accuracy") is not None:
        note = "" if m.get("val_is_measure") else " (held-out generated examples: agreement with their generated labels, not a measure)"
        print(f"validation ({out['data']['val_source']}, n={m.get('val_n')}): accuracy {m['val_accuracy']:.4f}, "
              f"macro-F1 {m['val_macro_f1']:.4f}{note}")
    ts_info = m.get("test_set") or {}
    _print_scores(m, "test_", f"test ({ts_info.get('name', 'test set')})")
    if m.get("test_accuracy") is None:
        print("no test set: nothing measures this model; give --test FILE or add a test set to the project")
    _print_control(m)
    _write_report(args, m, out["run_id"], out["model_dir"])
    print(f"recorded in {store.path.name} (run #{out['run_id']})")
    return EXIT_OK


def cmd_predict(args: argparse.Namespace) -> int:
    """Classify texts with a saved model (fine-tuned or quick student) through
    :func:`.inference.classify`, the same function as the app's "Try the model". An ``--input`` file is
    read, classified and written a chunk at a time (memory does not grow with the file); ``--out`` is
    written whole or not at all."""
    import itertools

    from ..paths import check_output_file, write_file_atomically
    from ..training.config import ModelLoadError
    from ..training.inference import classify_stream, iter_text_file

    out = check_output_file(args.out, (".csv", ".jsonl"), example="predictions.csv") if args.out else None
    texts = iter(args.texts or [])
    if args.input:
        texts = itertools.chain(texts, iter_text_file(args.input))
    first = next(texts, None)
    if first is None:
        raise ValueError("nothing to predict: give texts, or --input FILE (.txt one per line, .csv/.jsonl with text)")
    chunks = classify_stream(args.model_dir, itertools.chain([first], texts), device=args.device)
    count = [0]

    def encoded():
        for i, pred in enumerate(chunks):
            count[0] += len(pred)
            yield pred.to_csv_bytes(header=i == 0) if out.suffix.lower() == ".csv" else pred.to_jsonl_bytes()

    try:
        if out is not None:
            write_file_atomically(out, encoded())
            print(f"wrote {count[0]} predictions to {out}")
        else:
            for pred in chunks:
                for i, (t, lab) in enumerate(zip(pred.texts, pred.predicted)):
                    print(f"{lab}\t{pred.confidence(i):.3f}\t{t}")
    except ModelLoadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


def register(subparsers: Any) -> None:
    from ..specs import TrainingSpec as S
    from ..training.data import LABEL_SOURCES, PENDING_RULES
    from ..training.plan import FEW_SHOT_PER_CLASS, SETFIT_BODY_ROWS, STUDENT_OPTIONS

    t = subparsers.add_parser("train", help="step 3: fine-tune a small classifier (seeds + generated examples)")
    src = t.add_argument_group("data")
    src.add_argument("--data", help="labelled CSV/JSONL (text,label), or generated JSONL (promptmix generate)")
    src.add_argument("--task", help="task file whose seeds are added to --data")
    src.add_argument("--project", help="train from a project file instead (records a run with live metrics)")
    src.add_argument("--label-source", default=S.label_source, choices=LABEL_SOURCES,
                     help=f"for generated examples: a1 intended label, a2 LLM relabel, reviewed (default {S.label_source})")
    src.add_argument("--pending", default=S.pending, choices=PENDING_RULES,
                     help=f"with --label-source reviewed: what pending examples get (default {S.pending})")
    src.add_argument("--val", help="labelled CSV/JSONL to validate on")
    src.add_argument("--test", help="labelled CSV/JSONL (text,label) to score the model on: accuracy, macro-F1, "
                                    "per-class scores, confusion matrix (with --project: recorded in the run)")
    src.add_argument("--no-test-set", action="store_true",
                     help="with --project: do not score on the project's test set")
    t.add_argument("--student", default=S.student, choices=list(STUDENT_OPTIONS),
                   help=f"auto (default {S.student!r}): the student the measurements pick (SetFit at few-shot sizes, up "
                        f"to {FEW_SHOT_PER_CLASS} examples per class; fine-tuning above); setfit; embed-lr (frozen MiniLM "
                        "embeddings + logistic regression, in seconds); finetune")
    t.add_argument("--setfit-body", default=S.setfit_body, choices=list(SETFIT_BODY_ROWS),
                   help=f"which rows make SetFit's contrastive pairs (default {S.setfit_body!r}: the seeds and reviewed "
                        "examples, so a run and its seeds-only control share one body and machine-labelled examples "
                        "train the head only; 'all': every row, setfit's own way)")
    t.add_argument("--no-curation", action="store_true",
                   help="train on every generated example the label rules keep (default: leave out flagged ones "
                        "and those the judges disagree on; reviewed decisions always count)")
    t.add_argument("--no-control", action="store_true",
                   help="skip the seeds-only control (default: the same student on the seeds alone, scored on the "
                        "same test set, with a 95 %% bootstrap interval of the difference)")
    t.add_argument("--report", help="write a JSON report: test and control scores, the delta with its interval, "
                                    "the student and the examples used per source")
    t.add_argument("--out", help="folder for the model (safetensors)")
    t.add_argument("--nproc", type=int, default=1, help="data-parallel processes via torchrun (with --data)")
    add_train_args(t)
    t.set_defaults(func=cmd_train)

    p = subparsers.add_parser("predict", help="classify texts with a trained model folder")
    p.add_argument("model_dir")
    p.add_argument("texts", nargs="*")
    p.add_argument("--input", help="a .txt (one text per line), .csv or .jsonl file with a text column")
    p.add_argument("--out", help="write .csv or .jsonl with probabilities")
    from ..training.inference import classify

    p.add_argument("--device", default=default_of(classify, "device"), help="auto, cpu, cuda, cuda:N or mps")
    p.set_defaults(func=cmd_predict)


__all__ = ["add_train_args", "register", "train_config_from_args"]
