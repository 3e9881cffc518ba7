"""Background jobs: one detached worker process per job, so long work never blocks the UI thread
and survives a browser refresh or an app restart. Progress, heartbeat and cancellation go through
the project store, which pages poll."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Mapping

from .lifecycle import JobLifecycle
from .store import ProjectStore

API_KEY_ENV = "PROMPTMIX_JOB_API_KEY"
JOB_KINDS = ("generate", "relabel", "train")


def job_log_path(store_path: str | Path, job_id: int) -> Path:
    from .paths import logs_dir

    folder = logs_dir(store_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"job-{job_id}.log"


def launch_worker(store_path: str | Path, job_id: int, *, api_key: str | None = None) -> int:
    """Start ``python -m promptmix_core.worker PROJECT JOB`` in its own session; returns its pid.

    The API key travels in the child's environment only, never in the store or on the command line.
    """
    env = dict(os.environ)
    env.pop(API_KEY_ENV, None)
    if api_key:
        env[API_KEY_ENV] = api_key
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    log = open(job_log_path(store_path, job_id), "ab")
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "promptmix_core.worker", str(Path(store_path).resolve()), str(job_id)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
            start_new_session=True, close_fds=True,
        )
    finally:
        log.close()
    JobLifecycle(ProjectStore(store_path), job_id).attach(proc.pid)
    return proc.pid


def start_job(store_path: str | Path, kind: str, config: Mapping[str, Any], *, api_key: str | None = None) -> int:
    """Record a job and start its worker. Refuses a second active job of the same kind."""
    if kind not in JOB_KINDS:
        raise ValueError(f"unknown job kind {kind!r}")
    store = ProjectStore(store_path)
    store.reap_stale_jobs()
    busy = [j for j in store.list_jobs(kind) if j.active]
    if busy:
        raise RuntimeError(f"a {kind} job (#{busy[0].id}) is already running; stop it or wait for it")
    from .specs import spec_for_job

    spec = spec_for_job(kind, config)  # every problem of the settings now, not in the worker
    job_id = JobLifecycle.create(store, kind, spec.to_dict()).job_id
    launch_worker(store_path, job_id, api_key=api_key)
    return job_id


def resume_job(store_path: str | Path, job_id: int, *, api_key: str | None = None) -> None:
    """Start a stopped, failed or crashed job again; it continues from what the store holds."""
    store = ProjectStore(store_path)
    store.reap_stale_jobs()
    job = store.get_job(job_id)
    if job is None:
        raise KeyError(f"no job #{job_id}")
    if job.active:
        raise RuntimeError(f"job #{job_id} is still running")
    JobLifecycle(store, job_id).requeue("resuming")
    launch_worker(store_path, job_id, api_key=api_key)


def cancel_job(store_path: str | Path, job_id: int) -> None:
    ProjectStore(store_path).request_cancel(job_id)


from .device import device_info  # noqa: E402,F401 - the one probe lives in device.py
