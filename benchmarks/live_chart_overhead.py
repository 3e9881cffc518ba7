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
    .venv/bin/python benchmarks/live_chart_overhead.py --page-cost --rounds 3 --baseline-root /tmp/pmx-before

``--page-cost`` measures only what the page costs (server and Chromium CPU) on a simulated running
job, which is far less noisy than worker throughput on a shared machine. ``--boost -10`` (root) gives
the benchmark's processes a larger share of a machine shared with other work (see :func:`boost`).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from shared_data import DATASETS  # noqa: E402
from streamlit_server import StreamlitServer  # noqa: E402

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


BOOST = 0  # --boost: autogroup nice value given to every process of the benchmark (0: none)


def boost(pid: int | None) -> None:
    """On a machine shared with other work: raise the CPU share of one of our processes' autogroup.

    Linux groups each session (``setsid``: the worker, the Streamlit server) into an autogroup and
    shares the CPU fairly *between* autogroups, so ``nice`` alone changes nothing against other
    sessions; ``/proc/PID/autogroup`` sets the group's weight (root only for negative values)."""
    if not BOOST or not pid:
        return
    try:
        Path(f"/proc/{pid}/autogroup").write_text(str(BOOST))
    except OSError as exc:
        print(f"(could not raise the priority of {pid}: {exc})", file=sys.stderr)


def Server(root: Path, projects: Path, log: Path) -> StreamlitServer:
    """The app of checkout ``root`` on a free port (tests/streamlit_server.py), its CPU share raised by ``--boost``."""
    return StreamlitServer(projects, log, root=root, start_timeout=90, on_start=boost)


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
    boost(store.get_job(job_id).pid)
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


def page_cost(roots: list[Path], reps: int, seconds: float) -> int:
    """``--page-cost``: the CPU the page itself costs, without training noise. A simulated running
    job (the demo project; a loss row every 2.5 s, a validation row every 10 s, progress with each)
    is shown on the Train page of each app root in turn; the Streamlit server's and Chromium's CPU
    time is measured over ``seconds`` (after 8 s to load the page)."""
    import threading

    from playwright.sync_api import sync_playwright

    from promptmix_core import projects as pj
    from promptmix_core.demo import DEMO_NAME

    out: dict[str, list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory() as tmpd:
        tmp = Path(tmpd)
        pj.ensure_demo(tmp / "projects")
        store = pj.open_project(DEMO_NAME, tmp / "projects")
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
                "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync"])
            for rep in range(reps):
                for root in (roots if rep % 2 == 0 else roots[::-1]):
                    srv = Server(root, tmp / "projects", tmp / "server.log")
                    job = store.create_job("train", {"label_source": "a2"}, status="running")
                    run = store.create_run({"label_source": "a2"}, name="simulated", job_id=job)
                    store.update_run(run, status="running", device="cpu")
                    store.update_job(job, pid=os.getpid(), progress={"phase": "training", "run_id": run, "step": 0,
                                                                     "total_steps": 1000, "epoch": 0, "epochs": 10})
                    stop = threading.Event()

                    def feed() -> None:
                        step = 0
                        while not stop.is_set():
                            step += 5
                            store.log_metrics(run, step, {"train_loss": 2.0 / (1 + step / 50), "lr": 4e-5})
                            if step % 20 == 0:
                                store.log_metrics(run, step, {"val_accuracy": min(1.0, step / 400),
                                                              "val_macro_f1": min(1.0, step / 450), "val_loss": 1.0})
                            store.update_job(job, progress={"phase": "training", "run_id": run, "step": step,
                                                            "total_steps": 1000, "epoch": step / 100, "epochs": 10})
                            stop.wait(2.5)

                    th = threading.Thread(target=feed, daemon=True)
                    th.start()
                    page = browser.new_page(viewport={"width": 1440, "height": 1000})
                    page.goto(f"{srv.url}/train?project={DEMO_NAME.replace(' ', '+')}")
                    time.sleep(8)
                    t0, s0, b0 = time.time(), cpu_seconds([srv.proc.pid]), cpu_seconds(chromium_pids())
                    time.sleep(seconds)
                    dt = time.time() - t0
                    srv_pct = 100 * (cpu_seconds([srv.proc.pid]) - s0) / dt
                    brw_pct = 100 * (cpu_seconds(chromium_pids()) - b0) / dt
                    page.close()
                    stop.set()
                    th.join()
                    store.update_job(job, status="done")
                    store.update_run(run, status="done")
                    srv.stop()
                    out.setdefault(str(root), []).append((srv_pct, brw_pct))
                    print(f"rep {rep + 1} {root}: server {srv_pct:.1f} %  chromium {brw_pct:.1f} % of a core", flush=True)
            browser.close()
        store.close()
    print("\n| app | Streamlit server CPU (median) | Chromium CPU (median) | page total |\n|---|---|---|---|")
    for root, vals in out.items():
        a, b = statistics.median(v[0] for v in vals), statistics.median(v[1] for v in vals)
        print(f"| {root} | {a:.1f} % | {b:.1f} % | {a + b:.1f} % of a core |")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=None, help="TREC6 folder (train.csv)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=80, help="optimiser steps per run")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--examples", type=int, default=300)
    ap.add_argument("--baseline-root", default=None, help="another checkout whose page to compare with")
    ap.add_argument("--json", default=None)
    ap.add_argument("--page-cost", action="store_true",
                    help="measure only the page's CPU, on a simulated running job (no training)")
    ap.add_argument("--seconds", type=float, default=40.0, help="with --page-cost: measuring window")
    ap.add_argument("--boost", type=int, default=0,
                    help="on a shared machine: autogroup nice for the benchmark's processes, e.g. -10 (root)")
    args = ap.parse_args()
    global BOOST
    BOOST = args.boost
    boost(os.getpid())  # this process, Playwright's driver and Chromium share its autogroup
    if args.page_cost:
        roots = [ROOT] + ([Path(args.baseline_root)] if args.baseline_root else [])
        return page_cost(roots, args.rounds, args.seconds)
    data = Path(args.data) if args.data else (
        DATASETS / "trec6" if (DATASETS / "trec6" / "train.csv").exists() else None)
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
