"""Crashes: a worker killed with SIGKILL half-way through a job. The next run resumes from the store,
loses nothing, doubles nothing and never pays again for an LLM answer it already has."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter

import pytest

from rel_helpers import cache_rows, kill_and_reap, wait_for

from promptmix_core import jobs
from promptmix_core.paths import llm_cache_path
from promptmix_core.store import JOB_FINAL, ProjectStore
from promptmix_core.task import normalize_text


def _final(store: ProjectStore, job_id: int, timeout: float = 180):
    return wait_for(lambda: (j := store.get_job(job_id)) and j.status in JOB_FINAL and j, timeout,
                    every=0.1, what=f"job {job_id} to finish")


def test_generation_worker_killed_half_way_resumes_exactly(make_fake_llm, project, workers):
    fake = make_fake_llm(latency=0.25)
    per_class = 10
    cfg = {"base_url": fake.base_url, "model": "fake-model", "per_class": per_class, "group_size": 2,
           "examples_per_call": 2, "concurrency": 2, "timeout": 5, "max_retries": 2, "seed": 7}
    job_id = jobs.start_job(project.path, "generate", cfg)
    pid = project.get_job(job_id).pid
    workers.append(pid)

    # let it get part of the way, then kill -9 (no chance to clean up)
    wait_for(lambda: project.count_examples(job_id)["total"] >= 8, 60, what="some examples")
    os.kill(pid, signal.SIGKILL)
    kill_and_reap(pid)
    time.sleep(0.6)  # requests that were in flight reach the server and finish there
    before_examples = {e.id: (e.text, e.intended_label, e.slot) for e in project.list_examples(job_id=job_id)}
    cached_before = cache_rows(llm_cache_path())  # the one LLM cache of every entry point
    calls_before = fake.calls
    assert 8 <= len(before_examples) < 4 * per_class, "the kill must land half-way"
    assert project.get_job(job_id).status == "running"  # nobody told the store

    # the next look finds the dead worker and marks the job failed, with a message
    assert project.reap_stale_jobs() == [job_id]
    job = project.get_job(job_id)
    assert job.status == "failed" and job.message == "the worker stopped unexpectedly"
    assert project.integrity_ok()

    fake.latency = 0.0  # the rest may run at full speed
    jobs.resume_job(project.path, job_id)
    workers.append(project.get_job(job_id).pid)
    job = _final(project, job_id)
    assert job.status == "done", job.message

    examples = project.list_examples(job_id=job_id)
    assert len(examples) == 4 * per_class
    assert Counter(e.intended_label for e in examples) == {c: per_class for c in project.load_task().class_names}
    assert len({normalize_text(e.text) for e in examples}) == len(examples)  # none doubled
    after = {e.id: (e.text, e.intended_label, e.slot) for e in examples}
    assert all(after[i] == v for i, v in before_examples.items())  # none lost or changed
    assert all(e.relabel_status for e in examples)

    # no finished call was made again: every answer cached before the kill is untouched, and every
    # request the resumed worker sent produced a new cache row
    cached_after = cache_rows(llm_cache_path())
    assert all(cached_after.get(k) == t for k, t in cached_before.items())
    new_requests = fake.calls - calls_before
    assert len(cached_after) - len(cached_before) == new_requests
    assert job.progress["calls"] == new_requests and job.progress["failures"] == 0
    assert project.integrity_ok()


def test_a_killed_worker_does_not_block_a_new_job(make_fake_llm, project, workers):
    fake = make_fake_llm(latency=0.5)
    cfg = {"base_url": fake.base_url, "model": "fake-model", "per_class": 5, "concurrency": 1, "timeout": 5}
    first = jobs.start_job(project.path, "generate", cfg)
    pid = project.get_job(first).pid
    workers.append(pid)
    with pytest.raises(RuntimeError, match="already running"):
        jobs.start_job(project.path, "generate", cfg)
    kill_and_reap(pid)
    second = jobs.start_job(project.path, "generate", {**cfg, "relabel": False})  # reaps the dead one first
    workers.append(project.get_job(second).pid)
    assert project.get_job(first).status == "failed"
    job = _final(project, second)
    assert job.status == "done", job.message
