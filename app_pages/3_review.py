"""3 · Review: a card that answers keys in the browser (accept, reject, override, undo, next/previous),
a queue order with the reason each example comes early, bulk actions with confirmation and undo,
and a paged list of the examples the filters show."""

from __future__ import annotations

import hashlib
import time
import uuid

import pandas as pd
import streamlit as st

from app_pages._review_card import review_card
from app_pages._team import team_panel
from app_pages._ui import (
    current_project,
    empty_state,
    flash,
    fmt_time,
    header,
    md_escape,
    reviewer_name,
    store_or_stop,
    task_or_stop,
)
from promptmix_core import review
from promptmix_core.review import ORDERS, QueueFilter
from promptmix_core.store import StoreError

header(
    "3 · Review",
    "Check each generated example beside the class it was written for, the class mixed in and the two "
    "suggestions: the LLM's relabel and the student judge (a small model, no LLM). Keys answer at once and "
    "every decision is saved within a moment: **A** (or Space/Enter) "
    "accept · **X** reject · **1–9** save as that class · **O** pick any class · **U** undo (repeatedly) · "
    "**J**/**K** next/previous.",
)
store = store_or_stop()
task = task_or_stop(store)
project = current_project()
classes = task.class_names
CARD_KEY = f"rv_card::{project}"
GEN = f"rv_gen::{project}"
PAGE_SIZE = 50

counts = store.count_examples()
if counts["total"] == 0:
    empty_state(
        "Nothing to review yet",
        "Generate borderline examples first; they appear here as soon as the generator writes them.",
        page="generate",
        link_label="Go to 2 · Generate",
    )
    st.stop()

flash("rv_flash")
team_panel(store, classes, project)


def _sync() -> dict:
    """The card's last message (its ``sync`` state), or an empty one before it has spoken."""
    state = st.session_state.get(CARD_KEY)
    try:
        sync = state.get("sync") if state is not None else None
    except AttributeError:
        sync = None
    return dict(sync) if isinstance(sync, dict) else {}


def _project_uid() -> str:
    """The project's identity (a project deleted and re-created under the same name has another): the
    store's ``project_uid``, else (an old file opened read-only) the time the file was created."""
    uid = store.project_uid  # None only for a file written before project ids, opened read-only
    if not uid:
        created = store.get_meta("created_at") or str(store.path.stat().st_ino)
        uid = "c" + hashlib.sha1(f"{created}".encode("utf-8")).hexdigest()[:24]
    return str(uid)


PROJECT_UID = _project_uid()
STALE_PROJECT = ("made in this browser for an earlier project of the same name (deleted since), so it was not "
                 "applied to this one")


def _tab() -> str:
    """This browser tab's id (the card keeps it across refreshes); a session id until the card spoke."""
    tab = str(_sync().get("tab") or "")[:80]
    if not tab:
        tab = st.session_state.setdefault("rv_session_tab", f"s{uuid.uuid4().hex[:16]}")
    return tab


# --------------------------------------------------------------------------- filters and order
STATUS_OPTS = {"Pending": "pending", "All": None, "Accepted": "accepted", "Overridden": "overridden",
               "Rejected": "rejected"}
AGREE_OPTS = {"Any": None, "Relabel agrees": "agree", "Relabel differs": "changed",
              "Relabel failed": "unparseable", "Not relabelled": "none"}
# one row where the page is wide enough, wrapping (never cutting a value short) where it is not
f1 = f2 = f3 = f4 = f5 = st.container(horizontal=True, wrap=True)
status_f = f1.selectbox("Status", list(STATUS_OPTS), key=f"rv_status::{project}", width=140)
class_f = f2.selectbox("Class", ["All classes"] + classes, key=f"rv_class::{project}", width=200,
                       help="Examples written for, mixed with or relabelled as this class")
agree_f = f3.selectbox("Relabel", list(AGREE_OPTS), key=f"rv_agree::{project}", width=160)
search_f = f4.text_input("Search text", key=f"rv_search::{project}", placeholder="words in the example",
                         type="search", width=190)
