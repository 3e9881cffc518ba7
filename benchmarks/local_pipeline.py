#!/usr/bin/env python3
"""The offline walk with the bundled model, end to end: boundary examples plus their relabels on the
project's batching server (warm: the server is started and answers one call before the clock starts).

Default task (issue 22): the built-in 5-class banking help-desk demo (``promptmix_core.demo``), 12 per
class = 60 examples, k=2 seeds. ``--task trec6`` is TREC6's first 4 classes (the earlier figure).

``--baseline REF`` runs the same walk with the code of a git ref (e.g. ``e3d0ea1``, the previous
release), checked out by a temporary ``git worktree add --detach`` under /tmp, in a subprocess whose
PYTHONPATH points at it; ours runs in a subprocess too, and the two alternate (``--repeats`` rounds,
the order swapped every round). Each run starts its own private server, so neither reuses the other's
caches. Reported per run: wall (generate + relabel), the split, the junk-flag pass (timed apart: the
embedder load is in it), the server process's CPU seconds (user + sys, less sensitive to other load
than wall time), kept/flagged/unparseable shares, and the ratio ours / baseline.

    .venv/bin/python benchmarks/local_pipeline.py --baseline e3d0ea1 [--repeats 2] [--per-class 12]
    .venv/bin/python benchmarks/local_pipeline.py --local-baseline transformers   # vs transformers serve
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _proc_cpu_s(pid: int) -> float:
    """user + sys CPU seconds of a live process (``/proc/PID/stat``), 0.0 if unreadable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def load_bench_task(name: str):
    if name == "demo":
        from promptmix_core.demo import demo_task
        return demo_task()
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from shared_data import DATASETS
    from promptmix_core.task import load_task
    task = load_task(DATASETS / "trec6" / "train.csv", k=2, seed=0)
    task.classes = task.classes[:4]
    return task


def run_local(backend: str, task, per_class: int, concurrency: int, cache: Path, temperature: float = 1.0,
              top_p: float | None = None, flags: bool = True) -> dict:
    """Generate + relabel with the bundled model on ``backend``, timed from a warm server."""
    import resource

    from promptmix_core.generate import GenerationConfig, generate
    from promptmix_core.llm import LLMClient, LLMConfig
    from promptmix_core.llm.local import LocalServer
    from promptmix_core.relabel import relabel, relabel_summary

    t0 = time.perf_counter()
    with LocalServer(backend=backend) as srv:
        start = time.perf_counter() - t0
        pid = srv.process.pid if srv.process is not None else 0
        cfg = LLMConfig(base_url=srv.base_url, model=srv.model, api_key="local", local=True,
                        concurrency=concurrency, timeout=900)
        llm = LLMClient(cfg, cache_path=cache)
        llm.chat([{"role": "user", "content": "Say OK."}], temperature=0.0, max_tokens=2, use_cache=False)  # warm
        calls0, tok0 = llm.stats.calls, llm.stats.completion_tokens
        cpu0, own0 = _proc_cpu_s(pid), resource.getrusage(resource.RUSAGE_SELF)
        load0 = os.getloadavg()[0]
        t1 = time.perf_counter()
        result = generate(task, GenerationConfig(per_class=per_class, seed=0, temperature=temperature, top_p=top_p), llm)
        t_gen = time.perf_counter() - t1
        cpu_gen = _proc_cpu_s(pid) - cpu0
        rel = relabel(task, result.examples, llm)
        wall = time.perf_counter() - t1
        cpu_srv = _proc_cpu_s(pid) - cpu0
        own1 = resource.getrusage(resource.RUSAGE_SELF)
        load1 = os.getloadavg()[0]
        calls, tokens = llm.stats.calls - calls0, llm.stats.completion_tokens - tok0
        engine = _server_stats(srv.base_url)
    s = relabel_summary(rel)
    fl, t_flag = {"share_flagged": float("nan"), "by_reason": {}}, 0.0
    if flags:
        from promptmix_core.flags import flag_summary, flag_texts
        t2 = time.perf_counter()
        fl = flag_summary(flag_texts(task, [e.text for e in result.examples]))
        t_flag = time.perf_counter() - t2
    agree = sum(1 for r in rel if r.status == "agree") / max(1, len(rel))
    n = max(1, len(result.examples))
    return {"backend": backend, "start_s": round(start, 1), "wall_s": round(wall, 1), "generate_s": round(t_gen, 1),
            "relabel_s": round(wall - t_gen, 1), "flag_s": round(t_flag, 1),
            "server_cpu_s": round(cpu_srv, 1), "server_cpu_gen_s": round(cpu_gen, 1),
            "client_cpu_s": round((own1.ru_utime + own1.ru_stime) - (own0.ru_utime + own0.ru_stime), 1),
            "load": round((load0 + load1) / 2, 1),
            "kept": result.kept, "calls": calls, "completion_tokens": tokens,
            "tokens_per_example": round(tokens / n, 1), "unparseable": s["share_unparseable"],
            "agree": round(agree, 3), "label_shares": {k: round(v, 3) for k, v in s["label_shares"].items()},
            "first_listed": s["share_first_listed"], "mean_confidence": s["mean_confidence"],
            "flagged": round(fl["share_flagged"], 3), "flags": fl["by_reason"], "engine": engine}


