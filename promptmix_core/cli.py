"""The ``promptmix`` command line: a thin face on the same core as the app."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Iterable

from .labelled import read_labelled_file
from .task import TaskError, load_task

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


class _Bar:
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
        self.bar.total = p.get("total", 0)
        self.bar.n = p.get("done", 0)
        self.bar.set_postfix(calls=p.get("calls", 0), hits=p.get("cache_hits", 0), retries=p.get("retries", 0))
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _add_llm_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("LLM endpoint (default: OPENAI_BASE_URL, else the bundled local model)")
    g.add_argument("--base-url", help="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1")
    g.add_argument("--model", help="model name at the endpoint")
    from .specs import LLMSpec  # the defaults live in the specs

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


def _loading_printer():
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


def _llm(args: argparse.Namespace, spec=None):
    """The client for a command: its endpoint flags (a spec's when given) and the one LLM cache
    (``--cache`` overrides it)."""
    from .llm import LLMClient, resolve_llm_config
    from .llm.cache import ResponseCache, check_cache_path
    from .paths import llm_cache_path

    cache_path = check_cache_path(args.cache or llm_cache_path())  # a bad --cache fails before a server starts
    if spec is not None:
        config = resolve_llm_config(progress=_loading_printer(), **spec.options())
    else:
        config = resolve_llm_config(
            base_url=args.base_url, model=args.model, concurrency=args.concurrency, timeout=args.timeout,
            max_retries=args.retries, max_retry_after=args.max_retry_after, progress=_loading_printer(),
        )
    return LLMClient(config, cache=ResponseCache(cache_path))


class OutputError(ValueError):
    """The output path cannot be used (a folder, or another reason that is not the disk's)."""


def _check_out(path: Path, what: str = "--out") -> Path:
    """Refuse an output path that cannot be written, before any LLM call is spent on it."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise OutputError(f"{what} {path} is a folder; give a file name, e.g. {path / 'examples.jsonl'}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _output_error(exc, path) from None
    probe = path.with_name(path.name + ".tmp")
    existed = probe.exists()
    try:
        with open(probe, "a", encoding="utf-8"):
            pass
    except OSError as exc:
        raise _output_error(exc, path) from None
    finally:
        if not existed:
            try:
                probe.unlink()
            except OSError:
                pass
    return path


def _output_error(exc: OSError, path: Path) -> Exception:
    """"the disk holding X is full" / "cannot write to folder X" (exit 1), else the OS's words."""
    from .store import StoreReadOnlyError, storage_error

    words = storage_error(exc, path)
    if isinstance(words, StoreReadOnlyError):
        return StoreReadOnlyError(f"cannot write to folder {path.parent}: {path.name} cannot be written there")
    return words or OutputError(f"cannot write {path}: {exc.strerror or exc}")


def _write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> int:
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
        raise _output_error(exc, path) from None
    return n


def _write_partial(args: argparse.Namespace, exc, llm) -> int:
    """A failed or stopped run: one ``error:`` line, what was made in ``OUT.partial.jsonl``."""
    from .store import StoreError

    partial = Path(str(args.out) + ".partial.jsonl")
    print(f"error: {exc}", file=sys.stderr)
    try:
        n = _write_jsonl(partial, (e.to_row() for e in exc.result.examples))
        kept = f"kept {n} examples in {partial}"
    except (OutputError, StoreError) as write_error:
        kept = f"the {len(exc.result.examples)} examples made could not be saved ({write_error})"
    print(f"{kept}; finished calls stay in the cache; {llm.stats.summary()}", file=sys.stderr)
    return EXIT_FAIL


def cmd_generate(args: argparse.Namespace) -> int:
    from .generate import GenerationCancelled, GenerationFailed, generate
    from .specs import GenerationSpec

    task = load_task(args.task, k=args.k, seed=args.task_seed)
    spec = GenerationSpec.from_cli_args(args)  # the same spec the app's Generate page builds
    out = _check_out(Path(args.out))  # a folder or a read-only place fails now, not after every call
    if args.pairs or args.pairs_from:  # a targeted round: only the named (or most confused) class pairs
        from .confusion import resolve_pairs

        store = None
        if args.project and str(args.pairs_from or "").strip().isdigit():
            from .store import ProjectStore

            store = ProjectStore(args.project, create=False)
        pairs = resolve_pairs(task.class_names, pairs=args.pairs, source=args.pairs_from, store=store,
                              top=args.pairs_top)
        spec = GenerationSpec.from_dict({**spec.to_dict(), "pairs": [list(p) for p in pairs]})
        print("targeted round: " + ", ".join(f"{a} mixed with {b}" for a, b in pairs), file=sys.stderr)
    if not args.no_flags or spec.relabel:
        # the junk flags and the judge need the embedder: torch and MiniLM load in a thread while the
        # LLM calls are in flight, not after them
        from .embed import preload_in_background

        preload_in_background()
    if args.project:
        return _generate_into_project(args, task, spec, out)
    llm = _llm(args, spec.llm)
    bar = _Bar("generate")
    t0 = time.perf_counter()
    try:
        result = generate(task, spec.generation_config(), llm, progress=bar)
    except (GenerationFailed, GenerationCancelled) as exc:
        bar.close()
        return _write_partial(args, exc, llm)
    bar.close()
    rows = [e.to_row() for e in result.examples]
    if spec.relabel:
        from .relabel import relabel

        rel = relabel(task, result.examples, llm, spec.relabel_config(), progress=_Bar("relabel"))
        for row, r in zip(rows, rel):
            row.update(llm_label=r.llm_label, relabel_status=r.status, llm_confidence=r.confidence)
        _judge_rows(args, task, rows, llm, spec.relabel_config())
    if not args.no_flags:
        from .flags import flag_summary, flag_texts

        reasons = flag_texts(task, [r["text"] for r in rows])
        for row, reason in zip(rows, reasons):
            row["flag"] = reason
        fs = flag_summary(reasons)
        print(f"flagged {fs['flagged']} of {fs['texts']} as probable junk (kept, with a 'flag' reason)",
              file=sys.stderr)
    _write_jsonl(out, rows)
    print(
        f"kept {result.kept}/{result.requested} examples in {time.perf_counter() - t0:.1f} s; {llm.stats.summary()}; "
        f"{result.calls_per_kept:.2f} calls and {result.tokens_per_kept:.0f} tokens per kept example"
    )
    return EXIT_OK


def _generate_into_project(args, task, spec, out: Path) -> int:
    """``generate --project``: the same job as the app's (spec stored, lifecycle, examples and, with
    ``--relabel``, relabels saved in the project), run in this process; resumable with ``--job``.

    One generation job per project, CLI or app alike: while another runs, this is refused naming it
    (:class:`~promptmix_core.store.JobBusyError`) before any LLM call."""
    from .generate import GenerationCancelled, GenerationFailed
    from .lifecycle import JobLifecycle
    from .pipeline import run_generation
    from .store import ProjectStore, StoreError

    store = ProjectStore(args.project)
    if args.job:
        job = store.get_job(args.job)
        if job is None or job.kind != "generate":
            raise ValueError(f"{args.project} has no generation job #{args.job}")
    # this process is the job's worker: a crash is found by pid, so the job never blocks the app
    life = JobLifecycle.claim(store, "generate", spec.to_dict(), status="running", pid=os.getpid(),
                              job_id=args.job or None, origin="cli")
    try:
        if store.load_task() is None:
            store.save_task(task)
        llm = _llm(args, spec.llm)
    except BaseException as exc:
        try:
            life.failed(str(exc) or type(exc).__name__)
        except StoreError:
            pass
        raise
    bar = _Bar("generate")
    t0 = time.perf_counter()
    try:
        with life.running("running from the command line", also=bar) as ctx:
            outcome = run_generation(store, life.job_id, spec, ctx, llm, label_policy=args.label_source)
            life.finish(outcome.summary)
    except (GenerationFailed, GenerationCancelled) as exc:  # the job is marked; what was made is kept
        bar.close()
        return _write_partial(args, exc, llm)
    bar.close()
    result = outcome.result
    relabels = {e.slot: e for e in store.list_examples(job_id=life.job_id)}
    from .judge import LABEL_SOURCE_META, LabelSource, chosen_label

    choice = LabelSource.from_dict(json.loads(store.get_meta(LABEL_SOURCE_META) or "{}"))
    if choice is not None:
        print(f"label source: {choice.source} ({choice.reason})", file=sys.stderr)
    rows = []
    for e in result.examples:
        row = e.to_row()
        stored = relabels.get(e.slot)
        if spec.relabel and stored is not None:
            row.update(llm_label=stored.llm_label, relabel_status=stored.relabel_status,
                       llm_confidence=stored.llm_confidence, judge_label=stored.judge_label,
                       judge_confidence=stored.judge_confidence)
            row["label"] = stored.label
            row["label_source"] = chosen_label(choice.source if choice else "llm", stored.judge_label,
                                               stored.llm_label, stored.intended_label)[1]
        if stored is not None:
            row["flag"] = stored.flag  # the job flagged its examples (pipeline.flag_job)
        rows.append(row)
    _write_jsonl(out, rows)
    print(f"job #{life.job_id} in {args.project}: {outcome.summary}", file=sys.stderr)
    print(
        f"kept {result.kept}/{result.requested} examples in {time.perf_counter() - t0:.1f} s; {llm.stats.summary()}; "
        f"{result.calls_per_kept:.2f} calls and {result.tokens_per_kept:.0f} tokens per kept example"
    )
    return EXIT_OK


def cmd_relabel(args: argparse.Namespace) -> int:
    from .relabel import relabel, relabel_summary
    from .specs import RelabelSpec

    task = load_task(args.task)
    rows = read_labelled_file(args.input, require_label=False, keep_fields=True)
    out = _check_out(Path(args.out))  # before any LLM call
    for r in rows:
        r.setdefault("intended_label", r.get("label"))
    spec = RelabelSpec.from_dict({"nearest": args.nearest, "llm": {
        "base_url": args.base_url, "model": args.model, "concurrency": args.concurrency,
        "timeout": args.timeout, "max_retries": args.retries, "max_retry_after": args.max_retry_after}})
    llm = _llm(args, spec.llm)
    bar = _Bar("relabel")
    t0 = time.perf_counter()
    from .embed import preload_in_background

    preload_in_background()  # the judge's embedder loads while the LLM answers
    results = relabel(task, rows, llm, spec.relabel_config(), progress=bar)
    bar.close()
    for row, r in zip(rows, results):
        row["llm_label"] = r.llm_label
        row["relabel_status"] = r.status
        row["llm_confidence"] = r.confidence
    _judge_rows(args, task, rows, llm, spec.relabel_config())
    _write_jsonl(out, rows)
    s = relabel_summary(results)
    print(
        f"relabelled {s['relabelled']} in {time.perf_counter() - t0:.1f} s: {s['share_changed']:.0%} changed, "
        f"{s['share_unparseable']:.0%} unparseable; {llm.stats.summary()}"
    )
    return EXIT_OK


def _judge_rows(args: argparse.Namespace, task, rows: list[dict[str, Any]], llm, relabel_config) -> None:
    """The second judge on relabelled rows: ``judge_label``, ``judge_confidence``, ``label_source``, and
    ``label`` from whichever judge :func:`~promptmix_core.judge.choose_label_source` picks (said on stderr)."""
    from .judge import EmbeddingJudge, agreement_summary, choose_label_source, label_rows

    judge = EmbeddingJudge(task)
    choice = choose_label_source(task, llm, policy=getattr(args, "label_source", "auto"),
                                 relabel_config=relabel_config, judge=judge)
    label_rows(rows, judge.judge([str(r["text"]) for r in rows]), choice)
    print(f"label source: {choice.source} ({choice.reason}); {agreement_summary(rows)}", file=sys.stderr)


def cmd_flag(args: argparse.Namespace) -> int:
    """Flag probable junk in a project (saved in the store) or in a JSONL file (written to --out)."""
    from .flags import flag_project_examples, flag_summary, flag_texts

    if args.project:
        from .store import ProjectStore

        store = ProjectStore(args.project, create=False)
        task = store.load_task()
        if task is None:
            raise TaskError("the project has no task yet")
        s = flag_project_examples(store, task, job_id=args.job)
        print(f"flagged {s['flagged']} of {s['texts']} examples as probable junk: "
              + ", ".join(f"{k} {v}" for k, v in s["by_reason"].items()))
        if args.reject:
            n = store.reject_flagged(job_id=args.job, reviewer="cli")
            print(f"rejected {n} flagged examples that were pending review")
        return EXIT_OK
    if not args.input or not args.task or not args.out:
        raise TaskError("give --project, or an input JSONL with --task and --out")
    task = load_task(args.task)
    rows = _read_jsonl(Path(args.input))
    reasons = flag_texts(task, [str(r["text"]) for r in rows])
    for row, reason in zip(rows, reasons):
        row["flag"] = reason
    _write_jsonl(Path(args.out), rows)
    s = flag_summary(reasons)
    print(f"flagged {s['flagged']} of {s['texts']}: " + ", ".join(f"{k} {v}" for k, v in s["by_reason"].items()))
    return EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    from .task import validate

    task = load_task(args.task, k=args.k, seed=args.task_seed)
    warnings = validate(task)
    print(f"{task.name}: {len(task.classes)} classes, {sum(len(c.examples) for c in task.classes)} seeds")
    for w in warnings:
        print(f"warning: {w}")
    if args.out:
        from .task import save_task

        save_task(task, args.out)
        print(f"saved {args.out}")
    return EXIT_OK


def _add_label_source_arg(p: argparse.ArgumentParser) -> None:
    from .judge import POLICIES

    p.add_argument("--label-source", choices=POLICIES, default="auto",
                   help="which judge gives 'label' after a relabel: auto (default: the embedding judge with the "
                        "bundled model, or with an endpoint less accurate than it on the held-out seeds; else the "
                        "LLM), judge or llm; both suggestions are written either way")


def build_parser() -> argparse.ArgumentParser:
    from .specs import GenerationSpec as G  # the defaults live in the specs

    ap = argparse.ArgumentParser(prog="promptmix", description="PromptMix Studio command line")
    ap.add_argument("--version", action="version", version="promptmix 0.1.0")
    sub = ap.add_subparsers(dest="command", required=True)

    g = sub.add_parser("generate", help="step 1: generate borderline examples (A1 labels)")
    g.add_argument("task", help="task file (JSON/YAML) or labelled CSV/JSONL (text,label)")
    g.add_argument("--out", required=True, help="output JSONL")
    g.add_argument("--per-class", type=int, required=True, help="examples per class (exactly)")
    g.add_argument("--group-size", type=int, default=G.group_size, help=f"classes per prompt group (default {G.group_size})")
    g.add_argument("--no-mixup", action="store_true", help="plain examples of Ci, no mixup")
    g.add_argument("--seed", type=int, default=G.seed)
    g.add_argument("--examples-per-call", type=int, default=G.examples_per_call,
                   help=f"examples asked for per call (default {G.examples_per_call}; at most half of --per-class, "
                   "so every class gets at least two calls, each with its own partner class and alpha)")
    g.add_argument("--max-calls", type=int, help="most calls per class (default 4 per example + 5)")
    g.add_argument("--k", type=int, help="draw k seeds per class from a larger labelled file")
    g.add_argument("--task-seed", type=int, default=0, help="seed for drawing the k seeds")
    g.add_argument("--relabel", action="store_true", help="also relabel (step 2) before writing")
    g.add_argument("--nearest", type=int, default=G.nearest, help="classes shown to the relabeler")
    _add_label_source_arg(g)
    g.add_argument("--project", help="also record into this project file (resumable)")
    g.add_argument("--job", type=int, help="with --project: resume this job id")
    g.add_argument("--no-flags", action="store_true", help="do not flag probable junk (flag column)")
    g.add_argument("--pairs", help='a targeted round: only these class pairs, "a:b,c:d" (a mixed with b, ...)')
    g.add_argument("--pairs-from", metavar="RUN_OR_JSON",
                   help="a targeted round on the pairs a student confuses most: a run id of --project, or a JSON "
                        "file (run metrics, a confusion matrix {labels, matrix}, or a list of pairs)")
    g.add_argument("--pairs-top", type=int, default=3, help="with --pairs-from: how many confused pairs (default 3)")
    _add_llm_args(g)
    g.set_defaults(func=cmd_generate)

    f = sub.add_parser("flag", help="flag probable junk among generated examples (meta-text, near-copies, noise, off-topic)")
    f.add_argument("input", nargs="?", help="generated examples (JSONL with text), with --task and --out")
    f.add_argument("--task", help="task file the examples belong to")
    f.add_argument("--out", help="output JSONL (each row gains 'flag': the reason, '' when fine)")
    f.add_argument("--project", help="flag the examples in this project file instead (saved there)")
    f.add_argument("--job", type=int, help="with --project: only this generation job's examples")
    f.add_argument("--reject", action="store_true", help="with --project: also reject the flagged ones still pending")
    f.set_defaults(func=cmd_flag)

    r = sub.add_parser("relabel", help="step 2: relabel generated examples with an LLM classifier (A2)")
    r.add_argument("input", help="generated examples (JSONL with text and label)")
    r.add_argument("--task", required=True, help="task file the examples belong to")
    r.add_argument("--out", required=True, help="output JSONL")
    r.add_argument("--nearest", type=int, default=G.nearest, help=f"classes shown per example (default {G.nearest})")
    _add_label_source_arg(r)
    _add_llm_args(r)
    r.set_defaults(func=cmd_relabel)

    c = sub.add_parser("check", help="validate a task file or labelled file (and optionally convert it)")
    c.add_argument("task")
    c.add_argument("--k", type=int)
    c.add_argument("--task-seed", type=int, default=0)
    c.add_argument("--out", help="write the task as JSON or YAML")
    c.set_defaults(func=cmd_check)

    for module in ("promptmix_core.llm.local", "promptmix_core.experiment", "promptmix_core.training.cli",
                   "promptmix_core.export", "promptmix_core.report"):
        try:
            mod = __import__(module, fromlist=["register_cli"])
        except ImportError:
            continue
        if hasattr(mod, "register_cli"):
            mod.register_cli(sub)
    return ap


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from .llm import LLMConfigError, LLMError
    from .store import JobBusyError, StoreError, StoreFullError, StoreReadOnlyError, scrub_secrets

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


if __name__ == "__main__":
    sys.exit(main())
