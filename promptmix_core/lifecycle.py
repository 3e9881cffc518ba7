"""A job's lifecycle, in one place: the only code that changes a job's row.

:class:`JobLifecycle` moves a job through queued -> running -> done / cancelled / failed, beats its
heartbeat, records its progress and messages, and hands the step a :class:`StepContext`. The
background worker, ``promptmix generate --project`` and ``promptmix train --project`` all use it,
so a job started from any face looks and ends the same in the store.

Steps (generation, relabeling, training) receive only a :class:`StepContext`: ``progress(dict)``
(throttled, ``force=True`` to write at once), ``note(message)``, a cheap sticky ``should_stop()``
and ``log`` (a logger). They never write job rows themselves, and run the same without a job
(:meth:`StepContext.detached`).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any, Callable, Mapping

from .errors import Cancelled, StoreError

log = logging.getLogger(__name__)

ProgressFn = Callable[[dict[str, Any]], None]


class Throttle:
    """Call ``fn`` at most every ``interval`` seconds (always on ``force``, and always when a progress
    dict's ``notice`` changed, so "rate limited: waiting 120 s" shows the moment the wait starts)."""

    def __init__(self, fn: Callable[..., Any], interval: float = 0.5):
        self.fn, self.interval, self.last = fn, interval, 0.0
        self._notice: Any = None

    def __call__(self, *args: Any, force: bool = False) -> Any:
        now = time.monotonic()
        notice = args[0].get("notice") if args and isinstance(args[0], dict) else self._notice
        if force or notice != self._notice or now - self.last >= self.interval:
            self.last = now
            self._notice = notice
            return self.fn(*args)
        return None


class StepContext:
    """What a step gets from whoever runs it: progress, a stop check, a logger."""

    def __init__(self, *, progress: ProgressFn | None = None, note: Callable[[str], None] | None = None,
                 stop_flag: Callable[[], bool] | None = None, logger: logging.Logger | None = None,
                 progress_every: float = 0.5, stop_every: float = 0.5, job_id: int | None = None):
        self._progress = Throttle(progress, progress_every) if progress is not None else None
        self._note = note
        self._stop_check = Throttle(stop_flag, stop_every) if stop_flag is not None else None
        self._stopped = False
        self.log = logger or log
        self.job_id = job_id

    @classmethod
    def detached(cls, *, progress: ProgressFn | None = None, should_stop: Callable[[], bool] | None = None,
                 logger: logging.Logger | None = None) -> "StepContext":
        """A context with no job behind it (library use, the CLI without --project, tests)."""
        return cls(progress=progress, stop_flag=should_stop, logger=logger, progress_every=0.0, stop_every=0.0)

    def progress(self, p: Mapping[str, Any], force: bool = False) -> None:
        if self._progress is not None:
            self._progress(dict(p), force=force)

    def note(self, message: str) -> None:
        """A one-line status message for the job (shown while it runs)."""
        self.log.info("%s", message)
        if self._note is not None:
            self._note(message)

    def should_stop(self) -> bool:
        """Cheap and sticky: the flag is read at most twice a second, and stays True once seen (calls
        in flight poll it, so a job stops within a second of Stop)."""
        if not self._stopped and self._stop_check is not None:
            self._stopped = bool(self._stop_check())
        return self._stopped

    def stop(self) -> None:
        """Ask the step to stop (Ctrl-C, SIGTERM)."""
        self._stopped = True

    def raise_if_stopped(self, message: str = "the job was stopped; what was finished is kept") -> None:
        if self.should_stop():
            raise Cancelled(message)


class JobLifecycle:
    """The one place a job's status changes (see the module docstring).

    ``with JobLifecycle(store, job_id).running("message") as ctx:`` marks the job running with this
    process's pid, beats a heartbeat every ``heartbeat_every`` seconds, and ends it: done (with
    :meth:`finish`'s message), cancelled on :class:`Cancelled`, failed with the error's message on
    any other exception (re-raised)."""

    def __init__(self, store: Any, job_id: int, *, heartbeat_every: float = 5.0,
                 logger: logging.Logger | None = None):
        self.store = store
        self.job_id = int(job_id)
        self.heartbeat_every = heartbeat_every
        self.log = logger or log
        self._beat_stop = threading.Event()
        self._beat: threading.Thread | None = None
        self._message: str | None = None
        self._final_progress: dict[str, Any] | None = None
        self.status: str = "queued"

    @classmethod
    def create(cls, store: Any, kind: str, config: Mapping[str, Any], **kw: Any) -> "JobLifecycle":
        """Record a new job (queued) and return its lifecycle."""
        return cls(store, store.create_job(kind, dict(config)), **kw)

    @classmethod
    def claim(cls, store: Any, kind: str, config: Mapping[str, Any] | None = None, *, status: str = "queued",
              pid: int | None = None, job_id: int | None = None, origin: str = "", **kw: Any) -> "JobLifecycle":
        """Record a new job of ``kind`` (or take back ``job_id`` to resume it) unless a live job of the
        same kind runs on the project: one writer per job kind, whoever starts it (app or CLI). The
        refusal is a :class:`~promptmix_core.store.JobBusyError` naming the running job; a slot whose
        worker is gone is taken over (see :meth:`ProjectStore.claim_job`)."""
        return cls(store, store.claim_job(kind, dict(config or {}), status=status, pid=pid, job_id=job_id,
                                          origin=origin), **kw)

    # ----------------------------------------------------------------- transitions
    def attach(self, pid: int) -> None:
        """The worker process that will run this job (so a dead worker is found by its pid)."""
        self.store.update_job(self.job_id, pid=int(pid), heartbeat=True)

    def requeue(self, message: str = "resuming") -> None:
        """A stopped, failed or crashed job goes back to queued (its cancel flag cleared) to resume."""
        with self.store.transaction() as c:
            c.execute("UPDATE jobs SET status = 'queued', cancel_requested = 0, finished_at = NULL, message = ? "
                      "WHERE id = ?", (message, self.job_id))
        self.status = "queued"

    def start(self, message: str = "started", *, pid: int | None = None,
              also: ProgressFn | None = None) -> StepContext:
        self.store.update_job(self.job_id, status="running", pid=pid or os.getpid(), message=message)
        self.status = "running"
        reserve = getattr(self.store, "reserve_space", None)
        if reserve is not None:  # room for the job's last word should the disk fill up (freed when it ends)
            reserve()
        self._beat_stop.clear()
        self._beat = threading.Thread(target=self._heartbeat, name=f"job-{self.job_id}-heartbeat", daemon=True)
        self._beat.start()
        self.log.info("job #%s running: %s", self.job_id, message)
        return self.context(also=also)

    def _heartbeat(self) -> None:
        while not self._beat_stop.wait(self.heartbeat_every):
            self.heartbeat()

    def heartbeat(self) -> None:
        try:
            self.store.update_job(self.job_id)
        except Exception:  # noqa: BLE001 - a missed beat is harmless
            self.log.debug("missed a heartbeat of job #%s", self.job_id, exc_info=True)

    def progress(self, p: Mapping[str, Any]) -> None:
        self.store.update_job(self.job_id, progress=dict(p))

    def note(self, message: str) -> None:
        self.store.update_job(self.job_id, message=str(message))

    def cancel_requested(self) -> bool:
        return bool(self.store.cancel_requested(self.job_id))

    def done(self, message: str, progress: Mapping[str, Any] | None = None) -> None:
        self._end("done", message, progress)

    def cancelled(self, message: str, progress: Mapping[str, Any] | None = None) -> None:
        self._end("cancelled", message, progress)

    def failed(self, message: str, progress: Mapping[str, Any] | None = None) -> None:
        self._end("failed", message, progress)

    def _end(self, status: str, message: str, progress: Mapping[str, Any] | None) -> None:
        self._beat_stop.set()
        try:
            self.store.update_job(self.job_id, status=status, message=str(message)[:4000],
                                  progress=dict(progress) if progress is not None else None)
        except StoreError as exc:  # a full disk even after a checkpoint: the next look marks it failed
            # (the face reports the failure itself in one line; this goes to the worker's log)
            self.log.info("job #%s ended %s (%s), but that could not be recorded: %s",
                           self.job_id, status, message, exc)
        self.status = status
        self.log.info("job #%s %s: %s", self.job_id, status, message)

    # ------------------------------------------------------------------- helpers
    def context(self, also: ProgressFn | None = None) -> StepContext:
        """The step's context; ``also`` receives every progress report too (a terminal's bar)."""
        report: ProgressFn = self.progress
        if also is not None:
            fan = Throttle(self.progress, 0.5)

            def report(p: dict[str, Any], _fan=fan) -> None:  # the bar at once, the store throttled
                also(p)
                _fan(p, force=p.get("phase") in ("done", "stopped"))

            return StepContext(progress=report, note=self.note, stop_flag=self.cancel_requested,
                               logger=self.log, job_id=self.job_id, progress_every=0.0)
        return StepContext(progress=report, note=self.note, stop_flag=self.cancel_requested,
                           logger=self.log, job_id=self.job_id)

    def finish(self, message: str, progress: Mapping[str, Any] | None = None) -> None:
        """The message (and final progress) the job ends with when its block exits normally."""
        self._message = message
        self._final_progress = dict(progress) if progress is not None else None

    def running(self, message: str = "started", *, also: ProgressFn | None = None) -> "_Running":
        return _Running(self, message, also)

    def run(self, step: Callable[[StepContext], str], message: str = "started") -> str:
        """Run ``step(ctx)`` as this job; its return value is the job's final message."""
        with self.running(message) as ctx:
            result = step(ctx)
            self.finish(str(result))
        return str(result)


class _Running:
    def __init__(self, life: JobLifecycle, message: str, also: ProgressFn | None = None):
        self.life, self.message, self.also = life, message, also

    def __enter__(self) -> StepContext:
        return self.life.start(self.message, also=self.also)

    def __exit__(self, exc_type, exc, tb) -> bool:
        life = self.life
        try:
            if exc is None:
                life.done(life._message or "done", life._final_progress)
            elif isinstance(exc, (Cancelled, KeyboardInterrupt)):
                life.cancelled(str(exc) or "stopped")
            else:
                life.failed(f"{exc}" or type(exc).__name__)
        finally:
            life._beat_stop.set()
        return False  # never swallow the error: the face decides what to show


__all__ = ["JobLifecycle", "StepContext", "Throttle"]
