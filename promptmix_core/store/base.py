"""The store's foundation: opening a project file (header checks, read-only folders), one SQLite
connection per thread, write transactions with disk-error wording, schema creation and migration,
meta, settings and the task."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from ..errors import StoreError, StoreReadOnlyError, storage_error
from ..errors import can_write as _can_write
from ..redact import _SECRET_KEYS, _env_secrets, scrub_secrets
from ..task import Task, TaskError
from . import schema as _schema

_VERIFIED: set[str] = set()
_VERIFIED_LOCK = threading.Lock()


class StoreBase:
    """Opening, checking and migrating a project file; connections, transactions, meta and task.

    The rooms (:mod:`.examples`, :mod:`.reviews`, :mod:`.jobs`, ...) are mixins on top of this class;
    :class:`promptmix_core.store.ProjectStore` composes them."""

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
        files exist (someone with write access has the project open: read through them), else
        ``immutable=1``. ``mode=ro`` on a project whose side files are gone would create them in a
        folder this user can write (a shared folder), owned by this user, and the project's owner could
        then no longer write the project: a viewer never leaves a file behind."""
        from urllib.parse import quote

        self.read_only = True
        base = "file:" + quote(str(self.path.resolve()))
        last: Exception | None = None
        shm = self.path.with_name(self.path.name + "-shm")
        for params in (("mode=ro", "immutable=1") if shm.exists() else ("immutable=1",)):
            self._uri = f"{base}?{params}"
            self.close()
            try:
                conn = self._connect()
                tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
                app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            except sqlite3.DatabaseError as exc:
                last = exc
                continue
            if app_id != _schema.APP_ID and tables and "meta" not in tables:
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
        if app_id not in (0, _schema.APP_ID):
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
                if app_id != _schema.APP_ID and tables and "meta" not in tables:
                    raise StoreError(
                        f"{self.path.name} is an SQLite database of another application, not a project"
                    )
            if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            # An existing, complete project is only read here: opening never writes (many processes
            # open the same file at once: the app, workers, the CLI).
            if new or app_id != _schema.APP_ID or not {"meta", "examples", "jobs", "runs", "metrics"} <= tables:
                with self.transaction() as c:
                    for stmt in _schema._SCHEMA.split(";"):
                        if stmt.strip():
                            c.execute(stmt)
                    c.execute(
                        "INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', ?)",
                        (str(_schema.SCHEMA_VERSION),),
                    )
                    c.execute(
                        "INSERT OR IGNORE INTO meta(key, value) VALUES ('created_at', ?)", (str(time.time()),)
                    )
                    c.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('project_uid', ?)", (uuid.uuid4().hex,))
                    c.execute(f"PRAGMA application_id = {_schema.APP_ID}")
            self._migrate(conn)
            version = int(self.get_meta("schema_version", "0"))
            if version > _schema.SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path.name} was written by a newer PromptMix (schema {version}); upgrade first"
                )
            if self.get_meta("project_uid") is None:  # a file written before project ids: given one once
                with self.transaction() as c:
                    c.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('project_uid', ?)", (uuid.uuid4().hex,))
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
        missing_tables = [sql for name, sql in _schema._ADDED_TABLES if name not in names]
        missing_cols = []
        for table, column, decl in _schema._ADDED_COLUMNS:
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
            for table, column, decl in _schema._ADDED_COLUMNS:
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
    @property
    def project_uid(self) -> str | None:
        """The project's stable identity (a uuid4 hex made once, when the file was created or first
        opened for writing by a version that knows it): the same across renames, copies keep it.
        None only for an old file opened read-only."""
        return self.get_meta("project_uid")

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

