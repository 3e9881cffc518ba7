#!/usr/bin/env python3
"""LLM pipeline benchmark: generate + relabel a 6-class task with 10 examples per class against the
scripted OpenAI-compatible server with 200 ms latency per call.

Compares, in the same run, the project's client (bounded concurrency, default 8) with a
one-call-at-a-time client (concurrency 1), reports calls and tokens per kept example, the call count
of a re-run (the cache should make it zero), and the bundled model's tokens per second.

    .venv/bin/python benchmarks/llm_pipeline.py [--latency 0.2] [--per-class 10] [--skip-local]
"""
from __future__ import annotations

import argparse
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

DATA = ROOT.parent / "shared" / "datasets" / "trec6" / "train.csv"


def run_once(fake: FakeLLM, task, per_class: int, concurrency: int, cache: Path) -> dict:
    llm = LLMClient(LLMConfig(base_url=fake.base_url, model="fake-model", concurrency=concurrency), cache_path=cache)
    before = fake.calls
    t0 = time.perf_counter()
    result = generate(task, GenerationConfig(per_class=per_class, seed=0), llm)
    t_gen = time.perf_counter() - t0
    relabel(task, result.examples, llm)
    wall = time.perf_counter() - t0
    return {"wall": wall, "gen": t_gen, "kept": result.kept, "server_calls": fake.calls - before, **llm.stats.as_dict()}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--per-class", type=int, default=10)
    ap.add_argument("--skip-local", action="store_true", help="skip the bundled model's tokens/s")
    args = ap.parse_args()
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
