#!/usr/bin/env python3
"""Serving options for the bundled SmolLM2-135M, side by side, in one run on this machine.

Backends (each started, measured and stopped in turn; all OpenAI-compatible on 127.0.0.1):

* ``transformers``     -- ``transformers serve`` as the project used it until now (one request at a time)
* ``transformers-cb``  -- ``transformers serve --continuous-batching``
* ``promptmix``        -- the project's own server (``promptmix_core.llm.serve``)
* ``llama-cpp``        -- ``llama-cpp-python``'s server on the GGUF file, from a separate venv built from
                          source (``--llama-python PATH``; left out without it)

Workloads, the same for each:

1. ``sequential``: 4 requests of 64 tokens one after another (tokens/s of one stream);
2. ``concurrent``: 8 generation prompts of the pipeline (TREC6, 4 classes, k=2) at once, temperature 1,
   up to 200 tokens each (wall time, completion tokens/s);
3. ``settings``: at once, one greedy request (temperature 0) and three sampled ones (temperature 1.2,
   seeds 1-3) on the same prompt; then the greedy request alone. The greedy answer must be the same
   in both, and the sampled ones must differ from it (the continuous-batching bug: every request
   gets the first one's settings);
4. ``relabel``: 20 classifier prompts at once with a ``response_format`` enum of the candidates and
   ``logprobs`` (wall time; share of answers that name a candidate).

    .venv/bin/python benchmarks/local_serving.py [--backends promptmix,transformers,transformers-cb]
        [--llama-python /tmp/pmx-llamacpp/venv/bin/python] [--threads 2]

``--baseline REF --repeats N`` also runs the project's server of commit REF (exported with ``git archive``,
no checkout), interleaved with this tree's, N times each, and prints the ratio of the medians: a change to
the server measured against the previous one in the same run.

    .venv/bin/python benchmarks/local_serving.py --backends promptmix --baseline main --repeats 2
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from promptmix_core.generate import GenerationConfig, make_groups, plan_request  # noqa: E402
from promptmix_core.llm.local import (  # noqa: E402
    HOST, LocalServer, _healthy, bundled_gguf_path, free_port, port_open, prepare_model, server_dir,
)
from promptmix_core.relabel import build_classifier_prompt, label_schema, parse_label  # noqa: E402
from promptmix_core.task import load_task  # noqa: E402
from shared_data import DATASETS  # noqa: E402

DATA = DATASETS / "trec6" / "train.csv"


class LlamaCppServer:
    """llama-cpp-python's OpenAI-compatible server on the bundled GGUF file."""

    def __init__(self, python: str, threads: int, model_id: str):
        self.python, self.threads, self.model = python, threads, model_id
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.startup_seconds = 0.0

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}/v1"

    def __enter__(self):
        log = open(server_dir() / f"llamacpp-{self.port}.log", "wb")
        t0 = time.monotonic()
        self.proc = subprocess.Popen(
            [self.python, "-m", "llama_cpp.server", "--model", str(bundled_gguf_path()), "--host", HOST,
             "--port", str(self.port), "--n_threads", str(self.threads), "--n_ctx", "4096",
             "--model_alias", self.model],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            env={**os.environ, "OMP_NUM_THREADS": str(self.threads)},
        )
        import urllib.request

        while time.monotonic() - t0 < 120:
            try:
                with urllib.request.urlopen(f"{self.base_url}/models", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.25)
        self.startup_seconds = time.monotonic() - t0
        return self

    def __exit__(self, *exc):
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


async def _chat(client, model, messages, **kw):
    t0 = time.perf_counter()
    resp = await client.chat.completions.create(model=model, messages=messages, **kw)
    return resp, time.perf_counter() - t0


