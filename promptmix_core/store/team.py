"""Team review: several reviews per example, each reviewer's decisions, the final label and the
owners' adjudication queue.

Every decision already goes through the one logged write path (:mod:`.reviews`), which records the
reviewer and the time in ``review_log``. A reviewer's *vote* on an example is their latest logged
decision on it that is not undone (a bulk "pending" takes it back); votes are read from the log, so
nothing else has to be kept in step.

With ``reviews_per_example`` N (a project setting, default 1):

- N = 1: the example's review status is the latest decision, exactly as before.
- N > 1: an example stays ``pending`` (in the queue of every reviewer who has not decided it) until
  N reviewers have decided it. The **final label** then follows this rule: when all of them agree
  (same effective class: Accept counts as the example's current label, an override as its class,
  Reject as "rejected") the example takes that decision; when they disagree it stays pending and
  goes to the owners' adjudication queue, where an owner's decision is final
  (:meth:`TeamMixin.adjudicate`). Training and exports read the example's status, so they use final
  labels only.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from typing import Any, Sequence

from .base import StoreBase

REVIEWS_META = "reviews_per_example"
MAX_REVIEWS_PER_EXAMPLE = 10
ADJ_PREFIX = "adj:"
#: a vote is the latest of a reviewer's logged decisions on an example, not undone, not an adjudication
_VOTE_ROWS = (
    "SELECT l.example_id AS example_id, COALESCE(l.reviewer, '') AS reviewer, l.action AS action, l.label AS label, "
    "l.created_at AS at, l.id AS log_id FROM review_log l JOIN ("
    "SELECT MAX(id) AS id FROM review_log WHERE undo_of IS NULL AND undone = 0 AND unit NOT LIKE 'adj:%' {where} "
    "GROUP BY example_id, COALESCE(reviewer, '')) m ON m.id = l.id WHERE l.action IN ('accepted', 'overridden', 'rejected')"
)


def effective(action: str, label: str | None, example_label: str | None) -> str:
    """What a decision says the example is: its class (an override's, the one an Accept saved, else the
    example's current label), or "rejected"."""
    if action == "rejected":
        return "rejected"
    if label:  # an override's class, or the class an Accept saved with the decision
        return str(label)
    return str(example_label or "")


def reviews_needed(c: sqlite3.Connection) -> int:
    """The project's reviews per example (1 when never set); one key lookup, cheap per decision."""
    row = c.execute("SELECT value FROM meta WHERE key = ?", (REVIEWS_META,)).fetchone()
    try:
        return max(1, int(row[0])) if row else 1
    except (TypeError, ValueError):
        return 1


def example_votes(c: sqlite3.Connection, example_id: int) -> dict[str, tuple[str, str | None]]:
    """The current votes on one example: reviewer -> (action, label)."""
    rows = c.execute(_VOTE_ROWS.format(where="AND example_id = ?"), (int(example_id),)).fetchall()
    return {r["reviewer"]: (r["action"], r["label"]) for r in rows}


def team_final(
    c: sqlite3.Connection, example_id: int, reviewer: str | None, action: str, label: str | None, needed: int
) -> tuple[str, str | None]:
    """The example's review status and label once ``reviewer``'s vote (``action``, ``label``) is in,
    under the rule of the module docstring (an adjudication, when there is one, stays)."""
    adj = c.execute(
        "SELECT action, label FROM review_log WHERE example_id = ? AND unit LIKE 'adj:%' AND undo_of IS NULL "
        "AND undone = 0 ORDER BY id DESC LIMIT 1", (int(example_id),)).fetchone()
    if adj is not None:
        return adj["action"], adj["label"]
    votes = example_votes(c, example_id)
    if action == "pending":
        votes.pop(str(reviewer or ""), None)
    else:
        votes[str(reviewer or "")] = (action, label)
    if len(votes) < needed:
        return "pending", None
    ex_label = c.execute("SELECT label FROM examples WHERE id = ?", (int(example_id),)).fetchone()[0]
    said = {effective(a, lab, ex_label) for a, lab in votes.values()}
    if len(said) != 1:
        return "pending", None  # a conflict: the owners' adjudication queue
    only = said.pop()
    if only == "rejected":
        return "rejected", None
    if only == ex_label:
        return "accepted", only  # an accepted example keeps the class it was accepted as
    return "overridden", only


class TeamMixin(StoreBase):
    """Reviews per example, votes, decisions with their reviewer, adjudication."""

    def reviews_per_example(self) -> int:
        return reviews_needed(self._connect())

    def set_reviews_per_example(self, n: int) -> None:
        n = int(n)
        if not 1 <= n <= MAX_REVIEWS_PER_EXAMPLE:
            raise ValueError(f"reviews per example must be between 1 and {MAX_REVIEWS_PER_EXAMPLE}")
        self.set_meta(REVIEWS_META, str(n))

    def votes(self, example_ids: Sequence[int] | None = None) -> list[dict[str, Any]]:
        """Every current vote ``{example_id, reviewer, action, label, at}`` (of the given examples)."""
        if example_ids is None:
            return [dict(r) for r in self._query(_VOTE_ROWS.format(where="") + " ORDER BY l.id")]
        out: list[dict[str, Any]] = []
        ids = [int(i) for i in example_ids]
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            out += [dict(r) for r in self._query(
                _VOTE_ROWS.format(where=f"AND example_id IN ({','.join('?' * len(chunk))})") + " ORDER BY l.id",
                chunk)]
        return out

    def reviewers_and_mark(self) -> tuple[int, int]:
        """(how many people have a decision in force, the id of the last review-log entry): enough to
        know whether agreement means anything yet, and whether figures computed before are stale."""
        row = self._query(
            "SELECT COUNT(DISTINCT COALESCE(reviewer, '')) FILTER (WHERE undo_of IS NULL AND undone = 0 "
            "AND action IN ('accepted', 'overridden', 'rejected') AND unit NOT LIKE 'adj:%'), "
            "COALESCE(MAX(id), 0) FROM review_log")[0]
        return int(row[0] or 0), int(row[1] or 0)

    def reviewer_agreement(self) -> dict[str, Any] | None:
        """Krippendorff's alpha between reviewers and the examples it rests on (for the project report),
        or None until two people have decided the same examples."""
        if self.reviewers_and_mark()[0] < 2:
            return None
        from ..agreement import project_agreement

        a = project_agreement(self)
        if not a.alpha_n:
            return None
        return {"Krippendorff's alpha (nominal)": a.alpha if a.alpha is not None else "n/a",
                "over examples": a.alpha_n}

    def decided_by(self, reviewer: str) -> set[int]:
        """The examples ``reviewer`` has a current vote on."""
        return {int(v["example_id"]) for v in self.votes() if v["reviewer"] == str(reviewer or "")}

    def queue_exclusions(self, reviewer: str | None) -> set[int]:
        """With N > 1 reviews per example: the examples that leave ``reviewer``'s queue (their own
        decided ones, and those with N votes already: final, or waiting for an owner)."""
        needed = self.reviews_per_example()
        if needed <= 1:
            return set()
        per: dict[int, set[str]] = {}
        for v in self.votes():
            per.setdefault(int(v["example_id"]), set()).add(v["reviewer"])
        me = str(reviewer or "")
        return {ex for ex, who in per.items() if me in who or len(who) >= needed}

    def adjudication_queue(self) -> list[dict[str, Any]]:
        """Examples whose N reviewers disagree, still pending: ``{id, text, label, votes}``."""
        needed = self.reviews_per_example()
        if needed <= 1:
            return []
        per: dict[int, list[dict[str, Any]]] = {}
        for v in self.votes():
            per.setdefault(int(v["example_id"]), []).append(v)
        ids = [ex for ex, vs in per.items() if len(vs) >= needed]
        out = []
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            for r in self._query(
                f"SELECT id, text, label, review_status FROM examples WHERE id IN ({','.join('?' * len(chunk))}) "
                "AND review_status = 'pending' ORDER BY id", chunk):
                out.append({"id": int(r["id"]), "text": r["text"], "label": r["label"],
                            "votes": [{"reviewer": v["reviewer"], "decision": v["action"],
                                       "says": effective(v["action"], v["label"], r["label"])}
                                      for v in per[int(r["id"])]]})
        return out

    def adjudicate(self, example_id: int, decision: str, *, label: str | None = None, reviewer: str) -> int:
        """An owner's final decision on an example (the conflict rule's last word); logged like
        every decision, as an ``adj:`` unit. Returns the new version. Who may call it is the
        faces' business (:func:`promptmix_core.access.require`)."""
        from .reviews import _DECISION_COLUMNS

        if decision not in ("accepted", "overridden", "rejected"):
            raise ValueError(f"unknown review decision {decision!r}")
        if decision == "overridden" and not label:
            raise ValueError("an override needs a class")
        label = label if decision == "overridden" else None
        cid = f"{ADJ_PREFIX}{uuid.uuid4().hex}"
        with self.transaction() as c:
            row = c.execute(f"SELECT {_DECISION_COLUMNS} FROM examples WHERE id = ?", (int(example_id),)).fetchone()
            if row is None:
                raise KeyError(example_id)
            return self._log_decision(c, row, int(example_id), decision, label, cid=cid, unit=cid,
                                      tab="adjudication", reviewer=reviewer, now=time.time())

    def vote_context(self, example_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
        """id -> ``{label, llm_label, judge_label}`` of the given examples (what votes are compared with)."""
        out: dict[int, dict[str, Any]] = {}
        ids = [int(i) for i in example_ids]
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            for r in self._query(
                f"SELECT id, label, llm_label, judge_label FROM examples WHERE id IN ({','.join('?' * len(chunk))})",
                chunk):
                out[int(r["id"])] = {"label": r["label"], "llm_label": r["llm_label"], "judge_label": r["judge_label"]}
        return out

    def decision_rows(self) -> list[dict[str, Any]]:
        """One row per decision in force (every reviewer's vote, and owners' adjudications), oldest
        first: example id, text, reviewer, decision, label (the class it says, empty for a reject),
        time (ISO 8601, UTC) and whether it was an adjudication."""
        rows = self._query(
            "SELECT l.id, l.example_id, COALESCE(l.reviewer, '') AS reviewer, l.action, l.label, l.created_at, "
            "l.unit, e.text, e.label AS ex_label FROM review_log l JOIN examples e ON e.id = l.example_id "
            "WHERE l.undo_of IS NULL AND l.undone = 0 AND l.action IN ('accepted', 'overridden', 'rejected') "
            "AND l.id IN (SELECT MAX(id) FROM review_log WHERE undo_of IS NULL AND undone = 0 "
            "GROUP BY example_id, COALESCE(reviewer, ''), unit LIKE 'adj:%') ORDER BY l.id")
        out = []
        for r in rows:
            said = effective(r["action"], r["label"], r["ex_label"])
            out.append({
                "example_id": int(r["example_id"]), "text": r["text"], "reviewer": r["reviewer"],
                "decision": r["action"], "label": "" if said == "rejected" else said,
                "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(float(r["created_at"]))),
                "adjudication": str(r["unit"]).startswith(ADJ_PREFIX),
            })
        return out
