"""``promptmix export``: a project's curated data set (the rows the Results page exports)."""

from __future__ import annotations

import argparse
from typing import Any

from ._common import EXIT_OK, default_of


def register(sub: Any) -> None:
    """``promptmix export PROJECT.pmx --out FILE [--format csv|jsonl|parquet] [--labels reviewed|a1|a2]``."""
    from ..export import FORMATS, LABEL_SOURCES, PENDING_RULES, export_project

    defaults = {k: default_of(export_project, k) for k in ("label_source", "pending")}
    p = sub.add_parser(
        "export", help="write a project's curated data set (the rows the Results page exports)",
        description="The curated data set of a project: the seed examples, then every generated example that "
                    "keeps a label (text, label, source, intended label, mixed with, alpha, LLM label, relabel "
                    "status, decision). Rejected examples are always left out.",
    )
    p.add_argument("project", help="project file (.pmx)")
    p.add_argument("--out", required=True, help="file to write")
    p.add_argument("--format", choices=FORMATS, help="default: from --out's extension, else csv")
    p.add_argument("--labels", choices=LABEL_SOURCES, default=defaults["label_source"],
                   help="reviewed: your decisions; a1: the written-for class; a2: the LLM relabel "
                        f"(default {defaults['label_source']})")
    p.add_argument("--pending", choices=PENDING_RULES, default=defaults["pending"],
                   help="with --labels reviewed, examples not reviewed yet: a2 (the LLM relabel, as on the Results "
                        f"page), a1 (the written-for class) or drop (default {defaults['pending']})")
    p.add_argument("--no-seeds", action="store_true", help="leave the seed examples out")
    p.add_argument("--decisions", action="store_true",
                   help="write the review decisions instead: one row per decision (example id, text, reviewer, "
                        "decision, label, time, adjudication)")
    p.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    from ..export import export_decisions, export_project

    if args.decisions:
        info = export_decisions(args.project, args.out, fmt=args.format)
        print(f"wrote {info['rows']} decisions by {info['reviewers']} reviewer(s) to {info['path']} as {info['format']}")
        return EXIT_OK
    info = export_project(args.project, args.out, fmt=args.format, label_source=args.labels,
                          pending=args.pending, include_seeds=not args.no_seeds)
    print(f"wrote {info['rows']} rows ({info['seeds']} seeds, {info['generated']} generated examples) "
          f"to {info['path']} as {info['format']}")
    return EXIT_OK
