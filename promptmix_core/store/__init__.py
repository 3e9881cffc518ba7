"""Project store: one SQLite file per project (WAL mode), in rooms.

Holds the task, every generated example with full provenance, relabels, review decisions,
background jobs with their progress, training runs and their metrics. (The LLM response cache is
its own file: ``paths.llm_cache_path()``.)
Every write is one transaction; the app and background workers use the same file at once.
API keys are never written here (see :func:`promptmix_core.redact.scrub_secrets`).

Rooms (each a mixin of :class:`ProjectStore`, the one facade):

- :mod:`.schema`: the base schema and additive migrations; :mod:`.base`: opening and checking a file,
  connections, transactions, meta, settings, task, the project's identity
- :mod:`.records`: ``Example``, ``Job``, ``Run``, ``MetricPoint`` and the status vocabularies
- :mod:`.examples`: examples, responses, relabels, flags, the judge's suggestions, narrow reads
- :mod:`.queue`: the review queue (card columns, queue orders); :mod:`.reviews`: review decisions
  through one logged path, bulk actions, undo
- :mod:`.jobs`: jobs, one live job per kind, dead workers, reserved space
- :mod:`.runs`: training runs, metrics, the rows each run used; :mod:`.testset`: the test set
- :mod:`.vectors`: example vectors and nearest classes
- :mod:`.team`: reviews per example, each reviewer's vote, the final-label rule, adjudication
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import JobBusyError, StoreError, StoreFullError, StoreReadOnlyError, storage_error
from ..errors import can_write as _can_write
from ..redact import _SECRET_KEYS, _env_secrets, known_secrets, register_secret, scrub_secrets
from .base import _VERIFIED, _VERIFIED_LOCK, StoreBase
from .examples import _EXAMPLE_COLUMNS, EXPORT_COLUMNS, LIST_COLUMNS, ExamplesMixin, _example_where
from .jobs import JobsMixin, _job_is_dead, _pid_alive, describe_busy_job
from .queue import (
    _NEAREST_DIFFERS_SQL,
    INFORMATIVE_SCORE_SQL,
    INFORMATIVE_WEIGHTS,
    LOW_CONFIDENCE,
    QUEUE_ORDERS,
    QueueMixin,
    _card_columns,
    _statuses,
)
from .records import JOB_ACTIVE, JOB_FINAL, RELABEL_STATUSES, REVIEW_STATUSES, Example, Job, MetricPoint, Run, _row_to
from .reviews import ConflictError, ReviewsMixin, _applied_result
from .runs import RunsMixin
from .schema import _ADDED_COLUMNS, _ADDED_TABLES, _SCHEMA, APP_ID, SCHEMA_VERSION
from .team import TeamMixin
from .testset import HeldOutSetMixin
from .vectors import VectorsMixin


class ProjectStore(
    ExamplesMixin, QueueMixin, ReviewsMixin, TeamMixin, VectorsMixin, JobsMixin, RunsMixin, HeldOutSetMixin, StoreBase
):
    """A PromptMix project in one SQLite file. Safe to use from several threads and processes."""

    def summary(self) -> dict[str, Any]:
        task = self.load_task()
        counts = self.count_examples()
        runs = self.list_runs()
        return {
            "name": task.name if task else self.path.stem,
            "classes": len(task.classes) if task else 0,
            "seeds": sum(len(c.examples) for c in task.classes) if task else 0,
            "generated": counts["total"],
            "relabelled": counts["relabelled"],
            "reviewed": counts["reviewed"],
            "runs": len(runs),
            "runs_done": sum(r.status == "done" for r in runs),
            "active_jobs": [j.id for j in self.list_jobs() if j.active],
        }


def open_project(path: str | Path, *, create: bool = False) -> ProjectStore:
    """Open an existing project (or create it with ``create=True``); clear error for bad files."""
    p = Path(path).expanduser()
    if not create and not p.exists():
        raise StoreError(f"no project at {p}")
    return ProjectStore(p, create=create)


__all__ = [
    "APP_ID", "EXPORT_COLUMNS", "INFORMATIVE_SCORE_SQL", "INFORMATIVE_WEIGHTS", "JOB_ACTIVE", "JOB_FINAL",
    "LIST_COLUMNS", "LOW_CONFIDENCE", "QUEUE_ORDERS", "RELABEL_STATUSES", "REVIEW_STATUSES", "SCHEMA_VERSION",
    "ConflictError", "Example", "Job", "JobBusyError", "MetricPoint", "ProjectStore", "Run", "StoreError",
    "StoreFullError", "StoreReadOnlyError", "describe_busy_job", "known_secrets", "open_project",
    "register_secret", "scrub_secrets", "storage_error",
]
# kept importable from here for code written against the single-module store
_COMPAT = (_can_write, _SECRET_KEYS, _env_secrets, _VERIFIED, _VERIFIED_LOCK, _EXAMPLE_COLUMNS, _example_where,
           _job_is_dead, _pid_alive, _NEAREST_DIFFERS_SQL, _card_columns, _statuses, _row_to, _applied_result,
           _ADDED_COLUMNS, _ADDED_TABLES, _SCHEMA)
