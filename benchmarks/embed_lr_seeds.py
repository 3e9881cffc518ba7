"""The quick student (frozen MiniLM embeddings + logistic regression) on the k = 2 seeds alone, with the
experiment's seed draws (runs 0, 1, 2) and fixed test rows: the figure to hold against "SetFit on the
seeds" in docs/RESULTS.md. No LLM.

    .venv/bin/python benchmarks/embed_lr_seeds.py --test-limit 500
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from shared_data import DATASETS  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--test-limit", type=int, default=500)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--C", type=float, default=10.0)
    args = ap.parse_args()
    from promptmix_core.experiment import _test_subset, load_dataset
    from promptmix_core.task import task_from_rows
    from promptmix_core.training.embed_lr import train_embed_lr
    from promptmix_core.training.metrics import mean_std

    for d, cls in (("subj", None), ("twitter_complaints", None), ("trec6", None), ("banking77", 10)):
        data = load_dataset(DATASETS / d, cls)
        test = _test_subset(data["test"], args.test_limit)
        accs = []
        for seed in range(args.runs):
            task = task_from_rows(data["train"], name=data["name"], descriptions=data["descriptions"], k=2, seed=seed)
            rows = task.seed_rows()
            res = train_embed_lr({"C": args.C}, [r["text"] for r in rows], [r["label"] for r in rows],
                                 label_names=task.class_names, test_texts=[r["text"] for r in test],
                                 test_labels=[r["label"] for r in test])
            accs.append(res.test_metrics["accuracy"])
        m, s = mean_std(accs)
        print(json.dumps({"data": d, "classes": cls, "accuracy_mean": round(m, 4), "accuracy_std": round(s, 4),
                          "runs": accs}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
