"""Review at reviewer speed: the queue (its order and why an example comes early), batches of decisions
from a browser tab, the undo history of a tab, bulk actions, and the class nearest by embedding.

Pure functions over the project store; the Review page and its card component are a thin face on
them. A browser tab sends its decisions in small batches, each with its own client id (``cid``), so
a resend never applies twice; each batch is written in one transaction; a decision is refused only
when someone other than that tab changed the example since the tab loaded it. Undo works on units
(one decision, or one bulk action) of the tab, newest first, whatever the queue shows.

Run ``python -m promptmix_core.review nearest PROJECT.pmx`` to embed the examples with the bundled
all-MiniLM-L6-v2 and store, for each, the class of its nearest neighbour among the seeds and the
accepted examples (the "embedding disagrees" reason of the informative order). The Review page starts
it as a background process; progress goes to the store (meta ``review_nearest``).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from .store import INFORMATIVE_WEIGHTS, LOW_CONFIDENCE, QUEUE_ORDERS, ProjectStore
from .task import Task

ORDERS = {"pending": "Pending first", "informative": "Most informative first"}
assert tuple(ORDERS) == QUEUE_ORDERS
DECISIONS = ("accepted", "overridden", "rejected")
PAGE_SIZE = 40
MAX_OPS_PER_BATCH = 500
_CID_RE = re.compile(r"^[A-Za-z0-9_.:\-]{1,80}$")

NEAREST_META = "review_nearest"
EMBED_MODEL = "all-MiniLM-L6-v2"


# --------------------------------------------------------------------------- the queue
@dataclass(frozen=True)
class QueueFilter:
    """What the queue shows: a review status (None: all), a class (written for, mixed with or
    relabelled as), a relabel status (``agree``/``changed``/``unparseable``/``none``) and words."""

    review_status: str | None = "pending"
    label: str | None = None
    relabel_status: str | None = None
    search: str | None = None

    def kwargs(self) -> dict[str, Any]:
        return {"review_status": self.review_status, "label": self.label,
                "relabel_status": self.relabel_status, "search": (self.search or "").strip() or None}

    def key(self) -> str:
        return json.dumps(self.kwargs(), sort_keys=True)


def reasons(row: Mapping[str, Any]) -> list[dict[str, str]]:
    """Why an example is worth a look early, strongest first: ``[{"code", "text"}]``."""
    out: list[dict[str, str]] = []
    status = row.get("relabel_status")
    intended, llm = row.get("intended_label"), row.get("llm_label")
    if status == "changed" and llm:
        out.append({"code": "relabel_differs",
                    "text": f"the LLM relabel ({llm}) differs from the written-for class ({intended})"})
    if status == "unparseable":
        out.append({"code": "relabel_failed", "text": "the LLM's relabel answer named no class"})
    nearest = row.get("nearest_label")
    if nearest and nearest != intended and nearest != (llm or intended):
        out.append({"code": "embedding_differs",
                    "text": f"nearest by embedding is {nearest}, neither the written-for class nor the relabel"})
    judge = row.get("judge_label")
    if judge and llm and judge != llm:
        out.append({"code": "judges_differ",
                    "text": f"the two judges disagree: the embedding judge says {judge}, the LLM relabel {llm}"})
    flag = (row.get("flag") or "").strip()
    if flag:
        out.append({"code": "flagged", "text": f"flagged: {flag}"})
    conf = row.get("llm_confidence")
    if conf is not None and float(conf) < LOW_CONFIDENCE:
        out.append({"code": "low_confidence", "text": f"low relabel confidence ({float(conf):.2f})"})
    jconf = row.get("judge_confidence")
    if judge and jconf is not None and float(jconf) < LOW_CONFIDENCE:
        out.append({"code": "judge_low_confidence", "text": f"low judge confidence ({float(jconf):.2f})"})
    out.sort(key=lambda r: -INFORMATIVE_WEIGHTS.get(r["code"], 0))
    return out


def accept_saves(row: Mapping[str, Any]) -> tuple[str, str]:
    """(the class Accept saves, where it comes from in words). Accept keeps the example's label, which
    a relabel step set to the chosen judge's suggestion (:mod:`promptmix_core.judge`)."""
    label = row.get("label") or row.get("intended_label")
    status = row.get("relabel_status")
    judge, llm = row.get("judge_label"), row.get("llm_label")
    if judge and label == judge and (not llm or llm != judge):
        return str(label), ("embedding judge; the LLM relabel says " + str(llm) if llm
                            else "embedding judge; the LLM relabel named no class" if status == "unparseable"
                            else "embedding judge")
    if judge and label == judge and llm == judge:
        return str(label), "embedding judge and LLM relabel agree"
    if status in ("agree", "changed") and row.get("llm_label") and label == row.get("llm_label"):
        return str(label), ("LLM relabel, agrees with written-for" if status == "agree" else "LLM relabel")
    if status == "unparseable":
        return str(label), "written for; the relabel failed"
    if status is None:
        return str(label), "written for; not relabelled"
    return str(label), "written for" if label == row.get("intended_label") else "current label"


