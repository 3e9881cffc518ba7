"""``promptmix check``: validate a task file or labelled file (and optionally convert it)."""

from __future__ import annotations

import argparse
from typing import Any

from ..task import load_task
from ._common import EXIT_OK, default_of


def register(sub: Any) -> None:
    c = sub.add_parser("check", help="validate a task file or labelled file (and optionally convert it)")
    c.add_argument("task")
    c.add_argument("--k", type=int)
    c.add_argument("--task-seed", type=int, default=default_of(load_task, "seed"))
    c.add_argument("--out", help="write the task as JSON or YAML")
    c.set_defaults(func=cmd_check)


def cmd_check(args: argparse.Namespace) -> int:
    from ..task import save_task, validate

    task = load_task(args.task, k=args.k, seed=args.task_seed)
    warnings = validate(task)
    print(f"{task.name}: {len(task.classes)} classes, {sum(len(c.examples) for c in task.classes)} seeds")
    for w in warnings:
        print(f"warning: {w}")
    if args.out:
        save_task(task, args.out)
        print(f"saved {args.out}")
    return EXIT_OK
