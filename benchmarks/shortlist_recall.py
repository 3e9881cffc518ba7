#!/usr/bin/env python3
"""How much of the relabel classifier's work the embedding shortlist already does.

The relabel classifier (and LLM-direct, the same classifier on the test rows) shows the LLM only the
``--nearest`` classes closest to the text (all-MiniLM-L6-v2 similarity to each class's name and seeds,
``promptmix_core.relabel.nearest_classes``; with no more classes than that, all of them). For the test
rows of an experiment this prints, per run (the run's own k seeds, as ``promptmix experiment`` draws
them):

* *recall*: the share of rows whose true class is in the shortlist (an upper bound for the LLM);
* *top-1*: the accuracy of taking the closest class, with no LLM at all;
* *chance among the shortlist*: recall / nearest, what an LLM that picks at random among its
  candidates would score.

    .venv/bin/python benchmarks/shortlist_recall.py ../shared/datasets/banking77 --test-limit 500
    .venv/bin/python benchmarks/shortlist_recall.py ../shared/datasets/banking77 --classes 10 --test-limit 500
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from promptmix_core.experiment import _test_subset, load_dataset  # noqa: E402
from promptmix_core.embed import embed_texts  # noqa: E402
from promptmix_core.relabel import class_embeddings  # noqa: E402
from promptmix_core.task import task_from_rows  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data", help="a data folder (train.csv, test.csv, classes.json)")
    ap.add_argument("--classes", type=int, help="only the first N classes, as --classes of the experiment")
    ap.add_argument("--k", type=int, default=2)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--base-seed", type=int, default=0)
    ap.add_argument("--nearest", type=int, default=5)
    ap.add_argument("--test-limit", type=int)
    args = ap.parse_args()

    data = load_dataset(args.data, args.classes)
    test = _test_subset(data["test"], args.test_limit)
    texts, gold = [r["text"] for r in test], [r["label"] for r in test]
    vecs = embed_texts(texts)  # the test rows are the same in every run: embedded once
    recall, top1 = [], []
    for r in range(args.runs):
        seed = args.base_seed + r
        task = task_from_rows(data["train"], name=data["name"], descriptions=data["descriptions"], k=args.k,
                              seed=seed)
        # classes by similarity, as nearest_classes ranks them; its shortlist is the first --nearest
        order = np.argsort(-(vecs @ class_embeddings(task).T), axis=1)
        names = task.class_names
        shown = min(args.nearest, len(names))
        recall.append(sum(names.index(g) in row[:shown] for g, row in zip(gold, order)) / len(gold))
        top1.append(sum(g == names[row[0]] for g, row in zip(gold, order)) / len(gold))
        print(f"run {r + 1} (seed {seed}): recall {100 * recall[-1]:.1f} %, top-1 {100 * top1[-1]:.1f} %")

    def ms(xs):
        return f"{100 * statistics.mean(xs):.1f} ± {100 * (statistics.stdev(xs) if len(xs) > 1 else 0):.1f} %"

    print(f"{data['name']}: {len(task.class_names)} classes, {len(test)} test rows, shortlist of {shown}")
    print(f"  true class in the shortlist: {ms(recall)}")
    print(f"  closest class (no LLM):      {ms(top1)}")
    print(f"  chance among the shortlist:  {ms([x / shown for x in recall])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
