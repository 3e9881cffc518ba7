"""``promptmix report``: a project's report, one self-contained HTML file (library: :mod:`promptmix_core.report`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ._common import EXIT_OK, EXIT_USAGE


def register(sub: Any) -> None:
    """``promptmix report PROJECT.pmx --out report.html``."""
    p = sub.add_parser(
        "report", help="write a project's report: one self-contained HTML file to send to people",
        description="One HTML file telling the project's story: the task, what was generated, what people "
                    "decided, the models beside their seeds-only control, examples and what to do next. "
                    "Self-contained (no request leaves it), printable to PDF.")
    p.add_argument("project", help="project file (.pmx)")
    p.add_argument("--out", required=True, help="HTML file to write")
    p.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    from ..report import write_report

    path = Path(args.project)
    if not path.is_file():
        print(f"error: no project file {path}", file=sys.stderr)
        return EXIT_USAGE
    out = write_report(path, args.out)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, self-contained: open it in any browser, also offline)")
    return EXIT_OK
