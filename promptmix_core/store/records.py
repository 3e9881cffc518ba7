"""The store's records: the dataclasses rows are read into, and the status vocabularies."""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass, field
from typing import Any, Iterable

REVIEW_STATUSES = ("pending", "accepted", "overridden", "rejected")
RELABEL_STATUSES = ("agree", "changed", "unparseable")
JOB_ACTIVE = ("queued", "running")
JOB_FINAL = ("done", "failed", "cancelled")


@dataclass
class Example:
    id: int
    job_id: int
    slot: str
    text: str
    label: str
    intended_label: str
    mixed_with: str | None
    alpha: float | None
    mixup: bool
    prompt: str
    raw_response: str
    model: str
    endpoint: str
    created_at: float
    llm_label: str | None = None
    llm_raw: str | None = None
    relabel_status: str | None = None
    relabel_prompt: str | None = None
    relabeled_at: float | None = None
    review_status: str = "pending"
    review_label: str | None = None
    reviewed_at: float | None = None
    reviewed_by: str | None = None
    version: int = 0
    norm_text: str = ""
    llm_confidence: float | None = None
    flag: str = ""
    response_id: int | None = None  # the generation call it came from (prompt and raw response live there)
    request_index: int | None = None  # request r of its class in that job (from the response, or the slot)
    judge_label: str | None = None  # a second, no-LLM judge's suggested class (None: not judged)
    judge_confidence: float | None = None  # that judge's confidence in [0, 1]

    @property
    def final_label(self) -> str | None:
        """The label after human review (None when rejected); the current label when not reviewed."""
        if self.review_status == "rejected":
            return None
        if self.review_status in ("overridden", "accepted") and self.review_label:
            return self.review_label  # what the person decided (an accept keeps the label it accepted)
        return self.label

    def to_record(self) -> dict[str, Any]:
        """A flat, export-ready dict (no prompt/raw response)."""
        return {
            "id": self.id,
            "text": self.text,
            "label": self.label,
            "intended_label": self.intended_label,
            "mixed_with": self.mixed_with,
            "alpha": self.alpha,
            "llm_label": self.llm_label,
            "llm_confidence": self.llm_confidence,
            "judge_label": self.judge_label,
            "judge_confidence": self.judge_confidence,
            "relabel_status": self.relabel_status,
            "flag": self.flag,
            "review_status": self.review_status,
            "review_label": self.review_label,
            "final_label": self.final_label,
            "model": self.model,
            "job_id": self.job_id,
        }


@dataclass
class Job:
    id: int
    kind: str
    status: str
    config: dict[str, Any]
    progress: dict[str, Any]
    message: str
    pid: int | None
    cancel_requested: bool
    created_at: float
    started_at: float | None
    finished_at: float | None
    heartbeat_at: float | None
    origin: str = ""

    @property
    def active(self) -> bool:
        return self.status in JOB_ACTIVE


@dataclass
class Run:
    id: int
    job_id: int | None
    name: str
    method: str
    status: str
    config: dict[str, Any]
    device: str
    model_dir: str | None
    final_metrics: dict[str, Any]
    error: str
    created_at: float
    started_at: float | None
    finished_at: float | None


@dataclass
class MetricPoint:
    run_id: int
    step: int
    epoch: float | None
    name: str
    value: float
    created_at: float = field(default_factory=time.time)


def status_columns(status: str | None, now: float) -> tuple[list[str], list[Any]]:
    """The SET clauses (and their values) a status change writes, the same for jobs and runs: the status,
    ``started_at`` the first time it runs, ``finished_at`` when it ends."""
    sets: list[str] = []
    params: list[Any] = []
    if status is not None:
        sets.append("status = ?")
        params.append(status)
        if status == "running":
            sets.append("started_at = COALESCE(started_at, ?)")
            params.append(now)
        if status in JOB_FINAL:
            sets.append("finished_at = ?")
            params.append(now)
    return sets, params


def _row_to(cls, row: sqlite3.Row, json_fields: Iterable[str] = (), bool_fields: Iterable[str] = ()):
    d = dict(row)
    for f in json_fields:
        d[f] = json.loads(d[f]) if d.get(f) else {}
    for f in bool_fields:
        d[f] = bool(d[f])
    names = cls.__dataclass_fields__.keys()
    return cls(**{k: v for k, v in d.items() if k in names})

