"""The ``promptmix`` command line: a thin face on the same core as the app.

One module per subcommand group, each with a ``register(subparsers)``; :data:`COMMANDS` lists them in
the order ``promptmix --help`` shows them. Adding a subcommand: one module here with ``register``, and
one line in the import and in :data:`COMMANDS` below. An import error surfaces (never a silently
missing subcommand).
"""

from __future__ import annotations

import argparse
import sys

from . import check, experiment, export, generate, local_model, relabel, report, team, train
from ._common import EXIT_FAIL, EXIT_OK, EXIT_USAGE

COMMANDS = (generate, relabel, check, train, export, report, team, experiment, local_model)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="promptmix", description="PromptMix Studio command line")
    ap.add_argument("--version", action="version", version="promptmix 0.1.0")
    sub = ap.add_subparsers(dest="command", required=True)
    for module in COMMANDS:
        module.register(sub)
    return ap


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = argv  # which options were spelled out (generate --job keeps the stored plan otherwise)
    from ..errors import TaskError
    from ..llm import LLMConfigError, LLMError
    from ..store import JobBusyError, StoreError, StoreFullError, StoreReadOnlyError, scrub_secrets

    try:
        return int(args.func(args) or 0)
    except TaskError as exc:
        for p in exc.problems:
            print(f"error: {scrub_secrets(p)}", file=sys.stderr)
        return EXIT_USAGE
    except (StoreFullError, StoreReadOnlyError, JobBusyError) as exc:  # the disk, the folder, another job
        print(f"error: {scrub_secrets(str(exc))}", file=sys.stderr)
        return EXIT_FAIL
    except (LLMConfigError, ValueError, StoreError) as exc:
        print(f"error: {scrub_secrets(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except LLMError as exc:
        print(f"error: {scrub_secrets(str(exc))}", file=sys.stderr)
        return EXIT_FAIL
    except (RecursionError, MemoryError) as exc:  # a hostile file that got past the readers' limits
        print(f"error: the input is too large or too deeply nested to read ({type(exc).__name__})", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted; finished calls stay in the cache", file=sys.stderr)
        return 130


__all__ = ["COMMANDS", "EXIT_FAIL", "EXIT_OK", "EXIT_USAGE", "build_parser", "main"]
