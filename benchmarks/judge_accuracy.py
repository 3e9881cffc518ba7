#!/usr/bin/env python3
"""Judge accuracy: the no-LLM embedding judges against the LLM relabel, on real test texts.

For each data set and run (the run's own k seeds, drawn as ``promptmix experiment`` draws them), the
fixed ``--test-limit`` test rows are labelled by

* ``centroid``: the closest class by embedding of name, description and seeds (``promptmix_core.judge``),
  with its confidence (softmax with a temperature fitted on held-out seeds);
* ``logreg``: the quick student, a logistic regression on the same embeddings (the default judge: it
  measured best here);
* ``centroid, no descriptions``: the relabel shortlist's own ranking (names and seeds);
* ``LLM``: the relabel classifier (the bundled model unless ``--base-url``), on the first ``--llm-limit``
  of those rows (it is the slow one), with the judge's accuracy on the same rows beside it;

and the mean confidence of the centroid judge on the rows it got right and wrong (calibration). The
test rows carry no label into the relabel (no written-for class among the candidates).

    .venv/bin/python benchmarks/judge_accuracy.py --runs 3 --k 2 --test-limit 200 --llm-limit 40 \\
        --write-results docs/RESULTS.md

``--cards`` runs the issue's check instead: ``promptmix relabel`` (the whole command, a subprocess,
offline: no endpoint configured) on 120 real test texts of 8 confusable Banking77 card classes with
2 seeds each, timed, scored against their true classes.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from shared_data import DATASETS  # noqa: E402

SETS = ("subj", "twitter_complaints", "trec6", "banking77")
CARD_CLASSES = ["card_arrival", "card_delivery_estimate", "card_not_working", "card_payment_fee_charged",
                "card_payment_not_recognised", "declined_card_payment", "lost_or_stolen_card",
                "virtual_card_not_working"]
BEGIN, END = "<!-- judge-accuracy:begin -->", "<!-- judge-accuracy:end -->"


def _ms(xs) -> str:
    xs = [x for x in xs if x is not None]
    if not xs:
        return "-"
    sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
    return f"{100 * statistics.mean(xs):.1f} ± {100 * sd:.1f}"


def run_sets(args) -> dict:
    from promptmix_core.experiment import _test_subset, load_dataset
    from promptmix_core.judge import EmbeddingJudge
    from promptmix_core.task import task_from_rows

    llm = None
    out: dict = {}
    for name in args.sets:
        data = load_dataset(DATASETS / name, args.classes if name == "banking77" else None)
        test = _test_subset(data["test"], args.test_limit)
        texts, gold = [r["text"] for r in test], [r["label"] for r in test]
        res = out.setdefault(name, {"classes": len(data["descriptions"]) or len({r["label"] for r in data["train"]}),
                                    "rows": len(test), "runs": []})
        for r in range(args.runs):
            seed = args.base_seed + r
            task = task_from_rows(data["train"], name=data["name"], descriptions=data["descriptions"], k=args.k,
                                  seed=seed)
            res["classes"] = len(task.classes)
            row: dict = {"seed": seed}
            t0 = time.perf_counter()
            for key, kw in (("centroid", {"method": "centroid"}), ("logreg", {"method": "logreg"}),
                            ("centroid_nodesc", {"method": "centroid", "description": False})):
                judge = EmbeddingJudge(task, **kw)
                js = judge.judge(texts)
                ok = [j.label == g for j, g in zip(js, gold)]
                row[key] = sum(ok) / len(ok)
                if key == "logreg":
                    row["lr_conf_right"] = statistics.mean([j.confidence for j, k in zip(js, ok) if k] or [0])
                    row["lr_conf_wrong"] = statistics.mean([j.confidence for j, k in zip(js, ok) if not k] or [0])
                    logreg_ok = ok
                if key == "centroid":
                    row["conf_right"] = statistics.mean([j.confidence for j, k in zip(js, ok) if k] or [0])
                    row["conf_wrong"] = statistics.mean([j.confidence for j, k in zip(js, ok) if not k] or [0])
                    row["temperature"] = judge.temperature
                    row["judge_seed_loo"] = judge.seed_accuracy()
                    centroid_ok = ok
            row["judge_s"] = time.perf_counter() - t0
            if args.llm_limit:
                from promptmix_core.relabel import RelabelConfig, classify_texts

                if llm is None:
                    from promptmix_core.llm import LLMClient, resolve_llm_config
                    from promptmix_core.paths import llm_cache_path

                    llm = LLMClient(resolve_llm_config(base_url=args.base_url, model=args.model),
                                    cache_path=llm_cache_path())
                n = min(args.llm_limit, len(texts))
                sub = random.Random(f"judge-llm-{name}").sample(range(len(texts)), n)
                t1 = time.perf_counter()
                labels = classify_texts(task, [texts[i] for i in sub], llm, RelabelConfig(include_intended=False))
                row["llm_s"] = time.perf_counter() - t1
                row["llm_rows"] = n
                row["llm"] = sum(lab == gold[i] for lab, i in zip(labels, sub)) / n
                row["centroid_on_llm_rows"] = sum(centroid_ok[i] for i in sub) / n
                row["logreg_on_llm_rows"] = sum(logreg_ok[i] for i in sub) / n
                row["llm_model"] = llm.config.model
            res["runs"].append(row)
            print(f"{name} run {r + 1}: " + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                                                     for k, v in row.items()), flush=True)
    return out


def table(out: dict, args) -> str:
    lines = ["| data set | test rows | centroid judge | logreg student (default) | centroid, names + seeds only | "
             "LLM relabel (rows) | logreg / centroid on the LLM's rows | confidence right / wrong: logreg; centroid | "
             "judge s / LLM s per run |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, res in out.items():
        runs = res["runs"]
        g = lambda k: [r.get(k) for r in runs]  # noqa: E731
        llm = f"{_ms(g('llm'))} ({runs[0].get('llm_rows', 0)})" if runs[0].get("llm") is not None else "-"
        conf = (f"{statistics.mean(g('lr_conf_right')):.2f} / {statistics.mean(g('lr_conf_wrong')):.2f}; "
                f"{statistics.mean(g('conf_right')):.2f} / {statistics.mean(g('conf_wrong')):.2f}")
        secs = f"{statistics.mean(g('judge_s')):.1f} / " + (f"{statistics.mean(g('llm_s')):.0f}"
                                                           if runs[0].get("llm_s") else "-")
        label = f"{name} ({res['classes']} classes)"
        lines.append(f"| {label} | {res['rows']} | {_ms(g('centroid'))} | {_ms(g('logreg'))} | "
                     f"{_ms(g('centroid_nodesc'))} | {llm} | {_ms(g('logreg_on_llm_rows'))} / {_ms(g('centroid_on_llm_rows'))} | {conf} | {secs} |")
    return "\n".join(lines)


def cards(args) -> int:
    """The issue's check: ``promptmix relabel`` offline on 8 Banking77 card classes."""
    from promptmix_core.experiment import load_dataset
    from promptmix_core.task import task_from_rows

    data = load_dataset(DATASETS / "banking77", CARD_CLASSES)
    task = task_from_rows(data["train"], name="banking77-cards", descriptions=data["descriptions"], k=2,
                          seed=args.base_seed)
    test = sorted(data["test"], key=lambda r: (r["label"], r["text"]))
    test = random.Random("judge-cards").sample(test, min(args.cards_rows, len(test)))
    tmp = Path(tempfile.mkdtemp(prefix="pmx-judge-cards-"))
    (tmp / "task.json").write_text(json.dumps(task.to_dict()))
    with open(tmp / "in.jsonl", "w") as fh:
        for r in test:
            fh.write(json.dumps({"text": r["text"]}) + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "PROMPTMIX_API_KEY")}
    env["PYTHONPATH"] = str(ROOT)
    cmd = [sys.executable, "-m", "promptmix_core.cli", "relabel", str(tmp / "in.jsonl"), "--task", str(tmp / "task.json"),
           "--out", str(tmp / "out.jsonl"), "--cache", str(tmp / "fresh-cache.sqlite")]  # every call made again
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode:
        print(proc.stderr[-3000:])
        return 1
    rows = [json.loads(line) for line in open(tmp / "out.jsonl")]
    gold = [r["label"] for r in test]
    right = sum(r["label"] == g for r, g in zip(rows, gold))
    llm_right = sum(r.get("llm_label") == g for r, g in zip(rows, gold))
    named = sum(r["label"] in task.class_names for r in rows)
    print(proc.stdout.strip())
    print(f"banking77, 8 card classes ({', '.join(CARD_CLASSES)}), 2 seeds each (seed {args.base_seed}), "
          f"{len(rows)} test texts: label right {right}/{len(rows)} = {100 * right / len(rows):.1f} %, "
          f"LLM relabel right {llm_right}/{len(rows)} = {100 * llm_right / len(rows):.1f} %, "
          f"rows naming a class {named}/{len(rows)}; whole command {wall:.1f} s; "
          f"label source: {rows[0].get('label_source')}")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sets", nargs="+", default=list(SETS))
    ap.add_argument("--classes", type=int, help="banking77: only the first N classes (default all 77)")
    ap.add_argument("--k", type=int, default=2)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--base-seed", type=int, default=0)
    ap.add_argument("--test-limit", type=int, default=200)
    ap.add_argument("--llm-limit", type=int, default=40, help="test rows relabelled by the LLM per run (0: none)")
    ap.add_argument("--base-url")
    ap.add_argument("--model")
    ap.add_argument("--write-results", help="put the table into this markdown file between the judge-accuracy markers")
    ap.add_argument("--cards", action="store_true", help="the 8-class Banking77 check through `promptmix relabel`")
    ap.add_argument("--cards-rows", type=int, default=120)
    args = ap.parse_args()
    if args.cards:
        return cards(args)
    t0 = time.perf_counter()
    out = run_sets(args)
    tab = table(out, args)
    print(tab)
    print(f"total {time.perf_counter() - t0:.0f} s")
    if args.write_results:
        p = Path(args.write_results)
        text = p.read_text()
        if BEGIN in text and END in text:
            head, rest = text.split(BEGIN, 1)
            _, tail = rest.split(END, 1)
            p.write_text(head + BEGIN + "\n" + tab + "\n" + END + tail)
        else:
            print(f"{p} has no {BEGIN} / {END} markers; table not written", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