order = f5.selectbox(
    "Order", list(ORDERS), format_func=ORDERS.get, key=f"rv_order::{project}", width=200,
    help="Pending first: in the order they were generated. Most informative first: examples where the LLM "
         "relabel differs from the written-for class, the relabel failed, the nearest class by embedding "
         "disagrees with both, the example is flagged, or the relabel's confidence is low; each card says why.",
)
flt = QueueFilter(
    review_status=STATUS_OPTS[status_f],
    label=None if class_f == "All classes" else class_f,
    relabel_status=AGREE_OPTS[agree_f],
    search=search_f.strip() or None,
)
qid = hashlib.sha1(
    f"{project}|{PROJECT_UID}|{order}|{flt.key()}|{st.session_state.get(GEN, 0)}|{store.reviews_per_example()}".encode("utf-8")
).hexdigest()[:16]


def _nearest_panel() -> None:
    status = review.nearest_status(store)
    running = status.get("status") == "running"
    have, total = status.get("have", 0), status.get("total", 0)
    if running:
        done = int(status.get("done") or have)
        st.progress(min(done / total, 1.0) if total else 0.0,
                    text=f"Embedding the examples with MiniLM: {done:,} of {total:,} · {status.get('message', '')}")
        st.session_state["rv_nearest_watch"] = True
        return
    if st.session_state.pop("rv_nearest_watch", None):
        st.session_state[GEN] = st.session_state.get(GEN, 0) + 1
        st.rerun()
    c1, c2 = st.columns([3, 1], vertical_alignment="center")
    if status.get("status") == "failed":
        c1.warning(f"Finding the nearest classes failed: {md_escape(status.get('message', ''))}")
    elif status.get("status") == "done" and have:
        c1.caption(f":material/hub: Nearest class by embedding (all-MiniLM-L6-v2, against the seeds and the "
                   f"accepted examples) known for {have:,} of {total:,} examples, "
                   f"computed {fmt_time(status.get('finished'))}.")
    else:
        c1.caption(":material/hub: One reason, *the nearest class by embedding disagrees with both labels*, needs "
                   f"MiniLM vectors of the examples ({have:,} of {total:,} have one). It runs in the background.")
    label = "Recompute nearest classes" if have else "Find nearest classes"
    if c2.button(label, key="rv_nearest_start", icon=":material/hub:", width="stretch",
                 help="Embeds the examples not embedded yet (a few minutes for tens of thousands on a CPU), "
                      "then compares each with the seeds and the examples accepted so far"):
        try:
            review.start_nearest(store.path)
        except Exception as exc:  # noqa: BLE001 - shown to the user
            st.error(f"Could not start: {md_escape(exc)}")
        else:
            st.rerun()


if order == "informative":
    watching = review.nearest_status(store).get("status") == "running"
    st.fragment(_nearest_panel, run_every=2.0 if watching else None)()


# --------------------------------------------------------------------------- bulk actions
def _ask_bulk(kind: str) -> None:
    # the examples are fixed when the question is asked: "Yes" applies to exactly these (those still
    # pending then), never to examples a job added or a filter matched meanwhile
    st.session_state["rv_bulk_ask"] = {"kind": kind, "unit": f"bulk:{uuid.uuid4().hex}", "ids": _bulk_targets(kind)}


BULK = {  # kind: (decision, what the confirmation and the message call the examples)
    "agree": ("accepted", "examples where the relabel agrees"),
    "unparseable": ("rejected", "examples the LLM could not relabel"),
    "shown": ("accepted", "pending examples the filters show"),
    "flagged": ("rejected", "examples flagged as junk"),
}


def _bulk_targets(kind: str) -> list[int]:
    if kind == "agree":
        return review.pending_ids(store, relabel_status="agree")
    if kind == "unparseable":
        return review.pending_ids(store, relabel_status="unparseable")
    if kind == "flagged":
        return review.pending_ids(store, flagged=True)
    return review.pending_ids(store, flt) if flt.review_status in (None, "pending") else []


