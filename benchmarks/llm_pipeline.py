#!/usr/bin/env python3
"""LLM pipeline benchmarks against the scripted OpenAI-compatible server (tests/fake_llm.py, real HTTP on
127.0.0.1). Three sections, each compared with a baseline in the same run:

pipeline   generate + relabel TREC6 (6 classes, 10 per class) at 200 ms per call: the project's client
           (concurrency 8) against one call at a time; calls and tokens per kept example; a re-run's calls.
scheduler  generate 5 TREC6 classes x 40 per class at 500 ms per call and concurrency 16: wall time against
           the latency bound ceil(calls / concurrency) x latency, calls per kept example, a re-run's calls,
           with every answer complete and with 20 % of answers empty or cut off; and 4 classes x 5: how many
           (partner, alpha) mixes each class gets. Two clients: the real one over HTTP to the scripted
           server (this process), and a stand-in with the same concurrency, first-call probe and cache
           that waits with asyncio.sleep, which measures the scheduling alone, free of the CPU load of
           HTTP on a busy machine. With ``--baseline REV`` the same runs are made with the generation code
           of git revision REV (for example the commit before the scheduler), interleaved with ours; each
           side runs in its own process.
local      the bundled model's tokens per second.
command    (``--command``) the whole ``promptmix generate`` command, 5 TREC6 classes x 40 at 500 ms per call and
           concurrency 16, with and without junk flags, against ceil(calls / 16) x 0.5 s + 1 s of start-up;
           ``--command-baseline REV`` runs REV's code beside ours, interleaved.

``--local`` runs the bundled model end to end instead (``benchmarks/local_pipeline.py``: 60 boundary
examples plus relabels on the project's batching server against ``transformers serve`` in the same run).

    .venv/bin/python benchmarks/llm_pipeline.py [--skip-pipeline] [--skip-scheduler] [--skip-local]
        [--baseline REV] [--repeats 3] [--latency 0.2] [--command [--command-baseline REV]]
"""
from __future__ import annotations

import argparse
import json
import math
import socketserver
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

from shared_data import DATASETS  # benchmarks/shared_data.py

ROOT = Path(__file__).resolve().parent.parent
DATA = DATASETS / "trec6" / "train.csv"
MSG = [{"role": "user", "content": "Say OK."}]

# a client process runs the generation code found under --worker SRC (ours or a baseline's)
_WORKER_SRC = sys.argv[sys.argv.index("--worker") + 1] if "--worker" in sys.argv else None
sys.path.insert(0, _WORKER_SRC or str(ROOT))
sys.path.insert(1, str(ROOT / "tests"))
# the server's default listen queue (5) drops some of 16 simultaneous connects; real endpoints queue more
socketserver.TCPServer.request_queue_size = 128


