#!/usr/bin/env python3
"""The tables of docs/RESULTS.md from finished ``promptmix experiment`` folders.

    .venv/bin/python benchmarks/results_report.py results/subj results/twitter_complaints results/trec6 \
        results/banking77 [--data-root ../shared/datasets]

Reads each folder's ``results.json`` (accuracy and macro-F1 per method, mean and sample std over runs),
``raw/<method>/run<r>.json`` (each run's seeds) and ``cache/seed<s>_<kind>.json`` (each run's generated
examples with their relabels and LLM use), and prints Markdown:

* accuracy and macro-F1 per method and data set (mean +- std, runs);
* per data set and kind of generation (mixup, no mixup, targeted round): examples kept per run, the
  share of relabels that changed the label, the share flagged as probable junk (``promptmix_core.flags``,
  computed here on the stored texts with the run's seeds), LLM calls and tokens per kept example
  (generation + relabel), and the seconds spent generating and relabelling.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from promptmix_core.flags import flag_texts  # noqa: E402
from promptmix_core.task import Task, read_descriptions, task_from_rows  # noqa: E402
from shared_data import DATASETS  # noqa: E402



def pct(mean: float | None, std: float | None) -> str:
    if mean is None:
        return "-"
    return f"{100 * mean:.1f} ± {100 * (std or 0.0):.1f}"


def run_task(folder: Path, data_root: Path, seed: int) -> Task | None:
    """The task of the run with this seed: the data set's classes (those with seeds) and the run's seeds."""
    rows = None
    for rec in sorted((folder / "raw").glob("*/run*.json")):
        d = json.loads(rec.read_text())
        if d.get("seed") == seed and d.get("seeds"):
            rows = d["seeds"]
            break
    if rows is None:
        return None
    name = json.loads((folder / "results.json").read_text())["settings"]["data"]
    classes_json = data_root / name / "classes.json"
    return task_from_rows(rows, name=name,
                          descriptions=read_descriptions(classes_json) if classes_json.exists() else None)


def generation_rows(folder: Path, data_root: Path) -> list[dict]:
    out = []
    for path in sorted((folder / "cache").glob("seed*_*.json")):
        seed_part, kind = path.stem.split("_", 1)
        g = json.loads(path.read_text())
        rows = g.get("examples") or []
        task = run_task(folder, data_root, int(seed_part[4:]))
        flags = flag_texts(task, [r["text"] for r in rows]) if (task is not None and rows) else []
        rs = g.get("relabel_summary") or {}
        use = [g.get("generation_llm") or {}, g.get("relabel_llm") or {}]
        out.append({"kind": "targeted" if kind.startswith("targeted") else kind, "kept": len(rows),
                    "changed": rs.get("share_changed"), "flagged": (sum(1 for f in flags if f) / len(flags)) if flags else None,
                    "calls": use[0].get("calls", 0), "rel_calls": use[1].get("calls", 0),
                    "tokens": sum(u.get("tokens", 0) for u in use),
                    "gen_s": g.get("generation_s") or 0.0, "rel_s": g.get("relabel_s") or 0.0})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folders", nargs="+", type=Path)
    ap.add_argument("--data-root", type=Path, default=DATASETS)
    args = ap.parse_args(argv)
    summaries = {f: json.loads((f / "results.json").read_text()) for f in args.folders}
    names = [s["settings"]["data"] + (f" ({s['settings']['classes']} classes)") for s in summaries.values()]
    methods: dict[str, str] = {}
    for s in summaries.values():
        for m in s["methods"]:
            methods.setdefault(m["method"], m["title"])
    print("## Accuracy / macro-F1 (%, mean ± std over runs; runs in brackets)\n")
    print("| method | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for key, title in methods.items():
        cells = []
        for s in summaries.values():
            m = next((m for m in s["methods"] if m["method"] == key), None)
            cells.append("-" if m is None else f"{pct(m['accuracy_mean'], m['accuracy_std'])} / "
                                               f"{pct(m['macro_f1_mean'], m['macro_f1_std'])} ({m['runs']})")
        print(f"| {title} | " + " | ".join(cells) + " |")
    print("\n## Generated examples (per run, mean over runs)\n")
    print("| data set | generation | runs | kept | relabels changed | flagged | generation calls / kept "
          "| tokens / kept (with relabels) | generate s | relabel s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for f, s in summaries.items():
        rows = generation_rows(f, args.data_root)
        for kind in ("mixup", "nomixup", "targeted"):
            rs = [r for r in rows if r["kind"] == kind]
            if not rs:
                continue

            def mean(key, rs=rs):
                vals = [r[key] for r in rs if r[key] is not None]
                return statistics.fmean(vals) if vals else None

            kept = sum(r["kept"] for r in rs)
            changed, flagged = mean("changed"), mean("flagged")
            print(f"| {s['settings']['data']} | {kind} | {len(rs)} | {mean('kept'):.0f} | "
                  f"{'-' if changed is None else f'{100 * changed:.0f} %'} | "
                  f"{'-' if flagged is None else f'{100 * flagged:.0f} %'} | "
                  f"{sum(r['calls'] for r in rs) / max(1, kept):.2f} | {sum(r['tokens'] for r in rs) / max(1, kept):.0f} | "
                  f"{mean('gen_s'):.0f} | {mean('rel_s'):.0f} |")
    print("\n## Wall time of the invocation that finished each table\n")
    for f, s in summaries.items():
        st = s.get("llm_stats_this_invocation") or {}
        print(f"- {s['settings']['data']}: {s.get('seconds', 0) / 60:.1f} min, {st.get('calls', 0)} LLM calls, "
              f"{st.get('tokens', 0):,} tokens; complete: {s.get('complete')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
