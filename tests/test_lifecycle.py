"""One job lifecycle: the worker, `generate --project` and `train --project` end jobs the same way;
steps report through a StepContext and never write job rows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from promptmix_core.errors import Cancelled
from promptmix_core.lifecycle import JobLifecycle, StepContext
from promptmix_core.specs import GenerationSpec
from promptmix_core.store import ProjectStore
from promptmix_core.task import save_task

ROOT = Path(__file__).resolve().parent.parent


def test_lifecycle_done_cancelled_failed(tmp_path):
    store = ProjectStore(tmp_path / "p.pmx")
    life = JobLifecycle.create(store, "generate", GenerationSpec().to_dict(), heartbeat_every=0.05)
    assert store.get_job(life.job_id).status == "queued"

    def step(ctx: StepContext) -> str:
        job = store.get_job(life.job_id)
        assert job.status == "running" and job.pid == os.getpid()
        ctx.progress({"phase": "generate", "done": 1, "total": 2}, force=True)
        beat = store.get_job(life.job_id).heartbeat_at
        time.sleep(0.2)
        assert store.get_job(life.job_id).heartbeat_at > beat  # the heartbeat thread beats
        return "all good"

    assert life.run(step) == "all good"
    job = store.get_job(life.job_id)
    assert job.status == "done" and job.message == "all good" and job.progress["done"] == 1 and job.finished_at

    life2 = JobLifecycle.create(store, "generate", {})
    with pytest.raises(Cancelled):
        with life2.running() as ctx:
            store.request_cancel(life2.job_id)
            ctx.raise_if_stopped("stopped by the user")
    assert store.get_job(life2.job_id).status == "cancelled"
    assert store.get_job(life2.job_id).message == "stopped by the user"

    life3 = JobLifecycle.create(store, "train", {})
    with pytest.raises(RuntimeError):
        life3.run(lambda ctx: (_ for _ in ()).throw(RuntimeError("disk on fire")))
    job = store.get_job(life3.job_id)
    assert job.status == "failed" and job.message == "disk on fire"


def test_should_stop_is_cheap_and_sticky(tmp_path):
    calls = {"n": 0}
    flag = {"v": False}

    def read_flag():
        calls["n"] += 1
        return flag["v"]

    ctx = StepContext(stop_flag=read_flag, stop_every=10.0)
    for _ in range(1000):
        assert not ctx.should_stop()
    assert calls["n"] == 1  # read at most once per interval
    ctx2 = StepContext(stop_flag=read_flag, stop_every=0.0)
    flag["v"] = True
    assert ctx2.should_stop()
    flag["v"] = False
    assert ctx2.should_stop()  # sticky once seen


def test_steps_never_write_job_rows():
    """Only lifecycle.py (and the launcher that records pid/heartbeat, and the store itself) writes
    job rows: no step module calls update_job."""
    offenders = []
    for path in (ROOT / "promptmix_core").rglob("*.py"):
        if path.name == "lifecycle.py" and path.parent.name == "promptmix_core":
            continue
        if path.parent.name == "store" and path.parent.parent.name == "promptmix_core":
            continue  # the store itself
        text = path.read_text("utf-8")
        if "update_job(" in text or "UPDATE jobs" in text:
            offenders.append(str(path.relative_to(ROOT)))
    # training/callbacks.py keeps a job_id-only compatibility path for direct callers of train()
    assert offenders == ["promptmix_core/training/callbacks.py"], offenders


def test_trainer_recognises_cancelled_by_type():
    # the one run lifecycle (training/runs.py) decides cancelled or failed for every student, by type
    src = (ROOT / "promptmix_core" / "training" / "runs.py").read_text("utf-8")
    assert "isinstance(exc, (Cancelled, KeyboardInterrupt))" in src
    for name in ("trainer.py", "runs.py", "jobs.py"):
        assert '__name__ == "Cancelled"' not in (ROOT / "promptmix_core" / "training" / name).read_text("utf-8")
    from promptmix_core import generate
    from promptmix_core import errors

    assert generate.Cancelled is errors.Cancelled  # one class, re-exported for old imports


def _run_cli(*args, env=None, timeout=180):
    full = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "promptmix_core.cli", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env=full, cwd=ROOT)


def test_cli_generate_project_records_relabels_and_a_proper_job(fake_llm, tmp_path, small_task):
    save_task(small_task, tmp_path / "task.json")
    project = tmp_path / "cli.pmx"
    out = tmp_path / "gen.jsonl"
    r = _run_cli("generate", tmp_path / "task.json", "--out", out, "--per-class", 3, "--seed", 4, "--relabel",
                 "--project", project, "--base-url", fake_llm.base_url, "--model", "fake-model", "--concurrency", 4)
    assert r.returncode == 0, r.stderr
    store = ProjectStore(project, create=False)
    [job] = store.list_jobs()
    assert job.kind == "generate" and job.status == "done" and job.started_at and job.finished_at
    assert "kept 18/18" in job.message and "relabelled 18" in job.message
    assert job.progress["phase"] == "done" and job.progress["total"] == 18
    spec = GenerationSpec.from_dict(job.config)  # a typed spec, like the app's
    assert spec.generation.per_class == 3 and spec.generation.seed == 4 and spec.relabel is True and spec.llm.model == "fake-model"
    counts = store.count_examples(job.id)
    assert counts["total"] == 18 and counts["relabelled"] == 18  # relabels are in the project, as in the app
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    by_text = {e.text: e for e in store.list_examples(job_id=job.id)}
    assert len(rows) == 18
    for row in rows:
        assert row["llm_label"] == by_text[row["text"]].llm_label
        assert row["relabel_status"] == by_text[row["text"]].relabel_status
    store.close()


def test_cli_generate_project_failure_is_recorded(make_fake_llm, tmp_path, small_task):
    fake = make_fake_llm()
    save_task(small_task, tmp_path / "task.json")
    project = tmp_path / "cli.pmx"
    r = _run_cli("generate", tmp_path / "task.json", "--out", tmp_path / "o.jsonl", "--per-class", 2,
                 "--project", project, "--base-url", fake.base_url, "--model", "nope")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    store = ProjectStore(project, create=False)
    [job] = store.list_jobs()
    assert job.status == "failed" and "does not know the model 'nope'" in job.message and job.finished_at
    store.close()


def test_worker_runs_through_the_lifecycle(fake_llm, tmp_path, small_task):
    import signal

    from promptmix_core.worker import run

    old = signal.getsignal(signal.SIGTERM)  # run() installs the worker's handler; put pytest's back
    try:
        _worker_checks(run, fake_llm, tmp_path, small_task)
    finally:
        signal.signal(signal.SIGTERM, old)


def _worker_checks(run, fake_llm, tmp_path, small_task):
    store = ProjectStore(tmp_path / "w.pmx")
    store.save_task(small_task)
    spec = GenerationSpec.from_dict({"per_class": 2, "relabel": False})
    # an old flat row: still runs (migrated on read)
    job_id = store.create_job("generate", {"per_class": 2, "relabel": False, "base_url": fake_llm.base_url,
                                           "model": "fake-model"})
    assert run(str(store.path), job_id) == 0
    job = store.get_job(job_id)
    assert job.status == "done" and job.pid == os.getpid() and "kept 12/12" in job.message
    bad = store.create_job("generate", {"per_class": 2, "llm": {"base_url": "http://127.0.0.1:9/v1"}, "wat": 1})
    assert run(str(store.path), bad) == 1
    assert store.get_job(bad).status == "failed" and "wat" in store.get_job(bad).message
    assert spec.generation.per_class == 2


def test_sigterm_during_a_step_ends_cancelled(tmp_path):
    store = ProjectStore(tmp_path / "p.pmx")
    life = JobLifecycle.create(store, "train", {})
    started = threading.Event()

    def step(ctx):
        started.set()
        raise Cancelled("the worker was stopped")

    with pytest.raises(Cancelled):
        life.run(step)
    assert started.is_set() and store.get_job(life.job_id).status == "cancelled"
