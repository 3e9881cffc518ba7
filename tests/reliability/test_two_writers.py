"""Two writers on one project: one generation job per project at a time, whoever starts it (the CLI
or the app); the refusal names the running job; a slot held by a killed process is taken over; a
race between processes has exactly one winner; and a re-run with the same seed never duplicates."""

from __future__ import annotations

import multiprocessing as mp
import os
import subprocess
import sys
import time

import pytest

from rel_helpers import ROOT, kill_and_reap, run_cli, wait_for
from promptmix_core import jobs
from promptmix_core.pipeline import run_generation_job
from promptmix_core.store import JOB_FINAL, JobBusyError, ProjectStore
from promptmix_core.task import normalize_text, save_task


def _cli_generate(project, task_file, out, fake, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "promptmix_core.cli", "generate", str(task_file), "--per-class", "6",
         "--group-size", "2", "--base-url", fake.base_url, "--model", "fake-model", "--project", str(project),
         "--out", str(out), "--concurrency", "2", "--cache", str(out) + ".cache", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(ROOT),
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def test_a_second_cli_generation_on_a_busy_project_is_refused_naming_the_job(make_fake_llm, project, tmp_path, task):
    slow, other = make_fake_llm(latency=0.3), make_fake_llm()
    save_task(task, tmp_path / "task.json")
    first = _cli_generate(project.path, tmp_path / "task.json", tmp_path / "a.jsonl", slow)
    try:
        running = wait_for(lambda: next((j for j in project.list_jobs() if j.status == "running"), None), 60,
                           what="the first job")
        second = run_cli("generate", str(tmp_path / "task.json"), "--per-class", "6", "--base-url", other.base_url,
                         "--model", "fake-model", "--project", str(project.path), "--out", str(tmp_path / "b.jsonl"))
        assert second.returncode == 1 and "Traceback" not in second.stderr
        assert second.stderr.strip().startswith(
            f"error: a generate job is already running on this project: job #{running.id}, started ")
        assert f"from the command line, pid {first.pid}. Stop it or wait for it to finish" in second.stderr
        assert other.calls == 0 and not (tmp_path / "b.jsonl").exists()
        # the app is refused the same way while the CLI job runs
        with pytest.raises(JobBusyError, match=f"job #{running.id}, started .* from the command line"):
            jobs.start_job(project.path, "generate", {"base_url": other.base_url, "model": "fake-model"})
        assert first.wait(120) == 0, first.stderr.read()
    finally:
        kill_and_reap(first.pid) if first.poll() is None else None
    examples = project.list_examples()
    assert len(examples) == 6 * len(task.classes)  # exactly what was asked for, not twice as many
    assert [j.status for j in project.list_jobs()] == ["done"]  # the refused run left no job behind


def test_the_cli_is_refused_while_an_app_job_runs(make_fake_llm, project, tmp_path, task, workers):
    slow = make_fake_llm(latency=0.5)
    job_id = jobs.start_job(project.path, "generate", {"base_url": slow.base_url, "model": "fake-model",
                                                       "per_class": 20, "timeout": 5})
    workers.append(project.get_job(job_id).pid)
    save_task(task, tmp_path / "task.json")
    r = run_cli("generate", str(tmp_path / "task.json"), "--per-class", "2", "--base-url", slow.base_url,
                "--model", "fake-model", "--project", str(project.path), "--out", str(tmp_path / "b.jsonl"))
    assert r.returncode == 1 and f"job #{job_id}, started " in r.stderr and "Traceback" not in r.stderr
    jobs.cancel_job(project.path, job_id)
    wait_for(lambda: project.get_job(job_id).status in JOB_FINAL, 30, what="the stop")


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


@pytest.mark.parametrize("case", ["dead pid", "no heartbeat for 20 minutes", "queued, never started"])
def test_a_stale_slot_is_taken_over_safely(project, case):
    now = time.time()
    pid, beat, status = {
        "dead pid": (_dead_pid(), now, "running"),
        "no heartbeat for 20 minutes": (os.getpid(), now - 1200, "running"),  # alive, but hung or reused
        "queued, never started": (None, now - 300, "queued"),
    }[case]
    old = project.create_job("generate", {"per_class": 1}, status=status)
    with project.transaction() as c:
        c.execute("UPDATE jobs SET pid = ?, heartbeat_at = ?, created_at = ? WHERE id = ?", (pid, beat, beat, old))
    new = project.claim_job("generate", {"per_class": 1}, status="running", pid=os.getpid())
    stale = project.get_job(old)
    assert new != old and stale.status == "failed" and stale.message == "the worker stopped unexpectedly"
    assert project.get_job(new).status == "running"


def test_a_live_slot_is_never_taken(project):
    held = project.claim_job("generate", {}, status="running", pid=os.getpid())
    with pytest.raises(JobBusyError) as info:
        project.claim_job("generate", {}, status="running", pid=os.getpid())
    assert info.value.job_id == held and f"job #{held}" in str(info.value)
    other_kind = project.claim_job("train", {}, status="running", pid=os.getpid())  # one writer per kind
    assert other_kind != held


def _claimer(path, barrier, done, results):
    store = ProjectStore(path, create=False)
    barrier.wait()
    try:
        results.put(("won", store.claim_job("generate", {}, status="running", pid=os.getpid())))
    except JobBusyError as exc:
        results.put(("refused", exc.job_id))
    done.wait(30)  # stay alive: the winner's pid must be a live one while the others look


def test_processes_racing_for_the_slot_have_exactly_one_winner(project):
    ctx = mp.get_context("fork")
    n = 4
    barrier, done, results = ctx.Barrier(n), ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_claimer, args=(str(project.path), barrier, done, results)) for _ in range(n)]
    for p in procs:
        p.start()
    try:
        outcomes = [results.get(timeout=60) for _ in range(n)]
    finally:
        done.set()
        for p in procs:
            p.join(30)
    winners = [job for what, job in outcomes if what == "won"]
    assert len(winners) == 1
    assert all(job == winners[0] for what, job in outcomes if what == "refused")
    assert len(project.list_jobs()) == 1