def card(row: Mapping[str, Any]) -> dict[str, Any]:
    """A queue row as the review card shows it (JSON-ready)."""
    d = dict(row)
    d["reasons"] = reasons(row)
    d["accept_label"], d["accept_source"] = accept_saves(row)
    if d.get("alpha") is not None:
        d["alpha"] = round(float(d["alpha"]), 3)
    if d.get("llm_confidence") is not None:
        d["llm_confidence"] = round(float(d["llm_confidence"]), 3)
    if d.get("judge_confidence") is not None:
        d["judge_confidence"] = round(float(d["judge_confidence"]), 3)
    d["judges_agree"] = (d["judge_label"] == d["llm_label"]) if d.get("judge_label") and d.get("llm_label") else None
    return d


def queue_page(
    store: ProjectStore,
    order: str = "pending",
    flt: QueueFilter | None = None,
    *,
    after: Sequence[Any] | None = None,
    limit: int = PAGE_SIZE,
    reviewer: str | None = None,
) -> dict[str, Any]:
    """The next ``limit`` cards of the queue after the sort key ``after``: ``{"items", "done"}``.

    With several reviews per example (:meth:`ProjectStore.reviews_per_example` > 1) the pending
    examples ``reviewer`` already decided, and those with enough decisions, leave their queue."""
    flt = flt or QueueFilter()
    skip = store.queue_exclusions(reviewer) if flt.review_status == "pending" else set()
    if not skip:
        rows = store.review_queue(order=order, after=after, limit=limit + 1, **flt.kwargs())
        done = len(rows) <= limit
        return {"items": [card(r) for r in rows[:limit]], "done": done}
    kept: list[dict[str, Any]] = []
    done = False
    while len(kept) <= limit:
        rows = store.review_queue(order=order, after=after, limit=limit + 1, **flt.kwargs())
        kept += [r for r in rows if int(r["id"]) not in skip]
        if len(rows) <= limit:
            done = True
            break
        after = rows[-1]["key"]
    done = done and len(kept) <= limit
    return {"items": [card(r) for r in kept[:limit]], "done": done}


def reason_counts(store: ProjectStore) -> dict[str, int]:
    """How many pending examples have each reason to come early."""
    return store.count_reasons()


