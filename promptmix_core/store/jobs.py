"""Jobs: background work recorded in the project (status, progress, heartbeat, cancel flag), one
live job per kind (:meth:`JobsMixin.claim_job`), dead workers found by pid and heartbeat, and the
space reserved so a job can record how it ended on a full disk."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path
from typing import Any, Mapping

from ..errors import JobBusyError, StoreFullError
from ..redact import _env_secrets, scrub_secrets
from .base import StoreBase
from .records import JOB_FINAL, Job, _row_to, status_columns


class JobsMixin(StoreBase):
    """Jobs of a project."""

    def create_job(self, kind: str, config: Mapping[str, Any], *, status: str = "queued") -> int:
        cfg = scrub_secrets(dict(config), _env_secrets())
        with self.transaction() as c:
            cur = c.execute(
                "INSERT INTO jobs(kind, status, config, created_at) VALUES (?, ?, ?, ?)",
                (kind, status, json.dumps(cfg), time.time()),
            )
            return int(cur.lastrowid)

    def get_job(self, job_id: int) -> Job | None:
        rows = self._query("SELECT * FROM jobs WHERE id = ?", (job_id,))
        return _row_to(Job, rows[0], ("config", "progress"), ("cancel_requested",)) if rows else None

    def list_jobs(self, kind: str | None = None, limit: int = 100) -> list[Job]:
        if kind:
            rows = self._query("SELECT * FROM jobs WHERE kind = ? ORDER BY id DESC LIMIT ?", (kind, limit))
        else:
            rows = self._query("SELECT * FROM jobs ORDER BY id DESC LIMIT ?", (limit,))
        return [_row_to(Job, r, ("config", "progress"), ("cancel_requested",)) for r in rows]

    def update_job(
        self,
        job_id: int,
        *,
        status: str | None = None,
        progress: Mapping[str, Any] | None = None,
        message: str | None = None,
        pid: int | None = None,
        heartbeat: bool = True,
    ) -> None:
        now = time.time()
        sets, params = status_columns(status, now)
        if progress is not None:
            sets.append("progress = ?")
            params.append(json.dumps(dict(progress)))
        if message is not None:
            sets.append("message = ?")
            params.append(scrub_secrets(message, _env_secrets()))
        if pid is not None:
            sets.append("pid = ?")
            params.append(pid)
        if heartbeat:
            sets.append("heartbeat_at = ?")
            params.append(now)
        if not sets:
            return
        sql = f"UPDATE jobs SET {', '.join(sets)} WHERE id = ?"
        try:
            with self.transaction() as c:
                c.execute(sql, (*params, job_id))
        except StoreFullError:
            if status not in JOB_FINAL:
                raise
            # The last word on a job matters most: make room (the space reserved when it started, and
            # the WAL moved into the database file), then try once more.
            self.release_reserve()
            self.checkpoint()
            with self.transaction() as c:
                c.execute(sql, (*params, job_id))
        if status in JOB_FINAL:
            self.release_reserve()

    @property
    def reserve_path(self) -> Path:
        return self.path.with_name(self.path.name + ".reserve")

    def reserve_space(self, size: int = 64 * 1024) -> bool:
        """Set aside ``size`` bytes beside the project while a job runs, so that on a disk that fills up
        the job can still record how it ended (:meth:`release_reserve` frees them). False when even
        that did not fit."""
        if self.read_only:
            return False
        try:
            with open(self.reserve_path, "wb") as fh:
                fh.write(b"\0" * size)
                fh.flush()
                os.fsync(fh.fileno())
            return True
        except OSError:
            self.release_reserve()
            return False

    def release_reserve(self) -> None:
        try:
            self.reserve_path.unlink()
        except OSError:
            pass

    def checkpoint(self) -> bool:
        """Copy the WAL into the database file and truncate it (frees space); False when it could not."""
        try:
            row = self._connect().execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            return bool(row is not None and row[0] == 0)
        except sqlite3.Error:
            return False

    def claim_job(
        self,
        kind: str,
        config: Mapping[str, Any] | None = None,
        *,
        status: str = "queued",
        pid: int | None = None,
        job_id: int | None = None,
        stale_after: float = 60.0,
        origin: str = "",
    ) -> int:
        """Record a new job of ``kind`` (or take back ``job_id`` to resume it) unless a live job of the
        same kind runs on this project: one writer per job kind. The look and the write are one
        IMMEDIATE transaction, so of two processes claiming at once exactly one wins; the other gets a
        :class:`JobBusyError` naming the running job. A job whose worker is gone (its pid dead, or no
        heartbeat for ``stale_after`` seconds) is marked failed in the same transaction and its slot
        taken over."""
        now = time.time()
        with self.transaction() as c:
            rows = c.execute(
                "SELECT * FROM jobs WHERE kind = ? AND status IN ('queued', 'running') ORDER BY id", (kind,)
            ).fetchall()
            for row in rows:
                job = _row_to(Job, row, ("config", "progress"), ("cancel_requested",))
                if _job_is_dead(job, now, stale_after):
                    self._mark_dead(c, job.id, now)
                    continue
                raise JobBusyError(describe_busy_job(job), job.id)
            if job_id is None:
                cfg = scrub_secrets(dict(config or {}), _env_secrets())
                cur = c.execute(
                    "INSERT INTO jobs(kind, status, config, created_at, pid, heartbeat_at, started_at, origin) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (kind, status, json.dumps(cfg), now, pid, now, now if status == "running" else None, origin),
                )
                return int(cur.lastrowid)
            found = c.execute("SELECT status FROM jobs WHERE id = ? AND kind = ?", (job_id, kind)).fetchone()
            if found is None:
                raise KeyError(f"no {kind} job #{job_id}")
            c.execute(
                "UPDATE jobs SET status = ?, cancel_requested = 0, finished_at = NULL, pid = ?, heartbeat_at = ?, "
                "message = 'resuming', started_at = COALESCE(started_at, ?), origin = ? WHERE id = ?",
                (status, pid, now, now if status == "running" else None, origin, job_id),
            )
            return int(job_id)

    @staticmethod
    def _mark_dead(c: sqlite3.Connection, job_id: int, now: float) -> None:
        c.execute(
            "UPDATE jobs SET status = 'failed', finished_at = ?, message = 'the worker stopped unexpectedly' "
            "WHERE id = ?", (now, job_id),
        )
        c.execute(
            "UPDATE runs SET status = 'failed', finished_at = ?, "
            "error = CASE WHEN error = '' THEN 'the worker stopped unexpectedly' ELSE error END "
            "WHERE job_id = ? AND status IN ('queued', 'running')",
            (now, job_id),
        )

    def request_cancel(self, job_id: int) -> None:
        with self.transaction() as c:
            c.execute("UPDATE jobs SET cancel_requested = 1 WHERE id = ?", (job_id,))

    def cancel_requested(self, job_id: int) -> bool:
        rows = self._query("SELECT cancel_requested FROM jobs WHERE id = ?", (job_id,))
        return bool(rows and rows[0][0])

    def reap_stale_jobs(self, stale_after: float = 60.0) -> list[int]:
        """Mark jobs whose worker died (process gone, or no heartbeat for a while) as failed."""
        if self.read_only:
            return []
        reaped = []
        now = time.time()
        for job in self.list_jobs(limit=1000):
            if not job.active or not _job_is_dead(job, now, stale_after):
                continue
            with self.transaction() as c:  # looked at again inside the write lock: it may have moved on
                row = c.execute("SELECT * FROM jobs WHERE id = ?", (job.id,)).fetchone()
                fresh = _row_to(Job, row, ("config", "progress"), ("cancel_requested",)) if row else None
                if fresh is None or not fresh.active or not _job_is_dead(fresh, time.time(), stale_after):
                    continue
                self._mark_dead(c, job.id, now)
            reaped.append(job.id)
        return reaped


def _job_is_dead(job: Job, now: float, stale_after: float) -> bool:
    """Whether an active job's worker is gone: its process has ended, or it has not beaten its
    heartbeat for ``stale_after`` seconds (or, with a live pid, for ten times that: a reused pid or a
    hung worker), or it was queued and never picked up."""
    alive = _pid_alive(job.pid) if job.pid else None
    last = job.heartbeat_at or job.started_at or job.created_at
    if alive is False:
        return True
    if alive is None:
        return now - last > stale_after
    return now - last > max(stale_after * 10, 600)


def describe_busy_job(job: Job) -> str:
    """The message that refuses a second job of the same kind, naming the running one."""
    origin = " from the command line" if job.origin == "cli" else ""
    when = time.strftime("%H:%M:%S", time.localtime(job.started_at or job.created_at))
    pid = f", pid {job.pid}" if job.pid else ""
    return (
        f"a {job.kind} job is already running on this project: job #{job.id}, started {when}{origin}{pid}. "
        "Stop it or wait for it to finish"
    )


def _pid_alive(pid: int | None) -> bool | None:
    if not pid:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child still answers kill(0); look at its state where /proc exists
    stat = Path(f"/proc/{pid}/stat")
    if stat.exists():
        try:
            return stat.read_text().split(")")[-1].split()[0] != "Z"
        except OSError:
            return True
    return True

