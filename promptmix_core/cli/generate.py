"""``promptmix generate``: step 1 (and step 2 with ``--relabel``), into a JSONL file and optionally a project.

Every flag's default comes from :class:`~promptmix_core.generate.GenerationConfig`,
:class:`~promptmix_core.relabel.RelabelConfig` or :class:`~promptmix_core.specs.LLMSpec`; the flags map
one to one onto a :class:`~promptmix_core.specs.GenerationSpec` (:meth:`GenerationSpec.from_cli_args`).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from ..task import load_task
from ._common import (EXIT_OK, Bar, add_label_source_arg, add_llm_args, check_out, default_of, judge_rows, llm_client,
                      write_jsonl, write_partial)

#: the flags that change a job's plan, and the spec setting each one sets (``llm.model``: the LLM's)
PLAN_FLAGS = {
    "--per-class": "per_class", "--group-size": "group_size", "--no-mixup": "mixup", "--seed": "seed",
    "--examples-per-call": "examples_per_call", "--max-calls": "max_calls_per_class", "--relabel": "relabel",
    "--nearest": "nearest", "--no-flags": "flag_junk", "--pairs": "pairs", "--pairs-from": "pairs",
    "--pairs-top": "pairs", "--model": "llm.model",
}


def register(sub: Any) -> None:
    from ..confusion import resolve_pairs
    from ..generate import GenerationConfig as G
    from ..relabel import RelabelConfig as R

    g = sub.add_parser("generate", help="step 1: generate borderline examples (A1 labels)")
    g.add_argument("task", help="task file (JSON/YAML) or labelled CSV/JSONL (text,label)")
    g.add_argument("--out", required=True, help="output JSONL")
    g.add_argument("--per-class", type=int, required=True, help="examples per class (exactly)")
    g.add_argument("--group-size", type=int, default=G.group_size, help=f"classes per prompt group (default {G.group_size})")
    g.add_argument("--no-mixup", action="store_true", help="plain examples of Ci, no mixup")
    g.add_argument("--seed", type=int, default=G.seed, help=f"seed of the groups, partners and alphas (default {G.seed})")
    g.add_argument("--examples-per-call", type=int, default=G.examples_per_call,
                   help=f"examples asked for per call (default {G.examples_per_call}; at most half of --per-class, "
                   "so every class gets at least two calls, each with its own partner class and alpha)")
    g.add_argument("--max-calls", type=int, help="most calls per class (default 4 per example + 5)")
    g.add_argument("--k", type=int, help="draw k seeds per class from a larger labelled file")
    g.add_argument("--task-seed", type=int, default=default_of(load_task, "seed"), help="seed for drawing the k seeds")
    g.add_argument("--relabel", action="store_true", help="also relabel (step 2) before writing")
    g.add_argument("--nearest", type=int, default=R.nearest, help=f"classes shown to the relabeler (default {R.nearest})")
    add_label_source_arg(g)
    g.add_argument("--project", help="also record into this project file (resumable)")
    g.add_argument("--job", type=int, help="with --project: resume this job id (with its stored plan)")
    g.add_argument("--no-flags", action="store_true", help="do not flag probable junk (flag column)")
    g.add_argument("--pairs", help='a targeted round: only these class pairs, "a:b,c:d" (a mixed with b, ...)')
    g.add_argument("--pairs-from", metavar="RUN_OR_JSON",
                   help="a targeted round on the pairs a student confuses most: a run id of --project, or a JSON "
                        "file (run metrics, a confusion matrix {labels, matrix}, or a list of pairs)")
    top = default_of(resolve_pairs, "top")
    g.add_argument("--pairs-top", type=int, default=top, help=f"with --pairs-from: how many confused pairs (default {top})")
    add_llm_args(g)
    g.set_defaults(func=cmd_generate, plan_parser=g)


def cmd_generate(args: argparse.Namespace) -> int:
    from ..specs import GenerationSpec

    task = load_task(args.task, k=args.k, seed=args.task_seed)
    spec = GenerationSpec.from_cli_args(args)  # the same spec the app's Generate page builds
    out = check_out(Path(args.out))  # a folder or a read-only place fails now, not after every call
    if args.pairs or args.pairs_from:  # a targeted round: only the named (or most confused) class pairs
        spec = _with_pairs(args, task, spec)
    if args.project:
        return _generate_into_project(args, task, spec, out)
    return _generate_to_file(args, task, spec, out)


def _with_pairs(args: argparse.Namespace, task, spec):
    from ..confusion import resolve_pairs
    from ..specs import GenerationSpec

    store = None
    if args.project and str(args.pairs_from or "").strip().isdigit():
        from ..store import ProjectStore

        store = ProjectStore(args.project, create=False)
    pairs = resolve_pairs(task.class_names, pairs=args.pairs, source=args.pairs_from, store=store,
                          top=args.pairs_top)
    print("targeted round: " + ", ".join(f"{a} mixed with {b}" for a, b in pairs), file=sys.stderr)
    return GenerationSpec.from_dict({**spec.to_dict(), "pairs": [list(p) for p in pairs]})


def _generate_to_file(args: argparse.Namespace, task, spec, out: Path) -> int:
    from ..generate import GenerationCancelled, GenerationFailed, generate

    from ..pipeline import embedding_warmer

    # the flags and the judge embed the examples: done as they come, while the calls are in flight
    warmer = embedding_warmer(task) if spec.flag_junk or spec.relabel else None
    llm = llm_client(args, spec.llm)
    bar = Bar("generate")
    t0 = time.perf_counter()
    try:
        result = generate(task, spec.generation, llm, progress=bar, on_kept=warmer.add_examples if warmer else None)
    except (GenerationFailed, GenerationCancelled) as exc:
        bar.close()
        return write_partial(args, exc, llm)
    finally:
        if warmer is not None:
            warmer.close()
    bar.close()
    rows = [e.to_row() for e in result.examples]
    if spec.relabel:
        from ..relabel import relabel

        rel = relabel(task, result.examples, llm, spec.relabel_config(), progress=Bar("relabel"))
        for row, r in zip(rows, rel):
            row.update(llm_label=r.llm_label, relabel_status=r.status, llm_confidence=r.confidence)
        judge_rows(args, task, rows, llm, spec.relabel_config())
    if spec.flag_junk:
        from ..flags import flag_summary, flag_texts

        reasons = flag_texts(task, [r["text"] for r in rows])
        for row, reason in zip(rows, reasons):
            row["flag"] = reason
        fs = flag_summary(reasons)
        print(f"flagged {fs['flagged']} of {fs['texts']} as probable junk (kept, with a 'flag' reason)",
              file=sys.stderr)
    write_jsonl(out, rows)
    _print_totals(result, llm, t0)
    return EXIT_OK


def _print_totals(result, llm, t0: float) -> None:
    print(
        f"kept {result.kept}/{result.requested} examples in {time.perf_counter() - t0:.1f} s; {llm.stats.summary()}; "
        f"{result.calls_per_kept:.2f} calls and {result.tokens_per_kept:.0f} tokens per kept example"
    )


def given_flags(args: argparse.Namespace) -> set[str]:
    """The plan flags this command line spelled out (argparse's unique prefixes, ``--x=v`` included)."""
    parser = getattr(args, "plan_parser", None)
    argv = getattr(args, "argv", None) or []
    if parser is None:
        return set()
    options = [s for a in parser._actions for s in a.option_strings if s.startswith("--")]
    given = set()
    for token in argv:
        if not token.startswith("--") or token == "--":
            continue
        name = token.split("=", 1)[0]
        matches = [name] if name in options else [o for o in options if o.startswith(name)]
        if len(matches) == 1:
            given.add(matches[0])
    return given & set(PLAN_FLAGS)


def resume_spec(stored, asked, given: set[str], job_id: int):
    """The spec a resumed job runs: its stored plan, with this command's endpoint settings (URL,
    concurrency, timeouts). A plan setting given on the command line that differs from the stored
    one is refused, in one line naming each: one job never mixes two plans."""
    import dataclasses

    def value(spec, key: str):
        return spec.llm.model if key == "llm.model" else spec.to_dict()[key]

    keys = sorted({PLAN_FLAGS[f] for f in given})
    differ = [k for k in keys if value(asked, k) != value(stored, k)
              and not (k == "llm.model" and stored.llm.model is None)]
    if differ:
        was = ", ".join(f"{k} {value(stored, k)!r}" for k in differ)
        now = ", ".join(f"{k} {value(asked, k)!r}" for k in differ)
        raise ValueError(f"job #{job_id} was started with {was}; this command asks for {now}. Resume it "
                         "without those options (it keeps its plan) or start a new job")
    llm = dataclasses.replace(asked.llm, model=asked.llm.model if "--model" in given else stored.llm.model)
    return dataclasses.replace(stored, llm=llm)


def _generate_into_project(args, task, spec, out: Path) -> int:
    """``generate --project``: the same job as the app's (spec stored, lifecycle, examples and, with
    ``--relabel``, relabels saved in the project), run in this process; resumable with ``--job``.

    One generation job per project, CLI or app alike: while another runs, this is refused naming it
    (:class:`~promptmix_core.store.JobBusyError`) before any LLM call."""
    from ..generate import GenerationCancelled, GenerationFailed
    from ..lifecycle import JobLifecycle
    from ..pipeline import run_generation
    from ..specs import GenerationSpec
    from ..store import ProjectStore, StoreError

    store = ProjectStore(args.project)
    if args.job:
        job = store.get_job(args.job)
        if job is None or job.kind != "generate":
            raise ValueError(f"{args.project} has no generation job #{args.job}")
        spec = resume_spec(GenerationSpec.from_stored(job.config), spec, given_flags(args), args.job)
    # this process is the job's worker: a crash is found by pid, so the job never blocks the app
    life = JobLifecycle.claim(store, "generate", spec.to_dict(), status="running", pid=os.getpid(),
                              job_id=args.job or None, origin="cli")
    try:
        if store.load_task() is None:
            store.save_task(task)
        llm = llm_client(args, spec.llm)
    except BaseException as exc:
        try:
            life.failed(str(exc) or type(exc).__name__)
        except StoreError:
            pass
        raise
    bar = Bar("generate")
    t0 = time.perf_counter()
    try:
        with life.running("running from the command line", also=bar) as ctx:
            outcome = run_generation(store, life.job_id, spec, ctx, llm, label_policy=args.label_source)
            life.finish(outcome.summary)
    except (GenerationFailed, GenerationCancelled) as exc:  # the job is marked; what was made is kept
        bar.close()
        return write_partial(args, exc, llm)
    bar.close()
    write_jsonl(out, _project_rows(store, life.job_id, spec, outcome.result))
    print(f"job #{life.job_id} in {args.project}: {outcome.summary}", file=sys.stderr)
    _print_totals(outcome.result, llm, t0)
    return EXIT_OK


def _project_rows(store, job_id: int, spec, result) -> list[dict[str, Any]]:
    """The job's examples as output rows, with the relabels, the judges' choice and the flags the project holds."""
    from ..judge import chosen_label, saved_label_source

    stored_rows = {e.slot: e for e in store.list_examples(job_id=job_id)}
    choice = saved_label_source(store)
    if choice is not None:
        print(f"label source: {choice.source} ({choice.reason})", file=sys.stderr)
    rows = []
    for e in result.examples:
        row = e.to_row()
        stored = stored_rows.get(e.slot)
        if spec.relabel and stored is not None:
            row.update(llm_label=stored.llm_label, relabel_status=stored.relabel_status,
                       llm_confidence=stored.llm_confidence, judge_label=stored.judge_label,
                       judge_confidence=stored.judge_confidence)
            row["label"] = stored.label
            row["label_source"] = chosen_label(choice.source if choice else "llm", stored.judge_label,
                                               stored.llm_label, stored.intended_label)[1]
        if stored is not None and spec.flag_junk:
            row["flag"] = stored.flag  # the job flagged its examples (pipeline.flag_job)
        rows.append(row)
    return rows
