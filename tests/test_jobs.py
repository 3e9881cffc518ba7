"""Background jobs: a detached worker process per job, progress and cancel through the store."""

import json
import time

import pytest

from promptmix_core.jobs import cancel_job, resume_job, start_job
from promptmix_core.store import ProjectStore


def wait_for(store, job_id, statuses=("done", "failed", "cancelled"), timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = store.get_job(job_id)
        if job.status in statuses:
            return job
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} did not reach {statuses}: {store.get_job(job_id)!r}")


@pytest.fixture
def project(tmp_path, small_task):
    path = tmp_path / "p.pmx"
    ProjectStore(path).save_task(small_task)
    return path


def test_generation_job_runs_to_done_with_progress(fake_llm, project):
    store = ProjectStore(project)
    job_id = start_job(project, "generate", {"per_class": 3, "base_url": fake_llm.base_url, "model": "fake-model"})
    job = wait_for(store, job_id)
    assert job.status == "done", job.message
    assert job.progress["phase"] == "done" and job.progress["total"] == 18
    assert "kept 18/18" in job.message and "relabelled 18" in job.message
    counts = store.count_examples(job_id)
    assert counts["total"] == 18 and counts["relabelled"] == 18


def test_cancel_then_resume(make_fake_llm, project):
    fake = make_fake_llm(latency=0.4)
    store = ProjectStore(project)
    cfg = {"per_class": 6, "examples_per_call": 2, "concurrency": 2, "base_url": fake.base_url,
           "model": "fake-model"}
    job_id = start_job(project, "generate", cfg)
    wait_for(store, job_id, statuses=("running",))
    with pytest.raises(RuntimeError, match="already running"):
        start_job(project, "generate", cfg)
    deadline = time.time() + 60
    while store.count_examples(job_id)["total"] == 0 and time.time() < deadline:
        time.sleep(0.1)
    cancel_job(project, job_id)
    job = wait_for(store, job_id)
    assert job.status == "cancelled", job.message
    partial = store.count_examples(job_id)["total"]
    assert 0 < partial < 36
    calls_before = fake.calls
    resume_job(project, job_id)
    job = wait_for(store, job_id)
    assert job.status == "done", job.message
    assert store.count_examples(job_id)["total"] == 36
    texts = [e.text for e in store.list_examples(job_id=job_id)]
    assert len(set(texts)) == 36
    # the resumed run re-read finished work from the cache: at most the in-flight calls were redone,
    # plus the judge's check of this endpoint on the held-out seeds (one call per seed checked)
    from promptmix_core.judge import LABEL_SOURCE_META

    checked = json.loads(store.get_meta(LABEL_SOURCE_META))["seeds_checked"]
    assert 0 < checked <= 12
    assert fake.calls - calls_before <= 36 / 2 + 36 - partial / 2 + checked


def test_failed_job_keeps_a_clear_message(make_fake_llm, project):
    fake = make_fake_llm()
    store = ProjectStore(project)
    job_id = start_job(project, "generate", {"per_class": 2, "base_url": fake.base_url, "model": "nope"})
    job = wait_for(store, job_id)
    assert job.status == "failed" and "does not know the model 'nope'" in job.message
    assert fake.calls == 1