# --------------------------------------------------------------------------- decisions from a tab
def parse_ops(raw: Any, classes: Sequence[str], *, tab: str = "") -> tuple[list[dict[str, Any]], dict[str, dict]]:
    """Check the operations a tab sent. Returns (valid operations in order, results for refused ones).

    A refused operation gets a final result (``ok: False`` with ``error``) so the tab stops resending it.
    """
    valid: list[dict[str, Any]] = []
    refused: dict[str, dict[str, Any]] = {}
    known = set(classes)
    if not isinstance(raw, list):
        return valid, refused
    for op in raw[:MAX_OPS_PER_BATCH]:
        if not isinstance(op, Mapping):
            continue
        cid = str(op.get("cid") or "")
        if not _CID_RE.match(cid):
            continue  # nothing to answer to
        op_tab = str(op.get("tab") or tab)[:80]
        if op.get("undo"):
            unit = str(op["undo"])
            if not _CID_RE.match(unit):
                refused[cid] = {"ok": False, "error": "not a decision of this tab"}
                continue
            valid.append({"cid": cid, "undo": unit, "tab": op_tab, **_project_of(op)})
            continue
        action = op.get("action")
        try:
            ex_id = int(op.get("id"))
        except (TypeError, ValueError):
            refused[cid] = {"ok": False, "error": "the decision names no example"}
            continue
        if action not in DECISIONS:
            refused[cid] = {"ok": False, "id": ex_id, "error": f"unknown decision {action!r}"}
            continue
        label = op.get("label") if action == "overridden" else None
        if action == "overridden" and label not in known:
            refused[cid] = {"ok": False, "id": ex_id, "error": f"{label!r} is not a class of this task"}
            continue
        base = op.get("base")
        try:
            base = int(base) if base is not None else None
        except (TypeError, ValueError):
            base = None
        valid.append({"cid": cid, "id": ex_id, "action": action, "label": label, "base": base, "tab": op_tab,
                      **_project_of(op)})
    return valid, refused


def _project_of(op: Mapping[str, Any]) -> dict[str, str]:
    """``{"project_uid": uid}`` when the tab said which project (its identity) the operation was made on."""
    uid = op.get("project_uid")
    return {"project_uid": str(uid)[:64]} if isinstance(uid, str) and uid else {}


def apply_ops(
    store: ProjectStore,
    raw_ops: Any,
    classes: Sequence[str],
    *,
    tab: str,
    reviewer: str | None = "app",
    project_uid: str | None = None,
) -> dict[str, dict[str, Any]]:
    """Check and apply a tab's operations; operations of one tab go in one transaction each.
    ``project_uid``: the project identity the tab's batch was made on (refused when it is another).

    Returns a result per client id (see :meth:`ProjectStore.apply_review_batch`); an undo's result
    carries the cards of the examples it brought back (``rows``).
    """
    valid, results = parse_ops(raw_ops, classes, tab=tab)
    # operations adopted from a closed tab keep that tab's identity (conflicts and undo are per tab)
    groups: list[tuple[str, list[dict[str, Any]]]] = []
    for op in valid:
        if groups and groups[-1][0] == op["tab"]:
            groups[-1][1].append(op)
        else:
            groups.append((op["tab"], [op]))
    for op_tab, ops in groups:
        results.update(store.apply_review_batch(ops, tab=op_tab, reviewer=reviewer, project_uid=project_uid))
    verbs = {"accepted": "accept", "overridden": "override", "rejected": "reject"}
    for op in valid:
        res = results.get(op["cid"], {})
        if res.get("conflict") and (res.get("wrong_project") or "id" not in op):
            res["message"] = (f"Not saved: {res.get('error')}." if res.get("wrong_project") else
                              "Only the tab that made a decision can undo it; nothing was undone.")
        elif res.get("conflict"):
            cur = res.get("current") or {}
            now = f"overridden to {cur.get('label')}" if cur.get("status") == "overridden" else cur.get("status")
            res["message"] = (
                f"Example #{op['id']} was changed in another tab or by another person since this tab loaded it "
                f"(it is now {now}), so your {verbs.get(op.get('action'), 'decision')} was not saved. "
                "Go back to it (K) to see it and decide again."
            )
    restored_ids = [r["id"] for res in results.values() if res.get("undo") and res.get("ok")
                    for r in res.get("restored", [])[:20]]
    if restored_ids:
        rows = {r["id"]: card(r) for r in store.review_rows(restored_ids)}
        for res in results.values():
            if res.get("undo") and res.get("ok"):
                res["rows"] = [rows[r["id"]] for r in res.get("restored", [])[:20] if r["id"] in rows]
    return results


