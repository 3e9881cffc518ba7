#!/usr/bin/env python3
"""The bundled model end to end (run as ``benchmarks/llm_pipeline.py --local``, or directly): 60 boundary
examples (TREC6's first 4 classes x 15, k=2 seeds) plus their relabels, with a warm server, on the project's
batching server (concurrency 16, constrained relabels) and on ``transformers serve`` (concurrency 2, as the
client used it before) in the same run; prints wall times, their ratio, calls, relabel class shares and the
flagged share.

    .venv/bin/python benchmarks/llm_pipeline.py --local [--local-baseline transformers|none] [--per-class 15]
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

from promptmix_core.generate import GenerationConfig, generate  # noqa: E402
from promptmix_core.llm import LLMClient, LLMConfig  # noqa: E402
from promptmix_core.relabel import relabel  # noqa: E402
from promptmix_core.task import load_task  # noqa: E402
from shared_data import DATASETS  # noqa: E402

DATA = DATASETS / "trec6" / "train.csv"
def run_local(backend: str, task, per_class: int, concurrency: int, cache: Path, temperature: float = 1.0,
              top_p: float | None = None) -> dict:
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
        result = generate(task, GenerationConfig(per_class=per_class, seed=0, temperature=temperature, top_p=top_p), llm)
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
    runs = [("promptmix", 16)] + ([("transformers", 2)] if args.local_baseline == "transformers" else [])
    out = []
    for backend, conc in runs:
        load = os.getloadavg()[0]
        r = run_local(backend, task, args.per_class, conc, tmp / f"{backend}.sqlite", args.temperature, args.top_p)
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



def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--per-class", type=int, default=15)
    ap.add_argument("--local-baseline", choices=("transformers", "none"), default="transformers",
                    help="also run transformers serve in the same run (default) or not")
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--top-p", type=float, default=None)
    return main_local(ap.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
