"""Page load and page switch times of the app in Chromium, this checkout against a baseline commit, in
one run (issue 22 item 4: first load < 2 s after start, switches < 1 s warm).

For each tree: ``streamlit run app.py`` on a fresh server (the demo project is created by the app), then
- first load: from ``goto(/)`` to the end of the first script run with the page title drawn (the
  process has imported nothing of the pages yet: the first browser request after start);
- cold switches: each page once through the sidebar navigation (a first visit in the process);
- warm switches: ``--rounds`` more passes over the five pages; each time is from the click to the end
  of the script run with the new page's title drawn.

    python benchmarks/page_load.py                   # this checkout against main
    python benchmarks/page_load.py --baseline HEAD~3 --rounds 3

Prints a table and writes JSON (``--json``). Quote ratios, not absolute times, on a shared machine.
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
sys.path.insert(0, str(ROOT / "tests"))

PAGES = [("generate", "2 · Generate"), ("review", "3 · Review"), ("train", "4 · Train"),
         ("results", "5 · Results"), ("task", "1 · Task")]
DONE = "[data-testid='stApp'][data-test-script-state='notRunning']"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def baseline_tree(rev: str, dest: Path) -> Path:
    """The app and library of commit ``rev`` (``git archive``), for a server of its own."""
    listed = subprocess.run(["git", "ls-tree", "--name-only", rev], cwd=ROOT, capture_output=True, text=True,
                            check=True).stdout.split()
    paths = [p for p in ("app.py", "pages", "app_pages", "promptmix_core", ".streamlit") if p in listed]
    archive = subprocess.run(["git", "archive", rev, *paths], cwd=ROOT, capture_output=True, check=True).stdout
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


def _wait_page(page, title: str, timeout: float = 120_000) -> None:
    page.wait_for_function(
        """t => { const app = document.querySelector("[data-testid='stApp']");
                  const h = document.querySelector("[data-testid='stMain'] h1");
                  return app && app.dataset.testScriptState === 'notRunning' && h && h.textContent.includes(t); }""",
        arg=title, timeout=timeout, polling=20)


def measure(root: Path, work: Path, rounds: int) -> dict:
    from playwright.sync_api import sync_playwright
    from streamlit_server import StreamlitServer

    projects = work / "projects"
    projects.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    server = StreamlitServer(projects, work / "streamlit.log", root=root, start_timeout=120)
    started = time.perf_counter() - t_start
    out: dict = {"server_start_s": round(started, 2), "cold": {}, "warm": {p: [] for p, _ in PAGES}}
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=os.environ.get("PROMPTMIX_CHROMIUM", "/usr/bin/chromium"),
                                        args=ARGS)
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            t0 = time.perf_counter()
            page.goto(server.url)
            _wait_page(page, "1 · Task")
            out["first_load_s"] = round(time.perf_counter() - t0, 3)
            for r in range(rounds + 1):
                for path, title in PAGES:
                    link = page.locator("[data-testid='stSidebarNav'] a").filter(has_text=title)
                    t0 = time.perf_counter()
                    link.click()
                    _wait_page(page, title)
                    dt = round(time.perf_counter() - t0, 3)
                    if r == 0:
                        out["cold"][path] = dt
                    else:
                        out["warm"][path].append(dt)
                    page.wait_for_timeout(300)
            browser.close()
    finally:
        server.stop()
    out["warm_median"] = {k: round(statistics.median(v), 3) for k, v in out["warm"].items()}
    out["warm_median_all"] = round(statistics.median([x for v in out["warm"].values() for x in v]), 3)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", default="main", help="commit to compare with (default main)")
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument("--rounds", type=int, default=2, help="warm passes over the five pages (default 2)")
    ap.add_argument("--ours-first", action="store_true", help="measure this checkout before the baseline")
    ap.add_argument("--json", type=Path, help="write the figures here")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="pmx-pageload-") as tmp:
        work = Path(tmp)
        results = {}
        trees = [("ours", ROOT)]
        if not args.no_baseline:
            base = (f"baseline {args.baseline}", baseline_tree(args.baseline, work / "base"))
            trees.insert(len(trees) if args.ours_first else 0, base)
        for name, root in trees:
            results[name] = measure(root, work / name.replace(" ", "_"), args.rounds)
            print(name, json.dumps(results[name]), flush=True)
    load = os.getloadavg()[0]
    print(f"\nload average {load:.1f} on {os.cpu_count()} cores")
    names = sorted(results, key=lambda n: n != f"baseline {args.baseline}")  # the baseline first
    print(f"{'':22}" + "".join(f"{n:>22}" for n in names) + ("   ratio (base/ours)" if len(names) == 2 else ""))

    def row(label, vals):
        line = f"{label:22}" + "".join(f"{v:>21.2f}s" for v in vals)
        if len(vals) == 2 and vals[1]:
            line += f"   {vals[0] / vals[1]:.2f}x"
        print(line)

    row("first load", [results[n]["first_load_s"] for n in names])
    for path, _ in PAGES:
        row(f"cold switch {path}", [results[n]["cold"][path] for n in names])
    for path, _ in PAGES:
        row(f"warm switch {path}", [results[n]["warm_median"][path] for n in names])
    row("warm switch (median)", [results[n]["warm_median_all"] for n in names])
    if args.json:
        args.json.write_text(json.dumps({"load": load, "results": results}, indent=2), "utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