def counts_after(counts: Mapping[str, int], moves: Iterable[tuple[str, str]]) -> dict[str, int]:
    """``counts`` (as :meth:`ProjectStore.count_examples` gives them) moved on by review-status moves
    ``(before, after)`` (:meth:`ProjectStore.review_changes_since`)."""
    out = dict(counts)
    for prev, new in moves:
        if prev == new:
            continue
        for status, sign in ((prev, -1), (new, 1)):
            if status in ("accepted", "overridden", "rejected"):
                out[status] = out.get(status, 0) + sign
                out["reviewed"] = out.get("reviewed", 0) + sign
    return out


def history(store: ProjectStore, tab: str, limit: int = 30) -> list[dict[str, Any]]:
    """A tab's undo history, newest first (what U undoes next comes first)."""
    if not tab:
        return []
    return store.review_history(tab, limit)


def bulk(store: ProjectStore, ids: Sequence[int], decision: str, *, tab: str, unit: str | None = None,
         reviewer: str | None = "app") -> tuple[str, int]:
    """Accept or reject many pending examples as one undo unit of ``tab``."""
    return store.bulk_decide(ids, decision, tab=tab, unit=unit, reviewer=reviewer, only_pending=True)


def pending_ids(store: ProjectStore, flt: QueueFilter | None = None, *, relabel_status: str | None = None,
                flagged: bool | None = None) -> list[int]:
    """Ids of pending examples (matching ``flt``, or with ``relabel_status``, or flagged as junk), for
    bulk actions."""
    kw = (flt or QueueFilter()).kwargs()
    kw["review_status"] = "pending"
    if relabel_status is not None:
        kw["relabel_status"] = relabel_status
    return store.matching_ids(flagged=flagged, **kw)


# --------------------------------------------------------------------------- nearest class by embedding
def nearest_status(store: ProjectStore) -> dict[str, Any]:
    raw = store.get_meta(NEAREST_META)
    try:
        status = json.loads(raw) if raw else {}
    except json.JSONDecodeError:
        status = {}
    if status.get("status") == "running" and status.get("pid"):
        try:
            os.kill(int(status["pid"]), 0)
        except ProcessLookupError:
            status.update(status="failed", message="the process stopped unexpectedly")
        except PermissionError:
            pass
    have, total = store.count_vectors(EMBED_MODEL)
    status.update(have=have, total=total)
    return status


def _set_status(store: ProjectStore, **fields: Any) -> None:
    raw = store.get_meta(NEAREST_META)
    cur = json.loads(raw) if raw else {}
    cur.update(fields, updated=time.time())
    store.set_meta(NEAREST_META, json.dumps(cur))


def update_vectors(
    store: ProjectStore,
    *,
    batch: int = 128,
    progress: Callable[[int, int], None] | None = None,
    embed: Callable[[Sequence[str]], Any] | None = None,
) -> int:
    """Embed every example without a vector yet (float16, stored in the project). Returns how many."""
    import numpy as np

    if embed is None:
        from .embed import embed_texts as embed
    done = 0
    have, total = store.count_vectors(EMBED_MODEL)
    while True:
        todo = store.vector_todo(EMBED_MODEL, batch)
        if not todo:
            break
        vecs = np.asarray(embed([t for _i, t in todo]), dtype=np.float32)
        store.save_vectors(EMBED_MODEL, [(i, v.astype(np.float16).tobytes()) for (i, _t), v in zip(todo, vecs)])
        done += len(todo)
        if progress:
            progress(have + done, total)
    return done


