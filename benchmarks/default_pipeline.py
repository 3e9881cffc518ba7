"""The issue's done-when check of the default offline pipeline, as a user runs it: ``promptmix generate
--relabel --project`` (bundled model, no endpoint configured) into a fresh project of 8 confusable
Banking77 card classes with 2 seeds per class, then ``promptmix train --project P --test FILE --report R``
with every other default (student "auto", curation, the seeds-only control). Both are whole commands
(subprocesses). Prints the test accuracy, the control's, the delta with its 95 % interval, the student,
the examples used, and the wall time of each command.

    .venv/bin/python benchmarks/default_pipeline.py --per-class 10 --test-rows 200
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from shared_data import DATASETS  # noqa: E402
from train_default import CARD_CLASSES  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--per-class", type=int, default=10)
    ap.add_argument("--test-rows", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", help="keep the project and files in this folder")
    args = ap.parse_args()
    from promptmix_core.experiment import load_dataset
    from promptmix_core.task import save_task, task_from_rows

    data = load_dataset(DATASETS / "banking77", CARD_CLASSES)
    task = task_from_rows(data["train"], name="banking77-cards", descriptions=data["descriptions"], k=2, seed=args.seed)
    tmp = Path(args.keep or tempfile.mkdtemp(prefix="pmx-default-pipeline-"))
    tmp.mkdir(parents=True, exist_ok=True)
    save_task(task, tmp / "task.json")
    test = random.Random(f"default-pipeline|{args.seed}").sample(data["test"], min(args.test_rows, len(data["test"])))
    with open(tmp / "test.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=["text", "label"])
        w.writeheader()
        w.writerows({"text": r["text"], "label": r["label"]} for r in test)
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "PROMPTMIX_BASE_URL")}
    exe = [sys.executable, "-m", "promptmix_core.cli"]
    project = tmp / "cards.pmx"
    t0 = time.perf_counter()
    subprocess.run(exe + ["generate", str(tmp / "task.json"), "--out", str(tmp / "gen.jsonl"), "--per-class",
                          str(args.per_class), "--relabel", "--project", str(project)], check=True, env=env)
    gen_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    subprocess.run(exe + ["train", "--project", str(project), "--test", str(tmp / "test.csv"),
                          "--report", str(tmp / "report.json")], check=True, env=env)
    train_s = time.perf_counter() - t1
    rep = json.loads((tmp / "report.json").read_text())
    own = bool(rep["control"].get("seeds_only_run"))  # nothing generated was kept: the run is its own control
    out = {"test_accuracy": rep["test"]["accuracy"],
           "control_accuracy": rep["test"]["accuracy"] if own else (rep["control"].get("test") or {}).get("accuracy"),
           "run_is_its_own_control": own,
           "delta": 0.0 if own else (rep.get("delta") or {}).get("accuracy"),
           "ci95": [0.0, 0.0] if own else (rep.get("delta") or {}).get("ci95"),
           "student": rep["student"], "examples": rep["examples"], "generate_relabel_s": round(gen_s, 1),
           "train_plus_control_s": round(train_s, 1), "test_rows": len(test),
           "load_avg_1m": round(os.getloadavg()[0], 2), "folder": str(tmp)}
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
