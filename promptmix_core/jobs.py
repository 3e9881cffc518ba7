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
from .store import ProjectStore, scrub_secrets


API_KEY_ENV = "PROMPTMIX_JOB_API_KEY"
# An endpoint URL with user:password in it travels like the key: in the worker's environment only; the
# job's config holds it scrubbed (http://***@host/v1).
BASE_URL_ENV = "PROMPTMIX_JOB_BASE_URL"
# The endpoint the key was given for: the worker sends the key only to that endpoint, so a key can never
# reach another URL (a resumed job whose URL differs, a crafted config).
KEY_ENDPOINT_ENV = "PROMPTMIX_JOB_KEY_ENDPOINT"
JOB_KINDS = ("generate", "relabel", "train")


def job_log_path(store_path: str | Path, job_id: int) -> Path:
    from .paths import logs_dir

    folder = logs_dir(store_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"job-{job_id}.log"


def launch_worker(store_path: str | Path, job_id: int, *, api_key: str | None = None,
                  base_url: str | None = None, key_endpoint: str | None = None) -> int:
    """Start ``python -m promptmix_core.worker PROJECT JOB`` in its own session; returns its pid.

    The API key (and an endpoint URL with credentials in it) travel in the child's environment only,
    never in the store or on the command line. ``key_endpoint``: the endpoint the key is for; the
    worker drops the key when the job's endpoint is another one.
    """
    env = dict(os.environ)
    for name in (API_KEY_ENV, BASE_URL_ENV, KEY_ENDPOINT_ENV):
        env.pop(name, None)
    if api_key:
        env[API_KEY_ENV] = api_key
        if key_endpoint:
            env[KEY_ENDPOINT_ENV] = key_endpoint
    if base_url and scrub_secrets(base_url) != base_url:
        env[BASE_URL_ENV] = base_url
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    try:
        log = open(job_log_path(store_path, job_id), "ab")
    except OSError:  # a full disk or a read-only logs folder: the job runs without a log file
        log = open(os.devnull, "ab")
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


def start_job(store_path: str | Path, kind: str, config: Mapping[str, Any], *, api_key: str | None = None,
              key_endpoint: str | None = None) -> int:
    """Record a job and start its worker. Refuses a second active job of the same kind on the project
    (:class:`~promptmix_core.store.JobBusyError` naming it), whoever started it: the app or the CLI."""
    if kind not in JOB_KINDS:
        raise ValueError(f"unknown job kind {kind!r}")
    store = ProjectStore(store_path)
    store.reap_stale_jobs()
    from .specs import spec_for_job

    spec = spec_for_job(kind, config)  # every problem of the settings now, not in the worker
    # one writer per job kind: refused (JobBusyError naming the running job) while one runs; the store
    # keeps the endpoint URL scrubbed, the worker gets it whole through its environment
    job_id = JobLifecycle.claim(store, kind, spec.to_dict()).job_id
    llm = getattr(spec, "llm", None)
    try:
        launch_worker(store_path, job_id, api_key=api_key, base_url=getattr(llm, "base_url", None),
                      key_endpoint=key_endpoint)
    except BaseException as exc:  # the slot must not stay taken by a job that never started
        JobLifecycle(store, job_id).failed(f"the worker could not be started: {exc}")
        raise
    return job_id


def resume_job(store_path: str | Path, job_id: int, *, api_key: str | None = None,
               base_url: str | None = None, key_endpoint: str | None = None) -> None:
    """Start a stopped, failed or crashed job again; it continues from what the store holds.

    ``base_url``: the endpoint with its credentials, when the job's (scrubbed) URL had some."""
    store = ProjectStore(store_path)
    store.reap_stale_jobs()
    job = store.get_job(job_id)
    if job is None:
        raise KeyError(f"no job #{job_id}")
    if job.active:
        raise RuntimeError(f"job #{job_id} is still running")
    JobLifecycle.claim(store, job.kind, job_id=job_id)  # back to queued, unless another one runs
    try:
        launch_worker(store_path, job_id, api_key=api_key, base_url=base_url, key_endpoint=key_endpoint)
    except BaseException as exc:
        JobLifecycle(store, job_id).failed(f"the worker could not be started: {exc}")
        raise


def cancel_job(store_path: str | Path, job_id: int) -> None:
    ProjectStore(store_path).request_cancel(job_id)


from .device import device_info  # noqa: E402,F401 - the one probe lives in device.py
