#!/usr/bin/env python3
"""LLM pipeline benchmark: generate + relabel a 6-class task with 10 examples per class against the
scripted OpenAI-compatible server with 200 ms latency per call.

Compares, in the same run, the project's client (bounded concurrency, default 8) with a
one-call-at-a-time client (concurrency 1), reports calls and tokens per kept example, the call count
of a re-run (the cache should make it zero), and the bundled model's tokens per second.

    .venv/bin/python benchmarks/llm_pipeline.py [--latency 0.2] [--per-class 10] [--skip-local]

``--local``: the bundled model end to end instead: 60 boundary examples (TREC6's first 4 classes x 15,
k=2 seeds) plus their relabels, with a warm server, on the project's batching server (concurrency 16,
constrained relabels) and on today's ``transformers serve`` (concurrency 2, as the client used it) in
the same run; prints wall times, their ratio, calls, relabel class shares and the flagged share.

    .venv/bin/python benchmarks/llm_pipeline.py --local [--baseline transformers|none] [--per-class 15]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from fake_llm import FakeLLM  # noqa: E402

from promptmix_core.generate import GenerationConfig, generate  # noqa: E402
from promptmix_core.llm import LLMClient, LLMConfig  # noqa: E402
from promptmix_core.relabel import relabel  # noqa: E402
from promptmix_core.task import load_task  # noqa: E402

DATASETS = next((p / "shared" / "datasets" for p in (ROOT.parent, ROOT.parent.parent) if (p / "shared" / "datasets").is_dir()),
                ROOT.parent / "shared" / "datasets")  # a checkout next to shared/, or a worktree one level down
DATA = DATASETS / "trec6" / "train.csv"


def run_once(fake: FakeLLM, task, per_class: int, concurrency: int, cache: Path) -> dict:
    llm = LLMClient(LLMConfig(base_url=fake.base_url, model="fake-model", concurrency=concurrency), cache_path=cache)
    before = fake.calls
    t0 = time.perf_counter()
    result = generate(task, GenerationConfig(per_class=per_class, seed=0), llm)
    t_gen = time.perf_counter() - t0
    relabel(task, result.examples, llm)
    wall = time.perf_counter() - t0
    return {"wall": wall, "gen": t_gen, "kept": result.kept, "server_calls": fake.calls - before, **llm.stats.as_dict()}


def run_local(backend: str, task, per_class: int, concurrency: int, cache: Path) -> dict:
    """Generate + relabel with the bundled model on ``backend``, timed from a warm server."""
    from promptmix_core.flags import flag_summary, flag_texts
    from promptmix_core.llm.local import LocalServer
    from promptmix_core.relabel import relabel_summary

    t0 = time.perf_counter()
    with LocalServer(backend=backend) as srv:
        start = time.perf_counter() - t0
        cfg = LLMConfig(base_url=srv.base_url, model=srv.model, api_key="local", local=True,
                        concurrency=concurrency, timeout=900)
        llm = LLMClient(cfg, cache_path=cache)
        llm.chat([{"role": "user", "content": "Say OK."}], temperature=0.0, max_tokens=2, use_cache=False)  # warm
        calls0 = llm.stats.calls
        t1 = time.perf_counter()
        result = generate(task, GenerationConfig(per_class=per_class, seed=0), llm)
        t_gen = time.perf_counter() - t1
        rel = relabel(task, result.examples, llm)
        wall = time.perf_counter() - t1
    s = relabel_summary(rel)
    fl = flag_summary(flag_texts(task, [e.text for e in result.examples]))
    agree = sum(1 for r in rel if r.status == "agree") / max(1, len(rel))
    return {"backend": backend, "start_s": round(start, 1), "wall_s": round(wall, 1), "generate_s": round(t_gen, 1),
            "relabel_s": round(wall - t_gen, 1), "kept": result.kept, "calls": llm.stats.calls - calls0,
            "completion_tokens": llm.stats.completion_tokens, "unparseable": s["share_unparseable"],
            "agree": round(agree, 3), "label_shares": {k: round(v, 3) for k, v in s["label_shares"].items()},
            "first_listed": s["share_first_listed"], "mean_confidence": s["mean_confidence"],
            "flagged": round(fl["share_flagged"], 3), "flags": fl["by_reason"]}


def main_local(args) -> int:
    task = load_task(DATA, k=2, seed=0)
    task.classes = task.classes[:4]  # 4 classes x per_class boundary examples
    tmp = Path(tempfile.mkdtemp(prefix="pmx-bench-local-"))
    runs = [("promptmix", 16)] + ([("transformers", 2)] if args.baseline == "transformers" else [])
    out = []
    for backend, conc in runs:
        load = os.getloadavg()[0]
        r = run_local(backend, task, args.per_class, conc, tmp / f"{backend}.sqlite")
        r["load_before"] = round(load, 1)
        print(r, flush=True)
        out.append(r)
    print(f"\ntask: TREC6 first 4 classes, k=2, {args.per_class} per class; warm server; generate + relabel; "
          f"load average at the end {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"{'server':<28}{'wall s':>8}{'gen s':>8}{'rel s':>8}{'kept':>6}{'calls':>7}{'unparseable':>13}{'flagged':>9}")
    for r in out:
        print(f"{r['backend']:<28}{r['wall_s']:>8}{r['generate_s']:>8}{r['relabel_s']:>8}{r['kept']:>6}{r['calls']:>7}"
              f"{r['unparseable']:>13.0%}{r['flagged']:>9.0%}")
    if len(out) == 2:
        print(f"speed-up over transformers serve: {out[1]['wall_s'] / out[0]['wall_s']:.1f}x")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--per-class", type=int, default=None, help="default 10 (15 with --local)")
    ap.add_argument("--skip-local", action="store_true", help="skip the bundled model's tokens/s")
    ap.add_argument("--local", action="store_true", help="the bundled model end to end (see the docstring)")
    ap.add_argument("--baseline", choices=("transformers", "none"), default="transformers",
                    help="with --local: also run today's transformers serve (default) or not")
    args = ap.parse_args()
    if args.local:
        args.per_class = args.per_class or 15
        return main_local(args)
    args.per_class = args.per_class or 10
    task = load_task(DATA, k=2, seed=0)  # TREC6: 6 classes, 2 seeds each
    tmp = Path(tempfile.mkdtemp(prefix="pmx-bench-"))
    with FakeLLM(latency=args.latency) as fake:
        base = run_once(fake, task, args.per_class, 1, tmp / "serial.sqlite")
        ours = run_once(fake, task, args.per_class, 8, tmp / "ours.sqlite")
        rerun = run_once(fake, task, args.per_class, 8, tmp / "ours.sqlite")
    n = ours["kept"]
    print(f"task: TREC6, {len(task.classes)} classes, {args.per_class} per class; latency {args.latency * 1000:.0f} ms/call")
    print(f"{'client':<28}{'wall s':>8}{'calls':>7}{'kept':>6}")
    print(f"{'one call at a time':<28}{base['wall']:>8.2f}{base['calls']:>7}{base['kept']:>6}")
    print(f"{'promptmix (concurrency 8)':<28}{ours['wall']:>8.2f}{ours['calls']:>7}{ours['kept']:>6}")
    print(f"speed-up: {base['wall'] / ours['wall']:.1f}x")
    gen_calls = ours["calls"] - n  # relabel makes one call per kept example
    print(f"generation calls per kept example: {gen_calls / n:.2f} (reference implementation: about 4)")
    print(f"all calls per kept example (generate + relabel): {ours['calls'] / n:.2f}; "
          f"tokens per kept example: {ours['tokens'] / n:.0f}")
    print(f"re-run of the same job: {rerun['server_calls']} calls to the server, {rerun['cache_hits']} cache hits, "
          f"{rerun['wall']:.2f} s")
    if not args.skip_local:
        from promptmix_core.llm.local import LocalServer, measure_tokens_per_second

        with LocalServer() as srv:
            m = measure_tokens_per_second(srv.base_url, srv.model, n=3)
        print(f"bundled SmolLM2-135M-Instruct on this CPU: {m}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
