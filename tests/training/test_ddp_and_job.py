"""Data-parallel training with 2 CPU processes (torchrun, gloo), and the background training job."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from promptmix_core.store import ProjectStore
from promptmix_core.task import ClassSpec, Task
from promptmix_core.training import predict, run_training_job, train_job
from promptmix_core.training.ddp_entry import launch, torchrun_command


pytestmark = pytest.mark.slow


def test_ddp_two_cpu_processes(tmp_path, tiny_rows, tiny_val):
    store = ProjectStore(tmp_path / "p.pmx")
    run_id = store.create_run({"ddp": 2})
    cfg = {
        "train": {"epochs": 3, "min_steps": 0, "batch_size": 4, "max_length": 16, "log_every": 1,
                  "learning_rate": 1e-4, "warmup_ratio": 0.0},
        "labels": ["sport", "food"],
        "train_data": tiny_rows,
        "val_data": tiny_val,
        "out_dir": str(tmp_path / "model"),
        "store": str(store.path),
        "run_id": run_id,
    }
    cmd = torchrun_command(tmp_path / "cfg.json", 2)
    assert Path(cmd[0]).name == "torchrun" and "--nproc_per_node=2" in cmd
    res = launch(cfg, tmp_path, nproc=2, timeout=240)
    # 24 examples over 2 ranks = 12 each, batch 4 -> 3 steps per epoch, 3 epochs
    assert res["world_size"] == 2 and res["steps"] == 9 and res["status"] == "done"
    run = store.get_run(run_id)
    assert run.status == "done" and run.device == "cpu x2"
    metrics = store.get_metrics(run_id)
    # only rank 0 logs: one train_loss per step, not two
    assert sorted(m["step"] for m in metrics if m["name"] == "train_loss") == list(range(1, 10))
    assert sum(m["name"] == "val_accuracy" for m in metrics) == 3
    labels, probs = predict(tmp_path / "model", [r["text"] for r in tiny_val])
    assert probs.shape == (len(tiny_val), 2)
    assert res["val_metrics"]["accuracy"] >= 0.8


def test_ddp_entry_single_process_without_torchrun(tmp_path, tiny_rows):
    cfg_path = tmp_path / "cfg.json"
    cfg_path.write_text(json.dumps({"train": {"max_steps": 2, "min_steps": 0, "max_length": 16},
                                    "train_data": tiny_rows, "result_path": str(tmp_path / "r.json")}))
    out = subprocess.run([sys.executable, "-m", "promptmix_core.training.ddp_entry", "--config", str(cfg_path)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads((tmp_path / "r.json").read_text())["world_size"] == 1


def _project(tmp_path, make_rows):
    store = ProjectStore(tmp_path / "proj.pmx")
    seeds = make_rows(2, seed=5)
    task = Task("tiny", [ClassSpec(lab, f"about {lab}", [r["text"] for r in seeds if r["label"] == lab])
                         for lab in ("sport", "food")])
    store.save_task(task)
    gen_job = store.create_job("generate", {})
    gen = make_rows(10, seed=6)
    store.add_examples([{"job_id": gen_job, "slot": f"s{i}", "text": r["text"], "norm_text": r["text"],
                         "intended_label": r["label"]} for i, r in enumerate(gen)])
    for i, e in enumerate(store.list_examples()):
        if i % 7 == 3:
            store.set_relabel(e.id, llm_label=None, status="unparseable")
        else:
            store.set_relabel(e.id, llm_label=e.intended_label, status="agree")
    return store


def test_training_job_end_to_end(tmp_path, row_maker):
    store = _project(tmp_path, row_maker)
    job_id = store.create_job("train", {
        "label_source": "a2",
        "val_fraction": 0.25,
        "student": "finetune",
        "curation": False,
        "train": {"epochs": 3, "min_steps": 0, "batch_size": 8, "max_length": 16, "learning_rate": 1e-4,
                  "log_every": 1},
    })
    out = train_job(store, store.get_job(job_id))
    assert out["status"] == "done"
    run = store.get_run(out["run_id"])
    assert run.status == "done" and run.job_id == job_id and run.method == "a2"
    data = run.final_metrics["data"]
    assert data["dropped"]["unparseable"] == 3 and data["val_source"] == "generated_holdout"
    assert data["val"] == 4 and data["train"] == 4 + 13  # 4 seeds + 17 kept generated - 4 held out
    assert "val_accuracy" in run.final_metrics
    assert Path(out["model_dir"]).parent.name == "proj.models"
    assert (Path(out["model_dir"]) / "model.safetensors").exists()
    names = {m["name"] for m in store.get_metrics(run.id)}
    assert {"train_loss", "lr", "val_accuracy", "val_macro_f1"} <= names
    assert store.get_job(job_id).progress["run_id"] == run.id


def test_training_job_cancel_and_failure(tmp_path, row_maker):
    store = _project(tmp_path, row_maker)
    job_id = store.create_job("train", {"student": "finetune",
                                         "train": {"max_steps": 50, "min_steps": 0, "epochs": 50, "max_length": 16}})
    store.request_cancel(job_id)
    from promptmix_core.generate import Cancelled

    with pytest.raises(Cancelled):
        run_training_job(store, store.get_job(job_id))
    assert store.list_runs()[0].status == "cancelled"

    bad = store.create_job("train", {"student": "finetune", "train": {"epochs": 0}})
    with pytest.raises(ValueError, match="epochs"):
        run_training_job(store, store.get_job(bad))
    run = store.list_runs()[0]
    assert run.job_id == bad and run.status == "failed" and "epochs" in run.error

    bad2 = store.create_job("train", {"label_source": "reviewed"})  # nothing reviewed: seeds only, fine
    msg = run_training_job(store, store.get_job(store.create_job("train", {
        "label_source": "reviewed", "student": "finetune",
        "train": {"max_steps": 2, "min_steps": 0, "max_length": 16}})))
    assert msg.startswith("run #") and "done" in msg
    assert store.list_runs()[0].final_metrics["data"]["val_source"] == "none"
    assert store.get_job(bad2).status == "queued"


def test_training_job_through_the_worker(tmp_path, row_maker):
    """The real background path: jobs.start_job -> worker process -> run_training_job; then a cancel."""
    import time

    from promptmix_core import jobs

    store = _project(tmp_path, row_maker)
    cfg = {"student": "finetune", "train": {"epochs": 2, "min_steps": 0, "batch_size": 8, "max_length": 16,
                                            "log_every": 1}}
    job_id = jobs.start_job(store.path, "train", cfg)
    deadline = time.time() + 180
    while store.get_job(job_id).active and time.time() < deadline:
        time.sleep(0.5)
    job = store.get_job(job_id)
    assert job.status == "done", job.message
    run = store.list_runs()[0]
    assert run.job_id == job_id and run.status == "done" and f"run #{run.id} done" in job.message

    long = {"student": "finetune", "train": {"epochs": 200, "min_steps": 0, "batch_size": 2, "max_length": 16,
                                             "log_every": 1}}
    job2 = jobs.start_job(store.path, "train", long)
    deadline = time.time() + 180
    while time.time() < deadline:
        runs = [r for r in store.list_runs() if r.job_id == job2]
        if runs and store.get_metrics(runs[0].id):
            break
        time.sleep(0.2)
    jobs.cancel_job(store.path, job2)
    while store.get_job(job2).active and time.time() < deadline:
        time.sleep(0.3)
    assert store.get_job(job2).status == "cancelled"
    run2 = [r for r in store.list_runs() if r.job_id == job2][0]
    assert run2.status == "cancelled" and run2.model_dir is None
