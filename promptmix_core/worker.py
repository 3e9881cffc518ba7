"""The background worker: ``python -m promptmix_core.worker PROJECT JOB_ID``.

Runs one job through :class:`~promptmix_core.lifecycle.JobLifecycle` (running, heartbeat, then
done, cancelled or failed with a clear message) unless killed outright, in which case
``ProjectStore.reap_stale_jobs`` marks it failed on the next look.
"""

from __future__ import annotations

import logging
import os
import signal
import sys

from .errors import Cancelled
from .jobs import API_KEY_ENV, BASE_URL_ENV, KEY_ENDPOINT_ENV
from .lifecycle import JobLifecycle, StepContext
from .store import ProjectStore, StoreError, known_secrets, register_secret, scrub_secrets

log = logging.getLogger("promptmix_core.worker")


def _step(kind: str):
    if kind == "generate":
        from .pipeline import run_generation_job

        return run_generation_job
    if kind == "relabel":
        from .pipeline import run_relabel_job

        return run_relabel_job
    if kind == "train":
        from .training.jobs import run_training_job

        return lambda store, job, api_key, ctx: run_training_job(store, job, ctx=ctx)
    raise ValueError(f"unknown job kind {kind!r}")


def _key_for_job(config: dict, api_key: str, key_for: str) -> str | None:
    """The key when the job calls the endpoint it was given for, else None (and a log line)."""
    from .llm.config import key_endpoint, same_endpoint

    llm = config.get("llm") if isinstance(config.get("llm"), dict) else config
    job_url = llm.get("base_url") or key_endpoint()
    if same_endpoint(job_url, key_for):
        return api_key
    log.warning("the API key was given for %s, not for this job's endpoint %s: not sent",
                scrub_secrets(key_for), scrub_secrets(str(job_url)))
    return None


def run(store_path: str, job_id: int) -> int:
    # the key came in this process's environment only; keep it from any child process
    api_key = os.environ.pop(API_KEY_ENV, None)
    register_secret(api_key)  # out of the environment, still scrubbed from every message and log line
    secret_url = os.environ.pop(BASE_URL_ENV, None)
    key_for = os.environ.pop(KEY_ENDPOINT_ENV, None)
    store = ProjectStore(store_path, create=False)
    job = store.get_job(job_id)
    if job is None:
        log.error("no job #%s in %s", job_id, store_path)
        return 2
    if secret_url:  # in memory only: the store keeps the URL scrubbed (http://***@host/v1)
        llm = job.config.get("llm") if isinstance(job.config.get("llm"), dict) else job.config
        if scrub_secrets(secret_url) == llm.get("base_url"):
            llm["base_url"] = secret_url
    if api_key and key_for and job.kind in ("generate", "relabel"):
        api_key = _key_for_job(job.config, api_key, key_for)

    def on_term(signum, frame):  # a polite kill (SIGTERM) ends as "cancelled", never "running"
        raise Cancelled("the worker was stopped")

    signal.signal(signal.SIGTERM, on_term)
    life = JobLifecycle(store, job_id)
    try:
        step = _step(job.kind)

        def body(ctx: StepContext) -> str:
            return str(step(store, job, api_key, ctx) or f"{job.kind} finished")

        message = life.run(body)
    except Cancelled:
        return 0
    except Exception:  # noqa: BLE001 - the lifecycle recorded the failure; the log gets the trace
        if life.status not in ("failed", "cancelled"):  # failed before it could start
            try:
                life.failed(str(sys.exc_info()[1]) or "failed")
            except StoreError:  # a full disk: the next look marks the job failed once this process ends
                pass
        log.exception("job #%s failed", job_id)
        return 1
    log.info("%s", message)
    return 0


class _ScrubbingFormatter(logging.Formatter):
    """Every log line (tracebacks too) with keys and URL credentials scrubbed."""

    def format(self, record: logging.LogRecord) -> str:
        return scrub_secrets(super().format(record), known_secrets())


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.setFormatter(_ScrubbingFormatter(handler.formatter._fmt if handler.formatter else None))
    if len(argv) != 2:
        print("usage: python -m promptmix_core.worker PROJECT JOB_ID", file=sys.stderr)
        return 2
    return run(argv[0], int(argv[1]))


if __name__ == "__main__":
    sys.exit(main())