def test_a_rerun_with_the_same_seed_never_duplicates(make_fake_llm, project, fast_backoff):
    fake = make_fake_llm()
    cfg = {"base_url": fake.base_url, "model": "fake-model", "per_class": 4, "group_size": 2, "seed": 3,
           "relabel": False}
    first = project.create_job("generate", cfg)
    run_generation_job(project, project.get_job(first))
    calls = fake.calls
    second = project.create_job("generate", cfg)  # the same seed: the cache replays the same answers
    summary = run_generation_job(project, project.get_job(second))
    assert "kept 16/16" in summary
    norms = [normalize_text(e.text) for e in project.list_examples()]
    assert len(norms) == 32 and len(set(norms)) == 32  # 16 new ones, none a copy of the first run's
    assert fake.calls > calls  # the replayed texts were set aside and new ones asked for
    # and a direct insert of a text another job holds is ignored by the store itself
    ex = project.list_examples(job_id=first)[0]
    third = project.create_job("generate", cfg)
    assert project.add_examples([{"job_id": third, "slot": "x", "text": ex.text, "norm_text": ex.norm_text,
                                  "intended_label": ex.intended_label}]) == 0


def test_a_rerun_through_the_cli_never_duplicates(make_fake_llm, tmp_path, task):
    fake = make_fake_llm()
    save_task(task, tmp_path / "task.json")
    project = tmp_path / "p.pmx"
    for out in ("a.jsonl", "b.jsonl"):
        r = run_cli("generate", str(tmp_path / "task.json"), "--per-class", "3", "--group-size", "2",
                    "--base-url", fake.base_url, "--model", "fake-model", "--project", str(project),
                    "--out", str(tmp_path / out), "--cache", str(tmp_path / "c.sqlite"))
        assert r.returncode == 0, r.stderr
    store = ProjectStore(project, create=False)
    norms = [e.norm_text for e in store.list_examples()]
    assert len(norms) == 2 * 3 * len(task.classes) and len(set(norms)) == len(norms)
    assert [j.status for j in store.list_jobs()] == ["done", "done"]
