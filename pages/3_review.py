"""3 · Review: accept, override or reject each generated example; filters, bulk actions, shortcuts."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from pages._ui import (
    current_project,
    empty_state,
    ensure_app_shell,
    flash,
    header,
    md_escape,
    quote,
    store_or_stop,
    task_or_stop,
)
from promptmix_core.store import ConflictError

ensure_app_shell()
header(
    "3 · Review",
    "Check each generated example beside the class it was written for, the class mixed in and the LLM's "
    "relabel. Decisions are saved the moment you make them. Keys: **A** accept · **O** override · "
    "**X** reject · **U** undo · **J**/**K** next/previous.",
)
store = store_or_stop()
task = task_or_stop(store)
project = current_project()
classes = task.class_names
POS = f"rv_pos::{project}"

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

# --------------------------------------------------------------------------- counts
pending = counts["total"] - counts["reviewed"]
agree_rate = counts["agree"] / counts["relabelled"] if counts["relabelled"] else None
m = st.columns(6)
m[0].metric("Generated", counts["total"])
m[1].metric("Pending", pending)
m[2].metric("Accepted", counts["accepted"])
m[3].metric("Overridden", counts["overridden"])
m[4].metric("Rejected", counts["rejected"])
m[5].metric("Relabel agrees", f"{agree_rate:.0%}" if agree_rate is not None else "–",
            help="Share of relabelled examples where the LLM classifier chose the class they were written for")
st.progress(counts["reviewed"] / counts["total"], text=f"{counts['reviewed']} of {counts['total']} reviewed")

# --------------------------------------------------------------------------- filters
STATUS_OPTS = {"Pending": "pending", "All": None, "Accepted": "accepted", "Overridden": "overridden",
               "Rejected": "rejected"}
AGREE_OPTS = {"Any": None, "Relabel agrees": "agree", "Relabel differs": "changed",
              "Relabel failed": "unparseable", "Not relabelled": "none"}
f1, f2, f3, f4 = st.columns([1, 1.3, 1.2, 2])
status_f = f1.selectbox("Status", list(STATUS_OPTS), key=f"rv_status::{project}")
class_f = f2.selectbox("Class", ["All classes"] + classes, key=f"rv_class::{project}",
                       help="Examples written for, mixed with or relabelled as this class")
agree_f = f3.selectbox("Relabel", list(AGREE_OPTS), key=f"rv_agree::{project}")
search_f = f4.text_input("Search text", key=f"rv_search::{project}", placeholder="words in the example",
                         type="search")

shown = store.list_examples(
    review_status=STATUS_OPTS[status_f],
    label=None if class_f == "All classes" else class_f,
    relabel_status=AGREE_OPTS[agree_f],
    search=search_f.strip() or None,
)
ids = [e.id for e in shown]


# --------------------------------------------------------------------------- callbacks
def _neighbour(example_id: int, step: int) -> int | None:
    """The id after (step=1) or before (step=-1) ``example_id`` in the current ordering."""
    if step > 0:
        later = [i for i in ids if i > example_id]
        return later[0] if later else (ids[0] if ids and ids[0] != example_id else None)
    earlier = [i for i in ids if i < example_id]
    return earlier[-1] if earlier else (ids[-1] if ids and ids[-1] != example_id else None)


def _decide(example_id: int, decision: str, version: int, next_id: int | None) -> None:
    label = None
    if decision == "overridden":
        label = st.session_state.get(f"rv_override::{project}::{example_id}")
        if not label:
            st.session_state["rv_flash"] = ("warning", "Pick the class to override with first.")
            return
    try:
        store.review(example_id, decision, label=label, expected_version=version, reviewer="app")
    except ConflictError:
        st.session_state["rv_flash"] = (
            "error",
            f"Example #{example_id} was changed in another tab or by another person since you opened it, so "
            "your decision was not saved. It now shows the latest version; decide again.",
        )
        return
    except KeyError:
        st.session_state["rv_flash"] = ("error", f"Example #{example_id} no longer exists (its job was deleted).")
        return
    words = {"accepted": "Accepted", "overridden": f"Overrode to {quote(label)}", "rejected": "Rejected",
             "pending": "Undid the decision on"}
    st.session_state["rv_flash"] = ("success" if decision != "pending" else "info",
                                    f"{words[decision]} example #{example_id}.")
    if decision != "pending" and next_id is not None:
        st.session_state[POS] = next_id


def _goto(example_id: int | None) -> None:
    if example_id is not None:
        st.session_state[POS] = example_id


def _bulk(target_ids: list[int], decision: str, what: str) -> None:
    n = store.bulk_review(target_ids, decision, only_pending=True)
    st.session_state["rv_flash"] = ("success", f"{'Accepted' if decision == 'accepted' else 'Rejected'} {n} {what}.")


# --------------------------------------------------------------------------- bulk actions
with st.expander("Bulk actions", expanded=False, icon=":material/bolt:"):
    pend_agree = [e.id for e in store.list_examples(review_status="pending", relabel_status="agree")]
    pend_unparse = [e.id for e in store.list_examples(review_status="pending", relabel_status="unparseable")]
    pend_shown = [e.id for e in shown if e.review_status == "pending"]
    b1, b2, b3 = st.columns(3)
    b1.button(f"Accept every pending example where the relabel agrees ({len(pend_agree)})",
              on_click=_bulk, args=(pend_agree, "accepted", "examples where the relabel agrees"),
              disabled=not pend_agree, width="stretch", key="rv_bulk_agree")
    b2.button(f"Reject every pending example the LLM could not relabel ({len(pend_unparse)})",
              on_click=_bulk, args=(pend_unparse, "rejected", "unrelabelled examples"),
              disabled=not pend_unparse, width="stretch", key="rv_bulk_unparse")
    b3.button(f"Accept the {len(pend_shown)} pending example{'s' if len(pend_shown) != 1 else ''} shown by "
              "the filters", on_click=_bulk, args=(pend_shown, "accepted", "examples"),
              disabled=not pend_shown, width="stretch", key="rv_bulk_shown")
    st.caption("Bulk actions change only examples that are still pending; your one-by-one decisions stay.")

if not shown:
    with st.container(border=True):
        if status_f == "Pending" and pending == 0:
            st.markdown("#### :material/task_alt: Everything is reviewed")
            st.markdown("Every generated example has a decision. Train a classifier next.")
            st.page_link("pages/4_train.py", label="Go to 4 · Train", icon=":material/arrow_forward:")
        else:
            st.markdown("#### No examples match these filters")
            st.markdown("Change the status, class, relabel or search filters above.")
    st.stop()

# --------------------------------------------------------------------------- the current example
cur_id = st.session_state.get(POS)
if cur_id not in ids:
    later = [i for i in ids if cur_id is not None and i > cur_id]
    cur_id = later[0] if later else ids[0]
    st.session_state[POS] = cur_id
ex = next(e for e in shown if e.id == cur_id)
pos = ids.index(cur_id)
next_id, prev_id = _neighbour(cur_id, 1), _neighbour(cur_id, -1)

left, right = st.columns([3, 2], gap="large")
with left:
    with st.container(border=True):
        st.caption(f"Example #{ex.id} · {pos + 1} of {len(ids)} shown · generated by job #{ex.job_id}")
        if "\n" in ex.text.strip():
            st.markdown(md_escape(ex.text))
        else:
            st.markdown(f"#### {md_escape(ex.text)}")
        status_txt = {
            "pending": ":gray[:material/hourglass_empty:] pending",
            "accepted": f":green[:material/check_circle:] accepted as {quote(ex.final_label)}",
            "overridden": f":blue[:material/edit:] overridden to {quote(ex.review_label)}",
            "rejected": ":red[:material/block:] rejected",
        }[ex.review_status]
        st.markdown(f"**Decision:** {status_txt}")
    a1, a2, a3, a4, a5 = st.columns([1.1, 1.1, 1, 1, 1])
    a1.button("Accept", shortcut="a", type="primary", on_click=_decide, icon=":material/check:",
              args=(ex.id, "accepted", ex.version, next_id), width="stretch", key="rv_accept",
              help="Keep the example with its current label (the LLM relabel when there is one)")
    a2.button("Reject", shortcut="x", on_click=_decide, args=(ex.id, "rejected", ex.version, next_id),
              icon=":material/block:", width="stretch", key="rv_reject", help="Leave the example out of training")
    a3.button("Undo", shortcut="u", on_click=_decide, args=(ex.id, "pending", ex.version, None),
              disabled=ex.review_status == "pending", width="stretch", key="rv_undo",
              help="Set the example back to pending")
    a4.button("Prev", icon=":material/chevron_left:", shortcut="k", on_click=_goto, args=(prev_id,),
              disabled=prev_id is None, width="stretch", key="rv_prev", help="Previous example")
    a5.button("Next", icon=":material/chevron_right:", shortcut="j", on_click=_goto, args=(next_id,),
              disabled=next_id is None, width="stretch", key="rv_next", help="Next example")
    default_override = ex.review_label or (
        ex.llm_label if ex.llm_label and ex.llm_label != ex.intended_label else
        (ex.mixed_with if ex.mixed_with in classes else None)
    )
    opts = list(classes)
    o1, o2 = st.columns([3, 1.2], vertical_alignment="bottom")
    o1.selectbox("Override with class", opts, key=f"rv_override::{project}::{ex.id}",
                 index=opts.index(default_override) if default_override in opts else 0)
    o2.button("Override", shortcut="o", on_click=_decide, args=(ex.id, "overridden", ex.version, next_id),
              icon=":material/edit:", width="stretch", key="rv_override",
              help="Keep the example with the class picked beside")

with right:
    with st.container(border=True):
        alpha = ex.alpha
        st.markdown(f"**Written for** · {quote(ex.intended_label)}")
        st.markdown(f"**Mixed with** · {quote(ex.mixed_with) if ex.mixed_with else '– (no mixup)'}")
        if alpha is not None:
            st.progress(min(max(float(alpha), 0.0), 1.0),
                        text=f"α = {alpha:.2f}: {alpha:.0%} written-for class"
                        + (f", {1 - alpha:.0%} mixed-in class" if ex.mixed_with else ""))
        if ex.relabel_status is None:
            st.markdown("**LLM relabel** · not relabelled yet")
        elif ex.relabel_status == "unparseable":
            st.markdown("**LLM relabel** · :orange[:material/warning: the answer did not name a class]")
            if ex.llm_raw:
                st.caption("Raw answer:")
                st.text(ex.llm_raw[:500])
        else:
            mark = (":green[:material/check: agrees]" if ex.relabel_status == "agree"
                    else ":orange[:material/swap_horiz: differs]")
            st.markdown(f"**LLM relabel** · {quote(ex.llm_label)} {mark}")
        st.caption(f"Model {md_escape(ex.model or '?')}")

# --------------------------------------------------------------------------- the list
st.subheader(f"Examples shown ({len(shown)})")
st.caption("Select a row to open it above.")
df = pd.DataFrame(
    [{
        "id": e.id,
        "text": e.text,
        "written for": e.intended_label,
        "mixed with": e.mixed_with or "",
        "alpha": e.alpha,
        "LLM relabel": e.llm_label or ("(failed)" if e.relabel_status == "unparseable" else ""),
        "relabel": e.relabel_status or "",
        "decision": e.review_status,
        "final label": e.final_label or "",
    } for e in shown]
)
event = st.dataframe(
    df, hide_index=True, width="stretch", height=min(38 + 35 * len(df), 420),
    on_select="rerun", selection_mode="single-row", key=f"rv_table::{status_f}::{class_f}::{agree_f}::{search_f}",
    column_config={
        "id": st.column_config.NumberColumn("id", width="small"),
        "text": st.column_config.TextColumn("text", width="large"),
        "alpha": st.column_config.NumberColumn("alpha", format="%.2f", width="small"),
    },
)
rows = list(getattr(getattr(event, "selection", None), "rows", []) or [])
if rows:
    picked = int(df.iloc[rows[0]]["id"])
    last = st.session_state.get("rv_last_pick")
    if picked != last:
        st.session_state["rv_last_pick"] = picked
        if picked != cur_id:
            st.session_state[POS] = picked
            st.rerun()
