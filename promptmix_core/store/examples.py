"""Examples: generated rows with their provenance (each generation call's prompt and answer once,
in ``responses``), relabels, junk flags, a second judge's suggestions, and the narrow reads tables,
live views and exports use."""

from __future__ import annotations

import sqlite3
import time
from typing import Any, Iterable, Mapping, Sequence

from ..redact import _env_secrets, scrub_secrets
from .base import StoreBase
from .records import RELABEL_STATUSES, Example, _row_to

# columns tables read by default (never the prompt or the raw generation response)
LIST_COLUMNS = ("id", "text", "intended_label", "mixed_with", "alpha", "llm_label", "relabel_status",
                "review_status", "review_label", "label", "job_id")
EXPORT_COLUMNS = ("id", "text", "label", "intended_label", "mixed_with", "alpha", "llm_label", "llm_confidence",
                  "judge_label", "judge_confidence", "relabel_status", "flag", "review_status", "review_label",
                  "job_id")
_EXAMPLE_COLUMNS = {
    "id", "job_id", "slot", "text", "norm_text", "label", "intended_label", "mixed_with", "alpha", "mixup",
    "model", "endpoint", "created_at", "llm_label", "llm_raw", "relabel_status", "relabeled_at",
    "review_status", "review_label", "reviewed_at", "reviewed_by", "version", "llm_confidence", "flag",
    "judge_label", "judge_confidence",
}



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



class ExamplesMixin(StoreBase):
    """Examples of a project."""

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
        # A person's decision is final until a person changes it: on a decided example the relabel is
        # kept as a suggestion (llm_label...), its label stays, and the version moves on (a tab that
        # decided on the earlier version is told it changed)
        with self.transaction() as c:
            c.execute(
                "UPDATE examples SET llm_label = ?, relabel_status = ?, llm_raw = ?, relabel_prompt = ?, "
                "relabeled_at = ?, label = CASE WHEN ? IS NOT NULL AND review_status = 'pending' THEN ? ELSE label END, "
                "llm_confidence = ?, version = version + (review_status != 'pending') WHERE id = ?",
                (llm_label, status, raw, prompt, time.time(), llm_label, llm_label, confidence, example_id),
            )

    def set_flags(self, reasons: Mapping[int, str]) -> int:
        """Save junk flags (example id -> reason; '' clears a flag) in one transaction; returns how many
        rows changed. Flags never change labels or review decisions; a new flag on a decided example moves
        its version on."""
        n = 0
        with self.transaction() as c:
            for example_id, reason in reasons.items():
                n += c.execute("UPDATE examples SET flag = ?, version = version + (review_status != 'pending') "
                               "WHERE id = ? AND flag != ?",
                               (str(reason or ""), int(example_id), str(reason or ""))).rowcount
        return n

    def set_judge(self, rows: Mapping[int, tuple[str | None, float | None]]) -> int:
        """Save a second, no-LLM judge's suggestions (example id -> ``(label, confidence)``; ``(None,
        None)`` clears one) in one transaction; returns how many rows changed. Like flags, a judge's
        suggestion never changes labels or review decisions."""
        clean: list[tuple[str | None, float | None, int]] = []
        for example_id, value in rows.items():
            label, confidence = value
            label = None if label is None or str(label) == "" else str(label)
            if confidence is not None:
                confidence = float(confidence)
                if not 0.0 <= confidence <= 1.0:
                    raise ValueError(f"a confidence must be in [0, 1], got {confidence}")
            clean.append((label, confidence, int(example_id)))
        n = 0
        with self.transaction() as c:
            for label, confidence, example_id in clean:
                n += c.execute(
                    "UPDATE examples SET judge_label = ?, judge_confidence = ? WHERE id = ? "
                    "AND (judge_label IS NOT ? OR judge_confidence IS NOT ?)",
                    (label, confidence, example_id, label, confidence),
                ).rowcount
        return n

    def adopt_judge_labels(self, *, job_id: int | None = None) -> int:
        """Make the judge's suggestion the label of every example (of ``job_id``, or all) still pending
        review that has one: the project chose the judge to give the default label
        (:func:`promptmix_core.judge.achoose_label_source`). Reviewed examples keep theirs. Returns how
        many labels changed."""
        sql = ("UPDATE examples SET label = judge_label WHERE review_status = 'pending' AND judge_label IS NOT NULL "
               "AND label IS NOT judge_label")
        args: list[Any] = []
        if job_id is not None:
            sql += " AND job_id = ?"
            args.append(int(job_id))
        with self.transaction() as c:
            return c.execute(sql, args).rowcount

    def delete_examples(self, job_id: int) -> int:
        with self.transaction() as c:
            n = c.execute("DELETE FROM examples WHERE job_id = ?", (job_id,)).rowcount
            c.execute("DELETE FROM responses WHERE job_id = ?", (job_id,))
            return n


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
