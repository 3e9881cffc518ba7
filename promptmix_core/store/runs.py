"""Training runs: their status, settings (scrubbed of keys), metrics while they train, and exactly
which rows (and labels) each used."""

from __future__ import annotations

import json
import time
from typing import Any, Mapping, Sequence

from ..redact import _env_secrets, scrub_secrets
from .base import StoreBase
from .records import Run, _row_to, status_columns


class RunsMixin(StoreBase):
    """Training runs and their metrics."""

    def create_run(
        self, config: Mapping[str, Any], *, name: str = "", method: str = "", job_id: int | None = None
    ) -> int:
        with self.transaction() as c:
            cur = c.execute(
                "INSERT INTO runs(job_id, name, method, status, config, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                (job_id, name, method, "queued", json.dumps(scrub_secrets(dict(config), _env_secrets())), time.time()),
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
        now = time.time()
        sets, params = status_columns(status, now)
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