# ------------------------------------------------------------------------------ client process
class StandInLLM:
    """The client's scheduling contract without HTTP: at most ``concurrency`` calls at once, the first
    call alone until it has answered, a response cache keyed on prompt and sample index, and a fixed
    latency (asyncio.sleep). Answers list the examples asked for; a share ``bad`` of them (drawn from the
    request, so a given request always gets the same answer) come back empty or cut off."""

    def __init__(self, latency: float, bad: float, concurrency: int, seed: int = 0):
        from promptmix_core.llm import LLMConfig
        from promptmix_core.llm.client import UsageStats

        self.config = LLMConfig(base_url="http://stand-in/v1", model="fake-model", concurrency=concurrency)
        self.stats = UsageStats()
        self.latency, self.bad, self.seed = latency, bad, seed
        self.cache: dict = {}
        self._healthy = False
        self._sem = self._probe = None

    async def achat(self, messages, *, temperature=1.0, max_tokens=512, sample_index=0, abort=None, **_):
        import asyncio
        import hashlib
        import re

        from promptmix_core.llm.client import Completion

        key = (json.dumps(messages), temperature, max_tokens, sample_index)
        if key in self.cache:
            self.stats.add(cache_hits=1)
            return self.cache[key]
        if self._sem is None:
            self._sem, self._probe = asyncio.Semaphore(self.config.concurrency), asyncio.Lock()

        async def send():
            async with self._sem:
                self.stats.add(calls=1)
                await asyncio.sleep(self.latency)

        if not self._healthy:
            async with self._probe:
                if not self._healthy:
                    await send()
                    self._healthy = True
                    key_sent = True
                else:
                    key_sent = False
            if not key_sent:
                await send()
        else:
            await send()
        h = int(hashlib.sha256(repr((self.seed, key)).encode()).hexdigest(), 16)
        n = int(re.search(r"Generate a diverse set of (\d+) short", messages[-1]["content"]).group(1))
        lines = [f"{i + 1}. stand-in example {h % 10**12} number {i}" for i in range(n)]
        roll, finish = (h % 10_000) / 10_000, "stop"
        if roll < self.bad / 2:
            lines = []
        elif roll < self.bad:
            lines, finish = lines[: max(1, n * 2 // 3)], "length"
        out = Completion("\n".join(lines), 1, 1, cached=False, finish_reason=finish)
        self.cache[key] = out
        return out

    def run_sync(self, coro):
        import asyncio

        return asyncio.run(coro)


def worker(args: argparse.Namespace) -> int:
    import openai  # noqa: F401 - imported before timing: a one-off cost of the process, not of a job

    from promptmix_core.generate import GenerationConfig, generate
    from promptmix_core.llm import LLMClient, LLMConfig
    from promptmix_core.llm.client import UsageStats
    from promptmix_core.task import Task, load_task

    base = load_task(DATA, k=2, seed=0)
    task = Task(name=base.name, classes=base.classes[: args.classes])
    cache_dir = Path(args.cache_dir)

    def client(cache: str) -> LLMClient:
        return LLMClient(LLMConfig(base_url=args.url, model="fake-model", concurrency=args.concurrency),
                         cache_path=cache_dir / cache)

    def run(llm) -> dict:
        t0 = time.perf_counter()
        res = generate(task, GenerationConfig(per_class=args.per_class, seed=0), llm)
        wall = time.perf_counter() - t0
        mixes = {}
        for e in res.examples:
            mixes.setdefault(e.intended_label, set()).add((e.mixed_with, e.alpha))
        return {"wall": wall, "calls": llm.stats.calls, "cache_hits": llm.stats.cache_hits, "kept": res.kept,
                "examples": [[e.text, e.intended_label] for e in res.examples],
                "min_mixes": min(len(m) for m in mixes.values()),
                "mean_mixes": statistics.mean(len(m) for m in mixes.values())}

    if args.stand_in:
        out = {}
        for kind in ("cold", "warm"):
            llm = StandInLLM(args.stand_in, args.bad, args.concurrency, seed=args.seed)
            llm._healthy = kind == "warm"
            out[kind] = run(llm)
            out[kind].pop("examples")
        print(json.dumps(out))
        return 0
    cold = run(client("cold.sqlite"))  # a fresh client: its first call probes the endpoint alone
    rerun = run(client("cold.sqlite"))  # the same job again: the cache answers
    warm_llm = client("warm.sqlite")  # a client that has answered once (as in the experiment runner)
    warm_llm.chat(MSG, use_cache=False)
    warm_llm.stats = UsageStats()
    warm = run(warm_llm)
    out = {"cold": cold, "warm": warm,
           "rerun": {"calls": rerun["calls"], "wall": rerun["wall"], "same": rerun["examples"] == cold["examples"]}}
    for r in (cold, warm):
        r.pop("examples")
    print(json.dumps(out))
    return 0


# ------------------------------------------------------------------------------------ sections
def section_pipeline(args: argparse.Namespace) -> None:
    from fake_llm import FakeLLM

    from promptmix_core.generate import GenerationConfig, generate
    from promptmix_core.llm import LLMClient, LLMConfig
    from promptmix_core.relabel import relabel
    from promptmix_core.task import load_task

    def run_once(fake, task, concurrency: int, cache: Path) -> dict:
        llm = LLMClient(LLMConfig(base_url=fake.base_url, model="fake-model", concurrency=concurrency),
                        cache_path=cache)
        before = fake.calls
        t0 = time.perf_counter()
        result = generate(task, GenerationConfig(per_class=args.per_class, seed=0), llm)
        t_gen = time.perf_counter() - t0
        relabel(task, result.examples, llm)
        wall = time.perf_counter() - t0
        return {"wall": wall, "gen": t_gen, "kept": result.kept, "server_calls": fake.calls - before,
                **llm.stats.as_dict()}

    task = load_task(DATA, k=2, seed=0)  # TREC6: 6 classes, 2 seeds each
    tmp = Path(tempfile.mkdtemp(prefix="pmx-bench-"))
    with FakeLLM(latency=args.latency) as fake:
        base = run_once(fake, task, 1, tmp / "serial.sqlite")
        ours = run_once(fake, task, 8, tmp / "ours.sqlite")
        rerun = run_once(fake, task, 8, tmp / "ours.sqlite")
    n = ours["kept"]
    print(f"== pipeline: TREC6, {len(task.classes)} classes, {args.per_class} per class; "
          f"latency {args.latency * 1000:.0f} ms/call")
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


def _export(rev: str, into: Path) -> Path:
    """The ``promptmix_core`` package of git revision ``rev`` (no checkout, no worktree)."""
    data = subprocess.run(["git", "archive", rev, "promptmix_core"], cwd=ROOT, check=True,
                          capture_output=True).stdout
    with tarfile.open(fileobj=BytesIO(data)) as tar:
        tar.extractall(into, filter="data")
    return into


def section_scheduler(args: argparse.Namespace) -> None:
    from fake_llm import FakeLLM

    tmp = Path(tempfile.mkdtemp(prefix="pmx-sched-"))
    sides = {"ours": ROOT}
    if args.baseline:
        sides = {f"baseline {args.baseline}": _export(args.baseline, tmp / "baseline"), "ours": ROOT}
    # (label, classes, per class, concurrency, share of answers that come back empty or cut off, over HTTP too)
    scenarios = [
        ("5x40, answers complete", 5, 40, 16, 0.0, True),
        ("5x40, 20% empty/cut off", 5, 40, 16, 0.2, True),
        ("5x40, 65% empty/cut off", 5, 40, 16, 0.65, False),  # a weak model; stand-in only, to keep it short
        ("4x5, answers complete", 4, 5, 16, 0.0, True),
    ]
    latency = 0.5
    results: dict[tuple[str, str, str], list[dict]] = {}

    def client_process(side, src, extra):
        cache_dir = Path(tempfile.mkdtemp(prefix=f"{side.split()[0]}-", dir=tmp))
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", str(src), "--cache-dir", str(cache_dir),
               *extra]
        out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        if out.returncode != 0:
            raise SystemExit(f"{side} failed:\n{out.stderr[-3000:]}")
        return json.loads(out.stdout.strip().splitlines()[-1])

    with FakeLLM(latency=latency, lifetime=3600, faults=("empty", "truncated"), seed=1) as fake:
        for rep in range(args.repeats):
            for label, classes, per_class, conc, bad, http in scenarios:
                fake.fault_rate = bad
                common = ["--classes", str(classes), "--per-class", str(per_class), "--concurrency", str(conc)]
                for side, src in sides.items():  # interleaved: both sides see the same load
                    if http:
                        r = client_process(side, src, ["--url", fake.base_url, *common])
                        for kind in ("cold", "warm"):
                            results.setdefault((label, side, f"http {kind}"), []).append(
                                {**r[kind], "rerun": r["rerun"] if kind == "cold" else None})
                    r = client_process(side, src, ["--stand-in", str(latency), "--bad", str(bad), "--seed", str(rep),
                                                   *common])
                    for kind in ("cold", "warm"):
                        results.setdefault((label, side, f"stand-in {kind}"), []).append({**r[kind], "rerun": None})

    print(f"== scheduler: TREC6 classes, latency {latency * 1000:.0f} ms/call, concurrency 16, {args.repeats} runs "
          f"each (medians), sides interleaved")
    print("bound = ceil(calls / concurrency) x latency; w/ probe: the client's first call goes alone, "
          "(1 + ceil((calls - 1) / concurrency)) x latency; cold = a new client, warm = one that has answered once")
    print(f"{'scenario':<25}{'code':<19}{'client':<15}{'wall s':>7}{'min-max s':>11}{'calls':>6}{'kept':>5}{'calls/kept':>11}"
          f"{'x bound':>8}{'x w/ probe':>11}{'mixes/class':>12}  re-run")
    for label, classes, per_class, conc, _bad, _http in scenarios:
        for side in sides:
            for kind in ("http cold", "http warm", "stand-in cold", "stand-in warm"):
                runs = results.get((label, side, kind))
                if not runs:
                    continue
                ratios, probe_ratios = [], []
                for r in runs:
                    c = r["calls"]
                    ratios.append(r["wall"] / (math.ceil(c / conc) * latency))
                    waves = 1 + math.ceil((c - 1) / conc) if kind.endswith("cold") else math.ceil(c / conc)
                    probe_ratios.append(r["wall"] / (waves * latency))
                calls = statistics.median(r["calls"] for r in runs)
                kept = runs[0]["kept"]
                rerun = ""
                if runs[0]["rerun"] is not None:
                    rerun = f"{max(r['rerun']['calls'] for r in runs)} calls, " + (
                        "same" if all(r["rerun"]["same"] for r in runs) else "DIFFERENT examples")
                mixes = f"{min(r['min_mixes'] for r in runs)}-{statistics.mean(r['mean_mixes'] for r in runs):.1f}"
                walls = [r["wall"] for r in runs]
                print(f"{label:<25}{side:<19}{kind:<15}{statistics.median(walls):>7.2f}"
                      f"{f'{min(walls):.2f}-{max(walls):.2f}':>11}{calls:>6g}{kept:>5}{calls / max(1, kept):>11.3f}{statistics.median(ratios):>8.2f}"
                      f"{statistics.median(probe_ratios):>11.2f}{mixes:>12}  {rerun}")
        print()
    print("mixes/class: fewest and mean distinct (partner class, alpha) pairs among a class's kept examples; "
          "re-run: the same job again on the cold run's cache (calls made, examples the same or not)")


def section_command(args: argparse.Namespace) -> None:
    """The whole ``promptmix generate`` command (interpreter start-up, imports, generation, junk flags,
    writing) as a user runs it, with and without flags, against the bound ceil(calls / concurrency) x
    latency + 1 s of start-up; ours and, with ``--command-baseline REV``, REV's code, interleaved."""
    from fake_llm import FakeLLM

    from promptmix_core.task import Task, load_task, save_task

    tmp = Path(tempfile.mkdtemp(prefix="pmx-cmd-"))
    base = load_task(DATA, k=2, seed=0)
    task_file = tmp / "task.json"
    save_task(Task(name=base.name, classes=base.classes[:5]), task_file)
    sides = {"ours": ROOT}
    if args.command_baseline:
        sides = {f"{args.command_baseline}": _export(args.command_baseline, tmp / "baseline"), "ours": ROOT}
    latency, conc = 0.5, 16
    results: dict[tuple[str, str], list[dict]] = {}
    env = {k: v for k, v in __import__("os").environ.items() if k not in ("OPENAI_BASE_URL", "OPENAI_API_KEY")}
    with FakeLLM(latency=latency, lifetime=3600) as fake:
        for rep in range(args.repeats):
            for flags in ("flags", "no flags"):
                for side, src in sides.items():
                    out = tmp / f"out-{rep}.jsonl"
                    cmd = [sys.executable, "-m", "promptmix_core.cli", "generate", str(task_file), "--out", str(out),
                           "--per-class", "40", "--seed", str(rep), "--base-url", fake.base_url, "--model",
                           "fake-model", "--concurrency", str(conc), "--cache", str(tmp / f"c-{side[:8]}-{rep}-{flags}.sqlite")]
                    if flags == "no flags":
                        cmd.append("--no-flags")
                    before = fake.calls
                    t0 = time.perf_counter()
                    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp,
                                          env={**env, "PYTHONPATH": str(src)})
                    wall = time.perf_counter() - t0
                    if proc.returncode:
                        raise SystemExit(f"{side} failed:\n{proc.stderr[-3000:]}")
                    calls = fake.calls - before
                    import re as _re

                    m = _re.search(r"examples in ([0-9.]+) s", proc.stdout)
                    results.setdefault((side, flags), []).append(
                        {"wall": wall, "calls": calls, "job": float(m.group(1)) if m else float("nan")})
    print(f"== command: `promptmix generate` 5 TREC6 classes x 40 (200 examples), latency {latency * 1000:.0f} ms/call, "
          f"concurrency {conc}, {args.repeats} runs each (medians), sides interleaved")
    print("bound = ceil(calls / concurrency) x latency + 1 s start-up; the whole command, from exec to exit")
    print(f"{'code':<12}{'flags':<10}{'wall s':>8}{'min-max s':>13}{'job s':>7}{'calls':>7}{'bound s':>9}{'x bound':>9}")
    for side in sides:
        for flags in ("flags", "no flags"):
            runs = results[(side, flags)]
            walls = [r["wall"] for r in runs]
            calls = statistics.median(r["calls"] for r in runs)
            bound = math.ceil(calls / conc) * latency + 1.0
            ratios = [r["wall"] / (math.ceil(r["calls"] / conc) * latency + 1.0) for r in runs]
            print(f"{side:<12}{flags:<10}{statistics.median(walls):>8.2f}{f'{min(walls):.2f}-{max(walls):.2f}':>13}"
                  f"{statistics.median(r['job'] for r in runs):>7.2f}{calls:>7g}{bound:>9.2f}{statistics.median(ratios):>9.2f}")