async def workloads(base_url: str, model: str, task, structured: bool) -> dict:
    import openai

    client = openai.AsyncOpenAI(base_url=base_url, api_key="local", timeout=900, max_retries=0)
    out: dict = {}
    try:
        prompt = [{"role": "user", "content": "Write three short sentences about the weather in a small town."}]
        # 1. sequential
        t0 = time.perf_counter()
        toks = 0
        for i in range(4):
            r, _ = await _chat(client, model, prompt, max_tokens=64, temperature=0.7, seed=i)
            toks += r.usage.completion_tokens
        dt = time.perf_counter() - t0
        out["sequential"] = {"seconds": round(dt, 2), "tokens": toks, "tokens_per_s": round(toks / dt, 1)}

        # 2. concurrent generation prompts
        cfg = GenerationConfig(per_class=15, seed=0)
        groups = make_groups(task.class_names, cfg.group_size, cfg.seed)
        specs = [plan_request(task, groups, cfg, c, r) for r in range(2) for c in task.class_names][:8]
        t0 = time.perf_counter()
        res = await asyncio.gather(*(_chat(client, model, s.messages, max_tokens=200, temperature=1.0, seed=k)
                                     for k, s in enumerate(specs)))
        dt = time.perf_counter() - t0
        toks = sum(r.usage.completion_tokens for r, _ in res)
        out["concurrent"] = {"requests": len(specs), "seconds": round(dt, 2), "tokens": toks,
                             "tokens_per_s": round(toks / dt, 1)}

        # 3. per-request settings in one batch
        greedy_kw = dict(max_tokens=40, temperature=0.0)
        sampled = [dict(max_tokens=40, temperature=1.2, seed=s) for s in (1, 2, 3)]
        res = await asyncio.gather(_chat(client, model, prompt, **greedy_kw),
                                   *(_chat(client, model, prompt, **kw) for kw in sampled))
        alone, _ = await _chat(client, model, prompt, **greedy_kw)
        g_batch = res[0][0].choices[0].message.content
        g_alone = alone.choices[0].message.content
        samples = [r.choices[0].message.content for r, _ in res[1:]]
        out["settings"] = {"greedy_same_in_batch": g_batch == g_alone,
                           "sampled_differ_from_greedy": sum(s != g_alone for s in samples),
                           "sampled_distinct": len(set(samples))}

        # 4. relabel-style calls
        texts = ["What is the capital of Peru?", "Who wrote Hamlet?", "What does NASA stand for?",
                 "How far is the moon?", "Why is the sky blue?"] * 4
        names = task.class_names[:4]
        t0 = time.perf_counter()
        kws = []
        for i, t in enumerate(texts):
            kw = dict(max_tokens=24, temperature=0.0)
            if structured:
                kw.update(response_format=label_schema(names), logprobs=True)
            kws.append((build_classifier_prompt(task, names, t + f" ({i})"), kw))
        res = await asyncio.gather(*(_chat(client, model, m, **kw) for m, kw in kws), return_exceptions=True)
        dt = time.perf_counter() - t0
        ok = [r for r in res if not isinstance(r, BaseException)]
        named = sum(parse_label(r[0].choices[0].message.content, names, task.class_names)[0] is not None for r in ok)
        out["relabel"] = {"requests": len(texts), "seconds": round(dt, 2), "errors": len(res) - len(ok),
                          "named_a_class": named, "structured": structured}
    finally:
        await client.close()
    return out


class BaselineServer(LocalServer):
    """The project's server from another source tree (``git archive`` of a commit), launched the same way
    but without the lifetime flags an older server does not know."""

    def __init__(self, tree: Path, *args, **kwargs):
        super().__init__(*args, orphan_idle=None, **kwargs)
        self.tree = tree

    def _env(self) -> dict[str, str]:
        env = super()._env()
        env["PYTHONPATH"] = str(self.tree) + os.pathsep + env.get("PYTHONPATH", "")
        return env


def export_tree(ref: str) -> Path:
    import tarfile
    import tempfile

    out = Path(tempfile.mkdtemp(prefix="pmx-serve-baseline-"))
    data = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "promptmix_core"], check=True,
                          capture_output=True).stdout
    import io

    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(out, filter="data")
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backends", default="promptmix,transformers,transformers-cb")
    ap.add_argument("--llama-python", default=None, help="python of a venv with llama-cpp-python[server]")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--baseline", default=None, help="git ref: also run that commit's server, interleaved")
    ap.add_argument("--repeats", type=int, default=1, help="runs of each backend (interleaved)")
    args = ap.parse_args()
    task = load_task(DATA, k=2, seed=0)
    task.classes = task.classes[:4]
    folder = prepare_model()
    backends = args.backends.split(",") + (["llama-cpp"] if args.llama_python else [])
    baseline = export_tree(args.baseline) if args.baseline else None
    if baseline is not None:
        backends = [f"promptmix@{args.baseline}"] + backends
    runs = [(name, i) for i in range(max(1, args.repeats)) for name in backends]
    results = {}
    for name, i in runs:
        t0 = time.perf_counter()
        if name.startswith("promptmix@"):
            ctx = BaselineServer(baseline, folder, backend="promptmix", threads=args.threads)
        elif name == "llama-cpp":
            ctx = LlamaCppServer(args.llama_python, args.threads, folder.name)
        elif name == "transformers-cb":
            ctx = LocalServer(folder, backend="transformers", threads=args.threads, extra_args=["--continuous-batching"])
        else:
            ctx = LocalServer(folder, backend=name, threads=args.threads)
        with ctx as srv:
            start = time.perf_counter() - t0
            structured = name.split("@")[0] in ("promptmix", "llama-cpp")
            r = asyncio.run(workloads(srv.base_url, srv.model, task, structured))
        r["startup_seconds"] = round(start, 1)
        r["load_average"] = round(os.getloadavg()[0], 1)
        results[name if args.repeats <= 1 else f"{name} #{i + 1}"] = r
        print(name, json.dumps(r), flush=True)
    print("\n| backend | start s | 1 stream tok/s | 8 at once: s | tok/s | greedy same in batch | sampled differ | 20 relabels s | named a class |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['startup_seconds']} | {r['sequential']['tokens_per_s']} | {r['concurrent']['seconds']} | "
              f"{r['concurrent']['tokens_per_s']} | {r['settings']['greedy_same_in_batch']} | "
              f"{r['settings']['sampled_differ_from_greedy']}/3 | {r['relabel']['seconds']} | "
              f"{r['relabel']['named_a_class']}/{r['relabel']['requests']} |")
    if baseline is not None:
        import statistics

        def med(name: str, part: str) -> float:
            return statistics.median(r[part]["seconds"] for k, r in results.items() if k.split(" #")[0] == name)

        old_name = f"promptmix@{args.baseline}"
        for part in ("sequential", "concurrent", "relabel"):
            print(f"{part}: median {med('promptmix', part):.2f} s against {med(old_name, part):.2f} s "
                  f"for {old_name}: ratio {med('promptmix', part) / med(old_name, part):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
