"""The background worker: ``python -m promptmix_core.worker PROJECT JOB_ID``.

Marks the job running, beats a heartbeat into the store, runs it, and always leaves a final status
(done, cancelled or failed with a clear message) unless killed outright, in which case
``ProjectStore.reap_stale_jobs`` marks it failed on the next look.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import traceback

from .generate import Cancelled
from .jobs import API_KEY_ENV
from .store import ProjectStore


def _heartbeat(store: ProjectStore, job_id: int, stop: threading.Event, every: float = 5.0) -> None:
    while not stop.wait(every):
        try:
            store.update_job(job_id)
        except Exception:  # noqa: BLE001 - a missed beat is harmless
            pass


def run(store_path: str, job_id: int) -> int:
    api_key = os.environ.pop(API_KEY_ENV, None)
    store = ProjectStore(store_path, create=False)
    job = store.get_job(job_id)
    if job is None:
        print(f"no job #{job_id} in {store_path}", file=sys.stderr)
        return 2
    def on_term(signum, frame):  # a polite kill (SIGTERM) ends as "cancelled", never "running"
        raise Cancelled("the worker was stopped")

    signal.signal(signal.SIGTERM, on_term)
    store.update_job(job_id, status="running", pid=os.getpid(), message="started")
    stop = threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(store, job_id, stop), daemon=True)
    beat.start()
    try:
        if job.kind == "generate":
            from .pipeline import run_generation_job

            message = run_generation_job(store, job, api_key)
        elif job.kind == "relabel":
            from .pipeline import run_relabel_job

            message = run_relabel_job(store, job, api_key)
        elif job.kind == "train":
            from .training.jobs import run_training_job

            message = run_training_job(store, job) or "training finished"
        else:
            raise ValueError(f"unknown job kind {job.kind!r}")
        store.update_job(job_id, status="done", message=str(message))
        print(message, flush=True)
        return 0
    except Cancelled as exc:
        store.update_job(job_id, status="cancelled", message=str(exc))
        return 0
    except Exception as exc:  # noqa: BLE001 - every failure ends as a clear message in the store
        traceback.print_exc()
        store.update_job(job_id, status="failed", message=f"{exc}" or type(exc).__name__)
        return 1
    finally:
        stop.set()


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) != 2:
        print("usage: python -m promptmix_core.worker PROJECT JOB_ID", file=sys.stderr)
        return 2
    return run(argv[0], int(argv[1]))


if __name__ == "__main__":
    sys.exit(main())