def _confirm_bulk() -> None:
    ask = st.session_state.pop("rv_bulk_ask", None)
    if not ask:
        return
    decision, what = BULK[ask["kind"]]
    try:
        unit, n = review.bulk(store, list(ask.get("ids") or []), decision, tab=_tab(), unit=ask["unit"],
                              reviewer=reviewer_name())
    except StoreError as exc:  # a full disk or a read-only folder: said, nothing changed
        st.session_state["rv_flash"] = ("error", f"Nothing was changed: {md_escape(exc)}.")
        return
    st.session_state[GEN] = st.session_state.get(GEN, 0) + 1
    st.session_state["rv_last_bulk"] = {"unit": unit, "n": n, "decision": decision, "what": what}
    verb = "Accepted" if decision == "accepted" else "Rejected"
    if _sync().get("tab"):  # recorded under the card's tab id, which survives a reload: U undoes it there
        st.session_state["rv_flash"] = ("success", f"{verb} {n} {what}. Press **U** on the card (also after a "
                                                   "reload of this tab) or *Undo it* below to undo them as one step.")
        _notice(f"{verb} {n} {what} (one step for U).")
    else:  # the card had not spoken yet: only this session knows the step
        st.session_state["rv_flash"] = ("success", f"{verb} {n} {what}. *Undo it* below undoes them as one step.")


def _undo_bulk() -> None:
    last = st.session_state.pop("rv_last_bulk", None)
    if not last:
        return
    try:
        res = review.apply_ops(store, [{"cid": f"u{uuid.uuid4().hex[:20]}", "undo": last["unit"], "tab": _tab()}],
                               classes, tab=_tab(), reviewer=reviewer_name())
    except StoreError as exc:
        st.session_state["rv_last_bulk"] = last
        st.session_state["rv_flash"] = ("error", f"Nothing was undone: {md_escape(exc)}.")
        return
    r = next(iter(res.values()), {})
    st.session_state[GEN] = st.session_state.get(GEN, 0) + 1
    if r.get("ok"):
        extra = f"; {r['n_skipped']} changed since were left as they are" if r.get("n_skipped") else ""
        st.session_state["rv_flash"] = ("info", f"Undid the bulk action: {r['n']} examples are back as they were{extra}.")
    else:
        st.session_state["rv_flash"] = ("warning", "That bulk action was already undone.")


def _notice(text: str, kind: str = "ok") -> None:
    seq = st.session_state.get("rv_notice", {}).get("seq", 0) + 1
    st.session_state["rv_notice"] = {"seq": seq, "text": text, "kind": kind}


with st.expander("Bulk actions", expanded="rv_bulk_ask" in st.session_state, icon=":material/bolt:"):
    n_agree = store.count_matching(review_status="pending", relabel_status="agree")
    n_unparse = store.count_matching(review_status="pending", relabel_status="unparseable")
    n_shown = (store.count_matching(**{**flt.kwargs(), "review_status": "pending"})
               if flt.review_status in (None, "pending") else 0)
    n_flagged = counts.get("flagged_pending", 0)
    # one per line: the labels say what they do in full, never cut off
    st.button(f"Accept every pending example where the relabel agrees ({n_agree})", on_click=_ask_bulk,
              args=("agree",), disabled=not n_agree, key="rv_bulk_agree", icon=":material/done_all:")
    st.button(f"Reject every pending example the LLM could not relabel ({n_unparse})", on_click=_ask_bulk,
              args=("unparseable",), disabled=not n_unparse, key="rv_bulk_unparse", icon=":material/block:")
    st.button(f"Accept the {n_shown} pending example{'s' if n_shown != 1 else ''} shown by the filters",
              on_click=_ask_bulk, args=("shown",), disabled=not n_shown, key="rv_bulk_shown",
              icon=":material/filter_alt:")
    if counts.get("flagged"):
        st.button(f"Reject every pending example flagged as junk ({n_flagged})", on_click=_ask_bulk,
                  args=("flagged",), disabled=not n_flagged, key="rv_bulk_flagged", icon=":material/delete_sweep:")
    st.caption("Bulk actions change only examples that are still pending; your one-by-one decisions stay. "
               "Each asks first and can be undone as one step.")
    ask = st.session_state.get("rv_bulk_ask")
    if ask:
        n = len(ask.get("ids") or [])  # the examples "Yes" applies to, counted when asked
        decision, what = BULK[ask["kind"]]
        verb = "Accept" if decision == "accepted" else "Reject"
        with st.container(border=True):
            st.markdown(f"**{verb} {n} pending {what.removeprefix('pending ')}?** Only examples still pending "
                        "change. You can undo it as one step.")
            c1, c2, _ = st.columns([1.4, 1, 2])
            c1.button(f"Yes, {verb.lower()} {n}", type="primary", on_click=_confirm_bulk, key="rv_bulk_confirm",
                      width="stretch")
            c2.button("Cancel", on_click=lambda: st.session_state.pop("rv_bulk_ask", None), key="rv_bulk_cancel",
                      width="stretch")
    last = st.session_state.get("rv_last_bulk")
    if last:
        verb = "accept" if last["decision"] == "accepted" else "reject"
        st.button(f"Undo it: the bulk {verb} of {last['n']} {last['what']}", on_click=_undo_bulk,
                  icon=":material/undo:", key="rv_bulk_undo")


