"""Training throughput: PromptMix's own trainer vs transformers.Trainer, same model, data, settings.

Each variant runs in its own subprocess (so peak RSS is its own) and the variants are interleaved
over ``--repeats`` rounds (ABAB...) so that machine noise hits both alike. Reported per variant:
training samples/s (median over repeats; the timed span is the training loop only, model loading
excluded for both), peak memory (process max RSS; CUDA max allocated on a GPU), final test
accuracy / macro-F1 (both models scored by the same prediction code), and the ratio to Trainer.

    .venv/bin/python benchmarks/train_throughput.py --data ../shared/datasets/trec6 \
        --n-train 1000 --n-test 500 --epochs 2 --batch-size 16 --max-length 64 --repeats 3 --vary-seed

Variants: ``ours`` (the defaults: random batches; precision "auto": bf16 autocast on CPUs with
native bf16, else fp32 with each batch split by length into micro-batches when that saves padding,
same gradients), ``ours-fp32`` (the same in fp32), ``ours-nosplit`` (fp32, no split), ``ours-grouped``
(length-grouped batches), ``hf`` (Trainer defaults: random sampler, dynamic padding, fp32),
``hf-bf16`` (Trainer with ``bf16=True``) and ``hf-grouped`` (Trainer with
``train_sampling_strategy="group_by_length"``).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shared_data import DATASETS  # noqa: E402


def load_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return [{"text": r["text"], "label": r["label"]} for r in csv.DictReader(fh)]


def slice_data(args):
    data = Path(args.data)
    train = load_rows(data / "train.csv")
    test = load_rows(data / "test.csv")
    rng = random.Random(args.seed)
    rng.shuffle(train)
    train = train[: args.n_train]
    test = sorted(test, key=lambda r: (r["label"], r["text"]))
    rng.shuffle(test)
    test = test[: args.n_test]
    labels = sorted({r["label"] for r in train} | {r["label"] for r in test})
    return train, test, labels


def peak_memory(device: str) -> dict[str, float]:
    out = {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if device.startswith("cuda"):
        import torch

        out["cuda_max_allocated_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def worker(args) -> dict:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from promptmix_core.training import TrainConfig, compute_metrics, train
    from promptmix_core.training.model_io import Classifier, load_base_model, pick_device

    train_rows, test_rows, labels = slice_data(args)
    x = [r["text"] for r in train_rows]
    y = [r["label"] for r in train_rows]
    tx = [r["text"] for r in test_rows]
    ty = [r["label"] for r in test_rows]
    device = pick_device(args.device)
    common = dict(epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.lr, weight_decay=0.01,
                  warmup_ratio=0.1, max_length=args.max_length, min_steps=0, seed=args.seed, device=args.device)
    variant = args.worker
    if variant.startswith("ours"):
        cfg = TrainConfig(**common, group_by_length=(variant == "ours-grouped"),
                          split_padding=False if variant == "ours-nosplit" else None, log_every=50,
                          precision="fp32" if variant in ("ours-fp32", "ours-nosplit") else "auto")
        res = train(cfg, x, y, label_names=labels)
        clf = res.classifier
        train_s, steps, precision = res.train_time_s, res.steps, res.precision
    else:
        from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

        torch.manual_seed(args.seed)
        model, tok, _ = load_base_model(args.model, labels)
        lid = {lab: i for i, lab in enumerate(labels)}
        enc = tok(x, truncation=True, max_length=args.max_length)
        ds = [{"input_ids": enc["input_ids"][i], "attention_mask": enc["attention_mask"][i], "labels": lid[y[i]]}
              for i in range(len(x))]
        with tempfile.TemporaryDirectory() as tmp:
            targs = TrainingArguments(
                output_dir=tmp, per_device_train_batch_size=args.batch_size, num_train_epochs=args.epochs,
                learning_rate=args.lr, weight_decay=0.01, warmup_steps=0.1, lr_scheduler_type="linear",
                save_strategy="no", eval_strategy="no", logging_steps=50, report_to="none", seed=args.seed,
                disable_tqdm=True, use_cpu=device == "cpu", dataloader_num_workers=0,
                bf16=(device.startswith("cuda") and torch.cuda.is_bf16_supported()) or variant == "hf-bf16",
                train_sampling_strategy="group_by_length" if variant == "hf-grouped" else "random",
            )
            trainer = Trainer(model=model, args=targs, train_dataset=ds, processing_class=tok,
                              data_collator=DataCollatorWithPadding(tok))
            t0 = time.perf_counter()
            out = trainer.train()
            train_s = time.perf_counter() - t0
            steps = out.global_step
            precision = "bf16" if targs.bf16 else "fp32"
        model.eval()
        clf = Classifier(model, tok, labels, max_length=args.max_length, device=str(next(model.parameters()).device))
    samples = len(x) * args.epochs
    pred, _ = clf.predict(tx)
    m = compute_metrics(ty, pred, labels)
    return {"variant": variant, "train_s": train_s, "steps": steps, "samples": samples,
            "samples_per_s": samples / train_s, "test_accuracy": m["accuracy"], "test_macro_f1": m["macro_f1"],
            "device": device, "precision": precision, "threads": torch.get_num_threads(), **peak_memory(device)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(DATASETS / "trec6"))
    ap.add_argument("--model", default=None, help="default: the bundled all-MiniLM-L6-v2")
    ap.add_argument("--n-train", type=int, default=1000)
    ap.add_argument("--n-test", type=int, default=500)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-length", type=int, default=64)
    ap.add_argument("--lr", type=float, default=4e-5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0, help="torch threads for both (0: torch's default)")
    ap.add_argument("--variants", default="ours,hf")
    ap.add_argument("--vary-seed", action="store_true",
                    help="round r uses seed+r (data slice, init, order), so accuracy is a mean over seeds")
    ap.add_argument("--json", default=None, help="also write the raw results here")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print("RESULT " + json.dumps(worker(args)))
        return 0
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    base = [sys.executable, __file__] + [a for a in sys.argv[1:]]
    results: dict[str, list[dict]] = {v: [] for v in variants}
    for r in range(args.repeats):
        order = variants if r % 2 == 0 else list(reversed(variants))
        for v in order:
            seed_args = ["--seed", str(args.seed + r)] if args.vary_seed else []
            proc = subprocess.run(base + seed_args + ["--worker", v], capture_output=True, text=True,
                                  env=os.environ.copy())
            line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
            if proc.returncode != 0 or line is None:
                print(proc.stderr[-3000:], file=sys.stderr)
                return 1
            res = json.loads(line[7:])
            results[v].append(res)
            print(f"round {r + 1} {v:13s} {res['precision']} {res['samples_per_s']:8.1f} samples/s  train {res['train_s']:6.1f}s  "
                  f"acc {res['test_accuracy']:.3f}  rss {res['peak_rss_mb']:.0f} MB", flush=True)
    ref = "hf" if "hf" in results else variants[-1]
    ref_sps = statistics.median(x["samples_per_s"] for x in results[ref])
    print()
    print(f"| variant | samples/s (median of {args.repeats}) | vs {ref} | train s | peak RSS MB | "
          f"test acc (mean of {args.repeats}) | test macro-F1 |")
    print("|---|---|---|---|---|---|---|")
    for v in variants:
        rs = results[v]
        sps = statistics.median(x["samples_per_s"] for x in rs)
        acc = statistics.mean(x["test_accuracy"] for x in rs)
        f1 = statistics.mean(x["test_macro_f1"] for x in rs)
        mem = max(x["peak_rss_mb"] for x in rs)
        extra = ""
        if "cuda_max_allocated_mb" in rs[0]:
            extra = f" (CUDA {max(x['cuda_max_allocated_mb'] for x in rs):.0f} MB)"
        ts = statistics.median(x["train_s"] for x in rs)
        print(f"| {v} | {sps:.1f} | {sps / ref_sps:.2f}x | {ts:.1f} | {mem:.0f}{extra} | {acc:.3f} | {f1:.3f} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
