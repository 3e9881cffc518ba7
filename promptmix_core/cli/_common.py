"""What every ``promptmix`` subcommand shares: exit codes, the progress bar, the LLM endpoint flags
and client, and output files written whole (never half-written)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Iterable

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


def default_of(func: Any, name: str) -> Any:
    """The default of ``func``'s keyword ``name``: a flag that feeds a library function takes its
    default from there, never a copy."""
    import inspect

    return inspect.signature(func).parameters[name].default

class Bar:
    """A tqdm progress bar on a terminal; silent otherwise."""

    def __init__(self, desc: str):
        self.bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=0, desc=desc, unit="ex", file=sys.stderr, leave=False)
        self.notice: str | None = None

    def __call__(self, p: dict[str, Any]) -> None:
        notice = p.get("notice")
        if notice != self.notice:  # "rate limited: waiting 120 s, retry 2 of 4": said once, as it starts
            self.notice = notice
            if notice:
                if self.bar is not None:
                    self.bar.write(notice, file=sys.stderr)
                else:
                    print(notice, file=sys.stderr, flush=True)
        if self.bar is None:
            return
        from ..job_status import PHASE_WORDS, Usage  # the words and counts every face uses

        self.bar.total = p.get("total", 0)
        self.bar.n = p.get("done", 0)
        if p.get("phase"):
            self.bar.set_description(PHASE_WORDS.get(str(p["phase"]), "Working"), refresh=False)
        u = Usage.from_progress(p)
        self.bar.set_postfix(calls=u.calls, hits=u.cache_hits, retries=u.retries)
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def add_llm_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("LLM endpoint (default: OPENAI_BASE_URL, else the bundled local model)")
    g.add_argument("--base-url", help="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1")
    g.add_argument("--model", help="model name at the endpoint")
    from ..specs import LLMSpec  # the defaults live in the specs

    g.add_argument("--concurrency", type=int, default=LLMSpec.concurrency,
                   help=f"calls in flight at once (default {LLMSpec.concurrency})")
    g.add_argument("--timeout", type=float, default=LLMSpec.timeout,
                   help=f"seconds per call, from connecting to the last byte (default {LLMSpec.timeout:g})")
    g.add_argument("--retries", type=int, default=LLMSpec.max_retries, help=f"retries per call (default {LLMSpec.max_retries})")
    g.add_argument("--max-retry-after", type=float, default=LLMSpec.max_retry_after,
                   help="longest wait a server's Retry-After may ask for, in seconds "
                        f"(default {LLMSpec.max_retry_after:g})")
    g.add_argument("--cache", help="response cache file (default $PROMPTMIX_CACHE, else "
                                   "$PROMPTMIX_CACHE_DIR/llm_cache.sqlite: the same for app, CLI and experiments)")


def loading_printer():
    """Shows a cold start of the bundled model on stderr: one updating line on a terminal, else each
    step once ("loading the local model, 0 s...")."""
    last_phase = None

    def show(message: str) -> None:
        nonlocal last_phase
        phase = message.rsplit(",", 1)[0]
        if sys.stderr.isatty():  # one line per step, updated in place
            lead = "\n" if last_phase is not None and phase != last_phase else "\r"
            print(lead + message + " " * 8, end="", file=sys.stderr, flush=True)
        elif phase != last_phase:
            print(message, file=sys.stderr, flush=True)
        last_phase = phase

    return show


def llm_client(args: argparse.Namespace, spec=None):
    """The client for a command: its endpoint flags (a spec's when given) and the one LLM cache
    (``--cache`` overrides it)."""
    from ..llm import LLMClient, resolve_llm_config
    from ..llm.cache import ResponseCache, check_cache_path
    from ..paths import llm_cache_path

    cache_path = check_cache_path(args.cache or llm_cache_path())  # a bad --cache fails before a server starts
    if spec is not None:
        config = resolve_llm_config(progress=loading_printer(), **spec.options())
    else:
        config = resolve_llm_config(
            base_url=args.base_url, model=args.model, concurrency=args.concurrency, timeout=args.timeout,
            max_retries=args.retries, max_retry_after=args.max_retry_after, progress=loading_printer(),
        )
    return LLMClient(config, cache=ResponseCache(cache_path))


class OutputError(ValueError):
    """The output path cannot be used (a folder, or another reason that is not the disk's)."""


def check_out(path: Path, what: str = "--out") -> Path:
    """Refuse an output path that cannot be written, before any LLM call is spent on it."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise OutputError(f"{what} {path} is a folder; give a file name, e.g. {path / 'examples.jsonl'}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise output_error(exc, path) from None
    probe = path.with_name(path.name + ".tmp")
    existed = probe.exists()
    try:
        with open(probe, "a", encoding="utf-8"):
            pass
    except OSError as exc:
        raise output_error(exc, path) from None
    finally:
        if not existed:
            try:
                probe.unlink()
            except OSError:
                pass
    return path


def output_error(exc: OSError, path: Path) -> Exception:
    """"the disk holding X is full" / "cannot write to folder X" (exit 1), else the OS's words."""
    from ..store import StoreReadOnlyError, storage_error

    words = storage_error(exc, path)
    if isinstance(words, StoreReadOnlyError):
        return StoreReadOnlyError(f"cannot write to folder {path.parent}: {path.name} cannot be written there")
    return words or OutputError(f"cannot write {path}: {exc.strerror or exc}")


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> int:
    """Write rows to ``path`` through a temporary file (never a half-written ``path``)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    n = 0
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "w", encoding="utf-8") as fh:
            for r in rows:
                fh.write(json.dumps(r, ensure_ascii=False) + "\n")
                n += 1
        os.replace(tmp, path)
    except OSError as exc:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise output_error(exc, path) from None
    return n


def write_partial(args: argparse.Namespace, exc, llm) -> int:
    """A failed or stopped run: one ``error:`` line, what was made in ``OUT.partial.jsonl``."""
    from ..store import StoreError

    partial = Path(str(args.out) + ".partial.jsonl")
    print(f"error: {exc}", file=sys.stderr)
    try:
        n = write_jsonl(partial, (e.to_row() for e in exc.result.examples))
        kept = f"kept {n} examples in {partial}"
    except (OutputError, StoreError) as write_error:
        kept = f"the {len(exc.result.examples)} examples made could not be saved ({write_error})"
    print(f"{kept}; finished calls stay in the cache; {llm.stats.summary()}", file=sys.stderr)
    return EXIT_FAIL


def add_label_source_arg(p: argparse.ArgumentParser) -> None:
    """``--label-source``: which judge gives ``label`` after a relabel (the choices live in the judge)."""
    from ..judge import POLICIES

    p.add_argument("--label-source", choices=POLICIES, default="auto",
                   help="which judge gives 'label' after a relabel: auto (default: the embedding judge with the "
                        "bundled model, or with an endpoint less accurate than it on the held-out seeds; else the "
                        "LLM), judge or llm; both suggestions are written either way")


def judge_rows(args: argparse.Namespace, task, rows: list[dict[str, Any]], llm, relabel_config) -> None:
    """The second judge on relabelled rows: ``judge_label``, ``judge_confidence``, ``label_source``, and
    ``label`` from whichever judge :func:`~promptmix_core.judge.choose_label_source` picks (said on stderr)."""
    from ..judge import EmbeddingJudge, agreement_summary, choose_label_source, label_rows

    judge = EmbeddingJudge(task)
    choice = choose_label_source(task, llm, policy=getattr(args, "label_source", "auto"),
                                 relabel_config=relabel_config, judge=judge)
    label_rows(rows, judge.judge([str(r["text"]) for r in rows]), choice)
    print(f"label source: {choice.source} ({choice.reason}); {agreement_summary(rows)}", file=sys.stderr)