def _server_stats(base_url: str) -> dict:
    """The server's own counters (``GET /v1/stats``: decoding steps, tokens, prompt tokens run and
    reused, rows scored), or {} where the server has none."""
    import urllib.request

    try:
        with urllib.request.urlopen(base_url.rstrip("/") + "/stats", timeout=10) as r:
            return json.loads(r.read())
    except Exception:  # noqa: BLE001 - an older server or another backend
        return {}


def _print_table(out: list[dict], label: str = "backend") -> None:
    print(f"{label:<16}{'wall s':>8}{'gen s':>8}{'rel s':>8}{'flag s':>8}{'srv cpu s':>11}{'load':>6}{'kept':>6}"
          f"{'calls':>7}{'tok/ex':>8}{'unparseable':>13}{'flagged':>9}{'agree':>7}")
    for r in out:
        print(f"{r.get('side', r['backend']):<16}{r['wall_s']:>8}{r['generate_s']:>8}{r['relabel_s']:>8}{r['flag_s']:>8}"
              f"{r['server_cpu_s']:>11}{r['load']:>6}{r['kept']:>6}{r['calls']:>7}{r['tokens_per_example']:>8}"
              f"{r['unparseable']:>13.0%}{r['flagged']:>9.0%}{r['agree']:>7.0%}")


def main_local(args) -> int:
    """Backends side by side in this process (the project's server vs ``transformers serve``)."""
    sys.path.insert(0, str(ROOT))
    task = load_bench_task(args.task)
    tmp = Path(tempfile.mkdtemp(prefix="pmx-bench-local-"))
    runs = [("promptmix", 16)] + ([("transformers", 2)] if args.local_baseline == "transformers" else [])
    out = []
    for backend, conc in runs:
        r = run_local(backend, task, args.per_class, conc, tmp / f"{backend}.sqlite", args.temperature, args.top_p)
        print(r, flush=True)
        out.append(r)
    print(f"\ntask: {args.task}, {len(task.classes)} classes, k=2, {args.per_class} per class; warm server; "
          f"load average at the end {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    _print_table(out)
    if len(out) == 2:
        print(f"speed-up over transformers serve: {out[1]['wall_s'] / out[0]['wall_s']:.1f}x")
    return 0


def main_worker(args) -> int:
    """One walk with the code under ``--code-root`` (the PYTHONPATH the parent set); prints one JSON line."""
    sys.path.insert(0, args.code_root)
    task = load_bench_task(args.task)
    with tempfile.TemporaryDirectory(prefix="pmx-walk-") as tmp:
        r = run_local("promptmix", task, args.per_class, 16, Path(tmp) / "cache.sqlite", args.temperature, args.top_p)
    print("RESULT " + json.dumps(r), flush=True)
    return 0


def _worktree(ref: str) -> tuple[Path, str]:
    sha = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", ref], check=True, capture_output=True,
                         text=True).stdout.strip()
    path = Path(tempfile.mkdtemp(prefix=f"pmx-walk-base-{sha}-"))
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(path), sha], check=True,
                   capture_output=True)
    return path, sha


def _run_side(code_root: Path, args) -> dict:
    env = dict(os.environ, PYTHONPATH=str(code_root))
    env.pop("PROMPTMIX_LOCAL_BACKEND", None)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--code-root", str(code_root),
           "--task", args.task, "--per-class", str(args.per_class), "--temperature", str(args.temperature)]
    if args.top_p is not None:
        cmd += ["--top-p", str(args.top_p)]
    p = subprocess.run(cmd, env=env, cwd=str(code_root), capture_output=True, text=True)
    for line in p.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise RuntimeError(f"walk with {code_root} failed (exit {p.returncode}):\n{p.stderr[-3000:]}")


def main_baseline(args) -> int:
    """Ours against ``--baseline REF``, interleaved, each in its own process and server."""
    base_root, sha = _worktree(args.baseline)
    sides = {"ours": ROOT, f"base {sha}": base_root}
    out: list[dict] = []
    try:
        order = list(sides)
        for rep in range(args.repeats):
            for side in (order if rep % 2 == 0 else order[::-1]):
                r = _run_side(sides[side], args)
                r["side"], r["repeat"] = side, rep
                print(json.dumps(r), flush=True)
                out.append(r)
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base_root)], capture_output=True)
    print(f"\ntask: {args.task}, {args.per_class} per class, k=2; warm private server per run, "
          f"{args.repeats} round(s) interleaved; {os.cpu_count()} CPUs; load average now {os.getloadavg()[0]:.1f}")
    _print_table(out, "side")
    med = {s: {k: statistics.median(r[k] for r in out if r["side"] == s) for k in ("wall_s", "server_cpu_s")}
           for s in sides}
    base = f"base {sha}"
    for k in ("wall_s", "server_cpu_s"):
        print(f"median {k}: ours {med['ours'][k]:.1f}, base {med[base][k]:.1f}, "
              f"ours/base {med['ours'][k] / max(1e-9, med[base][k]):.2f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", choices=("demo", "trec6"), default="demo",
                    help="demo: the 5-class banking help-desk demo (default); trec6: TREC6's first 4 classes")
    ap.add_argument("--per-class", type=int, default=12)
    ap.add_argument("--baseline", default=None, help="git ref to run side by side (e.g. e3d0ea1)")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--local-baseline", choices=("transformers", "none"), default="none",
                    help="without --baseline: also run transformers serve in the same process")
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--top-p", type=float, default=None)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--code-root", default=str(ROOT), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return main_worker(args)
    if args.baseline:
        return main_baseline(args)
    return main_local(args)


if __name__ == "__main__":
    sys.exit(main())
