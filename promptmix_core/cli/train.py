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
    from ..training.callbacks import PrintCallback
    from ..training.config import ModelLoadError

    try:
        cfg = train_config_from_args(args)
        if args.project:
            return _train_project(args, cfg)
        if not args.data:
            raise ValueError("give --data FILE (labelled or generated examples) or --project FILE")
        from ..task import ClassSpec, Task, load_task
        from ..training.data import build_training_data
        from ..training.trainer import train

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
                                     exclude_texts=exclude)
        else:
            ts = build_training_data(task, [], labels=None if task else labels)
            extra = build_training_data(None, [{"text": r["text"], "intended_label": r["label"]} for r in rows],
                                        label_source="a1", labels=ts.labels or None, exclude_texts=exclude)
            ts.rows += [r for r in extra.rows]
            ts.labels = ts.labels or extra.labels
            ts.dropped.update({k: ts.dropped.get(k, 0) + v for k, v in extra.dropped.items()})
        val = _read_rows(args.val) if args.val else []
        print(f"training data: {json.dumps(ts.summary())}")
        test_kw = dict(test_texts=[r["text"] for r in test_rows] or None,
                       test_labels=[r["label"] for r in test_rows] or None)
        if args.student in ("embed-lr", "setfit"):
            if args.nproc and args.nproc > 1:
                raise ValueError(f"--nproc is for fine-tuning; the {args.student} student runs in one process")
            from ..training.embed_lr import train_embed_lr
            from ..training.setfit_student import train_setfit

            common = dict(label_names=ts.labels, val_texts=[r["text"] for r in val] or None,
                          val_labels=[r["label"] for r in val] or None, out_dir=args.out, **test_kw)
            if args.student == "setfit":
                res = train_setfit(ts.texts, ts.targets, common.pop("label_names"), {"seed": args.train_seed}, **common)
            else:
                res = train_embed_lr(None, ts.texts, ts.targets, **common)
            print(f"done: {args.student} student on {res.n_train} examples in {res.train_time_s:.1f} s; "
                  f"model in {res.model_dir}")
            m = res.final_metrics()
            _print_scores(m, "val_", "validation")
            _print_scores(m, "test_", "test")
            return EXIT_OK
        if args.nproc and args.nproc > 1:
            if test_rows:
                raise ValueError("--test is not supported with --nproc; score the saved model with "
                                 "`promptmix predict` instead")
            from ..training.ddp_entry import launch

            with tempfile.TemporaryDirectory() as tmp:
                res = launch({"train": cfg.to_dict(), "labels": ts.labels, "train_data": ts.rows,
                              "val_data": [{"text": r["text"], "label": r["label"]} for r in val] or None,
                              "out_dir": args.out}, tmp, nproc=args.nproc)
            print(f"done: {res['steps']} steps on {res['world_size']} processes; model in {res['model_dir']}")
            return EXIT_OK
        res = train(cfg, ts.texts, ts.targets, label_names=ts.labels,
                    val_texts=[r["text"] for r in val] or None, val_labels=[r["label"] for r in val] or None,
                    out_dir=args.out, callbacks=[PrintCallback()], keep_model=False, **test_kw)
    except ModelLoadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    vm = res.val_metrics
    print(f"done: {res.steps} steps, {res.train_samples_per_s:.1f} samples/s on {res.device}; model in {res.model_dir}"
          + (f"; validation accuracy {vm['accuracy']:.4f}, macro-F1 {vm['macro_f1']:.4f}" if vm else ""))
    _print_scores(res.final_metrics(), "test_", "test")
    return EXIT_OK


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
        "use_test_set": not args.no_test_set,
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
    from ..training.plan import STUDENT_WORDS

    what = STUDENT_WORDS.get(m.get("student")) or f"{m.get('steps')} steps"
    print(f"run #{out['run_id']} {out['status']}: {what}; model in {out['model_dir']}")
    if m.get("val_accuracy") is not None:
        print(f"validation ({out['data']['val_source']}, n={m.get('val_n')}): accuracy {m['val_accuracy']:.4f}, "
              f"macro-F1 {m['val_macro_f1']:.4f}")
    ts_info = m.get("test_set") or {}
    _print_scores(m, "test_", f"test ({ts_info.get('name', 'test set')})")
    if m.get("test_accuracy") is None:
        print("no test set: the scores above come from held-out generated examples and mean little; "
              "give --test FILE or add a test set to the project")
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
    from ..training.plan import STUDENTS

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
    t.add_argument("--student", default=S.student, choices=STUDENTS,
                   help="finetune: fine-tune the model; embed-lr: frozen MiniLM embeddings + logistic regression, "
                        f"in seconds; setfit (default {S.student})")
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
