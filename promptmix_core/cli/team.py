"""The team-review commands: ``promptmix settings``, ``promptmix review``, ``promptmix agreement``.

Decisions made here are recorded under ``--reviewer``, else the OS user (:func:`access.local_reviewer`).
"""

from __future__ import annotations

import json
from typing import Any

from ..access import local_reviewer


def cmd_settings(args: Any) -> int:
    from ..store import ProjectStore

    store = ProjectStore(args.project, create=False)
    try:
        if args.reviews_per_example is not None:
            store.set_reviews_per_example(args.reviews_per_example)
        print(f"reviews per example: {store.reviews_per_example()}")
    finally:
        store.close()
    return 0


def cmd_review(args: Any) -> int:
    from ..store import ProjectStore

    store = ProjectStore(args.project, create=False)
    who = args.reviewer or local_reviewer()
    try:
        task = store.load_task()
        if args.decision == "overridden" and (task is None or args.label not in task.class_names):
            raise ValueError(f"{args.label!r} is not a class of this task")
        if args.adjudicate:
            version = store.adjudicate(args.id, args.decision, label=args.label, reviewer=who)
        else:
            version = store.review(args.id, args.decision, label=args.label, reviewer=who, tab=f"cli:{who}")
        ex = store.review_rows([args.id])[0]
        print(f"example {args.id}: {args.decision} by {who} (version {version}); "
              f"the example is now {ex['review_status']}")
    finally:
        store.close()
    return 0


def cmd_agreement(args: Any) -> int:
    from ..agreement import project_agreement
    from ..store import ProjectStore

    store = ProjectStore(args.project, create=False)
    try:
        a = project_agreement(store)
    finally:
        store.close()
    if args.json:
        print(json.dumps(a.as_dict(), indent=1))
        return 0
    fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
    print(f"{a.votes} decisions on {a.examples} examples; {a.multi} with two or more")
    print(f"Krippendorff's alpha (nominal): {fmt(a.alpha)} over {a.alpha_n} examples")
    for p in a.pairs:
        print(f"Cohen's kappa {p['a']} / {p['b']}: {fmt(p['kappa'])} over {p['n']} examples")
    for r in a.reviewers:
        print(f"{r['reviewer']}: {r['decisions']} decisions, {fmt(r['per_hour'])} per hour; agrees with the LLM "
              f"{fmt(r['llm_agree'])} (n={r['llm_n']}), with the judge {fmt(r['judge_agree'])} (n={r['judge_n']})")
    return 0


def register(subparsers: Any) -> None:
    s = subparsers.add_parser("settings", help="show or change a project's settings (reviews per example)")
    s.add_argument("project", help="project file (.pmx)")
    s.add_argument("--reviews-per-example", type=int, metavar="N",
                   help="decisions each example needs before its label is final (default 1)")
    s.set_defaults(func=cmd_settings)

    r = subparsers.add_parser("review", help="record one review decision, under --reviewer or the OS user")
    r.add_argument("project", help="project file (.pmx)")
    r.add_argument("id", type=int, help="example id")
    r.add_argument("decision", choices=("accepted", "overridden", "rejected"))
    r.add_argument("--label", help="the class, for overridden")
    r.add_argument("--reviewer", help="who decides (default: the OS user)")
    r.add_argument("--adjudicate", action="store_true", help="an owner's final decision on a conflict")
    r.set_defaults(func=cmd_review)

    a = subparsers.add_parser("agreement", help="agreement between reviewers, and with the LLM and the judge")
    a.add_argument("project", help="project file (.pmx)")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=cmd_agreement)


__all__ = ["register"]
