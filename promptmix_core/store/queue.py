"""The review queue: pages of the review card's columns in queue order (pending first, or "most
informative" first), read on the narrow review index; only a page's rows are read in full."""

from __future__ import annotations

from typing import Any, Sequence

from .base import StoreBase
from .examples import _example_where
from .records import REVIEW_STATUSES

QUEUE_ORDERS = ("pending", "informative")
LOW_CONFIDENCE = 0.5
# Why an example is worth a look early ("most informative first"): each reason adds its weight.
# The two judges (the LLM relabel and the embedding judge, promptmix_core.judge) disagreeing weighs most.
INFORMATIVE_WEIGHTS = {"judges_differ": 5, "relabel_differs": 4, "relabel_failed": 4, "embedding_differs": 3,
                       "flagged": 2, "low_confidence": 1, "judge_low_confidence": 1}
_JUDGES_DIFFER_SQL = "(e.judge_label IS NOT NULL AND e.llm_label IS NOT NULL AND e.judge_label != e.llm_label)"
_JUDGE_LOW_SQL = f"(e.judge_confidence IS NOT NULL AND e.judge_confidence < {LOW_CONFIDENCE})"
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
    f" * {INFORMATIVE_WEIGHTS['low_confidence']}"
    f" + {_JUDGES_DIFFER_SQL} * {INFORMATIVE_WEIGHTS['judges_differ']}"
    f" + {_JUDGE_LOW_SQL} * {INFORMATIVE_WEIGHTS['judge_low_confidence']})"
)


def _card_columns(e: str, v: str) -> str:
    """The columns the review card shows (the relabel's raw answer cut to __RAW__ characters)."""
    return (
        f"{e}id AS id, {e}job_id AS job_id, {e}text AS text, {e}label AS label, "
        f"{e}intended_label AS intended_label, {e}mixed_with AS mixed_with, {e}alpha AS alpha, {e}mixup AS mixup, "
        f"{e}llm_label AS llm_label, substr({e}llm_raw, 1, __RAW__) AS llm_raw, "
        f"length({e}llm_raw) AS llm_raw_len, {e}relabel_status AS relabel_status, "
        f"{e}llm_confidence AS llm_confidence, {e}judge_label AS judge_label, "
        f"{e}judge_confidence AS judge_confidence, COALESCE({e}flag, '') AS flag, {e}review_status AS review_status, "
        f"{e}review_label AS review_label, {e}version AS version, {v}nearest_label AS nearest_label"
    )


def _statuses(review_status: str | Sequence[str] | None) -> set[str]:
    """The review statuses a filter lets through."""
    if review_status is None:
        return set(REVIEW_STATUSES)
    vals = [review_status] if isinstance(review_status, str) else list(review_status)
    return {v for v in vals if v in REVIEW_STATUSES}


class QueueMixin(StoreBase):
    """Reading the review queue."""

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
            kb = "MIN(COALESCE(e.llm_confidence, 1.0), COALESCE(e.judge_confidence, 1.0))"
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
            f"SUM(e.llm_confidence IS NOT NULL AND e.llm_confidence < {LOW_CONFIDENCE}), "
            f"SUM({_JUDGES_DIFFER_SQL}), SUM({_JUDGE_LOW_SQL}) "
            "FROM examples e LEFT JOIN example_vectors v ON v.example_id = e.id WHERE e.review_status = 'pending'"
        )[0]
        codes = ("relabel_differs", "relabel_failed", "embedding_differs", "flagged", "low_confidence",
                 "judges_differ", "judge_low_confidence")
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
