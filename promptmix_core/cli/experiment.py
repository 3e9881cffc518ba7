"""``promptmix experiment``: the paper's protocol, methods x seeds on a labelled data folder
(library: :mod:`promptmix_core.experiment`; every default is :class:`ExperimentConfig`'s)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ._common import EXIT_OK


def register(sub: Any) -> None:
    from ..experiment import METHODS, ExperimentConfig as E
    from .train import add_train_args

    p = sub.add_parser("experiment", help="the paper's protocol: methods x seeds on a labelled data folder")
    p.add_argument("--data", required=True, help="folder with train.csv, test.csv (text,label) and classes.json")
    p.add_argument("--k", type=int, default=E.k, help=f"seeds per class (default {E.k})")
    p.add_argument("--methods", default=",".join(METHODS), help=f"comma list from {','.join(METHODS)}")
    p.add_argument("--runs", type=int, default=E.runs, help=f"runs with different seeds (default {E.runs})")
    p.add_argument("--per-class", type=int, default=E.per_class,
                   help=f"generated (and EDA) examples per class (default {E.per_class})")
    p.add_argument("--test-limit", type=int, help="score on a fixed random subset of this many test rows")
    p.add_argument("--classes", help="use only the first N classes (or a comma list of class names)")
    p.add_argument("--group-size", type=int, default=E.group_size, help=f"(default {E.group_size})")
    p.add_argument("--nearest", type=int, default=E.nearest,
                   help=f"classes shown to the relabel classifier (default {E.nearest})")
    p.add_argument("--max-calls", type=int, help="most generation calls per class (default 4 per example + 5)")
    p.add_argument("--examples-per-call", type=int, help="examples asked for per generation call (default: "
                                                          "GenerationConfig's)")
    p.add_argument("--seed", type=int, default=E.base_seed, help=f"seed of the first run (default {E.base_seed})")
    p.add_argument("--val-per-class", type=int, default=E.val_per_class,
                   help="a2-targeted: validation rows per class drawn from train.csv (never a seed, never test; "
                        f"default {E.val_per_class})")
    p.add_argument("--no-reuse", action="store_true", help="retrain even when raw/ has a matching result")
    p.add_argument("--out", required=True, help="results folder")
    g = p.add_argument_group("LLM endpoint (default: OPENAI_BASE_URL, else the bundled local model)")
    g.add_argument("--base-url")
    g.add_argument("--model", help="model name at the endpoint")
    g.add_argument("--concurrency", type=int, help="calls in flight (the bundled local model: at most 16, its batch size)")
    g.add_argument("--timeout", type=float, help="seconds per call")
    add_train_args(p)
    p.set_defaults(func=cmd_experiment)


def config_from_args(args: argparse.Namespace):
    """The :class:`ExperimentConfig` of a command line."""
    from ..experiment import ExperimentConfig
    from .train import train_config_from_args

    classes: Any = None
    if args.classes:
        classes = int(args.classes) if args.classes.isdigit() else [c.strip() for c in args.classes.split(",")]
    gen_opts = {}
    if args.max_calls:
        gen_opts["max_calls_per_class"] = args.max_calls
    if args.examples_per_call:
        gen_opts["examples_per_call"] = args.examples_per_call
    return ExperimentConfig(
        data_dir=args.data, out_dir=args.out, k=args.k, methods=args.methods, runs=args.runs,
        per_class=args.per_class, test_limit=args.test_limit, classes=classes, group_size=args.group_size,
        nearest=args.nearest, base_seed=args.seed, generation_options=gen_opts, val_per_class=args.val_per_class,
        reuse=not args.no_reuse, train=train_config_from_args(args), base_url=args.base_url, model=args.model,
        command="promptmix " + " ".join(getattr(args, "argv", None) or sys.argv[1:]),
    )


def cmd_experiment(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..experiment import LLM_METHODS, format_markdown, run_experiment

    config = config_from_args(args)
    llm_config = None
    if any(m in LLM_METHODS for m in config.methods) and (args.base_url or args.model or args.concurrency
                                                            or args.timeout):
        from ..llm import resolve_llm_config

        llm_config = resolve_llm_config(base_url=args.base_url, model=args.model, concurrency=args.concurrency,
                                        timeout=args.timeout)
    bar = tqdm(total=0, desc="experiment", unit="cell", file=sys.stderr, dynamic_ncols=True,
               bar_format="{desc}: {n}/{total} method x run cells |{bar}| {elapsed}<{remaining} {postfix}")

    def progress(done: int, total: int, label: str) -> None:
        bar.total = total
        bar.n = done
        bar.set_postfix_str(f"last: {label}")
        bar.refresh()

    try:
        summary = run_experiment(config, llm_config=llm_config, log=lambda m: print(m, flush=True), progress=progress)
    finally:
        bar.close()
    print()
    md = format_markdown(summary).split("\n")
    start = next(i for i, ln in enumerate(md) if ln.startswith("| method"))
    for ln in md[start:]:
        if not ln.startswith("|"):
            break
        print(ln)
    return EXIT_OK
