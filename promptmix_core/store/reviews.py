"""Review decisions, all through one logged path.

Every write of a review status (:meth:`ReviewsMixin.review`, :meth:`~ReviewsMixin.bulk_review`,
:meth:`~ReviewsMixin.reject_flagged`, :meth:`~ReviewsMixin.bulk_decide` and the card's batches,
:meth:`~ReviewsMixin.apply_review_batch`) goes through :meth:`ReviewsMixin._log_decision`: the
example's row and a ``review_log`` entry with what it replaced, in the same transaction. So every
decision counts in :meth:`~ReviewsMixin.review_changes_since`, conflicts are judged per browser
tab, and every unit (one decision, or one bulk action) can be undone as one step.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
import uuid
from typing import Any, Mapping, Sequence

from .base import StoreBase
from .records import REVIEW_STATUSES
from .team import ADJ_PREFIX, reviews_needed, team_final


class ConflictError(RuntimeError):
    """A review decision was made on a stale version of an example (someone else changed it)."""


def tab_key(tab: Any) -> str:
    """What the store keeps of a browser tab's id: a digest. The id a tab sends is its secret; the review
    log holds only this digest, so reading the log (or another tab's answers) gives nothing that can
    act as that tab: a crafted operation naming another tab's logged id is that tab's digest hashed
    again, another tab, and its stale decisions conflict."""
    raw = str(tab or "")
    return "" if not raw else "t:" + hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()[:32]


_DECISION_COLUMNS = "review_status, review_label, reviewed_at, reviewed_by, version, label"


def _applied_result(rows: Sequence[sqlite3.Row]) -> dict[str, Any]:
    """The result of an operation found already applied (a resend)."""
    first = rows[0]
    if first["undo_of"]:
        return {"ok": True, "undo": first["undo_of"], "n": len(rows), "dup": True,
                "restored": [{"id": int(r["example_id"]), "version": int(r["version"])} for r in rows[:200]]}
    return {"ok": True, "id": int(first["example_id"]), "status": first["action"], "label": first["label"],
            "version": int(first["version"]), "dup": True}


class ReviewsMixin(StoreBase):
    """Review decisions, bulk actions and undo."""

    # ------------------------------------------------------------------ the one write path
    @staticmethod
    def _log_decision(
        c: sqlite3.Connection,
        row: sqlite3.Row,
        ex_id: int,
        status: str,
        label: str | None,
        *,
        cid: str,
        unit: str,
        tab: str,
        reviewer: str | None,
        now: float,
        action: str | None = None,
        undo_of: str | None = None,
        reviewed_at: float | None = None,
        reviewed_by: str | None = None,
        restore: bool = False,
    ) -> int:
        """Write one example's review state and its ``review_log`` entry (``row``: the example's
        :data:`_DECISION_COLUMNS` as read in this transaction). Returns the new version.

        ``restore`` (an undo) writes ``reviewed_at``/``reviewed_by`` as given; otherwise a decision
        is stamped ``now`` (none for "pending") and ``reviewer``."""
        version = int(row["version"]) + 1
        if not restore:
            reviewed_at = now if status != "pending" else None
            reviewed_by = reviewer
            if status == "accepted" and not label:
                # the label the person accepted is kept with the decision: a later relabel of the example
                # is a suggestion and never changes what was accepted
                label = row["label"]
        ex_status, ex_label = status, label
        if not restore and not cid.startswith(ADJ_PREFIX) and (needed := reviews_needed(c)) > 1:
            # several reviews per example: the log keeps this reviewer's vote, the example its final state
            ex_status, ex_label = team_final(c, ex_id, reviewer, status, label, needed)
        c.execute(
            "UPDATE examples SET review_status = ?, review_label = ?, reviewed_at = ?, reviewed_by = ?, "
            "version = ? WHERE id = ?",
            (ex_status, ex_label, reviewed_at, reviewed_by, version, ex_id),
        )
        c.execute(
            "INSERT INTO review_log(client_id, unit, tab, reviewer, example_id, action, label, prev_status, "
            "prev_label, prev_reviewed_at, prev_reviewed_by, status, version, undo_of, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (cid, unit, tab, reviewer, ex_id, action or status, label, row["review_status"], row["review_label"],
             row["reviewed_at"], row["reviewed_by"], ex_status, version, undo_of, now),
        )
        return version

    def _bulk(
        self,
        c: sqlite3.Connection,
        example_ids: Sequence[int],
        decision: str,
        *,
        unit: str,
        tab: str,
        reviewer: str | None,
        only_pending: bool,
        now: float,
    ) -> int:
        """One decision for many examples, logged as one undo unit; returns how many changed."""
        ids = [int(i) for i in example_ids]
        n = 0
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            cond = " AND review_status = 'pending'" if only_pending else ""
            rows = c.execute(
                f"SELECT id, {_DECISION_COLUMNS} FROM examples WHERE id IN ({','.join('?' * len(chunk))}){cond}",
                chunk,
            ).fetchall()
            for r in rows:
                self._log_decision(c, r, int(r["id"]), decision, None, cid=f"{unit}:{r['id']}", unit=unit, tab=tab,
                                   reviewer=reviewer, now=now)
            n += len(rows)
        return n

    # ------------------------------------------------------------------ decisions
    def review(
        self,
        example_id: int,
        decision: str,
        *,
        label: str | None = None,
        expected_version: int | None = None,
        reviewer: str | None = None,
        tab: str = "",
    ) -> int:
        """Record a review decision: accepted, overridden (with ``label``), rejected or pending (undo).

        With ``expected_version`` the write succeeds only if nobody changed the example since it was
        read; otherwise :class:`ConflictError` is raised and nothing is written. Returns the new version.
        Logged like every review write (one undo unit of ``tab``).
        """
        if decision not in REVIEW_STATUSES:
            raise ValueError(f"unknown review decision {decision!r}")
        if decision == "overridden" and not label:
            raise ValueError("an override needs a class")
        if decision != "overridden":
            label = None
        cid = f"review:{uuid.uuid4().hex}"
        with self.transaction() as c:
            row = c.execute(f"SELECT {_DECISION_COLUMNS} FROM examples WHERE id = ?", (example_id,)).fetchone()
            if row is None:
                raise KeyError(example_id)
            if expected_version is not None and row["version"] != expected_version:
                raise ConflictError(
                    f"example {example_id} was changed by someone else since you loaded it; reload to see it"
                )
            return self._log_decision(c, row, int(example_id), decision, label, cid=cid, unit=cid, tab=tab_key(tab),
                                      reviewer=reviewer, now=time.time())

    def bulk_review(
        self,
        example_ids: Sequence[int],
        decision: str,
        *,
        only_pending: bool = True,
        reviewer: str | None = None,
        tab: str = "",
        unit: str | None = None,
    ) -> int:
        """Apply one decision (accepted, rejected or pending) to many examples; returns how many
        changed. Logged as one undo unit (``unit``, by default a new ``bulk:...`` id) of ``tab``."""
        if decision not in ("accepted", "rejected", "pending"):
            raise ValueError("bulk review takes accepted, rejected or pending")
        if not example_ids:
            return 0
        with self.transaction() as c:
            return self._bulk(c, example_ids, decision, unit=unit or f"bulk:{uuid.uuid4().hex}", tab=tab_key(tab),
                              reviewer=reviewer, only_pending=only_pending, now=time.time())

    def reject_flagged(
        self, *, job_id: int | None = None, reviewer: str | None = None, tab: str = "", unit: str | None = None
    ) -> int:
        """Reject, in one transaction, every flagged example still pending review (of ``job_id``, or all);
        examples someone already decided on are left alone. Returns how many were rejected. Logged as
        one bulk unit (``unit``, by default a new ``bulk:...`` id) of ``tab``: :meth:`undo` of that
        unit puts them all back to pending in one step."""
        cond, params = "flag != '' AND review_status = 'pending'", []
        if job_id is not None:
            cond += " AND job_id = ?"
            params.append(job_id)
        with self.transaction() as c:
            ids = [int(r[0]) for r in c.execute(f"SELECT id FROM examples WHERE {cond} ORDER BY id", params)]
            if not ids:
                return 0
            return self._bulk(c, ids, "rejected", unit=unit or f"bulk:{uuid.uuid4().hex}", tab=tab_key(tab),
                              reviewer=reviewer, only_pending=True, now=time.time())

    def undo(self, unit: str, *, tab: str = "", reviewer: str | None = None) -> dict[str, Any]:
        """Undo one unit (a decision, or a bulk action) of ``tab``: see :meth:`apply_review_batch`."""
        cid = f"undo:{uuid.uuid4().hex}"
        return self.apply_review_batch([{"cid": cid, "undo": unit}], tab=tab, reviewer=reviewer)[cid]

    def apply_review_batch(
        self, ops: Sequence[Mapping[str, Any]], *, tab: str, reviewer: str | None = None,
        project_uid: str | None = None,
    ) -> dict[str, dict[str, Any]]:
        """Apply a batch of review operations in one transaction; returns a result per operation id.

        An operation is a decision ``{"cid", "id", "action": accepted|overridden|rejected, "label",
        "base"}`` or an undo ``{"cid", "undo": UNIT}``. ``cid`` is the client's id for the operation:
        an operation already applied is never applied again (a resend is harmless). ``base`` is the
        example's version when this tab loaded it: the decision is refused (``conflict``) only when
        someone other than ``tab`` changed the example since then; decisions of the same tab never
        conflict with each other. An undo restores what the unit (a decision, or a bulk action, of this
        tab) replaced, for each example nobody else changed since.

        Refused as conflicts, nothing written: a decision without ``base`` (every decision says which
        version it was made on), an undo of another tab's unit, and every operation of a batch (or an
        operation carrying ``"project_uid"``) made for another project than this one (``project_uid``: the
        project's identity, not its name, as the tab saw it; a project deleted and made again under the
        same name is another project).
        """
        tab = tab_key(tab)
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
            mine = self.project_uid
            for cid, op in zip(cids, ops):
                if cid in results:
                    continue
                made_for = op.get("project_uid") or project_uid
                if made_for is not None and str(made_for) != str(mine):
                    results[cid] = {"ok": False, "conflict": True, "wrong_project": True,
                                    "error": "made on another project of the same name (it was deleted and made "
                                             "again, or replaced); not applied"}
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
        row = c.execute(f"SELECT {_DECISION_COLUMNS} FROM examples WHERE id = ?", (ex_id,)).fetchone()
        if row is None:
            return {"ok": False, "id": ex_id, "missing": True}
        try:
            base = int(op["base"])
        except (KeyError, TypeError, ValueError):
            base = None  # a decision that does not say which version it was made on cannot be checked
        # with several reviews per example each reviewer's vote is their own: nobody else's change conflicts
        if reviews_needed(c) <= 1 and (base is None or not self._changed_only_by(c, ex_id, base, int(row["version"]),
                                                                                  tab)):
            return {
                "ok": False, "id": ex_id, "conflict": True,
                "current": {"status": row["review_status"], "label": row["review_label"],
                            "version": int(row["version"]), "by": row["reviewed_by"]},
            }
        version = self._log_decision(c, row, ex_id, action, label, cid=cid, unit=cid, tab=tab, reviewer=reviewer,
                                     now=now)
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
            return {"ok": False, "undo": unit, "conflict": True, "error": "only the tab that made a decision can undo it"}
        restored, skipped = [], []
        for e in entries:
            ex_id = int(e["example_id"])
            row = c.execute(f"SELECT {_DECISION_COLUMNS} FROM examples WHERE id = ?", (ex_id,)).fetchone()
            if row is None or not self._changed_only_by(c, ex_id, int(e["version"]), int(row["version"]), tab):
                skipped.append(ex_id)
                continue
            version = self._log_decision(
                c, row, ex_id, e["prev_status"], e["prev_label"], cid=f"{cid}:{ex_id}", unit=cid, tab=tab,
                reviewer=reviewer, now=now, action="undo", undo_of=unit, reviewed_at=e["prev_reviewed_at"],
                reviewed_by=e["prev_reviewed_by"], restore=True,
            )
            restored.append({"id": ex_id, "status": e["prev_status"], "label": e["prev_label"], "version": version,
                             "prev": row["review_status"]})
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
        tab = tab_key(tab)
        with self.transaction() as c:
            if c.execute("SELECT 1 FROM review_log WHERE unit = ? LIMIT 1", (unit,)).fetchone():
                return unit, int(c.execute("SELECT COUNT(*) FROM review_log WHERE unit = ?", (unit,)).fetchone()[0])
            n = self._bulk(c, example_ids, decision, unit=unit, tab=tab, reviewer=reviewer, only_pending=only_pending,
                           now=time.time())
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
            (tab_key(tab), int(limit)),
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

