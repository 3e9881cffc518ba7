"""A training worker killed (SIGKILL) mid-run: the run and the job are marked failed, the store stays
consistent, and a new training run starts and finishes."""

from __future__ import annotations

import pytest

from rel_helpers import kill_and_reap, wait_for
from promptmix_core import jobs
from promptmix_core.store import JOB_FINAL
from promptmix_core.task import normalize_text

pytest.importorskip("promptmix_core.training.jobs", reason="the training module is not there yet")


@pytest.fixture
def tiny_model(tmp_path):
    """A one-layer BERT (safetensors) with the bundled MiniLM's tokenizer: trains in milliseconds a step."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from promptmix_core.training import bundled_model_path
    from promptmix_core.training.model_io import save_model

    tok = AutoTokenizer.from_pretrained(bundled_model_path())
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=32, num_labels=4)
    return save_model(BertForSequenceClassification(cfg), tok, ["a", "b", "c", "d"], tmp_path / "tiny-model")


def _with_examples(project):
    job = project.create_job("generate", {}, status="done")
    rows = []
    for c in project.load_task().class_names:
        for i in range(6):
            t = f"{c.replace('_', ' ')} question number {i}"
            rows.append({"job_id": job, "slot": f"{c}|{i}", "text": t, "norm_text": normalize_text(t),
                         "intended_label": c})
    project.add_examples(rows)
    return project


def test_training_worker_killed_mid_run_is_marked_failed_and_a_new_run_starts(project, tiny_model, workers):
    store = _with_examples(project)
    base = {"label_source": "a1", "val_fraction": 0.25, "student": "finetune"}
    train = {"model": str(tiny_model), "device": "cpu", "min_steps": 0, "batch_size": 2, "max_length": 16,
             "log_every": 1, "num_threads": 1}
    long_job = jobs.start_job(store.path, "train", {**base, "train": {**train, "epochs": 1000}})
    pid = store.get_job(long_job).pid
    workers.append(pid)

    def running_with_metrics():
        runs = [r for r in store.list_runs() if r.job_id == long_job]
        return runs and runs[0].status == "running" and len(store.get_metrics(runs[0].id)) >= 4 and runs[0]

    run = wait_for(running_with_metrics, 180, 0.1, "the training run to log metrics")
    kill_and_reap(pid)
    metrics_at_kill = store.get_metrics(run.id)

    assert store.reap_stale_jobs() == [long_job]
    job = store.get_job(long_job)
    assert job.status == "failed" and job.message == "the worker stopped unexpectedly"
    dead = store.get_run(run.id)
    assert dead.status == "failed" and dead.error == "the worker stopped unexpectedly" and dead.finished_at
    assert store.integrity_ok()
    # what was logged before the kill is still there, whole and in order
    kept = store.get_metrics(run.id)
    assert kept[: len(metrics_at_kill)] == metrics_at_kill
    assert [m["id"] for m in kept] == sorted(m["id"] for m in kept)
    assert not [r for r in store.list_runs() if r.status in ("queued", "running")]
    assert len(store.list_examples()) == 24  # the data are untouched

    # a new training job starts (nothing is left "running" to block it) and finishes
    new_job = jobs.start_job(store.path, "train", {**base, "train": {**train, "epochs": 1, "max_steps": 4}})
    workers.append(store.get_job(new_job).pid)
    done = wait_for(lambda: (j := store.get_job(new_job)) and j.status in JOB_FINAL and j, 180, 0.2, "the new run")
    assert done.status == "done", done.message
    new_run = next(r for r in store.list_runs() if r.job_id == new_job)
    assert new_run.id != run.id and new_run.status == "done"
    assert store.get_run(run.id).status == "failed"  # the old run stays failed, not overwritten
    assert store.integrity_ok()
