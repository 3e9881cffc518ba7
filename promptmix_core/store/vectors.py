"""Example vectors: MiniLM sentence vectors of generated examples (float16) and the class nearest by
embedding, for the review queue's "most informative" order."""

from __future__ import annotations

import sqlite3
from typing import Iterable

from .base import StoreBase


class VectorsMixin(StoreBase):
    """Example vectors and nearest classes."""

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
