"""The LLM response cache: an SQLite table keyed on endpoint, model, parameters, messages and a
sample index. A re-run of the same job makes no calls; repeated identical prompts inside one job
use different sample indices, so they still draw fresh samples."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

_DDL = (
    "CREATE TABLE IF NOT EXISTS llm_cache (key TEXT PRIMARY KEY, response TEXT NOT NULL, "
    "prompt_tokens INTEGER NOT NULL DEFAULT 0, completion_tokens INTEGER NOT NULL DEFAULT 0, "
    "model TEXT NOT NULL DEFAULT '', created_at REAL NOT NULL)"
)


def _int64(n: Any) -> int:
    """A token count SQLite can hold (never an OverflowError)."""
    try:
        return max(0, min(int(n), 2**62))
    except (TypeError, ValueError, OverflowError):
        return 0


def default_cache_path() -> Path:
    """The one LLM cache file of every entry point (see :func:`promptmix_core.paths.llm_cache_path`)."""
    from ..paths import llm_cache_path

    return llm_cache_path()


def cache_key(
    endpoint: str, model: str, params: Mapping[str, Any], messages: Sequence[Mapping[str, str]], sample_index: int
) -> str:
    blob = json.dumps(
        {"endpoint": endpoint, "model": model, "params": dict(params), "messages": list(messages),
         "sample": int(sample_index)},
        sort_keys=True,
        ensure_ascii=False,
    )
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class CacheError(ValueError):
    """The cache file cannot be used (a folder, another kind of file, another application's database)."""


def check_cache_path(path: str | Path) -> Path:
    """Refuse, in one line, a cache path that is a folder or a file other than an SQLite database
    that is (or can hold) a response cache. Nothing is written."""
    p = Path(path).expanduser()
    if p.is_dir():
        raise CacheError(f"the cache {p} is a folder; give a file, e.g. {p / 'llm_cache.sqlite'}")
    if p.exists() and p.stat().st_size > 0:
        try:
            with open(p, "rb") as fh:
                head = fh.read(16)
        except OSError as exc:
            raise CacheError(f"the cache {p} cannot be read: {exc.strerror or exc}") from None
        if head != b"SQLite format 3\x00":
            raise CacheError(
                f"the cache {p} is not a response cache (it is not an SQLite file); give another file name"
            )
    return p


class ResponseCache:
    """Thread-safe; may share a file with a project store (table ``llm_cache``)."""

    def __init__(self, path: str | Path):
        self.path = check_cache_path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CacheError(f"cannot create the cache's folder {self.path.parent}: {exc.strerror or exc}") from None
        self._lock = threading.Lock()
        try:
            self._conn = sqlite3.connect(self.path, timeout=30, check_same_thread=False, isolation_level=None)
            self._conn.execute("PRAGMA busy_timeout = 30000")
            tables = {r[0] for r in self._conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if tables and "llm_cache" not in tables:
                self._conn.close()
                raise CacheError(
                    f"the cache {self.path} is an SQLite database of another application; give another file name"
                )
            if self._conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                self._conn.execute("PRAGMA journal_mode = WAL")
            if "llm_cache" not in tables:
                self._conn.execute(_DDL)
            # added later: why the answer ended ("length" = cut off at max_tokens), so that a replayed answer
            # is parsed exactly like the fresh one (its cut-off last line dropped); NULL in older rows
            have = {r[1] for r in self._conn.execute("PRAGMA table_info(llm_cache)")}
            if "finish_reason" not in have:
                try:
                    self._conn.execute("ALTER TABLE llm_cache ADD COLUMN finish_reason TEXT")
                except sqlite3.OperationalError as exc:  # another process added it in the meantime
                    if "duplicate column" not in str(exc).lower():
                        raise
            if "extra" not in have:  # files written before answers kept logprobs
                try:
                    self._conn.execute("ALTER TABLE llm_cache ADD COLUMN extra TEXT NOT NULL DEFAULT ''")
                except sqlite3.OperationalError as exc:  # another process added it first
                    if "duplicate column" not in str(exc).lower():
                        raise
        except sqlite3.Error as exc:
            raise self._error(exc) from None

    def _error(self, exc: Exception) -> Exception:
        from ..errors import storage_error

        words = storage_error(exc, self.path)
        if words is not None:
            return words
        return CacheError(f"the cache {self.path} cannot be used: {exc}")

    def get(self, key: str) -> dict[str, Any] | None:
        try:
            with self._lock:
                row = self._conn.execute(
                    "SELECT response, prompt_tokens, completion_tokens, finish_reason, extra, model FROM llm_cache "
                    "WHERE key = ?", (key,),
                ).fetchone()
        except sqlite3.Error as exc:
            raise self._error(exc) from None
        if row is None:
            return None
        extra = None
        if row[4]:
            try:
                extra = json.loads(row[4])
            except ValueError:
                extra = None
        return {"text": row[0], "prompt_tokens": row[1], "completion_tokens": row[2], "finish_reason": row[3],
                "extra": extra, "model": row[5]}

    def put(
        self, key: str, text: str, prompt_tokens: int, completion_tokens: int, model: str,
        finish_reason: str | None = None, extra: Mapping[str, Any] | None = None,
    ) -> None:
        """Store an answer; ``extra`` (JSON-able, e.g. the answer's logprobs) comes back from :meth:`get`."""
        blob = json.dumps(dict(extra), ensure_ascii=False) if extra else ""
        try:
            with self._lock:
                self._conn.execute(
                    "INSERT OR REPLACE INTO llm_cache(key, response, prompt_tokens, completion_tokens, model, "
                    "created_at, finish_reason, extra) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (key, text, _int64(prompt_tokens), _int64(completion_tokens), model, time.time(), finish_reason,
                     blob),
                )
        except sqlite3.Error as exc:
            raise self._error(exc) from None

    def __len__(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM llm_cache").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._conn.close()