def section_local() -> None:
    from promptmix_core.llm.local import LocalServer, measure_tokens_per_second

    with LocalServer() as srv:
        m = measure_tokens_per_second(srv.base_url, srv.model, n=3)
    print(f"== local: bundled SmolLM2-135M-Instruct on this CPU: {m}")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--latency", type=float, default=0.2, help="pipeline section: seconds per call")
    ap.add_argument("--per-class", type=int, default=10)
    ap.add_argument("--skip-pipeline", action="store_true")
    ap.add_argument("--skip-scheduler", action="store_true")
    ap.add_argument("--skip-local", action="store_true", help="skip the bundled model's tokens/s")
    ap.add_argument("--local", action="store_true",
                    help="the bundled model end to end instead (benchmarks/local_pipeline.py)")
    ap.add_argument("--local-baseline", choices=("transformers", "none"), default="transformers",
                    help="with --local: also run transformers serve in the same run (default) or not")
    ap.add_argument("--baseline", help="git revision whose generation code runs as the scheduler baseline")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--command", action="store_true",
                    help="also time the whole `promptmix generate` command, with and without junk flags")
    ap.add_argument("--command-baseline", help="with --command: git revision whose code runs beside ours")
    # client-process options (internal)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    ap.add_argument("--classes", type=int, default=5, help=argparse.SUPPRESS)
    ap.add_argument("--concurrency", type=int, default=16, help=argparse.SUPPRESS)
    ap.add_argument("--cache-dir", help=argparse.SUPPRESS)
    ap.add_argument("--stand-in", type=float, help=argparse.SUPPRESS)
    ap.add_argument("--bad", type=float, default=0.0, help=argparse.SUPPRESS)
    ap.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args)
    if args.local:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import local_pipeline

        return local_pipeline.main(["--task", "trec6", "--per-class", str(args.per_class if "--per-class" in sys.argv else 15),
                                    "--local-baseline", args.local_baseline])
    if not args.skip_pipeline:
        section_pipeline(args)
    if not args.skip_scheduler:
        section_scheduler(args)
    if args.command:
        section_command(args)
    if not args.skip_local:
        section_local()
    return 0


if __name__ == "__main__":
    sys.exit(main())
