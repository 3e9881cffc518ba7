"""The project's test set: real labelled examples every training run is scored on (never trained on)."""

from __future__ import annotations

import json
import time
from typing import Any, Iterable, Mapping

from .base import StoreBase


class HeldOutSetMixin(StoreBase):
    """The test set."""

    def set_test_set(self, rows: Iterable[Mapping[str, Any]], *, name: str = "", source: str = "upload") -> int:
        """Replace the project's test set with ``rows`` (``text``, ``label``). Rows whose normalised
        text repeats an earlier one are skipped. Returns how many were stored."""
        from ..task import normalize_text

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
