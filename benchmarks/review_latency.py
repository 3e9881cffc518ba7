"""Review latency: server time to open the Review page and to record one decision at 1,000, 5,000
and 50,000 generated examples, against the page before the review card (same run, same machine),
and the browser's time from a key to the next card.

    python benchmarks/review_latency.py                      # 1,000 / 5,000 / 50,000, browser included
    python benchmarks/review_latency.py --sizes 1000 --no-browser

Server times come from Streamlit's AppTest, one fresh session per opening, each in its own process:

- *open*: one run of the Review page script in a new session (the sidebar included), median of 3;
- *decision*: what one decision costs. With the card only its fragment reruns: the page records the
  fragment's own run time (apply the batch, counts, history, card data, the card) and that is the
  figure; the whole page run with the decision is shown too (what AppTest runs). The old page reran
  everything on a click of Accept: that whole run is its figure. Median of 5 decisions.

The browser part starts ``streamlit run app.py``, opens each project in Debian's Chromium, measures
the time from opening to the first card, types 40 keys 50 ms apart and reports the key-to-card times
(the browser's Event Timing measurement: key event to the next paint) and the server time of each
answer, as the card records them.

Projects are synthetic (``tests/synthetic_review.py``): the demo task, relabelled examples, and the
prompt and the raw response of each generation call stored with every example kept from it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))


def _median(xs):
    return round(statistics.median(xs), 1) if xs else None


def _p95(xs):
    return round(sorted(xs)[max(0, int(round(0.95 * len(xs))) - 1)], 1) if xs else None


# --------------------------------------------------------------------------- one variant, one size (a process)
def worker(variant: str, root: Path, projects_dir: Path, name: str, opens: int, decisions: int) -> dict:
    os.environ["PROMPTMIX_PROJECTS_DIR"] = str(projects_dir)
    os.chdir(tempfile.mkdtemp())
    sys.path.insert(0, str(root))
    from streamlit.testing.v1 import AppTest

    from app_session import card_data  # tests/app_session.py: what the page handed to its review card

    def session() -> AppTest:
        at = AppTest.from_file(str(root / "app.py"), default_timeout=600)
        at.query_params["project"] = name
        at.run()  # the Task page first: imports and the first run of the process are not counted
        assert not at.exception, at.exception
        return at

    open_ms = []
    at = None
    for _ in range(opens):
        at = session()
        at.switch_page("app_pages/3_review.py")
        t0 = time.perf_counter()
        at.run()
        open_ms.append((time.perf_counter() - t0) * 1000)
        assert not at.exception, at.exception
    full_ms, fragment_ms = [], []
    if variant == "new":
        key = f"rv_card::{name}"

        card = card_data(at)
        items, qid = card["page"]["items"], card["qid"]
        hello = {"project": name, "uid": card.get("project_uid"), "inst": "bench", "tab": "bench-tab", "req": 1, "qid": qid, "want": None, "ops": []}
        at.session_state[key] = {"sync": hello}
        at.run()
        for i in range(decisions):
            ex = items[i]
            op = {"cid": f"bench{i}", "id": ex["id"], "action": "accepted", "base": ex["version"], "tab": "bench-tab"}
            at.session_state[key] = {"sync": {**hello, "req": i + 2, "ops": [op]}}
            t0 = time.perf_counter()
            at.run()
            full_ms.append((time.perf_counter() - t0) * 1000)
            assert not at.exception, at.exception
            last = at.session_state["rv_server_ms"][-1]
            assert last["ops"] == 1
            fragment_ms.append(last["ms"])
            assert card_data(at)["acks"][f"bench{i}"]["ok"]
    else:
        for _ in range(decisions):
            button = next(b for b in at.button if getattr(b, "key", None) == "rv_accept")
            button.click()
            t0 = time.perf_counter()
            at.run()
            full_ms.append((time.perf_counter() - t0) * 1000)
            assert not at.exception, at.exception
    return {"open_ms": open_ms, "decision_full_ms": full_ms, "decision_fragment_ms": fragment_ms}


def run_worker(variant: str, root: Path, projects_dir: Path, name: str, opens: int, decisions: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", variant, "--root", str(root), "--projects", str(projects_dir),
         "--name", name, "--opens", str(opens), "--decisions", str(decisions)],
        capture_output=True, text=True, env=env, timeout=3600,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{variant} worker failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def old_page_tree(dest: Path) -> Path | None:
    """app.py and pages/ as they were before the review card (the commit before the one adding
    pages/_review_card.py; the folder is app_pages/ since)."""
    try:
        first = subprocess.run(["git", "log", "--format=%H", "--", "pages/_review_card.py"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.split()
        if not first:
            return None
        rev = first[-1] + "^"
        archive = subprocess.run(["git", "archive", rev, "app.py", "pages"], cwd=ROOT, capture_output=True,
                                 check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


# --------------------------------------------------------------------------- the browser
def browser_run(projects_dir: Path, names: list[str], keys: int) -> dict:
    from playwright.sync_api import sync_playwright
    from streamlit_server import StreamlitServer

    server = StreamlitServer(projects_dir, projects_dir.parent / "streamlit.log", start_timeout=60)
    out = {}
    try:
        url = server.url
        args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync"]
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=os.environ.get("PROMPTMIX_CHROMIUM", "/usr/bin/chromium"),
                                        args=args)
            # a first visit loads the app's scripts (not counted)
            warm = browser.new_page()
            warm.goto(f"{url}/review?project={names[0]}")
            warm.wait_for_selector(".pmx-card[data-ready='1']", timeout=120_000)
            warm.close()
            for name in names:
                page = browser.new_page(viewport={"width": 1280, "height": 1000})
                t0 = time.perf_counter()
                page.goto(f"{url}/review?project={name}")
                page.wait_for_selector(".pmx-card[data-ready='1']", timeout=120_000)
                first_card = (time.perf_counter() - t0) * 1000
                page.wait_for_selector("[data-testid='stApp'][data-test-script-state='notRunning']")
                page.wait_for_timeout(1000)
                page.evaluate("() => { window.__pmxReview.timings = []; window.__pmxReview.detail = [];"
                              " window.__pmxReview.server = []; }")
                for i in range(keys):
                    page.keyboard.press("a" if i % 4 else "x")
                    page.wait_for_timeout(50)
                deadline = time.time() + 60
                while time.time() < deadline and page.locator(".pmx-card").get_attribute("data-outbox") != "0":
                    page.wait_for_timeout(100)
                page.wait_for_timeout(500)
                w = page.evaluate("() => ({t: window.__pmxReview.timings, d: window.__pmxReview.detail,"
                                  " s: window.__pmxReview.server})")
                saved = page.locator(".pmx-card").get_attribute("data-saved")
                out[name] = {"first_card_ms": round(first_card), "key_to_card_ms": w["t"],
                             "event_timing": sum(d["source"] == "event timing" for d in w["d"]),
                             "server_ms": w["s"], "saved": int(saved or 0)}
                page.close()
            browser.close()
    finally:
        server.stop()
    return out


# --------------------------------------------------------------------------- main
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1000,5000,50000")
    ap.add_argument("--opens", type=int, default=3)
    ap.add_argument("--decisions", type=int, default=5)
    ap.add_argument("--keys", type=int, default=40)
    ap.add_argument("--no-browser", action="store_true")
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument("--json", help="also write the raw figures here")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--root", help=argparse.SUPPRESS)
    ap.add_argument("--projects", help=argparse.SUPPRESS)
    ap.add_argument("--name", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, Path(args.root), Path(args.projects), args.name, args.opens,
                                args.decisions)))
        return 0

    from synthetic_review import make_review_project

    sizes = [int(s) for s in args.sizes.split(",")]
    work = Path(tempfile.mkdtemp(prefix="review-bench-"))
    results: dict = {"sizes": {}, "machine": f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f} at start"}
    try:
        old_root = None if args.no_baseline else old_page_tree(work / "old")
        for n in sizes:
            folder = work / f"projects-{n}"
            folder.mkdir()
            name = f"bench{n}"
            t0 = time.perf_counter()
            make_review_project(folder / f"{name}.pmx", n).close()
            made = time.perf_counter() - t0
            size_mb = (folder / f"{name}.pmx").stat().st_size / 1e6
            row = {"file_mb": round(size_mb, 1), "made_s": round(made, 1)}
            row["new"] = run_worker("new", ROOT, folder, name, args.opens, args.decisions)
            if old_root is not None:
                # the old page on a copy: its decisions change the file
                old_folder = work / f"projects-old-{n}"
                shutil.copytree(folder, old_folder)
                row["old"] = run_worker("old", old_root, old_folder, name, args.opens, args.decisions)
            results["sizes"][n] = row
            new, old = row["new"], row.get("old")
            line = (f"{n:>6} examples ({size_mb:.0f} MB): open {_median(new['open_ms'])} ms, decision "
                    f"{_median(new['decision_fragment_ms'])} ms (fragment; whole page "
                    f"{_median(new['decision_full_ms'])} ms)")
            if old:
                line += (f" | before: open {_median(old['open_ms'])} ms, decision "
                         f"{_median(old['decision_full_ms'])} ms | ratio open "
                         f"{_median(old['open_ms']) / _median(new['open_ms']):.1f}x, decision "
                         f"{_median(old['decision_full_ms']) / _median(new['decision_fragment_ms']):.0f}x")
            print(line, flush=True)
        if not args.no_browser:
            browser_dir = work / "projects-browser"
            browser_dir.mkdir()
            names = []
            for n in sizes:
                shutil.copy2(work / f"projects-{n}" / f"bench{n}.pmx", browser_dir / f"fresh{n}.pmx")
                names.append(f"fresh{n}")
            b = browser_run(browser_dir, names, args.keys)
            results["browser"] = b
            for n, name in zip(sizes, names):
                r = b[name]
                t = r["key_to_card_ms"]
                print(f"{n:>6} examples in Chromium: first card {r['first_card_ms']} ms after opening; key to next "
                      f"card median {_median(t)} ms, p95 {_p95(t)} ms, max {max(t) if t else None} ms over "
                      f"{len(t)} keys ({r['event_timing']} measured by Event Timing); server time per answer "
                      f"median {_median(r['server_ms'])} ms; {r['saved']} of {args.keys} saved", flush=True)
        results["machine"] += f", load {os.getloadavg()[0]:.1f} at the end"
        print(results["machine"])
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=1))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
