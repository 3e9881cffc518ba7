"""Project store: one SQLite file per project (WAL mode).

Holds the task, every generated example with full provenance, relabels, review decisions,
background jobs with their progress, training runs and their metrics. (The LLM response cache is
its own file: ``paths.llm_cache_path()``.)
Every write is one transaction; the app and background workers use the same file at once.
API keys are never written here (see :func:`scrub_secrets`).
"""

from __future__ import annotations

import errno
import json
import os
import re
import sqlite3
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

from .task import Task, TaskError

APP_ID = 0x504D5853  # "PMXS" stored in SQLite's application_id header field
SCHEMA_VERSION = 1

REVIEW_STATUSES = ("pending", "accepted", "overridden", "rejected")
RELABEL_STATUSES = ("agree", "changed", "unparseable")
JOB_ACTIVE = ("queued", "running")
JOB_FINAL = ("done", "failed", "cancelled")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS task (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    name TEXT NOT NULL,
    body TEXT NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    config TEXT NOT NULL DEFAULT '{}',
    progress TEXT NOT NULL DEFAULT '{}',
    message TEXT NOT NULL DEFAULT '',
    pid INTEGER,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    heartbeat_at REAL
);
CREATE TABLE IF NOT EXISTS examples (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id INTEGER NOT NULL,
    slot TEXT NOT NULL,
    text TEXT NOT NULL,
    norm_text TEXT NOT NULL,
    label TEXT NOT NULL,
    intended_label TEXT NOT NULL,
    mixed_with TEXT,
    alpha REAL,
    mixup INTEGER NOT NULL DEFAULT 1,
    prompt TEXT NOT NULL DEFAULT '',
    raw_response TEXT NOT NULL DEFAULT '',
    model TEXT NOT NULL DEFAULT '',
    endpoint TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    llm_label TEXT,
    llm_raw TEXT,
    relabel_status TEXT,
    relabel_prompt TEXT,
    relabeled_at REAL,
    review_status TEXT NOT NULL DEFAULT 'pending',
    review_label TEXT,
    reviewed_at REAL,
    reviewed_by TEXT,
    version INTEGER NOT NULL DEFAULT 0,
    UNIQUE (job_id, norm_text),
    UNIQUE (job_id, slot)
);
CREATE INDEX IF NOT EXISTS examples_by_job ON examples(job_id);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id INTEGER,
    name TEXT NOT NULL DEFAULT '',
    method TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL,
    config TEXT NOT NULL DEFAULT '{}',
    device TEXT NOT NULL DEFAULT '',
    model_dir TEXT,
    final_metrics TEXT NOT NULL DEFAULT '{}',
    error TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL
);
CREATE TABLE IF NOT EXISTS metrics (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id INTEGER NOT NULL,
    step INTEGER NOT NULL,
    epoch REAL,
    name TEXT NOT NULL,
    value REAL NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS metrics_by_run ON metrics(run_id, id);
"""
# The LLM response cache (table ``llm_cache``) is declared once, in ``llm/cache.py``; files written by
# earlier versions keep theirs (unused: every entry point now shares ``paths.llm_cache_path()``).

# Additive migrations, applied on open when missing (see ``ProjectStore._migrate``). Append here; never
# edit an entry that has shipped. Tables: (name, "CREATE TABLE IF NOT EXISTS ...; CREATE INDEX ...");
# an index alone may be listed too, under its own name.
_ADDED_TABLES: list[tuple[str, str]] = [
    # one row per LLM generation call that gave kept examples: its prompt and answer are stored once
    # and the examples kept from it point at it (``examples.response_id``) instead of copying them
    (
        "responses",
        "CREATE TABLE IF NOT EXISTS responses (id INTEGER PRIMARY KEY AUTOINCREMENT, job_id INTEGER NOT NULL, "
        "call_key TEXT NOT NULL, class_name TEXT NOT NULL DEFAULT '', request_index INTEGER, mixed_with TEXT, "
        "alpha REAL, prompt TEXT NOT NULL DEFAULT '', raw_response TEXT NOT NULL DEFAULT '', finish_reason TEXT, "
        "model TEXT NOT NULL DEFAULT '', endpoint TEXT NOT NULL DEFAULT '', prompt_tokens INTEGER, "
        "completion_tokens INTEGER, created_at REAL NOT NULL, UNIQUE (job_id, call_key)); "
        "CREATE INDEX IF NOT EXISTS responses_by_job ON responses(job_id)",
    ),
    # Every review decision made through ``apply_review_batch`` / ``bulk_decide``, with what it replaced:
    # idempotent by the client's decision id, conflicts judged per browser tab, undo as a history per tab
    # (a unit is one decision or one bulk action). Also the index the review queue pages through.
    (
        "review_log",
        """CREATE TABLE IF NOT EXISTS review_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    client_id TEXT NOT NULL UNIQUE,
    unit TEXT NOT NULL,
    tab TEXT NOT NULL DEFAULT '',
    reviewer TEXT,
    example_id INTEGER NOT NULL,
    action TEXT NOT NULL,
    label TEXT,
    prev_status TEXT NOT NULL,
    prev_label TEXT,
    prev_reviewed_at REAL,
    prev_reviewed_by TEXT,
    status TEXT NOT NULL,
    version INTEGER NOT NULL,
    undo_of TEXT,
    undone INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS review_log_by_example ON review_log(example_id, version);
CREATE INDEX IF NOT EXISTS review_log_by_unit ON review_log(unit);
CREATE INDEX IF NOT EXISTS review_log_by_tab ON review_log(tab, id);
CREATE INDEX IF NOT EXISTS examples_by_review ON examples(review_status, id);
CREATE INDEX IF NOT EXISTS examples_review_cover ON examples(review_status, relabel_status, llm_confidence, flag,
    intended_label, llm_label, mixed_with)""",
    ),
    # MiniLM sentence vectors of generated examples (float16) and the class nearest by embedding
    # (against seeds and accepted examples), for the review queue's "most informative" order.
    (
        "example_vectors",
        """CREATE TABLE IF NOT EXISTS example_vectors (
    example_id INTEGER PRIMARY KEY,
    model TEXT NOT NULL,
    vec BLOB NOT NULL,
    nearest_label TEXT,
    nearest_score REAL
)""",
    ),
    # the project's test set: real labelled examples every training run is scored on (never trained on)
    ("test_examples", """
CREATE TABLE IF NOT EXISTS test_examples (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    text TEXT NOT NULL,
    norm_text TEXT NOT NULL UNIQUE,
    label TEXT NOT NULL,
    source TEXT NOT NULL DEFAULT '',
    added_at REAL NOT NULL
)"""),
    # exactly which rows (and labels) a training run used: split train / val / test, source seed /
    # generated / file / test_set; example_id is the examples row for generated ones
    ("run_examples", """
CREATE TABLE IF NOT EXISTS run_examples (
    run_id INTEGER NOT NULL,
    split TEXT NOT NULL,
    position INTEGER NOT NULL,
    source TEXT NOT NULL,
    example_id INTEGER,
    text TEXT NOT NULL,
    label TEXT NOT NULL,
    PRIMARY KEY (run_id, split, position)
)"""),
    # generation never adds a text the project already holds (any job): looked up by normalised text
    ("examples_by_norm", "CREATE INDEX IF NOT EXISTS examples_by_norm ON examples(norm_text)"),
]
# Columns: (table, column, SQL declaration with a default).
_ADDED_COLUMNS: list[tuple[str, str, str]] = [
    # the relabeler's confidence in its answer, in [0, 1] (from logprobs or candidate scoring); NULL: unknown
    ("examples", "llm_confidence", "REAL"),
    # why an example is probably junk ("meta-text", "near-copy of a seed", ...); '' when not flagged
    ("examples", "flag", "TEXT NOT NULL DEFAULT ''"),
    # the generation call the example came from (``responses.id``); NULL in files written before it,
    # whose examples carry their prompt and raw response inline
    ("examples", "response_id", "INTEGER"),
    # who started a job: "cli" (promptmix ... --project) or "" (the app); named when a second one is refused
    ("jobs", "origin", "TEXT NOT NULL DEFAULT ''"),
]

_SECRET_PATTERNS = [  # (pattern, replacement)
    (re.compile(r"sk-[A-Za-z0-9_\-]{8,}"), "***"),
    (re.compile(r"(?i)(bearer\s+)[A-Za-z0-9_\-\.]{8,}"), r"\1***"),
    # credentials in a URL: scheme://user:password@host (the user name goes too)
    (re.compile(r"(?i)(\b[a-z][a-z0-9+.\-]*://)[^/\s:@'\"]+:[^/\s@'\"]*@"), r"\1***@"),
    # a key passed as a query parameter: ?api_key=..., &key=..., &token=...
    (re.compile(r"(?i)([?&](?:api[_\-]?key|key|token|access_token|password|secret)=)[^&\s'\"]+"), r"\1***"),
]
_SECRET_KEYS = {"api_key", "apikey", "key", "authorization", "token", "secret", "password"}


def scrub_secrets(value: Any, secrets: Sequence[str] = ()) -> Any:
    """Remove API keys from a value before it is stored, logged or shown."""
    if isinstance(value, str):
        out = value
        for s in secrets:
            if s and len(s) >= 4:
                out = out.replace(s, "***")
        for pat, repl in _SECRET_PATTERNS:
            out = pat.sub(repl, out)
        return out
    if isinstance(value, Mapping):
        return {
            k: ("***" if str(k).lower() in _SECRET_KEYS and v else scrub_secrets(v, secrets))
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [scrub_secrets(v, secrets) for v in value]
    return value


_REGISTERED_SECRETS: set[str] = set()
_PLACEHOLDER_KEYS = {"not-needed", "local", "none", "empty", "no-key"}


def register_secret(value: str | None) -> None:
    """Remember a key this process uses (an LLM client's, a worker's) so that every later write and
    message scrubs it too, even once it has left the environment."""
    if value and len(value) >= 6 and value.strip().lower() not in _PLACEHOLDER_KEYS:
        _REGISTERED_SECRETS.add(value)


def _env_secrets() -> list[str]:
    env = [v for k, v in os.environ.items() if k.endswith("API_KEY") and v]
    return [*env, *sorted(_REGISTERED_SECRETS - set(env))]


def known_secrets(*extra: str | None) -> list[str]:
    """Every key this process knows of (``extra`` plus the ``*API_KEY`` environment variables)."""
    return [s for s in (*extra, *_env_secrets()) if s]


_VERIFIED: set[str] = set()
_VERIFIED_LOCK = threading.Lock()


from .errors import JobBusyError, StoreError, StoreFullError, StoreReadOnlyError  # noqa: E402 - defined in errors.py

_SQLITE_FULL, _SQLITE_READONLY, _SQLITE_CANTOPEN = 13, 8, 14


def _can_write(path: Path) -> bool:
    """Whether this process may write ``path`` (a file that exists, else its folder)."""
    target = path if path.exists() else path.parent
    return os.access(target, os.W_OK) and (target == path.parent or os.access(path.parent, os.W_OK))


def storage_error(exc: BaseException, path: str | Path) -> StoreError | None:
    """Words for a write that failed because of the disk or the folder, or None for other errors.

    "the disk holding FOLDER is full" / "cannot write to folder FOLDER"."""
    path = Path(path)
    folder = path.parent
    code = getattr(exc, "sqlite_errorcode", None)
    base = code & 0xFF if isinstance(code, int) else None
    err = getattr(exc, "errno", None)
    text = str(exc).lower()
    if base == _SQLITE_FULL or err == errno.ENOSPC or "disk is full" in text or "no space left" in text:
        return StoreFullError(
            f"the disk holding {folder} is full: {path.name} could not be written; what was saved before is "
            "kept. Free some space, then resume"
        )
    if (
        base == _SQLITE_READONLY or err in (errno.EROFS, errno.EACCES, errno.EPERM) or "readonly" in text
        or "read-only" in text or (base == _SQLITE_CANTOPEN and not _can_write(path))
    ):
        return StoreReadOnlyError(f"cannot write to folder {folder}: {path.name} is read-only here")
    return None


class ConflictError(RuntimeError):
    """A review decision was made on a stale version of an example (someone else changed it)."""


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

    @property
    def final_label(self) -> str | None:
        """The label after human review (None when rejected); the current label when not reviewed."""
        if self.review_status == "rejected":
            return None
        if self.review_status == "overridden" and self.review_label:
            return self.review_label
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


def _row_to(cls, row: sqlite3.Row, json_fields: Iterable[str] = (), bool_fields: Iterable[str] = ()):
    d = dict(row)
    for f in json_fields:
        d[f] = json.loads(d[f]) if d.get(f) else {}
    for f in bool_fields:
        d[f] = bool(d[f])
    names = cls.__dataclass_fields__.keys()
    return cls(**{k: v for k, v in d.items() if k in names})


# --------------------------------------------------------------------------- review queue helpers
QUEUE_ORDERS = ("pending", "informative")
LOW_CONFIDENCE = 0.5
# Why an example is worth a look early ("most informative first"): each reason adds its weight.
INFORMATIVE_WEIGHTS = {"relabel_differs": 4, "relabel_failed": 4, "embedding_differs": 3, "flagged": 2,
                       "low_confidence": 1}
_NEAREST_DIFFERS_SQL = (
    "(v.nearest_label IS NOT NULL AND v.nearest_label != e.intended_label "
    "AND v.nearest_label != COALESCE(e.llm_label, e.intended_label))"
)
INFORMATIVE_SCORE_SQL = (
    f"((e.relabel_status IS 'changed') * {INFORMATIVE_WEIGHTS['relabel_differs']}"
    f" + (e.relabel_status IS 'unparseable') * {INFORMATIVE_WEIGHTS['relabel_failed']}"
    f" + {_NEAREST_DIFFERS_SQL} * {INFORMATIVE_WEIGHTS['embedding_differs']}"
    f" + (COALESCE(e.flag, '') != '') * {INFORMATIVE_WEIGHTS['flagged']}"
    f" + (e.llm_confidence IS NOT NULL AND e.llm_confidence < {LOW_CONFIDENCE})"
    f" * {INFORMATIVE_WEIGHTS['low_confidence']})"
)
# columns tables read by default (never the prompt or the raw generation response)
LIST_COLUMNS = ("id", "text", "intended_label", "mixed_with", "alpha", "llm_label", "relabel_status",
                "review_status", "review_label", "label", "job_id")
EXPORT_COLUMNS = ("id", "text", "label", "intended_label", "mixed_with", "alpha", "llm_label", "relabel_status",
                  "review_status", "review_label", "job_id")
_EXAMPLE_COLUMNS = {
    "id", "job_id", "slot", "text", "norm_text", "label", "intended_label", "mixed_with", "alpha", "mixup",
    "model", "endpoint", "created_at", "llm_label", "llm_raw", "relabel_status", "relabeled_at",
    "review_status", "review_label", "reviewed_at", "reviewed_by", "version", "llm_confidence", "flag",
}


def _card_columns(e: str, v: str) -> str:
    """The columns the review card shows (the relabel's raw answer cut to __RAW__ characters)."""
    return (
        f"{e}id AS id, {e}job_id AS job_id, {e}text AS text, {e}label AS label, "
        f"{e}intended_label AS intended_label, {e}mixed_with AS mixed_with, {e}alpha AS alpha, {e}mixup AS mixup, "
        f"{e}llm_label AS llm_label, substr({e}llm_raw, 1, __RAW__) AS llm_raw, "
        f"length({e}llm_raw) AS llm_raw_len, {e}relabel_status AS relabel_status, "
        f"{e}llm_confidence AS llm_confidence, COALESCE({e}flag, '') AS flag, {e}review_status AS review_status, "
        f"{e}review_label AS review_label, {e}version AS version, {v}nearest_label AS nearest_label"
    )


def _example_where(
    *,
    review_status: str | Sequence[str] | None = None,
    label: str | None = None,
    relabel_status: str | Sequence[str] | None = None,
    search: str | None = None,
    flagged: bool | None = None,
    alias: str = "",
) -> tuple[list[str], list[Any]]:
    """WHERE clauses of the review filters, for :meth:`ProjectStore.list_examples` and the review queue."""
    where: list[str] = []
    params: list[Any] = []
    if flagged is not None:
        where.append(f"COALESCE({alias}flag, '') {'!=' if flagged else '='} ''")
    for col, val in (("review_status", review_status), ("relabel_status", relabel_status)):
        if val is None:
            continue
        col = alias + col
        vals = [val] if isinstance(val, str) else list(val)
        if "none" in vals:
            vals = [v for v in vals if v != "none"]
            clause = f"({col} IS NULL" + (f" OR {col} IN ({','.join('?' * len(vals))})" if vals else "") + ")"
        else:
            clause = f"{col} IN ({','.join('?' * len(vals))})"
        where.append(clause)
        params.extend(vals)
    if label is not None:
        where.append(f"({alias}intended_label = ? OR {alias}llm_label = ? OR {alias}mixed_with = ?)")
        params.extend([label, label, label])
    if search:
        where.append(f"instr(lower({alias}text), lower(?)) > 0")
        params.append(search)
    return where, params


def _statuses(review_status: str | Sequence[str] | None) -> set[str]:
    """The review statuses a filter lets through."""
    if review_status is None:
        return set(REVIEW_STATUSES)
    vals = [review_status] if isinstance(review_status, str) else list(review_status)
    return {v for v in vals if v in REVIEW_STATUSES}


def _applied_result(rows: Sequence[sqlite3.Row]) -> dict[str, Any]:
    """The result of an operation found already applied (a resend)."""
    first = rows[0]
    if first["undo_of"]:
        return {"ok": True, "undo": first["undo_of"], "n": len(rows), "dup": True,
                "restored": [{"id": int(r["example_id"]), "version": int(r["version"])} for r in rows[:200]]}
    return {"ok": True, "id": int(first["example_id"]), "status": first["action"], "label": first["label"],
            "version": int(first["version"]), "dup": True}


class ProjectStore:
    """A PromptMix project in one SQLite file. Safe to use from several threads and processes."""

    def __init__(self, path: str | Path, *, create: bool = True):
        self.path = Path(path).expanduser()
        if self.path.is_dir():
            raise StoreError(f"{self.path} is a folder, not a project file")
        exists = self.path.exists() and self.path.stat().st_size > 0
        if not exists and not create:
            if self.path.exists():
                raise StoreError(f"{self.path.name} is an empty file, not a PromptMix project")
            raise StoreError(f"no project at {self.path}")
        # A project in a folder (or a file) this process cannot write opens read-only: it can be looked
        # at, and every write says "cannot write to folder X" instead of failing somewhere deep.
        self.read_only = False
        self._uri: str | None = None
        if exists:
            key = str(self.path.resolve())
            with _VERIFIED_LOCK:
                if key not in _VERIFIED:
                    # Read the raw header once per process, before any SQLite connection to the file
                    # exists here: closing a second descriptor on an open SQLite file drops every POSIX
                    # lock this process holds on it, which breaks WAL readers (SQLite's own warning).
                    self._check_header()
                    _VERIFIED.add(key)
        else:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise storage_error(exc, self.path) or StoreError(
                    f"cannot create the folder {self.path.parent}: {exc.strerror or exc}") from None
            if not _can_write(self.path):
                raise StoreReadOnlyError(
                    f"cannot write to folder {self.path.parent}: the project {self.path.name} cannot be created there"
                )
            with _VERIFIED_LOCK:  # made here: a later open in this process must not read it raw either
                _VERIFIED.add(str(self.path.resolve()))
        self._local = threading.local()
        if exists and not _can_write(self.path):
            self._open_read_only()
            return
        try:
            self._init_schema(new=not exists)
        except StoreError:
            if not exists:
                self._forget_new_file()
            raise

    def _forget_new_file(self) -> None:
        """A project that could not be created leaves no empty file behind."""
        for side in (self.path, self.path.with_name(self.path.name + "-wal"),
                     self.path.with_name(self.path.name + "-shm")):
            try:
                side.unlink()
            except OSError:
                pass

    def _open_read_only(self) -> None:
        """Open without writing anything, not even SQLite's ``-shm`` file: ``mode=ro`` when the WAL side
        files exist, else ``immutable=1`` (nobody can write a file in a read-only folder)."""
        from urllib.parse import quote

        self.read_only = True
        base = "file:" + quote(str(self.path.resolve()))
        last: Exception | None = None
        for params in ("mode=ro", "immutable=1"):
            self._uri = f"{base}?{params}"
            self.close()
            try:
                conn = self._connect()
                tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
                app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            except sqlite3.DatabaseError as exc:
                last = exc
                continue
            if app_id != APP_ID and tables and "meta" not in tables:
                self.close()
                raise StoreError(f"{self.path.name} is an SQLite database of another application, not a project")
            if not {"meta", "examples", "jobs"} <= tables:
                self.close()
                raise StoreError(f"{self.path.name} is not a complete project and cannot be repaired in a "
                                 f"read-only folder ({self.path.parent})")
            return
        self.close()
        raise StoreError(f"{self.path.name} cannot be read: {last}")

    @property
    def read_only_reason(self) -> str:
        return f"cannot write to folder {self.path.parent}: the project is open read-only"

    # ------------------------------------------------------------------ plumbing
    def _check_header(self) -> None:
        with open(self.path, "rb") as fh:
            head = fh.read(100)
        if not head.startswith(b"SQLite format 3\x00"):
            raise StoreError(f"{self.path.name} is not a PromptMix project (not an SQLite database)")
        app_id = int.from_bytes(head[68:72], "big")
        if app_id not in (0, APP_ID):
            raise StoreError(f"{self.path.name} is an SQLite file of another application, not a project")
        # A cut-off file (an interrupted copy or download) is refused before SQLite reads a missing page.
        page_size = int.from_bytes(head[16:18], "big")
        page_size = 65536 if page_size == 1 else page_size
        size = self.path.stat().st_size
        wal = self.path.with_name(self.path.name + "-wal")
        header_pages = int.from_bytes(head[28:32], "big")
        header_valid = head[24:28] == head[92:96] and header_pages > 0
        if page_size and (
            size % page_size
            or (header_valid and header_pages * page_size > size and not (wal.exists() and wal.stat().st_size))
        ):
            raise StoreError(
                f"{self.path.name} is damaged: the file is cut off ({size:,} bytes); restore it from a copy"
            )

    def _connect(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None or getattr(self._local, "pid", None) != os.getpid():
            if self._uri is not None:
                conn = sqlite3.connect(self._uri, uri=True, timeout=30, isolation_level=None,
                                       check_same_thread=False)
            else:
                conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA busy_timeout = 30000")
            conn.execute("PRAGMA foreign_keys = ON")
            self._local.conn = conn
            self._local.pid = os.getpid()
        return conn

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE ... COMMIT, rolled back on error).

        A full disk or a folder that cannot be written comes out as :class:`StoreFullError` or
        :class:`StoreReadOnlyError` (the transaction rolled back, the file intact)."""
        if self.read_only:
            raise StoreReadOnlyError(self.read_only_reason)
        conn = self._connect()
        if conn.in_transaction:  # nested use joins the outer transaction
            yield conn
            return
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise storage_error(exc, self.path) or exc from None
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:  # SQLite may have rolled back already (a full disk does)
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            if isinstance(exc, (sqlite3.Error, OSError)):
                words = storage_error(exc, self.path)
                if words is not None:
                    raise words from None
            raise

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        return self._connect().execute(sql, params).fetchall()

    def _init_schema(self, new: bool) -> None:
        conn = self._connect()
        try:
            tables: set[str] = set()
            app_id = 0
            if not new:  # look before writing anything: another application's file is left untouched
                tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
                app_id = conn.execute("PRAGMA application_id").fetchone()[0]
                if app_id != APP_ID and tables and "meta" not in tables:
                    raise StoreError(
                        f"{self.path.name} is an SQLite database of another application, not a project"
                    )
            if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            # An existing, complete project is only read here: opening never writes (many processes
            # open the same file at once: the app, workers, the CLI).
            if new or app_id != APP_ID or not {"meta", "examples", "jobs", "runs", "metrics"} <= tables:
                with self.transaction() as c:
                    for stmt in _SCHEMA.split(";"):
                        if stmt.strip():
                            c.execute(stmt)
                    c.execute(
                        "INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', ?)",
                        (str(SCHEMA_VERSION),),
                    )
                    c.execute(
                        "INSERT OR IGNORE INTO meta(key, value) VALUES ('created_at', ?)", (str(time.time()),)
                    )
                    c.execute(f"PRAGMA application_id = {APP_ID}")
            self._migrate(conn)
            version = int(self.get_meta("schema_version", "0"))
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path.name} was written by a newer PromptMix (schema {version}); upgrade first"
                )
        except StoreError:
            self.close()
            raise
        except sqlite3.DatabaseError as exc:
            self.close()
            words = storage_error(exc, self.path)
            if words is not None:
                raise words from None
            raise StoreError(f"{self.path.name} is not a usable project file: {exc}") from None

    def _migrate(self, conn: sqlite3.Connection) -> None:
        """Additive migrations: tables in ``_ADDED_TABLES`` and columns in ``_ADDED_COLUMNS`` that a file
        written by an older version lacks are added in one transaction; a current file is only read."""
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        missing_tables = [sql for name, sql in _ADDED_TABLES if name not in names]
        missing_cols = []
        for table, column, decl in _ADDED_COLUMNS:
            if table in tables:
                have = {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
                if column not in have:
                    missing_cols.append((table, column, decl))
        if not missing_tables and not missing_cols:
            return
        with self.transaction() as c:
            stmts = [st.strip() for sql in missing_tables for st in sql.split(";") if st.strip()]
            # tables first, then columns (also of tables just made), then indexes, which may use the columns
            is_index = re.compile(r"(?is)^CREATE\s+(UNIQUE\s+)?INDEX\b").match
            for st in stmts:
                if not is_index(st):
                    c.execute(st)
            tables = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            for table, column, decl in _ADDED_COLUMNS:
                if table in tables:
                    have = {r[1] for r in c.execute(f"PRAGMA table_info({table})")}
                    if column not in have:
                        c.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")
            for st in stmts:
                if is_index(st):
                    c.execute(st)

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def integrity_ok(self) -> bool:
        return self._query("PRAGMA integrity_check")[0][0] == "ok"

    # ---------------------------------------------------------------------- meta
    def get_meta(self, key: str, default: str | None = None) -> str | None:
        rows = self._query("SELECT value FROM meta WHERE key = ?", (key,))
        return rows[0][0] if rows else default

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction() as c:
            c.execute(
                "INSERT INTO meta(key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, scrub_secrets(value, _env_secrets())),
            )

    def get_settings(self) -> dict[str, Any]:
        """Non-secret settings saved with the project (endpoint, model, generation options)."""
        raw = self.get_meta("settings")
        return json.loads(raw) if raw else {}

    def save_settings(self, settings: Mapping[str, Any]) -> None:
        clean = {k: v for k, v in settings.items() if str(k).lower() not in _SECRET_KEYS}
        self.set_meta("settings", json.dumps(scrub_secrets(clean, _env_secrets())))

    # ---------------------------------------------------------------------- task
    def save_task(self, task: Task) -> None:
        with self.transaction() as c:
            c.execute(
                "INSERT INTO task(id, name, body, updated_at) VALUES (1, ?, ?, ?) "
                "ON CONFLICT(id) DO UPDATE SET name = excluded.name, body = excluded.body, "
                "updated_at = excluded.updated_at",
                (task.name, task.to_json(), time.time()),
            )

    def load_task(self) -> Task | None:
        rows = self._query("SELECT body FROM task WHERE id = 1")
        if not rows:
            return None
        try:
            return Task.from_dict(json.loads(rows[0][0]), validate_task=False)
        except (json.JSONDecodeError, TaskError) as exc:
            raise StoreError(f"the task stored in {self.path.name} is unreadable: {exc}") from None

    # ---------------------------------------------------------------------- jobs
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
        sets, params = [], []
        now = time.time()
        if status is not None:
            sets.append("status = ?")
            params.append(status)
            if status == "running":
                sets.append("started_at = COALESCE(started_at, ?)")
                params.append(now)
            if status in JOB_FINAL:
                sets.append("finished_at = ?")
                params.append(now)
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

    # ------------------------------------------------------------------ examples
    def add_examples(self, rows: Iterable[Mapping[str, Any]]) -> int:
        """Insert generated examples; duplicates (same job and normalised text, or same slot) are ignored.

        Returns the number inserted.
        """
        now = time.time()
        n = 0
        secrets = _env_secrets()
        with self.transaction() as c:
            for r in rows:
                # a text another job of the project holds is not added again (re-runs never duplicate)
                if c.execute(
                    "SELECT 1 FROM examples WHERE norm_text = ? AND job_id != ? LIMIT 1", (r["norm_text"], r["job_id"])
                ).fetchone():
                    continue
                cur = c.execute(
                    "INSERT OR IGNORE INTO examples(job_id, slot, text, norm_text, label, intended_label, "
                    "mixed_with, alpha, mixup, prompt, raw_response, model, endpoint, created_at, response_id) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        r["job_id"],
                        r["slot"],
                        r["text"],
                        r["norm_text"],
                        r.get("label", r["intended_label"]),
                        r["intended_label"],
                        r.get("mixed_with"),
                        r.get("alpha"),
                        int(bool(r.get("mixup", True))),
                        r.get("prompt", ""),
                        scrub_secrets(r.get("raw_response", ""), secrets),
                        scrub_secrets(r.get("model", ""), secrets),
                        scrub_secrets(r.get("endpoint", ""), secrets),
                        r.get("created_at", now),
                        r.get("response_id"),
                    ),
                )
                n += cur.rowcount
        return n

    def add_response(self, row: Mapping[str, Any]) -> int:
        """Store one generation call's prompt and answer once (the same ``job_id`` and ``call_key`` are
        stored once); returns its id, for the ``response_id`` of the examples kept from it."""
        with self.transaction() as c:
            c.execute(
                "INSERT OR IGNORE INTO responses(job_id, call_key, class_name, request_index, mixed_with, alpha, "
                "prompt, raw_response, finish_reason, model, endpoint, prompt_tokens, completion_tokens, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    row["job_id"],
                    row["call_key"],
                    row.get("class_name", ""),
                    row.get("request_index"),
                    row.get("mixed_with"),
                    row.get("alpha"),
                    row.get("prompt", ""),
                    scrub_secrets(row.get("raw_response", ""), _env_secrets()),
                    row.get("finish_reason"),
                    scrub_secrets(row.get("model", ""), _env_secrets()),
                    scrub_secrets(row.get("endpoint", ""), _env_secrets()),
                    row.get("prompt_tokens"),
                    row.get("completion_tokens"),
                    row.get("created_at", time.time()),
                ),
            )
            found = c.execute(
                "SELECT id FROM responses WHERE job_id = ? AND call_key = ?", (row["job_id"], row["call_key"])
            ).fetchone()
        return int(found[0])

    def _with_responses(self, examples: list[Example]) -> list[Example]:
        """Fill ``prompt``, ``raw_response`` and ``request_index`` from each example's response row (read
        once per response, the strings shared by its examples); rows of older files keep theirs."""
        ids = sorted({e.response_id for e in examples if e.response_id is not None})
        found: dict[int, sqlite3.Row] = {}
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            for r in self._query(
                "SELECT id, prompt, raw_response, request_index FROM responses "
                f"WHERE id IN ({','.join('?' * len(chunk))})",
                chunk,
            ):
                found[r["id"]] = r
        for e in examples:
            resp = found.get(e.response_id) if e.response_id is not None else None
            if resp is not None:
                e.prompt = e.prompt or resp["prompt"]
                e.raw_response = e.raw_response or resp["raw_response"]
                e.request_index = resp["request_index"]
            else:  # older rows: the slot reads "class|request|line"
                parts = (e.slot or "").split("|")
                if len(parts) >= 3 and parts[-2].isdigit():
                    e.request_index = int(parts[-2])
        return examples

    def list_responses(self, job_id: int) -> list[dict[str, Any]]:
        """The generation calls of a job that gave kept examples, in request order per class."""
        rows = self._query("SELECT * FROM responses WHERE job_id = ? ORDER BY id", (job_id,))
        return [dict(r) for r in rows]
    def example_norm_texts(self) -> set[str]:
        """The normalised texts of every example in the project (any job)."""
        return {r[0] for r in self._query("SELECT norm_text FROM examples")}

    def list_examples(
        self,
        *,
        job_id: int | None = None,
        review_status: str | Sequence[str] | None = None,
        label: str | None = None,
        relabel_status: str | Sequence[str] | None = None,
        search: str | None = None,
        flagged: bool | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[Example]:
        """Examples in id order; ``flagged`` True/False keeps only those with/without a junk flag."""
        where, params = _example_where(review_status=review_status, label=label, relabel_status=relabel_status,
                                       search=search, flagged=flagged)
        if job_id is not None:
            where.append("job_id = ?")
            params.append(job_id)
        sql = "SELECT * FROM examples"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id"
        if limit is not None:
            sql += " LIMIT ? OFFSET ?"
            params.extend([limit, offset])
        return self._with_responses([_row_to(Example, r, (), ("mixup",)) for r in self._query(sql, params)])

    def get_example(self, example_id: int) -> Example | None:
        rows = self._query("SELECT * FROM examples WHERE id = ?", (example_id,))
        return self._with_responses([_row_to(Example, rows[0], (), ("mixup",))])[0] if rows else None

    def count_examples(self, job_id: int | None = None) -> dict[str, int]:
        """Counts for the sidebar and the review page (read from the narrow review index)."""
        cond, params = ("WHERE job_id = ?", (job_id,)) if job_id is not None else ("", ())
        rows = self._query(
            f"SELECT review_status, relabel_status, COUNT(*) FROM examples {cond} GROUP BY review_status, relabel_status",
            params,
        )
        out = dict.fromkeys(("total", "relabelled", "agree", "changed", "unparseable", "reviewed", "accepted",
                             "overridden", "rejected", "flagged", "flagged_pending"), 0)
        for review_status, relabel_status, n in rows:
            out["total"] += n
            if relabel_status is not None:
                out["relabelled"] += n
                if relabel_status in ("agree", "changed", "unparseable"):
                    out[relabel_status] += n
            if review_status != "pending":
                out["reviewed"] += n
                if review_status in ("accepted", "overridden", "rejected"):
                    out[review_status] += n
        flagged = self._query(  # the review index covers flag: no full rows read
            f"SELECT SUM(flag != ''), SUM(flag != '' AND review_status = 'pending') FROM examples {cond}", params
        )[0]
        out["flagged"], out["flagged_pending"] = int(flagged[0] or 0), int(flagged[1] or 0)
        return out

    def set_relabel(
        self,
        example_id: int,
        *,
        llm_label: str | None,
        status: str,
        raw: str = "",
        prompt: str = "",
        confidence: float | None = None,
    ) -> None:
        """Save a relabel; ``confidence`` (the relabeler's probability for its answer, in [0, 1], or
        None when the endpoint gave none) goes to ``llm_confidence``."""
        if status not in RELABEL_STATUSES:
            raise ValueError(f"unknown relabel status {status!r}")
        if confidence is not None:
            confidence = float(confidence)
            if not 0.0 <= confidence <= 1.0:
                raise ValueError(f"a confidence must be in [0, 1], got {confidence}")
        with self.transaction() as c:
            c.execute(
                "UPDATE examples SET llm_label = ?, relabel_status = ?, llm_raw = ?, relabel_prompt = ?, "
                "relabeled_at = ?, label = CASE WHEN ? IS NOT NULL THEN ? ELSE label END, llm_confidence = ? "
                "WHERE id = ?",
                (llm_label, status, raw, prompt, time.time(), llm_label, llm_label, confidence, example_id),
            )

    def set_flags(self, reasons: Mapping[int, str]) -> int:
        """Save junk flags (example id -> reason; '' clears a flag) in one transaction; returns how many
        rows changed. Flags never change labels or review decisions."""
        n = 0
        with self.transaction() as c:
            for example_id, reason in reasons.items():
                n += c.execute("UPDATE examples SET flag = ? WHERE id = ? AND flag != ?",
                               (str(reason or ""), int(example_id), str(reason or ""))).rowcount
        return n

    def reject_flagged(self, *, job_id: int | None = None, reviewer: str | None = None) -> int:
        """Reject, in one transaction, every flagged example still pending review (of ``job_id``, or all);
        examples someone already decided on are left alone. Returns how many were rejected; undo one
        with ``review(id, "pending")``."""
        cond, params = "flag != '' AND review_status = 'pending'", []
        if job_id is not None:
            cond += " AND job_id = ?"
            params.append(job_id)
        with self.transaction() as c:
            return c.execute(
                f"UPDATE examples SET review_status = 'rejected', review_label = NULL, reviewed_at = ?, "
                f"reviewed_by = ?, version = version + 1 WHERE {cond}",
                (time.time(), reviewer, *params),
            ).rowcount

    def review(
        self,
        example_id: int,
        decision: str,
        *,
        label: str | None = None,
        expected_version: int | None = None,
        reviewer: str | None = None,
    ) -> int:
        """Record a review decision: accepted, overridden (with ``label``), rejected or pending (undo).

        With ``expected_version`` the write succeeds only if nobody changed the example since it was
        read; otherwise :class:`ConflictError` is raised and nothing is written. Returns the new version.
        """
        if decision not in REVIEW_STATUSES:
            raise ValueError(f"unknown review decision {decision!r}")
        if decision == "overridden" and not label:
            raise ValueError("an override needs a class")
        if decision != "overridden":
            label = None
        with self.transaction() as c:
            row = c.execute("SELECT version FROM examples WHERE id = ?", (example_id,)).fetchone()
            if row is None:
                raise KeyError(example_id)
            if expected_version is not None and row[0] != expected_version:
                raise ConflictError(
                    f"example {example_id} was changed by someone else since you loaded it; reload to see it"
                )
            c.execute(
                "UPDATE examples SET review_status = ?, review_label = ?, reviewed_at = ?, reviewed_by = ?, "
                "version = version + 1 WHERE id = ?",
                (decision, label, time.time() if decision != "pending" else None, reviewer, example_id),
            )
            return int(row[0]) + 1

    def bulk_review(self, example_ids: Sequence[int], decision: str, *, only_pending: bool = True) -> int:
        """Apply one decision (accepted or rejected) to many examples; returns how many changed."""
        if decision not in ("accepted", "rejected", "pending"):
            raise ValueError("bulk review takes accepted, rejected or pending")
        if not example_ids:
            return 0
        n = 0
        with self.transaction() as c:
            for i in range(0, len(example_ids), 500):
                chunk = list(example_ids[i : i + 500])
                cond = " AND review_status = 'pending'" if only_pending else ""
                cur = c.execute(
                    f"UPDATE examples SET review_status = ?, review_label = NULL, reviewed_at = ?, "
                    f"version = version + 1 WHERE id IN ({','.join('?' * len(chunk))}){cond}",
                    (decision, time.time(), *chunk),
                )
                n += cur.rowcount
        return n

    def delete_examples(self, job_id: int) -> int:
        with self.transaction() as c:
            n = c.execute("DELETE FROM examples WHERE job_id = ?", (job_id,)).rowcount
            c.execute("DELETE FROM responses WHERE job_id = ?", (job_id,))
            return n

    # ------------------------------------------------------------------ review: queue, batches, undo
    def review_queue(
        self,
        *,
        order: str = "pending",
        review_status: str | Sequence[str] | None = None,
        label: str | None = None,
        relabel_status: str | Sequence[str] | None = None,
        search: str | None = None,
        after: Sequence[Any] | None = None,
        limit: int = 40,
        raw_chars: int = 400,
    ) -> list[dict[str, Any]]:
        """One page of the review queue: the card's columns only (never the prompt or the generation
        response), in queue order, after the sort key ``after`` (the ``key`` of the last row seen).

        ``order`` is ``"pending"`` (pending examples first, then by id) or ``"informative"`` (pending
        first, then by :data:`INFORMATIVE_SCORE_SQL`, highest first, then by relabel confidence, lowest
        first). Every row carries ``key`` = ``[a, b, id]``, the keyset to continue from. The order is
        worked out on the narrow review index; only the page's rows are read in full.
        """
        if order not in QUEUE_ORDERS:
            raise ValueError(f"unknown queue order {order!r}; use one of {', '.join(QUEUE_ORDERS)}")
        where, params = _example_where(
            review_status=review_status, label=label, relabel_status=relabel_status, search=search, alias="e."
        )
        limit = int(limit)
        keys: list[tuple[int, float, int]] = []
        if order == "pending":
            # two segments, each in id order straight from examples_by_review: pending, then decided
            allowed = _statuses(review_status)
            segments = [(0, ["pending"]), (1, [s for s in REVIEW_STATUSES if s != "pending"])]
            for ka, statuses in segments:
                statuses = [s for s in statuses if s in allowed]
                if not statuses or len(keys) >= limit:
                    continue
                if after is not None and int(after[0]) > ka:
                    continue
                cond = list(where) + [f"e.review_status IN ({','.join('?' * len(statuses))})"]
                args = list(params) + statuses
                if after is not None and int(after[0]) == ka:
                    cond.append("e.id > ?")
                    args.append(int(after[2]))
                rows = self._connect().execute(
                    f"SELECT e.id FROM examples e WHERE {' AND '.join(cond)} ORDER BY e.id LIMIT ?",
                    [*args, limit - len(keys)],
                ).fetchall()
                keys += [(ka, 0.0, int(r[0])) for r in rows]
        else:
            ka = f"((e.review_status != 'pending') * 1000 - {INFORMATIVE_SCORE_SQL})"
            kb = "COALESCE(e.llm_confidence, 1.0)"
            inner = (
                f"SELECT e.id AS id, {ka} AS ka, {kb} AS kb FROM examples e "
                "LEFT JOIN example_vectors v ON v.example_id = e.id"
            )
            inner += (" WHERE " + " AND ".join(where)) if where else ""
            sql = f"SELECT id, ka, kb FROM ({inner})"
            args = list(params)
            if after is not None:
                sql += " WHERE (ka, kb, id) > (?, ?, ?)"
                args.extend([int(after[0]), float(after[1]), int(after[2])])
            sql += " ORDER BY ka, kb, id LIMIT ?"
            keys = [(int(r[1]), float(r[2]), int(r[0]))
                    for r in self._connect().execute(sql, [*args, limit]).fetchall()]
        if not keys:
            return []
        rows = {r["id"]: r for r in self.review_rows([k[2] for k in keys], raw_chars=raw_chars)}
        out = []
        for ka_, kb_, ex_id in keys:
            if ex_id in rows:
                d = rows[ex_id]
                d["key"] = [ka_, kb_, ex_id]
                out.append(d)
        return out

    def count_reasons(self) -> dict[str, int]:
        """How many pending examples have each reason of the informative order."""
        row = self._query(
            "SELECT SUM(e.relabel_status IS 'changed'), SUM(e.relabel_status IS 'unparseable'), "
            f"SUM({_NEAREST_DIFFERS_SQL}), SUM(COALESCE(e.flag, '') != ''), "
            f"SUM(e.llm_confidence IS NOT NULL AND e.llm_confidence < {LOW_CONFIDENCE}) "
            "FROM examples e LEFT JOIN example_vectors v ON v.example_id = e.id WHERE e.review_status = 'pending'"
        )[0]
        codes = ("relabel_differs", "relabel_failed", "embedding_differs", "flagged", "low_confidence")
        return {c: int(v or 0) for c, v in zip(codes, row)}

    def review_rows(self, example_ids: Sequence[int], *, raw_chars: int = 400) -> list[dict[str, Any]]:
        """The card's columns of the given examples (in id order)."""
        out: list[dict[str, Any]] = []
        ids = [int(i) for i in example_ids]
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            sql = (
                f"SELECT {_card_columns('e.', 'v.')} FROM examples e "
                f"LEFT JOIN example_vectors v ON v.example_id = e.id WHERE e.id IN ({','.join('?' * len(chunk))}) "
                "ORDER BY e.id"
            )
            for r in self._connect().execute(sql.replace("__RAW__", str(int(raw_chars))), chunk):
                d = dict(r)
                d["mixup"] = bool(d["mixup"])
                out.append(d)
        return out

    def count_matching(
        self,
        *,
        review_status: str | Sequence[str] | None = None,
        label: str | None = None,
        relabel_status: str | Sequence[str] | None = None,
        search: str | None = None,
    ) -> int:
        where, params = _example_where(
            review_status=review_status, label=label, relabel_status=relabel_status, search=search
        )
        sql = "SELECT COUNT(*) FROM examples" + ((" WHERE " + " AND ".join(where)) if where else "")
        return int(self._query(sql, params)[0][0])

    def matching_ids(
        self,
        *,
        review_status: str | Sequence[str] | None = None,
        label: str | None = None,
        relabel_status: str | Sequence[str] | None = None,
        search: str | None = None,
        flagged: bool | None = None,
    ) -> list[int]:
        """Ids of the examples a filter matches (in id order), read from the narrow review index."""
        where, params = _example_where(
            review_status=review_status, label=label, relabel_status=relabel_status, search=search, flagged=flagged
        )
        sql = "SELECT id FROM examples" + ((" WHERE " + " AND ".join(where)) if where else "")
        return sorted(int(r[0]) for r in self._query(sql, params))

    def example_page(
        self,
        *,
        review_status: str | Sequence[str] | None = None,
        label: str | None = None,
        relabel_status: str | Sequence[str] | None = None,
        search: str | None = None,
        limit: int = 100,
        offset: int = 0,
        columns: Sequence[str] = LIST_COLUMNS,
    ) -> list[dict[str, Any]]:
        """One page of examples (id order) with only ``columns`` read, for tables."""
        bad = [c for c in columns if c not in _EXAMPLE_COLUMNS]
        if bad:
            raise ValueError(f"unknown example columns: {bad}")
        where, params = _example_where(
            review_status=review_status, label=label, relabel_status=relabel_status, search=search
        )
        sql = f"SELECT {', '.join(columns)} FROM examples"
        sql += (" WHERE " + " AND ".join(where)) if where else ""
        sql += " ORDER BY id LIMIT ? OFFSET ?"
        return [dict(r) for r in self._query(sql, [*params, int(limit), int(offset)])]

    def examples_since(
        self,
        after_id: int = 0,
        *,
        job_id: int | None = None,
        limit: int = 500,
        columns: Sequence[str] = LIST_COLUMNS,
    ) -> list[dict[str, Any]]:
        """Examples with an id above ``after_id`` (oldest first), only ``columns`` read: what a live view
        has not seen yet."""
        bad = [c for c in columns if c not in _EXAMPLE_COLUMNS]
        if bad:
            raise ValueError(f"unknown example columns: {bad}")
        cols = ", ".join(dict.fromkeys(["id", *columns]))
        if job_id is None:
            sql, params = f"SELECT {cols} FROM examples WHERE id > ? ORDER BY id LIMIT ?", (after_id, limit)
        else:
            sql = f"SELECT {cols} FROM examples WHERE job_id = ? AND id > ? ORDER BY id LIMIT ?"
            params = (job_id, after_id, limit)
        return [dict(r) for r in self._query(sql, params)]

    def latest_examples(
        self, n: int, *, job_id: int | None = None, columns: Sequence[str] = LIST_COLUMNS
    ) -> list[dict[str, Any]]:
        """The ``n`` newest examples (oldest first), only ``columns`` read."""
        bad = [c for c in columns if c not in _EXAMPLE_COLUMNS]
        if bad:
            raise ValueError(f"unknown example columns: {bad}")
        cols = ", ".join(dict.fromkeys(["id", *columns]))
        cond, params = ("WHERE job_id = ?", [job_id]) if job_id is not None else ("", [])
        rows = self._query(f"SELECT {cols} FROM examples {cond} ORDER BY id DESC LIMIT ?", [*params, int(n)])
        return [dict(r) for r in reversed(rows)]

    def export_rows(self) -> list[dict[str, Any]]:
        """Every example with the columns an export needs (no prompt or response), in id order."""
        cols = ", ".join(EXPORT_COLUMNS)
        return [dict(r) for r in self._query(f"SELECT {cols} FROM examples ORDER BY id")]

    def apply_review_batch(
        self, ops: Sequence[Mapping[str, Any]], *, tab: str, reviewer: str | None = None
    ) -> dict[str, dict[str, Any]]:
        """Apply a batch of review operations in one transaction; returns a result per operation id.

        An operation is a decision ``{"cid", "id", "action": accepted|overridden|rejected, "label",
        "base"}`` or an undo ``{"cid", "undo": UNIT}``. ``cid`` is the client's id for the operation:
        an operation already applied is never applied again (a resend is harmless). ``base`` is the
        example's version when this tab loaded it: the decision is refused (``conflict``) only when
        someone other than ``tab`` changed the example since then; decisions of the same tab never
        conflict with each other. An undo restores what the unit (a decision, or a bulk action, of this
        tab) replaced, for each example nobody else changed since.
        """
        tab = str(tab or "")
        results: dict[str, dict[str, Any]] = {}
        cids = [str(op.get("cid") or "") for op in ops]
        if any(not c for c in cids):
            raise ValueError("every review operation needs a client id (cid)")
        now = time.time()
        with self.transaction() as c:
            applied: dict[str, list[sqlite3.Row]] = {}
            for i in range(0, len(cids), 500):
                chunk = cids[i : i + 500]
                for r in c.execute(
                    "SELECT unit, example_id, action, label, version, undo_of FROM review_log "
                    f"WHERE unit IN ({','.join('?' * len(chunk))}) ORDER BY id",
                    chunk,
                ):
                    applied.setdefault(r["unit"], []).append(r)
            for cid, op in zip(cids, ops):
                if cid in results:
                    continue
                if cid in applied:
                    results[cid] = _applied_result(applied[cid])
                elif op.get("undo"):
                    results[cid] = self._undo_unit(c, str(op["undo"]), cid=cid, tab=tab, reviewer=reviewer, now=now)
                else:
                    results[cid] = self._decide(c, op, cid=cid, tab=tab, reviewer=reviewer, now=now)
        return results

    @staticmethod
    def _changed_only_by(c: sqlite3.Connection, example_id: int, since: int, current: int, tab: str) -> bool:
        """True when every change to the example after version ``since`` was made by ``tab``."""
        if current == since:
            return True
        if not tab or current < since:
            return False
        n = c.execute(
            "SELECT COUNT(*) FROM review_log WHERE example_id = ? AND version > ? AND version <= ? AND tab = ?",
            (example_id, since, current, tab),
        ).fetchone()[0]
        return int(n) == current - since

    def _decide(
        self, c: sqlite3.Connection, op: Mapping[str, Any], *, cid: str, tab: str, reviewer: str | None, now: float
    ) -> dict[str, Any]:
        action = str(op.get("action") or "")
        try:
            ex_id = int(op["id"])
        except (KeyError, TypeError, ValueError):
            return {"ok": False, "error": "the decision names no example"}
        if action not in ("accepted", "overridden", "rejected"):
            return {"ok": False, "id": ex_id, "error": f"unknown review decision {action!r}"}
        label = op.get("label") if action == "overridden" else None
        if action == "overridden" and not label:
            return {"ok": False, "id": ex_id, "error": "an override needs a class"}
        row = c.execute(
            "SELECT review_status, review_label, reviewed_at, reviewed_by, version FROM examples WHERE id = ?",
            (ex_id,),
        ).fetchone()
        if row is None:
            return {"ok": False, "id": ex_id, "missing": True}
        base = op.get("base")
        if base is not None and not self._changed_only_by(c, ex_id, int(base), int(row["version"]), tab):
            return {
                "ok": False, "id": ex_id, "conflict": True,
                "current": {"status": row["review_status"], "label": row["review_label"],
                            "version": int(row["version"]), "by": row["reviewed_by"]},
            }
        version = int(row["version"]) + 1
        c.execute(
            "UPDATE examples SET review_status = ?, review_label = ?, reviewed_at = ?, reviewed_by = ?, "
            "version = ? WHERE id = ?",
            (action, label, now, reviewer, version, ex_id),
        )
        c.execute(
            "INSERT INTO review_log(client_id, unit, tab, reviewer, example_id, action, label, prev_status, "
            "prev_label, prev_reviewed_at, prev_reviewed_by, status, version, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (cid, cid, tab, reviewer, ex_id, action, label, row["review_status"], row["review_label"],
             row["reviewed_at"], row["reviewed_by"], action, version, now),
        )
        return {"ok": True, "id": ex_id, "status": action, "label": label, "version": version,
                "prev": row["review_status"]}

    def _undo_unit(
        self, c: sqlite3.Connection, unit: str, *, cid: str, tab: str, reviewer: str | None, now: float
    ) -> dict[str, Any]:
        entries = c.execute(
            "SELECT * FROM review_log WHERE unit = ? AND undo_of IS NULL AND undone = 0 ORDER BY id DESC", (unit,)
        ).fetchall()
        if not entries:
            return {"ok": False, "undo": unit, "nothing": True}
        if any(e["tab"] != tab for e in entries):
            return {"ok": False, "undo": unit, "error": "only the tab that made a decision can undo it"}
        restored, skipped = [], []
        log_rows = []
        for e in entries:
            ex_id = int(e["example_id"])
            row = c.execute(
                "SELECT review_status, review_label, reviewed_at, reviewed_by, version FROM examples WHERE id = ?",
                (ex_id,),
            ).fetchone()
            if row is None or not self._changed_only_by(c, ex_id, int(e["version"]), int(row["version"]), tab):
                skipped.append(ex_id)
                continue
            version = int(row["version"]) + 1
            c.execute(
                "UPDATE examples SET review_status = ?, review_label = ?, reviewed_at = ?, reviewed_by = ?, "
                "version = ? WHERE id = ?",
                (e["prev_status"], e["prev_label"], e["prev_reviewed_at"], e["prev_reviewed_by"], version, ex_id),
            )
            log_rows.append((f"{cid}:{ex_id}", cid, tab, reviewer, ex_id, "undo", e["prev_label"], row["review_status"],
                             row["review_label"], row["reviewed_at"], row["reviewed_by"], e["prev_status"], version,
                             unit, now))
            restored.append({"id": ex_id, "status": e["prev_status"], "label": e["prev_label"], "version": version,
                             "prev": row["review_status"]})
        c.executemany(
            "INSERT INTO review_log(client_id, unit, tab, reviewer, example_id, action, label, prev_status, "
            "prev_label, prev_reviewed_at, prev_reviewed_by, status, version, undo_of, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            log_rows,
        )
        c.execute("UPDATE review_log SET undone = 1 WHERE unit = ? AND undo_of IS NULL", (unit,))
        return {"ok": True, "undo": unit, "n": len(restored), "restored": restored[:200], "skipped": skipped[:200],
                "n_skipped": len(skipped), "bulk": len(entries) > 1 or unit.startswith("bulk:")}

    def bulk_decide(
        self,
        example_ids: Sequence[int],
        decision: str,
        *,
        tab: str,
        unit: str | None = None,
        reviewer: str | None = None,
        only_pending: bool = True,
    ) -> tuple[str, int]:
        """One decision (accepted or rejected) for many examples, in one transaction, recorded as one
        undo unit of ``tab``. Idempotent by ``unit``. Returns ``(unit, number changed)``."""
        if decision not in ("accepted", "rejected"):
            raise ValueError("a bulk action accepts or rejects")
        unit = unit or f"bulk:{uuid.uuid4().hex}"
        now = time.time()
        n = 0
        with self.transaction() as c:
            if c.execute("SELECT 1 FROM review_log WHERE unit = ? LIMIT 1", (unit,)).fetchone():
                return unit, int(c.execute("SELECT COUNT(*) FROM review_log WHERE unit = ?", (unit,)).fetchone()[0])
            ids = [int(i) for i in example_ids]
            for i in range(0, len(ids), 500):
                chunk = ids[i : i + 500]
                cond = " AND review_status = 'pending'" if only_pending else ""
                rows = c.execute(
                    "SELECT id, review_status, review_label, reviewed_at, reviewed_by, version FROM examples "
                    f"WHERE id IN ({','.join('?' * len(chunk))}){cond}",
                    chunk,
                ).fetchall()
                c.executemany(
                    "UPDATE examples SET review_status = ?, review_label = NULL, reviewed_at = ?, reviewed_by = ?, "
                    "version = version + 1 WHERE id = ?",
                    [(decision, now, reviewer, r["id"]) for r in rows],
                )
                c.executemany(
                    "INSERT INTO review_log(client_id, unit, tab, reviewer, example_id, action, label, prev_status, "
                    "prev_label, prev_reviewed_at, prev_reviewed_by, status, version, created_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, NULL, ?, ?, ?, ?, ?, ?, ?)",
                    [(f"{unit}:{r['id']}", unit, tab, reviewer, r["id"], decision, r["review_status"],
                      r["review_label"], r["reviewed_at"], r["reviewed_by"], decision, int(r["version"]) + 1, now)
                     for r in rows],
                )
                n += len(rows)
        return unit, n

    def count_examples_marked(self) -> tuple[dict[str, int], int]:
        """:meth:`count_examples` with the id of the last review-log entry they include (one snapshot),
        so :meth:`review_changes_since` can move them on without counting again."""
        conn = self._connect()
        own = not conn.in_transaction
        if own:
            conn.execute("BEGIN")  # a read snapshot: the counts and the mark agree
        try:
            mark = int(conn.execute("SELECT COALESCE(MAX(id), 0) FROM review_log").fetchone()[0])
            counts = self.count_examples()
        finally:
            if own:
                conn.execute("COMMIT")
        return counts, mark

    def review_changes_since(self, mark: int) -> tuple[int, list[tuple[str, str]]]:
        """Review-status moves ``(before, after)`` logged after entry ``mark``, and the new mark."""
        rows = self._query("SELECT id, prev_status, status FROM review_log WHERE id > ? ORDER BY id", (int(mark),))
        return (int(rows[-1][0]) if rows else int(mark)), [(r[1], r[2]) for r in rows]

    def review_history(self, tab: str, limit: int = 50) -> list[dict[str, Any]]:
        """The undo history of a tab, newest first: units (one decision, or one bulk action) not undone."""
        rows = self._query(
            "SELECT unit, COUNT(*) AS n, MAX(id) AS seq, MIN(example_id) AS example_id, MAX(action) AS action, "
            "MAX(label) AS label, MAX(created_at) AS at FROM review_log "
            "WHERE tab = ? AND undo_of IS NULL AND undone = 0 GROUP BY unit ORDER BY seq DESC LIMIT ?",
            (tab, int(limit)),
        )
        out = [dict(r) for r in rows]
        singles = [r["example_id"] for r in out if r["n"] == 1]
        texts = {}
        for i in range(0, len(singles), 500):
            chunk = singles[i : i + 500]
            texts.update({r[0]: r[1] for r in self._query(
                f"SELECT id, substr(text, 1, 80) FROM examples WHERE id IN ({','.join('?' * len(chunk))})", chunk)})
        for r in out:
            r["bulk"] = r["n"] > 1 or str(r["unit"]).startswith("bulk:")
            r["text"] = texts.get(r["example_id"], "") if not r["bulk"] else ""
        return out

    # ------------------------------------------------------------------ example vectors (review order)
    def vector_todo(self, model: str, limit: int = 256) -> list[tuple[int, str]]:
        """(id, text) of generated examples without a vector from ``model`` yet."""
        rows = self._query(
            "SELECT e.id, e.text FROM examples e LEFT JOIN example_vectors v ON v.example_id = e.id "
            "AND v.model = ? WHERE v.example_id IS NULL ORDER BY e.id LIMIT ?",
            (model, int(limit)),
        )
        return [(int(r[0]), str(r[1])) for r in rows]

    def count_vectors(self, model: str) -> tuple[int, int]:
        """(examples with a vector from ``model``, all examples)."""
        have = self._query(
            "SELECT COUNT(*) FROM example_vectors v JOIN examples e ON e.id = v.example_id WHERE v.model = ?", (model,)
        )[0][0]
        total = self._query("SELECT COUNT(*) FROM examples")[0][0]
        return int(have), int(total)

    def save_vectors(self, model: str, rows: Iterable[tuple[int, bytes]]) -> None:
        with self.transaction() as c:
            c.executemany(
                "INSERT INTO example_vectors(example_id, model, vec) VALUES (?, ?, ?) "
                "ON CONFLICT(example_id) DO UPDATE SET model = excluded.model, vec = excluded.vec, "
                "nearest_label = NULL, nearest_score = NULL",
                [(int(i), model, sqlite3.Binary(v)) for i, v in rows],
            )

    def load_vectors(self, model: str) -> list[tuple[int, bytes, str | None]]:
        """(example id, vector bytes, the example's reviewed label or None) for every stored vector."""
        rows = self._query(
            "SELECT v.example_id, v.vec, CASE e.review_status WHEN 'accepted' THEN e.label "
            "WHEN 'overridden' THEN e.review_label END FROM example_vectors v "
            "JOIN examples e ON e.id = v.example_id WHERE v.model = ? ORDER BY v.example_id",
            (model,),
        )
        return [(int(r[0]), bytes(r[1]), r[2]) for r in rows]

    def save_nearest(self, rows: Iterable[tuple[int, str | None, float | None]]) -> None:
        with self.transaction() as c:
            c.executemany(
                "UPDATE example_vectors SET nearest_label = ?, nearest_score = ? WHERE example_id = ?",
                [(lab, score, int(i)) for i, lab, score in rows],
            )

    # ---------------------------------------------------------------------- runs
    def create_run(
        self, config: Mapping[str, Any], *, name: str = "", method: str = "", job_id: int | None = None
    ) -> int:
        with self.transaction() as c:
            cur = c.execute(
                "INSERT INTO runs(job_id, name, method, status, config, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                (job_id, name, method, "queued", json.dumps(scrub_secrets(dict(config))), time.time()),
            )
            return int(cur.lastrowid)

    def update_run(
        self,
        run_id: int,
        *,
        status: str | None = None,
        device: str | None = None,
        model_dir: str | None = None,
        final_metrics: Mapping[str, Any] | None = None,
        error: str | None = None,
    ) -> None:
        sets, params = [], []
        now = time.time()
        if status is not None:
            sets.append("status = ?")
            params.append(status)
            if status == "running":
                sets.append("started_at = COALESCE(started_at, ?)")
                params.append(now)
            if status in JOB_FINAL:
                sets.append("finished_at = ?")
                params.append(now)
        for col, val in (("device", device), ("model_dir", model_dir)):
            if val is not None:
                sets.append(f"{col} = ?")
                params.append(val)
        if final_metrics is not None:
            sets.append("final_metrics = ?")
            params.append(json.dumps(dict(final_metrics)))
        if error is not None:
            sets.append("error = ?")
            params.append(scrub_secrets(error, _env_secrets()))
        if sets:
            with self.transaction() as c:
                c.execute(f"UPDATE runs SET {', '.join(sets)} WHERE id = ?", (*params, run_id))

    def get_run(self, run_id: int) -> Run | None:
        rows = self._query("SELECT * FROM runs WHERE id = ?", (run_id,))
        return _row_to(Run, rows[0], ("config", "final_metrics")) if rows else None

    def list_runs(self, limit: int = 200) -> list[Run]:
        rows = self._query("SELECT * FROM runs ORDER BY id DESC LIMIT ?", (limit,))
        return [_row_to(Run, r, ("config", "final_metrics")) for r in rows]

    def log_metrics(self, run_id: int, step: int, values: Mapping[str, float], epoch: float | None = None) -> None:
        now = time.time()
        with self.transaction() as c:
            c.executemany(
                "INSERT INTO metrics(run_id, step, epoch, name, value, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                [(run_id, int(step), epoch, k, float(v), now) for k, v in values.items()],
            )

    def get_metrics(self, run_id: int, *, after_id: int = 0) -> list[dict[str, Any]]:
        rows = self._query(
            "SELECT id, run_id, step, epoch, name, value, created_at FROM metrics "
            "WHERE run_id = ? AND id > ? ORDER BY id",
            (run_id, after_id),
        )
        return [dict(r) for r in rows]

    def record_run_examples(self, run_id: int, split: str, rows: Sequence[Mapping[str, Any]]) -> None:
        """Record the rows a run used for ``split`` (train, val or test), replacing earlier ones.

        Each row: ``text``, ``label``, ``source`` and, for generated examples, ``example_id``.
        """
        with self.transaction() as c:
            c.execute("DELETE FROM run_examples WHERE run_id = ? AND split = ?", (run_id, split))
            c.executemany(
                "INSERT INTO run_examples(run_id, split, position, source, example_id, text, label) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(run_id, split, i, str(r.get("source") or ""), r.get("example_id"), str(r["text"]),
                  str(r["label"])) for i, r in enumerate(rows)],
            )

    def get_run_examples(self, run_id: int, split: str | None = None) -> list[dict[str, Any]]:
        """The rows a run used (see :meth:`record_run_examples`), in order."""
        sql = "SELECT split, position, source, example_id, text, label FROM run_examples WHERE run_id = ?"
        params: list[Any] = [run_id]
        if split is not None:
            sql += " AND split = ?"
            params.append(split)
        return [dict(r) for r in self._query(sql + " ORDER BY split, position", params)]

    # ------------------------------------------------------------------ test set
    def set_test_set(self, rows: Iterable[Mapping[str, Any]], *, name: str = "", source: str = "upload") -> int:
        """Replace the project's test set with ``rows`` (``text``, ``label``). Rows whose normalised
        text repeats an earlier one are skipped. Returns how many were stored."""
        from .task import normalize_text

        now = time.time()
        n = 0
        with self.transaction() as c:
            c.execute("DELETE FROM test_examples")
            for r in rows:
                text = str(r["text"]).strip()
                cur = c.execute(
                    "INSERT OR IGNORE INTO test_examples(text, norm_text, label, source, added_at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (text, normalize_text(text), str(r["label"]).strip(), source, now),
                )
                n += cur.rowcount
            c.execute(
                "INSERT INTO meta(key, value) VALUES ('test_set', ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (json.dumps({"name": name, "source": source, "added_at": now, "n": n}),),
            )
        return n

    def clear_test_set(self) -> None:
        with self.transaction() as c:
            c.execute("DELETE FROM test_examples")
            c.execute("DELETE FROM meta WHERE key = 'test_set'")

    def list_test_examples(self) -> list[dict[str, Any]]:
        """The test set as ``{"id", "text", "label", "source"}`` rows (empty without one)."""
        return [dict(r) for r in self._query("SELECT id, text, label, source FROM test_examples ORDER BY id")]

    def test_set_info(self) -> dict[str, Any] | None:
        """``{"name", "source", "added_at", "n", "per_class"}`` of the test set, or None without one."""
        rows = self._query("SELECT label, COUNT(*) FROM test_examples GROUP BY label ORDER BY label")
        if not rows:
            return None
        raw = self.get_meta("test_set")
        info = json.loads(raw) if raw else {}
        per_class = {r[0]: int(r[1]) for r in rows}
        return {"name": info.get("name", ""), "source": info.get("source", ""), "added_at": info.get("added_at"),
                "n": sum(per_class.values()), "per_class": per_class}

    # ------------------------------------------------------------------- summary
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


def open_project(path: str | Path, *, create: bool = False) -> ProjectStore:
    """Open an existing project (or create it with ``create=True``); clear error for bad files."""
    p = Path(path).expanduser()
    if not create and not p.exists():
        raise StoreError(f"no project at {p}")
    return ProjectStore(p, create=create)