def update_nearest(
    store: ProjectStore, task: Task, *, embed: Callable[[Sequence[str]], Any] | None = None, chunk: int = 4096
) -> int:
    """For every example with a vector, store the class of its nearest neighbour among the seeds and
    the accepted (or overridden) examples, other than itself. Returns how many were labelled."""
    import numpy as np

    if embed is None:
        from .embed import embed_texts as embed
    seeds = task.seed_rows()
    stored = store.load_vectors(EMBED_MODEL)
    if not stored:
        return 0
    ids = np.array([i for i, _v, _l in stored], dtype=np.int64)
    mat = np.stack([np.frombuffer(v, dtype=np.float16) for _i, v, _l in stored]).astype(np.float32)
    ref_vecs, ref_labels, ref_ids = [], [], []
    if seeds:
        ref_vecs.append(np.asarray(embed([s["text"] for s in seeds]), dtype=np.float32))
        ref_labels += [s["label"] for s in seeds]
        ref_ids += [-1] * len(seeds)
    reviewed = [(k, lab) for k, (_i, _v, lab) in enumerate(stored) if lab]
    if reviewed:
        ref_vecs.append(mat[[k for k, _lab in reviewed]])
        ref_labels += [lab for _k, lab in reviewed]
        ref_ids += [int(ids[k]) for k, _lab in reviewed]
    if not ref_vecs:
        return 0
    refs = np.concatenate(ref_vecs, axis=0)
    ref_ids_arr = np.array(ref_ids, dtype=np.int64)
    out: list[tuple[int, str | None, float | None]] = []
    for start in range(0, len(ids), chunk):
        sims = mat[start : start + chunk] @ refs.T
        # an accepted example is not its own neighbour
        sims[ids[start : start + chunk, None] == ref_ids_arr[None, :]] = -np.inf
        best = sims.argmax(axis=1)
        for row, (ex_id, b) in enumerate(zip(ids[start : start + chunk], best)):
            score = float(sims[row, b])
            out.append((int(ex_id), ref_labels[b] if np.isfinite(score) else None,
                        round(score, 4) if np.isfinite(score) else None))
    store.save_nearest(out)
    return len(out)


def run_nearest(store_path: str | Path, *, embed: Callable[[Sequence[str]], Any] | None = None) -> dict[str, Any]:
    """Embed what is missing, then label every example with its nearest class; progress in the store."""
    store = ProjectStore(store_path, create=False)
    task = store.load_task()
    if task is None:
        raise ValueError("the project has no task")
    _set_status(store, status="running", pid=os.getpid(), started=time.time(), message="embedding the examples")
    try:
        n = update_vectors(store, embed=embed,
                           progress=lambda d, t: _set_status(store, done=d, total=t))
        _set_status(store, message="finding the nearest classes")
        m = update_nearest(store, task, embed=embed)
    except BaseException as exc:
        _set_status(store, status="failed", message=str(exc) or type(exc).__name__, finished=time.time())
        raise
    _set_status(store, status="done", finished=time.time(), embedded=n, labelled=m,
                message=f"nearest class for {m:,} examples")
    return {"embedded": n, "labelled": m}


def start_nearest(store_path: str | Path) -> int:
    """Start :func:`run_nearest` in a background process (its own session); returns the pid."""
    root = str(Path(__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    from .paths import logs_dir

    p = Path(store_path)
    log_dir = logs_dir(p)
    log_dir.mkdir(parents=True, exist_ok=True)
    with open(log_dir / "review-nearest.log", "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "promptmix_core.review", "nearest", str(p.resolve())],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
            start_new_session=True, close_fds=True,
        )
    store = ProjectStore(p, create=False)
    _set_status(store, status="running", pid=proc.pid, started=time.time(), done=0,
                message="starting", finished=None)
    return proc.pid


def main(argv: Iterable[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2 or args[0] != "nearest":
        print("usage: python -m promptmix_core.review nearest PROJECT.pmx", file=sys.stderr)
        return 2
    result = run_nearest(args[1])
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
