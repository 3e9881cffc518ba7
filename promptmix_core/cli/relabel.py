"""``promptmix relabel`` (step 2 on a JSONL of generated examples) and ``promptmix flag`` (probable junk,
in a JSONL file or a project)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from ..errors import TaskError
from ..labelled import read_labelled_file
from ..task import load_task
from ._common import (EXIT_OK, Bar, add_label_source_arg, add_llm_args, check_out, judge_rows, llm_client,
                      write_jsonl)


def register(sub: Any) -> None:
    from ..relabel import RelabelConfig as R

    r = sub.add_parser("relabel", help="step 2: relabel generated examples with an LLM classifier (A2)")
    r.add_argument("input", help="generated examples (JSONL with text and label)")
    r.add_argument("--task", required=True, help="task file the examples belong to")
    r.add_argument("--out", required=True, help="output JSONL")
    r.add_argument("--nearest", type=int, default=R.nearest, help=f"classes shown per example (default {R.nearest})")
    r.add_argument("--seed", type=int, default=R.seed,
                   help="seed of the candidate order shown to the relabeler (give the generation's --seed "
                        f"to relabel as `generate --relabel` does; default {R.seed})")
    add_label_source_arg(r)
    add_llm_args(r)
    r.set_defaults(func=cmd_relabel)

    f = sub.add_parser("flag", help="flag probable junk among generated examples (meta-text, near-copies, noise, off-topic)")
    f.add_argument("input", nargs="?", help="generated examples (JSONL with text), with --task and --out")
    f.add_argument("--task", help="task file the examples belong to")
    f.add_argument("--out", help="output JSONL (each row gains 'flag': the reason, '' when fine)")
    f.add_argument("--project", help="flag the examples in this project file instead (saved there)")
    f.add_argument("--job", type=int, help="with --project: only this generation job's examples")
    f.add_argument("--reject", action="store_true", help="with --project: also reject the flagged ones still pending")
    f.add_argument("--reviewer", help="with --reject: who the rejections are recorded under (default: the OS user)")
    f.set_defaults(func=cmd_flag)


def cmd_relabel(args: argparse.Namespace) -> int:
    from ..relabel import relabel, relabel_summary
    from ..specs import RelabelSpec

    task = load_task(args.task)
    rows = read_labelled_file(args.input, require_label=False, keep_fields=True)
    out = check_out(Path(args.out))  # before any LLM call
    for r in rows:
        r.setdefault("intended_label", r.get("label"))
    spec = RelabelSpec.from_dict({"nearest": args.nearest, "seed": args.seed, "llm": {
        "base_url": args.base_url, "model": args.model, "concurrency": args.concurrency,
        "timeout": args.timeout, "max_retries": args.retries, "max_retry_after": args.max_retry_after}})
    llm = llm_client(args, spec.llm)
    bar = Bar("relabel")
    t0 = time.perf_counter()
    from ..pipeline import embedding_warmer

    # the judge embeds the classes and every row: done in a thread while the LLM answers
    embedding_warmer(task).add([str(r["text"]) for r in rows])
    results = relabel(task, rows, llm, spec.relabel_config(), progress=bar)
    bar.close()
    for row, r in zip(rows, results):
        row["llm_label"] = r.llm_label
        row["relabel_status"] = r.status
        row["llm_confidence"] = r.confidence
    judge_rows(args, task, rows, llm, spec.relabel_config())
    write_jsonl(out, rows)
    s = relabel_summary(results)
    print(
        f"relabelled {s['relabelled']} in {time.perf_counter() - t0:.1f} s: {s['share_changed']:.0%} changed, "
        f"{s['share_unparseable']:.0%} unparseable; {llm.stats.summary()}"
    )
    return EXIT_OK


def cmd_flag(args: argparse.Namespace) -> int:
    """Flag probable junk in a project (saved in the store) or in a JSONL file (written to --out)."""
    from ..flags import flag_project_examples, flag_summary, flag_texts

    if args.project:
        from ..store import ProjectStore

        store = ProjectStore(args.project, create=False)
        task = store.load_task()
        if task is None:
            raise TaskError("the project has no task yet")
        s = flag_project_examples(store, task, job_id=args.job)
        print(f"flagged {s['flagged']} of {s['texts']} examples as probable junk: "
              + ", ".join(f"{k} {v}" for k, v in s["by_reason"].items()))
        if args.reject:
            from ..access import local_reviewer

            n = store.reject_flagged(job_id=args.job, reviewer=args.reviewer or local_reviewer())
            print(f"rejected {n} flagged examples that were pending review")
        return EXIT_OK
    if not args.input or not args.task or not args.out:
        raise TaskError("give --project, or an input JSONL with --task and --out")
    task = load_task(args.task)
    rows = read_labelled_file(args.input, require_label=False, keep_fields=True)  # the one reader of every face
    out = check_out(Path(args.out))
    reasons = flag_texts(task, [str(r["text"]) for r in rows])
    for row, reason in zip(rows, reasons):
        row["flag"] = reason
    write_jsonl(out, rows)
    s = flag_summary(reasons)
    print(f"flagged {s['flagged']} of {s['texts']}: " + ", ".join(f"{k} {v}" for k, v in s["by_reason"].items()))
    return EXIT_OK