# --------------------------------------------------------------------------- the card
@st.fragment
def review_area() -> None:
    t0 = time.perf_counter()
    parts: dict[str, float] = {}

    clock = [t0]

    def lap(name: str) -> None:  # where the server time of this run goes (shown to benchmarks)
        now = time.perf_counter()
        parts[name] = round((now - clock[0]) * 1000, 1)
        clock[0] = now

    sync = _sync()
    tab = _tab()
    acks: dict = {}
    if sync.get("ops") and sync.get("project") == project and sync.get("uid") != PROJECT_UID:
        # an outbox of another project of this name (or a message without the project's identity):
        # answered, so the tab stops sending it, and never applied
        acks = {str(op.get("cid"))[:80]: {"ok": False, "stale_project": True, "error": STALE_PROJECT}
                for op in sync["ops"] if isinstance(op, dict) and op.get("cid")}
    elif sync.get("ops") and sync.get("project") == project:
        try:
            made_on = sync.get("project_uid")  # the project identity the tab's outbox was made on (not its name)
            acks = review.apply_ops(store, sync["ops"], classes, tab=tab, reviewer=reviewer_name(),
                                    project_uid=made_on if isinstance(made_on, str) and made_on else None)
        except StoreError as exc:  # a full disk or a read-only folder: not acknowledged, so the tab keeps them
            st.error(f"Your latest decisions could not be saved: {md_escape(exc)}. They stay in this tab and are "
                     "sent again.", icon=":material/error:")
            _notice(f"Not saved: {exc}. Your decisions stay in this tab and are sent again.", "warn")
    lap("apply")
    # counts: moved on by the review log since they were counted (any tab's decisions); counted again
    # every 10 s for what does not go through the log
    cached = st.session_state.get("rv_counts")
    if cached and cached[0] == project and time.time() - cached[1] < 10:
        mark, moves = store.review_changes_since(cached[2])
        now_counts, stamp = review.counts_after(cached[3], moves), cached[1]
    else:
        (now_counts, mark), stamp = store.count_examples_marked(), time.time()
    st.session_state["rv_counts"] = (project, stamp, mark, now_counts)
    lap("counts")
    page = None
    if sync.get("qid") != qid:
        page = {"qid": qid, "from": None, **review.queue_page(store, order, flt, reviewer=reviewer_name())}
    elif sync.get("want") is not None:
        frm = sync["want"]
        after = None if frm == "start" else frm
        page = {"qid": qid, "from": frm, **review.queue_page(store, order, flt, after=after, reviewer=reviewer_name())}
    lap("page")
    focus = st.session_state.get("rv_focus")
    if focus and int(sync.get("focus_seen") or 0) >= focus["seq"]:
        focus = None  # the card has shown it
        st.session_state["rv_focus"] = {"seq": st.session_state["rv_focus"]["seq"], "id": None}
    focus_data = None
    if focus and focus.get("id") is not None:
        rows = store.review_rows([focus["id"]])
        focus_data = {"seq": focus["seq"], "row": review.card(rows[0]) if rows else None}
    # how many the filters show: from the counts when only the status filters, else counted when the
    # queue is read (a filter change, a refill) and at most every 10 s
    if flt.label is None and flt.relabel_status is None and not flt.search:
        matching = (now_counts["total"] if flt.review_status is None else
                    now_counts["total"] - now_counts["reviewed"] if flt.review_status == "pending" else
                    now_counts.get(flt.review_status, 0))
    else:
        cache = st.session_state.get("rv_matching")
        if page is not None or not cache or cache[0] != qid or time.time() - cache[2] > 10:
            cache = (qid, store.count_matching(**flt.kwargs()), time.time())
            st.session_state["rv_matching"] = cache
        matching = cache[1]
    lap("matching")
    data = {
        "project": project, "project_uid": PROJECT_UID, "classes": classes, "qid": qid, "order": order, "order_label": ORDERS[order],
        "page": page, "acks": acks, "ack_req": sync.get("req", 0), "ack_inst": sync.get("inst"),
        "history": review.history(store, tab), "history_tab": tab, "counts": now_counts, "matching": matching,
        "focus": focus_data, "notice": st.session_state.get("rv_notice"),
        "rev": st.session_state.setdefault("rv_rev", 0) + 1,
    }
    st.session_state["rv_rev"] = data["rev"]
    lap("history")
    data["server_parts"] = parts
    data["server_ms"] = round((time.perf_counter() - t0) * 1000, 1)  # the work; the card shows it

    if matching == 0:
        with st.container(border=True):
            if flt.review_status == "pending" and now_counts['total'] == now_counts['reviewed']:
                st.markdown("#### :material/task_alt: Everything is reviewed")
                st.markdown("Every generated example has a decision. Train a classifier next.")
                st.page_link("app_pages/4_train.py", label="Go to 4 · Train", icon=":material/arrow_forward:")
            else:
                st.markdown("#### No examples match these filters")
                st.markdown("Change the status, class, relabel or search filters above.")

    review_card(data, key=CARD_KEY)
    # the whole run of this fragment (what one batch of decisions costs the server), for benchmarks
    timings = st.session_state.setdefault("rv_server_ms", [])
    timings.append({"ms": (time.perf_counter() - t0) * 1000, "ops": len(sync.get("ops") or []),
                    "page": page is not None})
    del timings[:-200]


