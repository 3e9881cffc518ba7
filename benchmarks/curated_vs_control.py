"""What the curated, unreviewed generated examples do to SetFit when the embedding judge labelled them
(the bundled LLM): for each run of ``promptmix experiment --methods setfit,default`` (its generation
cache and SetFit bodies, read from OUT/<data set>/cache), the default's seeds-only control against
the same body's head fitted on the seeds plus the examples the curation keeps without the
judge-labelled rule (``CurationConfig(judge_labelled=True)``), and two other ways of using them:
only those the seeds' own head already agrees with, and each at half weight. Prints the accuracy
difference per run (points, on the experiment's test rows) and the mean and worst over runs. This
is the evidence for ``training/curate.py``'s judge-labelled rule (docs/RESULTS.md, "default pipeline").

    .venv/bin/python benchmarks/curated_vs_control.py --results results-default
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

SETS = {"subj": None, "twitter_complaints": None, "trec6": None, "banking77": 10}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", required=True, help="the experiments' --out root (one folder per data set)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--test-limit", type=int, default=200)
    args = ap.parse_args()
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from promptmix_core.experiment import _test_subset, load_dataset
    from promptmix_core.task import task_from_rows
    from promptmix_core.training.curate import CurationConfig
    from promptmix_core.training.data import build_training_data
    from promptmix_core.training.setfit_student import SetFitConfig, body_rows, cached_body
    from promptmix_core.training.students import is_trusted, student_settings

    variants = ("curated", "curated, seeds' head agrees", "curated, half weight")
    deltas: dict[str, list[float]] = {v: [] for v in variants}
    print("| data set | run | control % | kept | " + " | ".join(variants) + " |")
    print("|---|---|---|---|" + "---|" * len(variants))
    for name, n_classes in SETS.items():
        out = Path(args.results) / name
        if not (out / "cache").is_dir():
            print(f"| {name} | (no experiment in {out}) |")
            continue
        data = load_dataset(DATASETS / name, n_classes)
        test = _test_subset(data["test"], args.test_limit)
        gold = np.array([r["label"] for r in test])
        for seed in range(args.runs):
            task = task_from_rows(data["train"], name=data["name"], descriptions=data["descriptions"], k=2, seed=seed)
            gen = json.loads((out / "cache" / f"seed{seed}_mixup.json").read_text())
            ts = build_training_data(task, gen["examples"], label_source="a2",
                                     curation=CurationConfig(judge_labelled=True))
            cfg = SetFitConfig(**student_settings("setfit", {"seed": seed}))
            trusted = np.array([is_trusted(r) for r in ts.rows])
            b_texts, b_labels, _ = body_rows(ts.texts, ts.targets, cfg, list(trusted))
            body, _ = cached_body(b_texts, b_labels, cfg, out / "cache" / "setfit-bodies")
            x, x_test, y = body.encode(ts.texts), body.encode([r["text"] for r in test]), np.array(ts.targets)

            def acc(mask, weight=None):
                lr = LogisticRegression(C=cfg.head_c, max_iter=1000, class_weight="balanced", random_state=seed)
                lr.fit(x[mask], y[mask], sample_weight=None if weight is None else weight[mask])
                return float((lr.predict(x_test) == gold).mean()), lr

            control, head = acc(trusted)
            kept = int((~trusted).sum())
            row = {v: 0.0 for v in variants}
            if kept:
                agree = trusted | (head.predict(x) == y)
                row = {variants[0]: acc(np.ones(len(y), bool))[0] - control,
                       variants[1]: acc(agree)[0] - control,
                       variants[2]: acc(np.ones(len(y), bool), np.where(trusted, 1.0, 0.5))[0] - control}
            for v in variants:
                deltas[v].append(row[v])
            print(f"| {name} | {seed} | {100 * control:.1f} | {kept} | "
                  + " | ".join(f"{100 * row[v]:+.1f}" for v in variants) + " |", flush=True)
    print("| mean | | | | " + " | ".join(f"{100 * np.mean(deltas[v]):+.2f}" for v in variants) + " |")
    print("| worst | | | | " + " | ".join(f"{100 * np.min(deltas[v]):+.1f}" for v in variants) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
