"""Does watching a run slow it down? Worker samples/s with the Train page open in a browser vs closed.

One Streamlit server (``streamlit run app.py``) serves a project with a task and generated
examples (TREC6 questions). Each round starts the same training job (``jobs.start_job``: the real
background worker, MiniLM, fixed number of steps) twice: once with no browser tab, once with
headless Chromium (Playwright) showing the Train page and its live charts for the whole run. The
order alternates between rounds so machine noise hits both alike. Reported: the worker's training
samples/s (its own timed loop), and the CPU time the Streamlit server and Chromium used while it ran.

With ``--baseline-root DIR`` a second server runs the app from another checkout (e.g. the page
before a change, from ``git worktree add``) and each round gets a third run with that page open;
the worker is this checkout's in every case, so only the page differs.

    .venv/bin/python benchmarks/live_chart_overhead.py --rounds 3
    .venv/bin/python benchmarks/live_chart_overhead.py --rounds 3 --baseline-root /tmp/pmx-before
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CHROMIUM = os.environ.get("PROMPTMIX_CHROMIUM", "/usr/bin/chromium")
CLK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of the processes (children that exited are not counted)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total / CLK


def descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            kids = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            kids = []
        todo.extend(int(k) for k in kids)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, root: Path, projects: Path, log: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "PROMPTMIX_"))}
        env.update({"PROMPTMIX_PROJECTS_DIR": str(projects), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                    "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": str(root)})
        self.log = open(log, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(root / "app.py"), "--server.headless", "true",
             "--server.port", str(self.port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false",
             "--server.fileWatcherType", "none"],
            cwd=root, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + 90
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2) as r:
                    if r.read() == b"ok":
                        return
            except OSError:
                time.sleep(0.3)
        self.stop()
        raise RuntimeError("streamlit did not start")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


def make_project(projects: Path, name: str, data: Path, n_examples: int):
    from promptmix_core import projects as pj
    from promptmix_core.task import ClassSpec, Task, normalize_text

    with open(data / "train.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    random.Random(0).shuffle(rows)
    labels = sorted({r["label"] for r in rows})
    seeds = {lab: [r["text"] for r in rows if r["label"] == lab][:2] for lab in labels}
    task = Task("bench", [ClassSpec(lab, f"questions about {lab}", seeds[lab]) for lab in labels])
    store = pj.create_project(name, projects, task=task)
    job = store.create_job("generate", {}, status="done")
    used = {t for v in seeds.values() for t in v}
    gen = [r for r in rows if r["text"] not in used][:n_examples]
    store.add_examples([{"job_id": job, "slot": f"s{i}", "text": r["text"], "norm_text": normalize_text(r["text"]),
                         "intended_label": r["label"]} for i, r in enumerate(gen)])
    for e in store.list_examples():
        store.set_relabel(e.id, llm_label=e.intended_label, status="agree")
    return store


def one_run(store, cfg: dict, server: Server | None, browser, project: str, label: str) -> dict:
    from promptmix_core import jobs

    page = None
    job_id = jobs.start_job(store.path, "train", cfg)
    if server is not None:
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        page.goto(f"{server.url}/train?project={project}")
    # measure while the worker is in its training loop (after model loading)
    deadline = time.time() + 900
    while time.time() < deadline:
        job = store.get_job(job_id)
        if not job.active or (job.progress or {}).get("step", 0) >= 1:
            break
        time.sleep(0.2)
    watched = [server.proc.pid] if server is not None else []
    browser_pids = chromium_pids() if page is not None else []
    t0, c_server0, c_browser0 = time.time(), cpu_seconds(watched), cpu_seconds(browser_pids)
    while store.get_job(job_id).active and time.time() < deadline:
        time.sleep(0.5)
    wall = time.time() - t0
    c_server, c_browser = cpu_seconds(watched) - c_server0, cpu_seconds(browser_pids) - c_browser0
    if page is not None:
        page.close()
    job = store.get_job(job_id)
    run = [r for r in store.list_runs(limit=5) if r.job_id == job_id][0]
    if job.status != "done":
        raise RuntimeError(f"job {job_id} ended {job.status}: {job.message}")
    fm = run.final_metrics
    return {"condition": label, "samples_per_s": fm["train_samples_per_s"], "train_s": fm["train_time_s"],
            "steps": fm["steps"], "wall_s": round(wall, 1), "server_cpu_pct": round(100 * c_server / wall, 1) if wall else 0,
            "browser_cpu_pct": round(100 * c_browser / wall, 1) if wall else 0}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=None, help="TREC6 folder (train.csv)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=80, help="optimiser steps per run")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--examples", type=int, default=300)
    ap.add_argument("--baseline-root", default=None, help="another checkout whose page to compare with")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    data = Path(args.data) if args.data else next(
        (q / "shared" / "datasets" / "trec6" for q in (ROOT.parent, ROOT.parent.parent)
         if (q / "shared" / "datasets" / "trec6" / "train.csv").exists()), None)
    if data is None:
        raise SystemExit("no TREC6 copy found; give --data")
    from playwright.sync_api import sync_playwright

    cfg = {"label_source": "a2", "val_fraction": 0.2,
           "train": {"epochs": 1000, "max_steps": args.steps, "min_steps": 0, "batch_size": args.batch_size,
                     "max_length": 64, "log_every": 5, "eval_every": 20}}
    results: list[dict] = []
    with tempfile.TemporaryDirectory() as tmpd:
        tmp = Path(tmpd)
        projects = tmp / "projects"
        store = make_project(projects, "bench", data, args.examples)
        servers = {"open": Server(ROOT, projects, tmp / "server.log")}
        if args.baseline_root:
            servers["open (baseline page)"] = Server(Path(args.baseline_root), projects, tmp / "server-base.log")
        try:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
                    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync"])
                conds = ["closed", *servers]
                for r in range(args.rounds):
                    order = conds if r % 2 == 0 else list(reversed(conds))
                    for c in order:
                        res = one_run(store, cfg, servers.get(c), browser, "bench", c)
                        res["round"] = r + 1
                        results.append(res)
                        print(f"round {r + 1} {c:22s} {res['samples_per_s']:7.1f} samples/s  train {res['train_s']:6.1f} s  "
                              f"server {res['server_cpu_pct']:5.1f} % cpu  browser {res['browser_cpu_pct']:5.1f} % cpu",
                              flush=True)
                browser.close()
        finally:
            for s in servers.values():
                s.stop()
    print()
    base = statistics.median(x["samples_per_s"] for x in results if x["condition"] == "closed")
    print(f"| page | worker samples/s (median of {args.rounds}) | vs closed | Streamlit server CPU | Chromium CPU |")
    print("|---|---|---|---|---|")
    for c in dict.fromkeys(x["condition"] for x in results):
        rs = [x for x in results if x["condition"] == c]
        sps = statistics.median(x["samples_per_s"] for x in rs)
        srv = statistics.median(x["server_cpu_pct"] for x in rs)
        brw = statistics.median(x["browser_cpu_pct"] for x in rs)
        print(f"| {c} | {sps:.1f} | {sps / base:.2f}x ({(sps / base - 1) * 100:+.1f} %) | "
              f"{srv:.0f} % of a core | {brw:.0f} % of a core |")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "results": results}, indent=2))
    return 0


def chromium_pids() -> list[int]:
    """Chromium processes started by this benchmark (through Playwright's driver), all of them."""
    out = []
    for pid in descendants(os.getpid()):
        try:
            if b"chrom" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]:
                out.append(pid)
        except OSError:
            continue
    return out


if __name__ == "__main__":
    raise SystemExit(main())
