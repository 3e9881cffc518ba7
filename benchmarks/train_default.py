"""The default training run plus its seeds-only control, against today's previous default (fine-tuning).

An 8-class project of confusable Banking77 card classes: 2 seeds per class plus generated examples
(real training texts of those classes, written-for label = relabel = their label) up to ``--n``
training examples, and ``--test-rows`` real test texts as the project's test set. In one invocation:

- ``default``: ``train_job`` with every default (student "auto" -> SetFit at few-shot sizes, the
  curation, the seeds-only control), timed from the start of the job to the run marked done,
  control included; once with an empty control cache (``cold``) and once more with the control
  cached (``warm``, what every later run on the same seeds costs);
- ``finetune``: the previous default, ``student="finetune"`` with TrainConfig's defaults (5 epochs,
  at least 100 steps), no control;
- ``setfit-all``: SetFit with pairs from every training row (``setfit_body="all"``, the default
  until 2026-12-07), with its control (cold);
- ``embed-lr``: the quick student with its control.

Curation is off here (``--curation`` turns it on) so that every variant trains on the same ``--n``
examples. Prints one JSON line per variant and the ratio to ``finetune``.

    .venv/bin/python benchmarks/train_default.py --n 100 --test-rows 200
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from shared_data import DATASETS  # noqa: E402

CARD_CLASSES = ["card_arrival", "card_delivery_estimate", "card_not_working", "card_payment_fee_charged",
                "card_payment_not_recognised", "declined_card_payment", "lost_or_stolen_card",
                "virtual_card_not_working"]


def build_project(folder: Path, n: int, test_rows: int, seed: int):
    from promptmix_core.experiment import load_dataset
    from promptmix_core.store import ProjectStore
    from promptmix_core.task import normalize_text, task_from_rows

    data = load_dataset(DATASETS / "banking77", CARD_CLASSES)
    task = task_from_rows(data["train"], name="banking77-cards", descriptions=data["descriptions"], k=2, seed=seed)
    seeds = {normalize_text(t) for c in task.classes for t in c.examples}
    rng = random.Random(f"train-default|{seed}")
    pool = [r for r in data["train"] if normalize_text(r["text"]) not in seeds]
    rng.shuffle(pool)
    per_class = (n - 2 * len(CARD_CLASSES)) // len(CARD_CLASSES)
    gen, count = [], {c: 0 for c in CARD_CLASSES}
    for r in pool:
        if count[r["label"]] < per_class:
            gen.append(r)
            count[r["label"]] += 1
    store = ProjectStore(folder / "cards.pmx")
    store.save_task(task)
    job = store.create_job("generate", {})
    store.add_examples([{"job_id": job, "slot": f"s{i}", "text": r["text"], "norm_text": normalize_text(r["text"]),
                         "intended_label": r["label"]} for i, r in enumerate(gen)])
    for e in store.list_examples():
        store.set_relabel(e.id, llm_label=e.intended_label, status="agree")
    test = random.Random(f"train-default-test|{seed}").sample(data["test"], min(test_rows, len(data["test"])))
    store.set_test_set(test, name="banking77 card test rows")
    return store


def run_variant(store, config: dict) -> dict:
    from promptmix_core.training.jobs import train_job

    job = store.create_job("train", config)
    t0 = time.perf_counter()
    out = train_job(store, store.get_job(job))
    wall = time.perf_counter() - t0
    m = out["metrics"]
    ctl = m.get("control") or {}
    return {"student": m.get("student"), "trained_on": m.get("n_train"), "wall_s": round(wall, 1),
            "test_accuracy": round(m.get("test_accuracy") or 0, 4),
            "control_accuracy": (ctl.get("test") or {}).get("accuracy"),
            "control_cached": ctl.get("cached"), "control_train_s": ctl.get("train_time_s"),
            "delta": (ctl.get("delta") or {}).get("accuracy"), "ci95": (ctl.get("delta") or {}).get("ci95")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=100, help="training examples (seeds included)")
    ap.add_argument("--test-rows", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--curation", action="store_true", help="keep the default curation on")
    ap.add_argument("--variants", default="default,setfit-all,finetune,embed-lr")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="pmx-train-default-"))
    try:
        store = build_project(tmp, args.n, args.test_rows, args.seed)
        base = {"curation": bool(args.curation)}
        results = {}
        for v in args.variants.split(","):
            if v == "default":
                shutil.rmtree(tmp / "cards.models", ignore_errors=True)
                results["default (cold control)"] = run_variant(store, dict(base))
                results["default (cached control)"] = run_variant(store, dict(base))
            elif v == "setfit-all":
                shutil.rmtree(tmp / "cards.models", ignore_errors=True)
                results["setfit, pairs from every row (previous default)"] = run_variant(
                    store, {**base, "student": "setfit", "setfit_body": "all"})
            elif v == "finetune":
                results["finetune (previous default, no control)"] = run_variant(
                    store, {**base, "student": "finetune", "control": False})
            else:
                results[v] = run_variant(store, {**base, "student": v})
        base_s = results.get("finetune (previous default, no control)", {}).get("wall_s")
        for name, r in results.items():
            if base_s:
                r["ratio_to_finetune"] = round(r["wall_s"] / base_s, 3)
            print(json.dumps({"variant": name, **r}))
        print(json.dumps({"cores": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2), "n": args.n,
                          "test_rows": args.test_rows}))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