review_area()


# --------------------------------------------------------------------------- the list
def _open(example_id: int) -> None:
    seq = st.session_state.get("rv_focus", {}).get("seq", 0) + 1
    st.session_state["rv_focus"] = {"seq": seq, "id": int(example_id)}


# The card saves decisions without rerunning the page, so the list rereads the store on its own every
# LIST_EVERY_S seconds: with Status = Pending it never lists rows the card has decided since.
LIST_EVERY_S = 3.0


@st.fragment(run_every=LIST_EVERY_S)
def examples_list() -> None:
    total_shown = store.count_matching(**flt.kwargs())
    st.subheader(f"Examples shown ({total_shown})")
    if total_shown:
        pages = max(1, -(-total_shown // PAGE_SIZE))
        pc1, pc2 = st.columns([3, 1], vertical_alignment="bottom")
        pc1.caption(f"{PAGE_SIZE} per page, in id order. Select a row to open it in the card above.")
        page_no = pc2.number_input(f"Page (of {pages})", 1, pages, 1, key=f"rv_page::{project}::{flt.key()}")
        rows = store.example_page(limit=PAGE_SIZE, offset=(int(page_no) - 1) * PAGE_SIZE, **flt.kwargs())

        def _final(r: dict) -> str:
            if r["review_status"] == "rejected":
                return ""
            if r["review_status"] == "overridden":
                return r["review_label"] or ""
            return r["label"] or ""

        df = pd.DataFrame([{
            "id": r["id"], "text": r["text"], "written for": r["intended_label"], "mixed with": r["mixed_with"] or "",
            "alpha": r["alpha"],
            "LLM relabel": r["llm_label"] or ("(failed)" if r["relabel_status"] == "unparseable" else ""),
            "relabel": r["relabel_status"] or "", "decision": r["review_status"], "final label": _final(r),
        } for r in rows])
        event = st.dataframe(
            df, hide_index=True, width="stretch", height=min(38 + 35 * len(df), 420), on_select="rerun",
            selection_mode="single-row", key=f"rv_table::{flt.key()}::{page_no}",
            column_config={
                "id": st.column_config.NumberColumn("id", width="small"),
                "text": st.column_config.TextColumn("text", width="large"),
                "alpha": st.column_config.NumberColumn("alpha", format="%.2f", width="small"),
            },
        )
        sel = list(getattr(getattr(event, "selection", None), "rows", []) or [])
        if sel:
            picked = int(df.iloc[sel[0]]["id"])
            if st.session_state.get("rv_last_pick") != (flt.key(), page_no, picked):
                st.session_state["rv_last_pick"] = (flt.key(), page_no, picked)
                _open(picked)
                st.rerun()


examples_list()
